//! The release binary measured from the controller's side: `tests/go-client`
//! in `-bench` mode starts it with the Argo Rollouts controller's own plugin
//! client (argo-rollouts v1.10.2, go-plugin v1.7.0) and times real net/rpc
//! calls through argo's `plugin/rpc` client with `v1alpha1` values, so the
//! numbers compare with a Go plugin measured through the same client. Against the Kubernetes API stand-in: start to
//! first Ping, Type and steady-state SetWeight latency, SetWeight throughput
//! with 16 concurrent callers, the API requests of the steady state, and the
//! plugin's memory. Prints numbers.
//!
//! Needs Go and the Go module proxy (see tests/support/src/go_build.rs); without
//! them it says how to enable it in one line (under `CI=true` it fails).
//!
//! `cargo bench --bench go_client`

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use test_support::apiserver::ApiServer;
use test_support::fixtures::virtual_service;
use test_support::go_build::{Unavailable, go_client};
use test_support::plugin_binary;

/// Rollouts the calls go round; bench.go names rollout i `app-<i>` in
/// namespace `team` with VirtualService `app-<i>-vsvc`, the shape of
/// `virtual_service("team", "app-<i>")`.
const ROLLOUTS: usize = 16;
const NAMESPACE: &str = "team";

/// How many lines of the Go client's stderr (go-plugin's log, with the
/// plugin's own lines in it) to show when the run fails.
const STDERR_TAIL: usize = 40;

/// API request counters of the stand-in.
#[derive(Clone, Copy)]
struct Requests {
    reads: u64,
    lists: u64,
    writes: u64,
    watches: u64,
}

impl Requests {
    fn of(server: &ApiServer) -> Requests {
        Requests {
            reads: server.reads(),
            lists: server.lists(),
            writes: server.writes(),
            watches: server.watches(),
        }
    }
}

fn main() -> ExitCode {
    let go_client = match go_client() {
        Ok(path) => path,
        Err(Unavailable::Skip(why)) => {
            println!("go_client: SKIPPED: {why}");
            return ExitCode::SUCCESS;
        }
        Err(Unavailable::Fail(why)) => {
            eprintln!("go_client bench failed: {why}");
            return ExitCode::FAILURE;
        }
    };
    match run(&go_client) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("go_client bench failed: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run(go_client: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("a runtime for the API stand-in: {e}"))?;
    let server = runtime.block_on(ApiServer::start());
    server.apply(
        (0..ROLLOUTS)
            .map(|i| virtual_service(NAMESPACE, &format!("app-{i}")))
            .collect(),
        NAMESPACE,
    );
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .kubeconfig(&kubeconfig)
        .map_err(|e| format!("writing the kubeconfig: {e}"))?;

    println!(
        "release plugin through argo-rollouts v1.10.2's plugin client, {ROLLOUTS} rollouts, API stand-in:"
    );
    let mut child = Command::new(go_client)
        .args(["-bench", "-timeout", "300s", "-rollouts"])
        .arg(ROLLOUTS.to_string())
        .arg("-plugin")
        .arg(plugin_binary!())
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the Go client: {e}"))?;

    // go-plugin logs every plugin log line at Trace: keep only the tail.
    let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let tail = stderr_tail.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });

    let mut go_ahead = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut before = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading the Go client's output: {e}"))?;
        match line.as_str() {
            "steady-state begin" => {
                // The warm-up's writes come back to the plugin as watch
                // events; let them land so the steady state starts settled.
                runtime.block_on(server.wait_watchers_caught_up());
                before = Some(Requests::of(&server));
            }
            "steady-state end" => {
                let before = before.ok_or("steady-state end without a begin")?;
                let after = Requests::of(&server);
                println!(
                    "API requests during the steady state: {} GET, {} LIST, {} writes, {} watches",
                    after.reads - before.reads,
                    after.lists - before.lists,
                    after.writes - before.writes,
                    after.watches - before.watches,
                );
            }
            _ => {
                println!("{line}");
                continue;
            }
        }
        // A failed write means the client is gone; its exit status says why.
        if writeln!(go_ahead, "go").is_err() {
            break;
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the Go client: {e}"))?;
    let _ = stderr_reader.join();
    if !status.success() {
        let tail = stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        return Err(format!(
            "the Go client exited with {status}; last lines of its stderr:\n{}",
            Vec::from(tail.clone()).join("\n")
        ));
    }
    let landed = check_weights_landed(&server);
    runtime.shutdown_background();
    landed
}

/// The calls did their work: every VirtualService carries the weight
/// bench.go sets (20 to canary) on its primary route.
fn check_weights_landed(server: &ApiServer) -> Result<(), String> {
    for i in 0..ROLLOUTS {
        let name = format!("app-{i}-vsvc");
        let vs = server
            .get("VirtualService", NAMESPACE, &name)
            .ok_or_else(|| format!("VirtualService {name} is gone"))?;
        let weights: Vec<Option<i64>> = vs["spec"]["http"][0]["route"]
            .as_array()
            .map(|route| route.iter().map(|d| d["weight"].as_i64()).collect())
            .unwrap_or_default();
        if weights != [Some(80), Some(20)] {
            return Err(format!(
                "VirtualService {name}: primary route weights {weights:?}, want 80/20: {vs}"
            ));
        }
    }
    Ok(())
}
