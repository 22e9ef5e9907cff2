//! Launching the plugin binary as the controller does: the magic cookie, a
//! private socket directory, the handshake line, stderr collected.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A launched plugin process.
pub struct PluginProcess {
    pub child: Child,
    pub handshake: String,
    pub socket: PathBuf,
    pub socket_dir: PathBuf,
    /// Our end of the plugin's stdout after the handshake line, until
    /// [`PluginProcess::close_stdout`].
    stdout: Option<BufReader<ChildStdout>>,
    pub stderr_lines: Arc<Mutex<Vec<String>>>,
    close_stderr: Option<std::sync::mpsc::Sender<()>>,
    base_dir: PathBuf,
}

impl PluginProcess {
    /// Starts `binary` (see [`crate::plugin_binary`]) as the controller
    /// does and reads the handshake.
    pub fn spawn(binary: &Path, args: &[&str]) -> PluginProcess {
        PluginProcess::spawn_with_env(binary, args, &[])
    }

    /// Starts the binary off the async runtime (spawning blocks on the
    /// handshake) and checks that it announces `protocol`.
    pub async fn launch(
        binary: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        protocol: &str,
    ) -> Result<PluginProcess, String> {
        let process = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            PluginProcess::spawn_with_env(&binary, &args, &env)
        })
        .await
        .map_err(|e| format!("starting the plugin: {e}"))?;
        if !process
            .handshake
            .trim_end()
            .ends_with(&format!("|{protocol}|"))
        {
            return Err(format!(
                "handshake {:?} does not announce {protocol}",
                process.handshake
            ));
        }
        Ok(process)
    }

    pub fn spawn_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> PluginProcess {
        let base_dir = std::env::temp_dir().join(format!(
            "netrpc-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&base_dir).unwrap();
        let mut child = Command::new(binary)
            .args(args)
            .env("ARGO_ROLLOUTS_RPC_PLUGIN", "trafficrouter")
            .env("PLUGIN_PROTOCOL_VERSIONS", "1")
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_UNIX_SOCKET_DIR", &base_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the plugin binary");
        let stderr = child.stderr.take().unwrap();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr_lines.clone();
        let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            loop {
                if close_rx.try_recv().is_ok() {
                    // Dropping the reader closes our end of the pipe.
                    return;
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => lines.lock().unwrap().push(line.trim_end().to_string()),
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send((line, reader));
        });
        let (handshake, reader) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("handshake line within 10 s");
        let fields: Vec<&str> = handshake.trim_end().split('|').collect();
        assert_eq!(fields.len(), 6, "handshake {handshake:?}");
        let socket = PathBuf::from(fields[3]);
        let socket_dir = socket.parent().unwrap().to_path_buf();
        PluginProcess {
            child,
            handshake,
            socket,
            socket_dir,
            stdout: Some(reader),
            stderr_lines,
            close_stderr: Some(close_tx),
            base_dir,
        }
    }

    /// Closes our end of the plugin's stderr (after the next line it writes).
    pub fn close_stderr(&mut self) {
        if let Some(tx) = self.close_stderr.take() {
            let _ = tx.send(());
        }
    }

    /// Closes our end of the plugin's stdout, as a host that died would.
    pub fn close_stdout(&mut self) {
        self.stdout = None;
    }

    /// Everything the plugin wrote to stdout after the handshake, once it
    /// has exited (EOF).
    pub fn rest_of_stdout(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        if let Some(mut reader) = self.stdout.take() {
            let _ = reader.read_to_end(&mut rest);
        }
        rest
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr_lines.lock().unwrap().clone()
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.base_dir);
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
