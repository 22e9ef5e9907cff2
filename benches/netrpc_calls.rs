//! Latency and throughput of steady-state SetWeight (nothing to change)
//! through a go-plugin host, against the real net/rpc server code and a
//! populated cluster. Prints numbers; asserts only that every call succeeds.
//!
//! `cargo bench --bench netrpc_calls`

use std::sync::Arc;
use std::time::Instant;

use istio_router::cluster::InMemoryCluster;
use istio_router::istio::IstioRouter;
use istio_router::transport::netrpc::plugin::RpcError;
use istio_router::transport::netrpc::serve_connection;
use test_support::fixtures::{set_weight_args, virtual_service};
use test_support::host::Host;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(measure());
}

async fn measure() {
    let cluster = InMemoryCluster::new();
    cluster
        .apply(
            (0..16).map(|i| virtual_service("team", &format!("app-{i}"))),
            "team",
        )
        .unwrap();
    let router = Arc::new(IstioRouter::new(cluster, "argoproj-labs/istio"));
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    tokio::spawn(serve_connection(theirs, router));
    let host = Host::connect_io(ours).await;
    let client = go_netrpc::Client::new(host.plugin_stream().await);
    let args: Vec<_> = (0..16)
        .map(|i| set_weight_args("team", &format!("app-{i}"), 10 + i))
        .collect();
    let mut times = Vec::new();
    for n in 0..2000 {
        let started = Instant::now();
        let reply: RpcError = client
            .call("Plugin.SetWeight", &args[n % 16])
            .await
            .unwrap();
        times.push(started.elapsed());
        assert_eq!(reply, RpcError::default());
    }
    times.sort();
    eprintln!(
        "sequential SetWeight: p50 {:?}, p99 {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    let client = Arc::new(client);
    let args = Arc::new(args);
    let started = Instant::now();
    let per_caller = 1000;
    let mut callers = Vec::new();
    for caller in 0..16 {
        let (client, args) = (client.clone(), args.clone());
        callers.push(tokio::spawn(async move {
            for _ in 0..per_caller {
                let reply: RpcError = client
                    .call("Plugin.SetWeight", &args[caller])
                    .await
                    .unwrap();
                assert_eq!(reply, RpcError::default());
            }
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "16 concurrent callers: {} calls in {elapsed:?} = {:.0} calls/s",
        16 * per_caller,
        (16 * per_caller) as f64 / elapsed.as_secs_f64()
    );
}
