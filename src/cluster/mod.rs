//! The cluster port: what the router needs from Kubernetes, and nothing more.
//!
//! Objects travel as untyped JSON so that every field the plugin does not own
//! (unknown ones included) survives a read-modify-write unchanged.

pub mod kube;
mod memory;

use std::fmt;
use std::future::Future;

use serde_json::Value;

pub use kube::{KubeCluster, KubeClusterOptions};
pub use memory::InMemoryCluster;

/// The Istio kinds the plugin edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IstioKind {
    VirtualService,
    DestinationRule,
}

impl IstioKind {
    pub fn kind(self) -> &'static str {
        match self {
            IstioKind::VirtualService => "VirtualService",
            IstioKind::DestinationRule => "DestinationRule",
        }
    }

    /// The plural resource name, as the API server spells it.
    pub fn resource(self) -> &'static str {
        match self {
            IstioKind::VirtualService => "virtualservices",
            IstioKind::DestinationRule => "destinationrules",
        }
    }
}

/// One VirtualService or DestinationRule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: IstioKind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: IstioKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.kind(), self.namespace, self.name)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ClusterError {
    #[error("{}.networking.istio.io \"{}\" not found in namespace {}", .0.kind.resource(), .0.name, .0.namespace)]
    NotFound(ObjectKey),
    #[error("{key} was changed by someone else (conflict): {message}")]
    Conflict { key: ObjectKey, message: String },
    /// A failure that may pass: 5xx, timeout, dropped connection.
    #[error("{operation} failed: {message}")]
    Transient { operation: String, message: String },
    /// A failure that will not pass by retrying: 4xx other than 404/409.
    #[error("{operation} was rejected: {message}")]
    Rejected { operation: String, message: String },
}

impl ClusterError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::Conflict { .. } | ClusterError::Transient { .. }
        )
    }
}

/// A ReplicaSet as far as the DestinationRule delay check needs it (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetInfo {
    pub name: String,
    pub pod_template_hash: String,
    pub spec_replicas: Option<i32>,
    pub available_replicas: i32,
}

impl ReplicaSetInfo {
    /// Reads the fields the delay check needs from an `apps/v1` ReplicaSet.
    pub fn from_object(object: &Value) -> Self {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let int = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_i64)
                .map(|n| n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        };
        ReplicaSetInfo {
            name: text("/metadata/name"),
            pod_template_hash: text("/metadata/labels/rollouts-pod-template-hash"),
            spec_replicas: int("/spec/replicas"),
            available_replicas: int("/status/availableReplicas").unwrap_or(0),
        }
    }

    pub fn is_owned_by(object: &Value, rollout_name: &str) -> bool {
        object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|owners| {
                owners.iter().any(|o| {
                    o.get("kind").and_then(Value::as_str) == Some("Rollout")
                        && o.get("name").and_then(Value::as_str) == Some(rollout_name)
                })
            })
    }
}

/// Read and write access to the cluster. Implementations: [`InMemoryCluster`]
/// here, a kube-rs client in the plugin process.
pub trait Cluster: Send + Sync {
    /// Connects, where the implementation needs to (InitPlugin).
    fn init(&self) -> impl Future<Output = Result<(), ClusterError>> + Send {
        async { Ok(()) }
    }

    /// Reads one object.
    fn get(&self, key: &ObjectKey) -> impl Future<Output = Result<Value, ClusterError>> + Send;

    /// Reads one object from the API server itself, bypassing any cache:
    /// used after a conflict, when a cached copy is known to be stale.
    fn get_fresh(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send {
        self.get(key)
    }

    /// Replaces an object. `object.metadata.resourceVersion` is the version the
    /// change was based on; a newer stored version is a [`ClusterError::Conflict`].
    /// Returns the stored object.
    fn replace(
        &self,
        key: &ObjectKey,
        object: Value,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send;

    /// The ReplicaSets in `namespace` owned by the Rollout `rollout_name`.
    fn list_replica_sets(
        &self,
        namespace: &str,
        rollout_name: &str,
    ) -> impl Future<Output = Result<Vec<ReplicaSetInfo>, ClusterError>> + Send;
}

/// A shared cluster is a cluster: lets tests and `simulate` keep a handle on
/// the store the router writes to.
impl<C: Cluster> Cluster for std::sync::Arc<C> {
    fn init(&self) -> impl Future<Output = Result<(), ClusterError>> + Send {
        C::init(self)
    }

    fn get(&self, key: &ObjectKey) -> impl Future<Output = Result<Value, ClusterError>> + Send {
        C::get(self, key)
    }

    fn get_fresh(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send {
        C::get_fresh(self, key)
    }

    fn replace(
        &self,
        key: &ObjectKey,
        object: Value,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send {
        C::replace(self, key, object)
    }

    fn list_replica_sets(
        &self,
        namespace: &str,
        rollout_name: &str,
    ) -> impl Future<Output = Result<Vec<ReplicaSetInfo>, ClusterError>> + Send {
        C::list_replica_sets(self, namespace, rollout_name)
    }
}
