//! The plugin process as go-plugin launches it (server.go, `Serve`): magic
//! cookie, app protocol negotiation, a unix socket in a private directory,
//! the handshake line on stdout, SIGINT ignored, and an exit as soon as the
//! host is gone. However the process ends short of SIGKILL (the host quits
//! or goes away, SIGTERM, SIGHUP), the socket and its directory are removed.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The controller's handshake (argo `client.go`).
pub const MAGIC_COOKIE_KEY: &str = "ARGO_ROLLOUTS_RPC_PLUGIN";
pub const MAGIC_COOKIE_VALUE: &str = "trafficrouter";
/// go-plugin's `CoreProtocolVersion`.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The app protocol versions this plugin speaks.
pub const APP_PROTOCOL_VERSIONS: &[u32] = &[1];

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "this binary is an Argo Rollouts plugin: the controller starts it with \
         {MAGIC_COOKIE_KEY}={MAGIC_COOKIE_VALUE} set; it is not meant to be run by hand"
    )]
    NotAPlugin,
    #[error("creating the plugin socket directory under {dir}")]
    SocketDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {path}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("PLUGIN_UNIX_SOCKET_GROUP={group}: {message}")]
    Group { group: String, message: String },
    #[error("writing the handshake line to stdout")]
    Handshake(#[source] std::io::Error),
    #[error("copying this binary ({from}) to {to}")]
    Install {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the SIGTERM/SIGHUP handler")]
    Signal(#[source] std::io::Error),
}

/// The file name `install` gives the copy.
pub const INSTALLED_NAME: &str = "rollouts-plugin-trafficrouter-istio";

/// Copies the running binary to `dir/rollouts-plugin-trafficrouter-istio`,
/// mode 0755, through a temporary name so the controller never sees half a
/// file; returns the path.
pub fn install(dir: &Path) -> Result<PathBuf, ProcessError> {
    let to = dir.join(INSTALLED_NAME);
    let partial = dir.join(format!(".{INSTALLED_NAME}.partial"));
    let from = std::env::current_exe().map_err(|source| ProcessError::Install {
        from: PathBuf::from("/proc/self/exe"),
        to: to.clone(),
        source,
    })?;
    let copy = || -> std::io::Result<()> {
        std::fs::copy(&from, &partial)?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&partial, &to)
    };
    copy().map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        ProcessError::Install {
            from: from.clone(),
            to: to.clone(),
            source,
        }
    })?;
    Ok(to)
}

/// Whether the controller started this process (the magic cookie is set).
pub fn launched_by_host() -> bool {
    std::env::var(MAGIC_COOKIE_KEY).ok().as_deref() == Some(MAGIC_COOKIE_VALUE)
}

/// server.go `protocolVersion`: the highest version both sides speak; when
/// none is shared, our lowest, which the host then rejects with a clear error.
pub fn negotiate_app_version(client_versions: &str) -> u32 {
    let mut ours = APP_PROTOCOL_VERSIONS.to_vec();
    ours.sort_unstable_by(|a, b| b.cmp(a));
    let theirs: Vec<u32> = client_versions
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    ours.iter()
        .copied()
        .find(|v| theirs.contains(v))
        .unwrap_or_else(|| ours.last().copied().unwrap_or(1))
}

/// The listening socket and its private directory, removed on drop.
pub struct PluginSocket {
    listener: Option<tokio::net::UnixListener>,
    path: PathBuf,
    dir: PathBuf,
}

impl PluginSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, to hand to a transport (once).
    pub fn take_listener(&mut self) -> Option<tokio::net::UnixListener> {
        self.listener.take()
    }

    /// Removes the socket file and its directory.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for PluginSocket {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Checks the cookie, creates the listener and prints the handshake line
/// `1|<app>|unix|<path>|<protocol>|` (the only line ever written to
/// stdout). `protocol` is `netrpc` or `grpc`. Must run inside a tokio
/// runtime.
pub fn announce(protocol: &str) -> Result<PluginSocket, ProcessError> {
    if !launched_by_host() {
        return Err(ProcessError::NotAPlugin);
    }
    let app = negotiate_app_version(&std::env::var("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_default());
    let base = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let group = std::env::var("PLUGIN_UNIX_SOCKET_GROUP")
        .ok()
        .filter(|g| !g.is_empty());
    let dir = private_dir(&base)?;
    let path = dir.join("plugin.sock");
    // Built first so that any failure below removes the directory.
    let mut socket = PluginSocket {
        listener: None,
        path: path.clone(),
        dir: dir.clone(),
    };
    let listener =
        tokio::net::UnixListener::bind(&path).map_err(|source| ProcessError::Listen {
            path: path.clone(),
            source,
        })?;
    socket.listener = Some(listener);
    if let Some(group) = group {
        share_with_group(&dir, &path, &group)?;
    }
    ignore_sigint();
    remove_on_termination(&socket)?;
    let line = format!(
        "{CORE_PROTOCOL_VERSION}|{app}|unix|{}|{protocol}|\n",
        path.display()
    );
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(ProcessError::Handshake)?;
    Ok(socket)
}

/// A fresh 0700 directory `plugin<random>` under `base` (only we can reach
/// the socket inside).
fn private_dir(base: &Path) -> Result<PathBuf, ProcessError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut attempt = 0u32;
    loop {
        let dir = base.join(format!("plugin{}", random_suffix(attempt)));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(source) => {
                return Err(ProcessError::SocketDir {
                    dir: base.to_path_buf(),
                    source,
                });
            }
        }
    }
}

fn random_suffix(attempt: u32) -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(attempt);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// server.go `setGroupWritable`: the group (a gid or a name) gets the
/// socket, mode 0660; the directory becomes 0750 so the group can reach it.
fn share_with_group(dir: &Path, path: &Path, group: &str) -> Result<(), ProcessError> {
    use std::os::unix::ffi::OsStrExt as _;
    let err = |message: String| ProcessError::Group {
        group: group.to_string(),
        message,
    };
    let gid: libc::gid_t = match group.parse() {
        Ok(gid) => gid,
        Err(_) => {
            let name = std::ffi::CString::new(group).map_err(|_| err("bad group name".into()))?;
            // SAFETY: getgrnam reads a NUL-terminated string; the result
            // points to static storage read at once, before any other call.
            let entry = unsafe { libc::getgrnam(name.as_ptr()) };
            if entry.is_null() {
                return Err(err("no such group".into()));
            }
            // SAFETY: non-null, checked above.
            unsafe { (*entry).gr_gid }
        }
    };
    for (p, mode) in [(dir, 0o750), (path, 0o660)] {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| err("path holds a NUL byte".into()))?;
        // SAFETY: chown(2) on a path we created; -1 keeps the owner.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            return Err(err(std::io::Error::last_os_error().to_string()));
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// go-plugin ignores interrupts: a Ctrl-C aimed at the host's process group
/// must not kill the plugin before the host shuts it down.
fn ignore_sigint() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// On SIGTERM (a `kill`, a container runtime stopping the pod) or SIGHUP
/// (the terminal of a hand-started plugin closing), removes the socket and
/// its directory and exits with status 0: in-flight calls are abandoned, as
/// the host that would read their replies is going too.
fn remove_on_termination(socket: &PluginSocket) -> Result<(), ProcessError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ProcessError::Signal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ProcessError::Signal)?;
    let (path, dir) = (socket.path.clone(), socket.dir.clone());
    tokio::spawn(async move {
        let name = tokio::select! {
            Some(()) = term.recv() => "SIGTERM",
            Some(()) = hangup.recv() => "SIGHUP",
            else => return,
        };
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        tracing::info!(socket = %path.display(), "{name}: removed the socket, exiting");
        std::process::exit(0);
    });
    Ok(())
}

/// Resolves when the host can no longer read our stdout: the pipe's read
/// end is closed (the host exited or was killed). A Go plugin would linger.
pub async fn stdout_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        loop {
            let mut fds = libc::pollfd {
                fd: 1,
                events: 0,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a negative timeout blocks.
            let n = unsafe { libc::poll(&mut fds, 1, -1) };
            if n > 0 && fds.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                let _ = tx.send(());
                return;
            }
            if n < 0 {
                // EINTR: poll again; anything else cannot be watched.
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    return;
                }
            }
            // Regular files and terminals never report a hang-up; avoid a
            // busy loop if poll keeps returning for them.
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}
