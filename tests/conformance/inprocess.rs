//! The `inprocess` transport: the router called directly, over an
//! in-memory cluster that injects the case's faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::case::{Case, Fault, FaultKind, FaultOn};
use super::session::{BoxFuture, CallReply, ClusterSide, PluginSide, Session, Transport};
use istio_router::cluster::{Cluster, ClusterError, InMemoryCluster, ObjectKey};
use istio_router::istio::{self, IstioRouter, RetryPolicy};
use istio_router::model::ReplicaSetInfo;
use istio_router::router::{Call, dispatch};

pub struct InProcess;

impl Transport for InProcess {
    fn name(&self) -> &'static str {
        "inprocess"
    }

    fn cannot_run(&self, _case: &Case) -> Option<String> {
        None
    }

    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Session, String>> {
        Box::pin(async move {
            let cluster = Arc::new(FaultyCluster::default());
            let router = IstioRouter::new(cluster.clone(), &case.plugin_name)
                .with_api_version(&case.istio_api_version)
                .map_err(|e| e.to_string())?
                .with_retry(RetryPolicy {
                    backoff: std::time::Duration::from_millis(1),
                    ..RetryPolicy::default()
                });
            Ok(Session {
                cluster: Box::new(SharedCluster(cluster)),
                plugin: Box::new(router),
            })
        })
    }
}

/// A fault still to be injected, with the requests it has left.
#[derive(Debug)]
struct ArmedFault {
    fault: Fault,
    remaining: u32,
}

/// The in-memory cluster behind a fault injector that also counts every
/// write request, failed ones included.
#[derive(Debug, Default)]
pub struct FaultyCluster {
    store: InMemoryCluster,
    faults: Mutex<Vec<ArmedFault>>,
    writes: AtomicU64,
}

impl FaultyCluster {
    fn fault(&self, operation: FaultOn, resource: &str) -> Result<(), ClusterError> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let Some(armed) = faults.iter_mut().find(|armed| {
            armed.remaining > 0
                && (armed.fault.on == operation || armed.fault.on == FaultOn::Any)
                && armed
                    .fault
                    .resource
                    .as_deref()
                    .is_none_or(|r| r == resource)
        }) else {
            return Ok(());
        };
        armed.remaining -= 1;
        let transient = |message: &str| ClusterError::Transient {
            operation: format!("{operation:?} {resource}"),
            message: message.to_string(),
        };
        Err(match armed.fault.kind {
            FaultKind::Conflict => ClusterError::Conflict {
                key: ObjectKey::new(
                    istio::virtual_service(istio::DEFAULT_API_VERSION).expect("a known version"),
                    "",
                    resource,
                ),
                message: "injected conflict".into(),
            },
            FaultKind::Unavailable => transient("503 Service Unavailable (injected)"),
            FaultKind::Error => transient("500 Internal Server Error (injected)"),
            FaultKind::Timeout => transient("request timed out (injected)"),
            FaultKind::Disconnect => transient("connection closed mid-request (injected)"),
        })
    }
}

impl Cluster for FaultyCluster {
    async fn get(&self, key: &ObjectKey) -> Result<Value, ClusterError> {
        self.fault(FaultOn::Get, key.resource.plural)?;
        self.store.get(key).await
    }

    async fn replace(&self, key: &ObjectKey, object: Value) -> Result<Value, ClusterError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.fault(FaultOn::Write, key.resource.plural)?;
        self.store.replace(key, object).await
    }

    async fn list_replica_sets(
        &self,
        namespace: &str,
        rollout_name: &str,
    ) -> Result<Vec<ReplicaSetInfo>, ClusterError> {
        self.fault(FaultOn::List, "replicasets")?;
        self.store.list_replica_sets(namespace, rollout_name).await
    }
}

/// The case's handle on the cluster the router edits.
struct SharedCluster(Arc<FaultyCluster>);

impl ClusterSide for SharedCluster {
    fn apply<'a>(
        &'a mut self,
        objects: &'a [Value],
        default_namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        let result = self
            .0
            .store
            .apply(objects.iter().cloned(), default_namespace)
            .map_err(|e| e.to_string());
        Box::pin(async move { result })
    }

    fn delete<'a>(
        &'a mut self,
        kind: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0.store.delete(kind, namespace, name);
        Box::pin(async { Ok(()) })
    }

    fn inject(&mut self, faults: &[Fault]) {
        let mut armed = self.0.faults.lock().unwrap_or_else(|p| p.into_inner());
        armed.extend(faults.iter().map(|fault| ArmedFault {
            fault: fault.clone(),
            remaining: fault.times,
        }));
    }

    fn clear_faults(&mut self) {
        self.0
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.0.store.object(kind, namespace, name)
    }

    fn writes(&self) -> u64 {
        self.0.writes.load(Ordering::SeqCst)
    }
}

impl PluginSide for IstioRouter<Arc<FaultyCluster>> {
    fn call(&mut self, call: Call) -> BoxFuture<'_, CallReply> {
        Box::pin(async move { CallReply::from(dispatch(&*self, call).await) })
    }
}
