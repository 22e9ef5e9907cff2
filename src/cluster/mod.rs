//! The cluster port: what the router needs from Kubernetes, and nothing more.
//! Objects are named by API group, version and kind ([`Resource`]); the
//! port knows no mesh.
//!
//! Objects travel as untyped JSON so that every field the plugin does not own
//! (unknown ones included) survives a read-modify-write unchanged.

#[cfg(feature = "runtime")]
mod event_filter;
mod events;
#[cfg(feature = "runtime")]
pub mod kube;
mod memory;

use std::fmt;
use std::future::Future;

use serde_json::Value;

pub use events::{EventType, REPORTING_COMPONENT, RolloutEvent};
#[cfg(feature = "runtime")]
pub use kube::{KubeCluster, KubeClusterOptions};
pub use memory::InMemoryCluster;

use crate::model::ReplicaSetInfo;

/// A type of object as the API server serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// The API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural resource name in the URL path.
    pub plural: &'static str,
}

impl Resource {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One object: its type, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub resource: &'static Resource,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(
        resource: &'static Resource,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ObjectKey {
            resource,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.resource.kind, self.namespace, self.name)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ClusterError {
    #[error("{}.{} \"{}\" not found in namespace {}", .0.resource.plural, .0.resource.group, .0.name, .0.namespace)]
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

    /// Reports what the plugin changed as Events on the Rollout. Never
    /// fails and never waits for the API server: reporting is best effort
    /// and a call's outcome does not depend on it. The default reports
    /// nothing (a cluster with nowhere to put Events).
    fn events(&self, events: Vec<RolloutEvent>) -> impl Future<Output = ()> + Send {
        let _ = events;
        async {}
    }
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

    fn events(&self, events: Vec<RolloutEvent>) -> impl Future<Output = ()> + Send {
        C::events(self, events)
    }
}
