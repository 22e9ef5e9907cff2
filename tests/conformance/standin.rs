//! The cluster side of the process transports: the HTTP Kubernetes API
//! stand-in, reached by the plugin binary through a kubeconfig file exactly
//! as in a cluster.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::case::Fault;
use super::session::{BoxFuture, ClusterSide};
use test_support::apiserver::{ApiServer, Res};

/// How long the plugin gets to apply a watch event that the stand-in has
/// handed to its connection (the plugin answers steady-state reads from its
/// watch cache, so an outside edit must reach it before the next call).
/// 250 ms once proved too short on a machine under a load of 10 (the
/// genuine transport saw a VerifyWeight answered from the cache before the
/// edit arrived).
const WATCH_GRACE: Duration = Duration::from_millis(500);

pub struct StandIn {
    pub server: ApiServer,
    _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl StandIn {
    pub async fn start() -> Result<StandIn, String> {
        let server = ApiServer::start().await;
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .kubeconfig(&kubeconfig)
            .map_err(|e| format!("kubeconfig: {e}"))?;
        Ok(StandIn {
            server,
            _dir: dir,
            kubeconfig,
        })
    }

    /// The environment that points the plugin at the stand-in.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("KUBECONFIG".into(), self.kubeconfig.display().to_string())]
    }

    /// Creates or replaces objects; kinds the plugin never reads (Service)
    /// are not served by the stand-in and are left out.
    async fn apply_objects(
        &mut self,
        objects: &[Value],
        default_namespace: &str,
    ) -> Result<(), String> {
        let served: Vec<Value> = objects
            .iter()
            .filter(|o| {
                o.get("kind")
                    .and_then(Value::as_str)
                    .and_then(Res::parse)
                    .is_some()
            })
            .cloned()
            .collect();
        if served.is_empty() {
            return Ok(());
        }
        if let Some(unnamed) = served.iter().find(|o| {
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none()
        }) {
            return Err(format!("object without metadata.name: {unnamed}"));
        }
        self.server.apply(served, default_namespace);
        self.settle().await;
        Ok(())
    }

    /// Lets every watching client see the latest change.
    async fn settle(&self) {
        if self.server.open_watches() > 0 {
            self.server.wait_watchers_caught_up().await;
            tokio::time::sleep(WATCH_GRACE).await;
        }
    }
}

impl ClusterSide for StandIn {
    fn apply<'a>(
        &'a mut self,
        objects: &'a [Value],
        default_namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.apply_objects(objects, default_namespace))
    }

    fn delete<'a>(
        &'a mut self,
        kind: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if Res::parse(kind).is_some() {
                self.server.delete(kind, namespace, name);
                self.settle().await;
            }
            Ok(())
        })
    }

    fn inject(&mut self, faults: &[Fault]) {
        self.server.inject(faults.to_vec());
    }

    fn clear_faults(&mut self) {
        self.server.clear_faults();
    }

    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        Res::parse(kind).and_then(|_| self.server.get(kind, namespace, name))
    }

    fn writes(&self) -> u64 {
        self.server.writes()
    }
}

/// The plugin's command line for a case, as the controller's ConfigMap
/// would give it; the Kubernetes timeout is short so a `timeout` fault ends
/// the call quickly.
pub fn plugin_args(case: &super::case::Case, protocol: &str) -> Vec<String> {
    vec![
        "--protocol".into(),
        protocol.into(),
        "--plugin-name".into(),
        case.plugin_name.clone(),
        "--istio-api-version".into(),
        case.istio_api_version.clone(),
        "--kube-timeout".into(),
        "3".into(),
    ]
}
