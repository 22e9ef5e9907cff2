//! The part of `argoproj.io/v1alpha1` `Rollout` that the plugin reads.
//!
//! Every field is optional on the wire: a controller sends what it has, and
//! gob drops zero values. Unknown fields are ignored here (a Rollout carries
//! far more than a traffic router needs); wrong types are an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::args::{SetHeaderRoute, SetMirrorRoute, WeightDestination};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rollout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub metadata: ObjectMeta,
    pub spec: RolloutSpec,
    pub status: RolloutStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    pub strategy: RolloutStrategy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStrategy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CanaryStrategy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub canary_service: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stable_service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<PingPong>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_stable_scale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PingPong {
    pub ping_service: String,
    pub pong_service: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficRouting {
    /// Per-plugin configuration, keyed by plugin name; the value is the raw
    /// JSON the user wrote (a `json.RawMessage` in Go).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, Value>,
    /// `None` and `Some([])` differ: the built-in only reorders routes and
    /// re-weights mirror routes when the list is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_routes: Option<Vec<ManagedRoute>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_traffic_weight: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManagedRoute {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CanaryStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStatus {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub promote_full: bool,
    #[serde(rename = "stableRS", skip_serializing_if = "String::is_empty")]
    pub stable_rs: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub current_pod_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CanaryStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stable_ping_pong: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficWeights {
    pub canary: WeightDestination,
    pub stable: WeightDestination,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional: Vec<WeightDestination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

impl Rollout {
    /// Parses a Rollout from its Kubernetes JSON; a wrong type names the field.
    pub fn from_json(value: Value) -> Result<Self, crate::model::ModelError> {
        crate::model::from_value(value, "Rollout")
    }

    pub fn canary(&self) -> Option<&CanaryStrategy> {
        self.spec.strategy.canary.as_ref()
    }

    pub fn traffic_routing(&self) -> Option<&TrafficRouting> {
        self.canary().and_then(|c| c.traffic_routing.as_ref())
    }

    /// `namespace/name`, the key used in logs and errors.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }
}
