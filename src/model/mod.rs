//! Typed views of what the controller sends: the Rollout and the call
//! arguments, deserialised from Kubernetes JSON/YAML.

mod args;
mod replica_set;
mod rollout;

pub use args::{
    HeaderRoutingMatch, RouteMatch, SetHeaderRoute, SetMirrorRoute, StringMatch, WeightDestination,
};
pub use replica_set::ReplicaSetInfo;
pub use rollout::{
    CanaryStatus, CanaryStep, CanaryStrategy, ManagedRoute, ObjectMeta, PingPong, Rollout,
    RolloutSpec, RolloutStatus, RolloutStrategy, TrafficRouting, TrafficWeights,
};

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

/// A value that does not fit the model, with the path of the offending field.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what}: {path}: {message}")]
pub struct ModelError {
    pub what: String,
    pub path: String,
    pub message: String,
}

/// Deserialises `value` as `T`, naming the failing field path on error.
pub fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ModelError> {
    from_deserializer(value, what)
}

/// Deserialises a `T` from any deserializer (the gob decoder builds the
/// model straight from the wire), naming the failing field path on error.
pub fn from_deserializer<'de, D, T>(deserializer: D, what: &str) -> Result<T, ModelError>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        ModelError {
            what: what.to_string(),
            path: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            // In the YAML author's words: `expected an integer`, not `i32`.
            message: crate::yaml::yaml_words(&e.into_inner().to_string()),
        }
    })
}

/// Treats an explicit JSON `null` like an absent field.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
