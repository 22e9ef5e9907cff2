//! The release binary as the controller runs it, against the Kubernetes API
//! stand-in: time from exec to the handshake and to the first answered
//! Ping, latency of steady-state SetWeight calls (nothing to change), the
//! API requests those calls cause (the design answers them from the watch
//! cache), and the process's memory after them. Prints numbers.
//!
//! `cargo bench --bench plugin_process`

use std::time::{Duration, Instant};

use test_support::apiserver::ApiServer;
use test_support::fixtures::{set_weight_args, virtual_service};
use test_support::host::{Host, PluginConn, ReplyBody};
use test_support::launch::PluginProcess;
use test_support::plugin_binary;

const ROLLOUTS: usize = 16;
const CALLS: usize = 5000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(measure());
}

/// `VmRSS` and `VmHWM` of a process, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn measure() {
    let server = ApiServer::start().await;
    let names: Vec<String> = (0..ROLLOUTS).map(|i| format!("app-{i}")).collect();
    server.apply(
        names.iter().map(|n| virtual_service("team", n)).collect(),
        "team",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig).expect("kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();

    let started = Instant::now();
    let plugin =
        PluginProcess::spawn_with_env(plugin_binary!(), &[], &[("KUBECONFIG", &kubeconfig)]);
    let handshake = started.elapsed();
    let host = Host::connect(&plugin.socket).await;
    host.ping().await.expect("first ping");
    let first_ping = started.elapsed();
    println!("exec -> handshake {handshake:?}, exec -> first Ping answered {first_ping:?}");

    let mut conn = PluginConn::new(host.plugin_stream().await);
    conn.call("Plugin.InitPlugin", 0, None).await;
    conn.reply().await;
    // First round: the weights change (one write each) and the watch
    // caches fill.
    for (i, name) in names.iter().enumerate() {
        conn.call(
            "Plugin.SetWeight",
            1 + i as u64,
            set_weight_args("team", name, 20),
        )
        .await;
        assert_eq!(
            conn.reply().await.body,
            ReplyBody::Error(Default::default())
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (reads, lists, writes) = (server.reads(), server.lists(), server.writes());
    let mut times = Vec::with_capacity(CALLS);
    for n in 0..CALLS {
        let seq = 100 + n as u64;
        let call_started = Instant::now();
        conn.call(
            "Plugin.SetWeight",
            seq,
            set_weight_args("team", &names[n % ROLLOUTS], 20),
        )
        .await;
        let reply = conn.reply().await;
        times.push(call_started.elapsed());
        assert_eq!(
            reply.body,
            ReplyBody::Error(Default::default()),
            "{reply:?}"
        );
    }
    times.sort();
    println!(
        "steady-state SetWeight through the binary: p50 {:?}, p99 {:?} ({CALLS} calls)",
        times[CALLS / 2],
        times[CALLS * 99 / 100]
    );
    println!(
        "API requests during those calls: {} GET, {} LIST, {} writes",
        server.reads() - reads,
        server.lists() - lists,
        server.writes() - writes
    );
    let (rss, hwm) = memory_kb(plugin.child.id());
    println!(
        "plugin memory after {} calls: RSS {rss} kB, peak {hwm} kB",
        CALLS + ROLLOUTS + 1
    );
}
