//! An in-memory cluster with the API server's optimistic concurrency: every
//! stored object has a resourceVersion, and a write based on an older one is
//! rejected as a conflict. Used by `simulate` and the in-process tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::{Cluster, ClusterError, ObjectKey, RolloutEvent};
use crate::model::ReplicaSetInfo;

/// `(kind, namespace, name)` of any stored object.
pub type StoredKey = (String, String, String);

#[derive(Debug, Default)]
pub struct InMemoryCluster {
    objects: Mutex<BTreeMap<StoredKey, Value>>,
    next_version: AtomicU64,
    writes: AtomicU64,
    events: Mutex<Vec<RolloutEvent>>,
}

/// An object without `kind` or `metadata.name` cannot be stored.
#[derive(Debug, thiserror::Error)]
#[error("object {index} has no {missing}")]
pub struct InvalidObject {
    pub index: usize,
    pub missing: &'static str,
}

impl InMemoryCluster {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces objects as an outside actor would (a user, GitOps).
    /// `metadata.namespace` defaults to `default_namespace`. Not counted as
    /// plugin writes.
    pub fn apply(
        &self,
        objects: impl IntoIterator<Item = Value>,
        default_namespace: &str,
    ) -> Result<(), InvalidObject> {
        let mut store = self.lock();
        for (index, mut object) in objects.into_iter().enumerate() {
            let kind = object
                .get("kind")
                .and_then(Value::as_str)
                .ok_or(InvalidObject {
                    index,
                    missing: "kind",
                })?
                .to_string();
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .ok_or(InvalidObject {
                    index,
                    missing: "metadata.name",
                })?
                .to_string();
            let namespace = match object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
            {
                Some(ns) if !ns.is_empty() => ns.to_string(),
                _ => default_namespace.to_string(),
            };
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["resourceVersion"] = json!(self.bump());
            store.insert((kind, namespace, name), object);
        }
        Ok(())
    }

    /// Removes an object; true when it existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.lock()
            .remove(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .is_some()
    }

    /// The stored object, as the API server would return it.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every stored object, ordered by kind, namespace and name.
    pub fn snapshot(&self) -> BTreeMap<StoredKey, Value> {
        self.lock().clone()
    }

    /// The Events reported so far, in order (none is rate-limited here).
    pub fn recorded_events(&self) -> Vec<RolloutEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Write requests received so far (successful or not).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StoredKey, Value>> {
        // A panic while holding the lock cannot leave a half-written map (every
        // mutation is a single insert), so a poisoned lock is still consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) -> String {
        (self.next_version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    fn stored_key(key: &ObjectKey) -> StoredKey {
        (
            key.resource.kind.to_string(),
            key.namespace.clone(),
            key.name.clone(),
        )
    }
}

impl Cluster for InMemoryCluster {
    async fn get(&self, key: &ObjectKey) -> Result<Value, ClusterError> {
        self.lock()
            .get(&Self::stored_key(key))
            .cloned()
            .ok_or_else(|| ClusterError::NotFound(key.clone()))
    }

    async fn replace(&self, key: &ObjectKey, mut object: Value) -> Result<Value, ClusterError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut store = self.lock();
        let stored = store
            .get_mut(&Self::stored_key(key))
            .ok_or_else(|| ClusterError::NotFound(key.clone()))?;
        let current = stored.pointer("/metadata/resourceVersion").cloned();
        if let Some(based_on) = object.pointer("/metadata/resourceVersion")
            && Some(based_on) != current.as_ref()
        {
            return Err(ClusterError::Conflict {
                key: key.clone(),
                message: format!(
                    "the object has been modified; please apply your changes to the latest version and try again (based on resourceVersion {based_on}, stored {})",
                    current.unwrap_or(Value::Null)
                ),
            });
        }
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(ClusterError::Rejected {
                operation: format!("replacing {key}"),
                message: "the object has no metadata".into(),
            });
        };
        metadata.insert("resourceVersion".into(), json!(self.bump()));
        *stored = object.clone();
        Ok(object)
    }

    async fn list_replica_sets(
        &self,
        namespace: &str,
        rollout_name: &str,
    ) -> Result<Vec<ReplicaSetInfo>, ClusterError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((kind, ns, _), object)| {
                kind == "ReplicaSet"
                    && ns == namespace
                    && ReplicaSetInfo::is_owned_by(object, rollout_name)
            })
            .map(|(_, object)| ReplicaSetInfo::from_object(object))
            .collect())
    }

    async fn events(&self, events: Vec<RolloutEvent>) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istio;

    fn vs_key() -> ObjectKey {
        ObjectKey::new(
            istio::virtual_service(istio::DEFAULT_API_VERSION).expect("a known version"),
            "default",
            "vs",
        )
    }

    #[tokio::test]
    async fn stale_writes_are_conflicts_and_fresh_ones_land() {
        let cluster = InMemoryCluster::new();
        cluster
            .apply(
                [json!({"kind": "VirtualService", "metadata": {"name": "vs"}, "spec": {}})],
                "default",
            )
            .unwrap();
        let read = cluster.get(&vs_key()).await.unwrap();
        let mut first = read.clone();
        first["spec"]["hosts"] = json!(["a"]);
        cluster.replace(&vs_key(), first).await.unwrap();

        let mut stale = read;
        stale["spec"]["hosts"] = json!(["b"]);
        let err = cluster.replace(&vs_key(), stale).await.unwrap_err();
        assert!(matches!(err, ClusterError::Conflict { .. }), "{err}");
        assert_eq!(cluster.writes(), 2);
        let stored = cluster.get(&vs_key()).await.unwrap();
        assert_eq!(stored["spec"]["hosts"], json!(["a"]));
    }

    #[tokio::test]
    async fn missing_objects_are_not_found() {
        let cluster = InMemoryCluster::new();
        let err = cluster.get(&vs_key()).await.unwrap_err();
        assert_eq!(err, ClusterError::NotFound(vs_key()));
        assert!(
            err.to_string()
                .contains("virtualservices.networking.istio.io \"vs\" not found")
        );
    }
}
