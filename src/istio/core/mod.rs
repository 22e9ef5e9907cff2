//! The pure Istio core: VirtualService / DestinationRule JSON in, new JSON
//! out. No I/O, no wire formats; every rule of docs/behaviour.md lives here
//! (route selection, validation, weights, DestinationRule, header and mirror
//! routes, route order and removal).
//!
//! Every function edits a document in place and leaves every field it does
//! not own untouched; callers compare before and after to decide whether a
//! write is needed (no write without a change).

mod destination_rule;
mod header_route;
mod json;
mod managed_routes;
mod mirror_route;
mod selection;
mod weights;

pub use destination_rule::{check_switch_delay, update_destination_rule};
pub use header_route::set_header_route;
pub use managed_routes::remove_managed_routes;
pub use mirror_route::set_mirror_route;
pub use weights::{WeightRequest, set_weight};

/// The annotation the built-in router puts on DestinationRules it manages;
/// the controller cleans up DestinationRules that carry it (the plugin
/// removes it, never writes it).
pub const BUILT_IN_MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";
/// The pod-template-hash label key Argo Rollouts puts on ReplicaSets and pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";

/// Why the core refused a document or a call. Messages name the object, the
/// route and the JSON path, so a user can act on them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// The object's content does not allow the change (missing route,
    /// destination, wrong JSON type, …).
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    /// The call's arguments are invalid whatever the objects hold.
    #[error("{0}")]
    Argument(String),
    /// The DestinationRule must not point at a ReplicaSet that is not ready.
    #[error("delaying destination rule switch: ReplicaSet {replica_set} not fully available")]
    SwitchDelayed { replica_set: String },
}

impl CoreError {
    pub(crate) fn object(object: &str, message: impl Into<String>) -> Self {
        CoreError::Object {
            object: object.to_string(),
            message: message.into(),
        }
    }
}

/// What the core needs to know about one VirtualService document.
#[derive(Debug, Clone, Copy)]
pub struct VirtualServiceContext<'a> {
    /// `VirtualService ns/name`, used in error messages.
    pub object: &'a str,
    pub config: &'a crate::istio::config::RouterConfig,
    pub reference: &'a crate::istio::config::VirtualServiceRef,
}

impl VirtualServiceContext<'_> {
    pub(crate) fn error(&self, message: impl Into<String>) -> CoreError {
        CoreError::object(self.object, message)
    }
}

/// Where header and mirror routes send traffic: the DestinationRule's host
/// and canary subset, else the canary Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryTarget {
    pub host: String,
    pub subset: Option<String>,
}

impl CanaryTarget {
    /// `{host, subset?, port: {number}?}`, an Istio Destination.
    pub(crate) fn destination(&self, port: Option<&serde_json::Value>) -> serde_json::Value {
        let mut destination = serde_json::Map::new();
        destination.insert("host".into(), self.host.clone().into());
        if let Some(subset) = &self.subset {
            destination.insert("subset".into(), subset.clone().into());
        }
        if let Some(port) = port {
            destination.insert("port".into(), serde_json::json!({"number": port}));
        }
        serde_json::Value::Object(destination)
    }
}
