//! The plugin binary driven by the Argo Rollouts controller's own client:
//! `tests/go-client` (argo-rollouts v1.10.2, go-plugin v1.7.0) starts it
//! through argo's `rollout/trafficrouting/plugin/client` (the controller's
//! ConfigMap, ClientConfig, Dispense, InitPlugin, a Ping before every call)
//! and sends every call through argo's `plugin/rpc` client with real
//! `v1alpha1.Rollout` values (pod template, status).
//!
//! Needs Go and the Go module proxy (see tests/support/src/go_build.rs). Without
//! them the tests say how to enable them in one line and pass; under
//! `CI=true` they fail.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use serde_json::{Value, json};
use test_support::apiserver::ApiServer;
use test_support::go_build::{Unavailable, go_client};
use test_support::plugin_binary;

/// What the Go client prints, one line per call, when the plugin answers
/// every call as the controller expects.
const EXPECTED: &[&str] = &[
    "ok Start, Dispense, InitPlugin",
    "ok Type",
    "ok UpdateHash",
    "ok SetWeight 20",
    "ok VerifyWeight 20",
    "ok SetHeaderRoute",
    "ok SetMirrorRoute",
    "ok VerifyWeight 50",
    "ok SetWeight 50",
    "ok VerifyWeight 50",
    "ok VerifyWeight 50 x8 concurrent",
    "ok SetWeight 150",
    "ok RemoveManagedRoutes",
    "ok SetWeight 0",
    "ok GetTrafficPlugin x21",
    "ok Kill",
    "PASS",
];

/// The built client, or `None` after printing why the test is skipped
/// (no Go toolchain, outside CI). Panics under CI or on a failed build.
fn client_or_skip() -> Option<PathBuf> {
    match go_client() {
        Ok(path) => Some(path),
        Err(Unavailable::Skip(why)) => {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| println!("go_client: SKIPPED: {why}"));
            None
        }
        Err(Unavailable::Fail(why)) => panic!("{why}"),
    }
}

/// A Kubernetes API stand-in serving the scenario's objects, kept running
/// while the Go client drives the plugin.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    server: ApiServer,
    _kubeconfig: tempfile::TempDir,
}

fn primary_route(destinations: Value) -> Value {
    json!([{"name": "primary", "route": destinations}])
}

/// The namespace and objects of the scenario's Rollout (see
/// tests/go-client/rollouts.go); the VirtualService comes first.
fn scenario_objects(scenario: &str) -> (&'static str, Vec<Value>) {
    match scenario {
        "host" => (
            "demo",
            vec![json!({
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "VirtualService",
                "metadata": {"name": "rollout-vsvc", "namespace": "demo"},
                "spec": {
                    "hosts": ["rollouts-demo.example.com"],
                    "http": primary_route(json!([
                        {"destination": {"host": "rollouts-demo-stable"}, "weight": 100},
                        {"destination": {"host": "rollouts-demo-canary"}, "weight": 0},
                    ])),
                },
            })],
        ),
        _ => (
            "bookinfo",
            vec![
                json!({
                    "apiVersion": "networking.istio.io/v1alpha3",
                    "kind": "VirtualService",
                    "metadata": {"name": "reviews-vsvc", "namespace": "bookinfo"},
                    "spec": {
                        "hosts": ["reviews"],
                        "http": primary_route(json!([
                            {"destination": {"host": "reviews", "subset": "stable"}, "weight": 100},
                            {"destination": {"host": "reviews", "subset": "canary"}, "weight": 0},
                        ])),
                    },
                }),
                json!({
                    "apiVersion": "networking.istio.io/v1alpha3",
                    "kind": "DestinationRule",
                    "metadata": {"name": "rollout-destrule", "namespace": "bookinfo"},
                    "spec": {
                        "host": "reviews",
                        "subsets": [
                            {"name": "canary", "labels": {"app": "reviews"}},
                            {"name": "stable", "labels": {"app": "reviews"}},
                        ],
                    },
                }),
            ],
        ),
    }
}

/// Starts the stand-in with the scenario's objects; returns it and the
/// environment (KUBECONFIG) that points the plugin at it.
fn prepare_cluster(scenario: &str) -> (Cluster, Vec<(String, String)>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the API stand-in");
    let server = runtime.block_on(ApiServer::start());
    let (namespace, objects) = scenario_objects(scenario);
    server.apply(objects, namespace);
    let kubeconfig = tempfile::tempdir().expect("temp dir");
    let path = kubeconfig.path().join("kubeconfig");
    server.kubeconfig(&path).expect("write kubeconfig");
    let env = vec![("KUBECONFIG".to_string(), path.display().to_string())];
    let cluster = Cluster {
        runtime,
        server,
        _kubeconfig: kubeconfig,
    };
    (cluster, env)
}

/// The weights of the first HTTP route, in order.
fn primary_weights(vs: &Value) -> Vec<i64> {
    vs["spec"]["http"][0]["route"]
        .as_array()
        .map(|route| {
            route
                .iter()
                .map(|d| d["weight"].as_i64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

fn run_scenario(scenario: &str) {
    let Some(client) = client_or_skip() else {
        return;
    };
    let (cluster, env) = prepare_cluster(scenario);
    let output = Command::new(client)
        .args(["-scenario", scenario, "-timeout", "60s", "-plugin"])
        .arg(plugin_binary!())
        .envs(env)
        .output()
        .expect("running the Go client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        output.status.success() && lines == EXPECTED,
        "Go client, scenario {scenario}: {}\n--- stdout\n{stdout}--- stderr (go-plugin log)\n{stderr}",
        output.status
    );

    // The calls landed: after RemoveManagedRoutes and SetWeight 0 the
    // VirtualService is back to one route with all traffic on stable, and
    // the experiments' destinations are gone.
    let (namespace, objects) = scenario_objects(scenario);
    let vs_name = objects[0]["metadata"]["name"].as_str().unwrap_or_default();
    let vs = cluster
        .server
        .get("VirtualService", namespace, vs_name)
        .expect("VirtualService");
    assert_eq!(vs["spec"]["http"].as_array().map(Vec::len), Some(1), "{vs}");
    assert_eq!(primary_weights(&vs), [100, 0], "{vs}");
    if scenario == "subset" {
        let dr = cluster
            .server
            .get("DestinationRule", namespace, "rollout-destrule")
            .expect("DestinationRule");
        let hashes: Vec<&str> = dr["spec"]["subsets"]
            .as_array()
            .expect("subsets")
            .iter()
            .map(|s| {
                s["labels"]["rollouts-pod-template-hash"]
                    .as_str()
                    .unwrap_or("")
            })
            .collect();
        assert_eq!(hashes, ["58c7b6fd4d", "9f6d5c4b7"], "{dr}");
        // Never the built-in's managed-by annotation: the controller's
        // DestinationRule clean-up would strip the labels above
        // (docs/behaviour.md, UpdateHash).
        assert!(
            dr["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"]
                .is_null(),
            "{dr}"
        );
    }
    cluster.runtime.shutdown_background();
}

#[test]
fn host_split_through_the_go_client() {
    run_scenario("host");
}

#[test]
fn subset_split_through_the_go_client() {
    run_scenario("subset");
}
