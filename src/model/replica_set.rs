//! The ReplicaSets of a Rollout, as far as the plugin looks at them.

use serde_json::Value;

/// A ReplicaSet as far as the DestinationRule delay check needs it (see "UpdateHash" in docs/behaviour.md).
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
