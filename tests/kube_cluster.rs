//! `KubeCluster` against the HTTP API stand-in, through a kubeconfig file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use istio_router::cluster::{Cluster, ClusterError, KubeCluster, KubeClusterOptions, ObjectKey};
use istio_router::istio::{self, IstioRouter};
use istio_router::model::Rollout;
use istio_router::router::{TrafficRouter, Verification};
use serde_json::{Value, json};
use test_support::apiserver::{ApiServer, Fault, FaultKind, FaultOn};

struct Setup {
    server: ApiServer,
    cluster: KubeCluster,
    // Keeps the kubeconfig file alive for the test.
    _dir: TempDir,
}

/// A directory removed on drop (no tempfile dependency for one file).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kube-cluster-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    TempDir(dir)
}

async fn setup(objects: Vec<Value>, options: KubeClusterOptions) -> Setup {
    let server = ApiServer::start().await;
    server.apply(objects, "ns");
    let dir = temp_dir();
    let path = dir.0.join("kubeconfig");
    server.kubeconfig(&path).expect("write the kubeconfig");
    let cluster = KubeCluster::new(KubeClusterOptions {
        kubeconfig: Some(path),
        ..options
    });
    cluster.init().await.expect("init against the stand-in");
    Setup {
        server,
        cluster,
        _dir: dir,
    }
}

fn options() -> KubeClusterOptions {
    KubeClusterOptions {
        request_timeout: Duration::from_secs(2),
        ..KubeClusterOptions::default()
    }
}

fn vs(name: &str, weight: i64) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": ["h"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "stable-svc"}, "weight": 100 - weight},
            {"destination": {"host": "canary-svc"}, "weight": weight},
        ]}]},
    })
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(
        istio::virtual_service(istio::DEFAULT_API_VERSION).expect("a known version"),
        "ns",
        name,
    )
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion")
}

fn with_weight(mut object: Value, weight: i64) -> Value {
    object["spec"]["http"][0]["route"][1]["weight"] = json!(weight);
    object
}

#[tokio::test]
async fn get_reads_objects_and_reports_missing_ones() {
    let s = setup(vec![vs("web", 0)], options()).await;
    let object = s.cluster.get(&key("web")).await.unwrap();
    assert_eq!(object["spec"], vs("web", 0)["spec"]);
    assert_eq!(object["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(
        s.cluster.get(&key("nope")).await,
        Err(ClusterError::NotFound(key("nope")))
    );
    let fresh = s.cluster.get_fresh(&key("web")).await.unwrap();
    assert_eq!(rv(&fresh), rv(&object));
}

#[tokio::test]
async fn the_version_of_the_key_is_used() {
    let s = setup(vec![vs("web", 0)], options()).await;
    let key = ObjectKey::new(istio::virtual_service("v1").expect("v1"), "ns", "web");
    let object = s.cluster.get_fresh(&key).await.unwrap();
    assert_eq!(object["apiVersion"], "networking.istio.io/v1");
    let stored = s
        .cluster
        .replace(&key, with_weight(object, 7))
        .await
        .unwrap();
    assert_eq!(stored["apiVersion"], "networking.istio.io/v1");
}

#[tokio::test]
async fn replace_writes_and_a_stale_version_is_a_conflict() {
    let s = setup(vec![vs("web", 0)], options()).await;
    let read = s.cluster.get(&key("web")).await.unwrap();
    let stored = s
        .cluster
        .replace(&key("web"), with_weight(read.clone(), 10))
        .await
        .unwrap();
    assert!(rv(&stored) > rv(&read));
    let server_copy = s.server.get("VirtualService", "ns", "web").unwrap();
    assert_eq!(server_copy["spec"]["http"][0]["route"][1]["weight"], 10);
    assert_eq!(s.server.writes(), 1);

    // Based on the first read, now outdated.
    let stale = s
        .cluster
        .replace(&key("web"), with_weight(read, 20))
        .await
        .unwrap_err();
    match stale {
        ClusterError::Conflict { key: k, message } => {
            assert_eq!(k, key("web"));
            assert!(
                message.contains("the object has been modified"),
                "{message}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let server_copy = s.server.get("VirtualService", "ns", "web").unwrap();
    assert_eq!(server_copy["spec"]["http"][0]["route"][1]["weight"], 10);

    let missing = s.cluster.replace(&key("gone"), vs("gone", 1)).await;
    assert_eq!(missing, Err(ClusterError::NotFound(key("gone"))));
}

#[tokio::test]
async fn invalid_writes_are_rejected_with_the_server_message() {
    let s = setup(vec![vs("web", 0)], options()).await;
    // No resourceVersion: the server refuses the update (422).
    let error = s
        .cluster
        .replace(&key("web"), vs("web", 3))
        .await
        .unwrap_err();
    match error {
        ClusterError::Rejected { message, .. } => {
            assert!(message.contains("resourceVersion"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let not_an_object = s.cluster.replace(&key("web"), json!([1, 2])).await;
    assert!(matches!(not_an_object, Err(ClusterError::Rejected { .. })));
}

#[tokio::test]
async fn server_faults_are_transient_and_carry_the_message() {
    let s = setup(vec![vs("web", 0)], options()).await;
    let read = s.cluster.get(&key("web")).await.unwrap();
    for (kind, fragment) in [
        (FaultKind::Unavailable, "unable to handle the request"),
        (FaultKind::Error, "Internal error occurred"),
    ] {
        s.server.inject(vec![Fault::new(FaultOn::Write, kind, 1)]);
        let error = s
            .cluster
            .replace(&key("web"), with_weight(read.clone(), 5))
            .await
            .unwrap_err();
        assert!(error.is_retryable());
        match error {
            ClusterError::Transient { message, .. } => {
                assert!(message.contains(fragment), "{message}")
            }
            other => panic!("expected a transient failure, got {other:?}"),
        }
    }
    s.server
        .inject(vec![Fault::new(FaultOn::Get, FaultKind::Disconnect, 1)]);
    assert!(matches!(
        s.cluster.get_fresh(&key("web")).await,
        Err(ClusterError::Transient { .. })
    ));
    s.server
        .inject(vec![Fault::new(FaultOn::Write, FaultKind::Conflict, 1)]);
    assert!(matches!(
        s.cluster.replace(&key("web"), with_weight(read, 5)).await,
        Err(ClusterError::Conflict { .. })
    ));
    assert_eq!(s.server.writes(), 3);
}

#[tokio::test]
async fn an_unanswered_request_is_bounded_by_the_timeout() {
    let s = setup(
        vec![vs("web", 0)],
        KubeClusterOptions {
            request_timeout: Duration::from_millis(300),
            ..options()
        },
    )
    .await;
    s.server
        .inject(vec![Fault::new(FaultOn::Get, FaultKind::Timeout, 1)]);
    let start = Instant::now();
    let error = s.cluster.get_fresh(&key("web")).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    match error {
        ClusterError::Transient { message, .. } => {
            assert!(message.contains("no answer"), "{message}")
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert!(s.cluster.get_fresh(&key("web")).await.is_ok());
}

#[tokio::test]
async fn requests_are_rate_limited() {
    let s = setup(
        vec![vs("web", 0)],
        KubeClusterOptions {
            qps: 20.0,
            burst: 1,
            ..options()
        },
    )
    .await;
    let start = Instant::now();
    for _ in 0..5 {
        s.cluster.get_fresh(&key("web")).await.unwrap();
    }
    // One request from the burst, four more at 20 per second.
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.server.reads(), 5);
}

#[tokio::test]
async fn replica_sets_are_listed_by_owning_rollout() {
    let rs = |name: &str, owner: &str, hash: &str, available: i64| {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "labels": {"rollouts-pod-template-hash": hash},
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1",
                            "kind": "Rollout", "name": owner, "uid": "u"}]},
            "spec": {"replicas": 3},
            "status": {"availableReplicas": available},
        })
    };
    let s = setup(
        vec![
            rs("app-1", "app", "h1", 3),
            rs("app-2", "app", "h2", 1),
            rs("other-1", "other", "h3", 3),
        ],
        options(),
    )
    .await;
    let mut sets = s.cluster.list_replica_sets("ns", "app").await.unwrap();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    let summary: Vec<_> = sets
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.pod_template_hash.as_str(),
                r.spec_replicas,
                r.available_replicas,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("app-1", "h1", Some(3), 3), ("app-2", "h2", Some(3), 1)]
    );
    assert!(
        s.cluster
            .list_replica_sets("elsewhere", "app")
            .await
            .unwrap()
            .is_empty()
    );

    s.server.inject(vec![
        Fault::new(FaultOn::List, FaultKind::Unavailable, 1).on_resource("replicasets"),
    ]);
    assert!(matches!(
        s.cluster.list_replica_sets("ns", "app").await,
        Err(ClusterError::Transient { .. })
    ));
}

#[tokio::test]
async fn steady_state_reads_come_from_the_watch_cache() {
    let s = setup(vec![vs("web", 0), vs("api", 0)], options()).await;
    for _ in 0..5 {
        for name in ["web", "api"] {
            s.cluster.get(&key(name)).await.unwrap();
        }
    }
    assert_eq!(s.server.reads(), 0, "gets reached the API server");
    assert_eq!(s.server.lists(), 1);
    s.server.wait_open_watches(1).await;

    // An outside edit reaches the cache through the watch.
    let before = rv(&s.cluster.get(&key("web")).await.unwrap());
    s.server.apply(vec![vs("web", 50)], "ns");
    s.server.wait_watchers_caught_up().await;
    let updated = eventually(|| async {
        let object = s.cluster.get(&key("web")).await.unwrap();
        (rv(&object) > before).then_some(object)
    })
    .await;
    assert_eq!(updated["spec"]["http"][0]["route"][1]["weight"], 50);

    // So does a deletion.
    s.server.delete("VirtualService", "ns", "api");
    s.server.wait_watchers_caught_up().await;
    eventually(|| async {
        matches!(
            s.cluster.get(&key("api")).await,
            Err(ClusterError::NotFound(_))
        )
        .then_some(())
    })
    .await;
    assert_eq!(s.server.watches(), 1);
    // The gets of the deleted object looked for it on the server.
    assert_eq!(s.server.lists(), 1);
}

#[tokio::test]
async fn a_closed_watch_resumes_from_the_last_version_seen() {
    let s = setup(vec![vs("web", 0)], options()).await;
    s.cluster.get(&key("web")).await.unwrap();
    s.server.wait_open_watches(1).await;
    s.server.close_watches();
    s.server.apply(vec![vs("web", 40)], "ns");
    eventually(|| async { (s.server.watches() == 2).then_some(()) }).await;
    s.server.wait_watchers_caught_up().await;
    eventually(|| async {
        let object = s.cluster.get(&key("web")).await.unwrap();
        (object["spec"]["http"][0]["route"][1]["weight"] == 40).then_some(())
    })
    .await;
    assert_eq!((s.server.lists(), s.server.reads()), (1, 0));
}

#[tokio::test]
async fn an_expired_watch_lists_again() {
    let s = setup(vec![vs("web", 0)], options()).await;
    s.cluster.get(&key("web")).await.unwrap();
    s.server.wait_open_watches(1).await;
    s.server.compact();
    s.server.close_watches();
    eventually(|| async { (s.server.lists() == 2).then_some(()) }).await;
    s.server.wait_open_watches(1).await;
    s.server.apply(vec![vs("web", 60)], "ns");
    s.server.wait_watchers_caught_up().await;
    eventually(|| async {
        let object = s.cluster.get(&key("web")).await.unwrap();
        (object["spec"]["http"][0]["route"][1]["weight"] == 60).then_some(())
    })
    .await;
    assert_eq!(s.server.reads(), 0);
}

#[tokio::test]
async fn writes_go_through_to_the_cache() {
    let s = setup(vec![vs("web", 0)], options()).await;
    let read = s.cluster.get(&key("web")).await.unwrap();
    let stored = s
        .cluster
        .replace(&key("web"), with_weight(read, 30))
        .await
        .unwrap();
    let cached = s.cluster.get(&key("web")).await.unwrap();
    assert_eq!(rv(&cached), rv(&stored));
    assert_eq!(cached["spec"]["http"][0]["route"][1]["weight"], 30);
    assert_eq!(s.server.reads(), 0);

    // get_fresh always asks the server.
    s.cluster.get_fresh(&key("web")).await.unwrap();
    assert_eq!(s.server.reads(), 1);
}

#[tokio::test]
async fn calls_before_init_connect_on_their_own() {
    let server = ApiServer::start().await;
    let mut object = vs("web", 0);
    object["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update"}]);
    server.apply(vec![object], "ns");
    let dir = temp_dir();
    let path = dir.0.join("kubeconfig");
    server.kubeconfig(&path).unwrap();
    let cluster = KubeCluster::new(KubeClusterOptions {
        kubeconfig: Some(path),
        ..options()
    });
    let read = cluster.get(&key("web")).await.unwrap();
    assert_eq!(read["spec"], vs("web", 0)["spec"]);
    // Kept out of the cache: the plugin never reads them.
    assert_eq!(read["metadata"].get("managedFields"), None);
    cluster.init().await.unwrap();
    assert_eq!(cluster.get(&key("web")).await.unwrap(), read);
}

#[tokio::test]
async fn a_missing_kubeconfig_is_a_clear_error() {
    let cluster = KubeCluster::new(KubeClusterOptions {
        kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
        ..options()
    });
    match cluster.init().await {
        Err(ClusterError::Rejected { message, .. }) => {
            assert!(message.contains("/nonexistent/kubeconfig"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(cluster.get(&key("web")).await.is_err());
}

#[tokio::test]
async fn the_router_sets_and_verifies_weights_without_needless_writes() {
    let s = setup(vec![vs("rollout-vsvc", 0)], options()).await;
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"strategy": {"canary": {
            "canaryService": "canary-svc",
            "stableService": "stable-svc",
            "trafficRouting": {"plugins": {"argoproj-labs/istio": {
                "virtualService": {"name": "rollout-vsvc", "routes": ["primary"]}
            }}},
        }}},
    }))
    .unwrap();
    let router = IstioRouter::new(s.cluster, "argoproj-labs/istio");
    router.init_plugin().await.unwrap();

    router.set_weight(&rollout, 20, &[]).await.unwrap();
    assert_eq!(s.server.writes(), 1);
    let stored = s
        .server
        .get("VirtualService", "ns", "rollout-vsvc")
        .unwrap();
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 80);
    assert_eq!(stored["spec"]["http"][0]["route"][1]["weight"], 20);

    assert_eq!(
        router.verify_weight(&rollout, 20, &[]).await.unwrap(),
        Verification::Verified
    );
    router.set_weight(&rollout, 20, &[]).await.unwrap();
    assert_eq!(s.server.writes(), 1, "a repeated SetWeight wrote");
    assert_eq!(
        s.server.reads(),
        0,
        "steady-state calls reached the API server"
    );
    assert_eq!(s.server.lists(), 1);
}

/// Polls `check` until it yields a value (bounded: panics after 5 s). The
/// watch event has left the stand-in; only the client's processing remains.
async fn eventually<T, F, Fut>(check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
