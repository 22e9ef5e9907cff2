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
mod inherit;
mod json;
mod managed_routes;
mod mirror_route;
mod selection;
mod weights;

pub use destination_rule::{
    Hold, Role, SubsetSwitch, check_subsets, switch_holds, switches_pending,
    update_destination_rule, update_destination_rule_holding,
};
pub use header_route::set_header_route;
pub use inherit::INHERITED_OPTIONS;
pub use managed_routes::remove_managed_routes;
pub use mirror_route::set_mirror_route;
pub use weights::{WeightRequest, check_additional_names, set_weight};

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

/// The routes SetWeight edits in `doc`, as (`http`, `tls` or `tcp`,
/// index); what cannot be selected is left out (the calls report it).
pub fn selected_routes(
    doc: &serde_json::Value,
    ctx: &VirtualServiceContext<'_>,
) -> Vec<(&'static str, usize)> {
    json::RouteKind::ALL
        .into_iter()
        .flat_map(|kind| {
            selection::configured_selection(doc, kind, ctx)
                .ok()
                .flatten()
                .unwrap_or_default()
                .into_iter()
                .map(move |index| (kind.field(), index))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Work counts, not wall time: selection, ordering and the weight edit
    //! read each route's name a bounded number of times, however many
    //! routes and managed routes there are.

    use serde_json::{Value, json};

    use super::json::ROUTE_NAME_READS;
    use super::*;
    use crate::istio::config::{DEFAULT_PLUGIN_NAME, RouterConfig};
    use crate::model::Rollout;

    const ROUTES: usize = 10_000;

    fn rollout(routes: &[String], managed: &[String]) -> Rollout {
        Rollout::from_json(json!({
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"strategy": {"canary": {
                "canaryService": "canary",
                "stableService": "stable",
                "trafficRouting": {
                    "managedRoutes": managed.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
                    "plugins": {DEFAULT_PLUGIN_NAME: {
                        "virtualService": {"name": "vs", "routes": routes},
                    }},
                },
            }}},
        }))
        .unwrap()
    }

    fn virtual_service(names: &[String]) -> Value {
        let http: Vec<Value> = names
            .iter()
            .map(|name| {
                json!({"name": name, "route": [
                    {"destination": {"host": "stable"}, "weight": 100},
                    {"destination": {"host": "canary"}, "weight": 0},
                ]})
            })
            .collect();
        json!({"metadata": {"name": "vs", "namespace": "ns"}, "spec": {"http": http}})
    }

    fn reads(f: impl FnOnce()) -> usize {
        ROUTE_NAME_READS.with(|n| n.set(0));
        f();
        ROUTE_NAME_READS.with(|n| n.get())
    }

    #[test]
    fn set_weight_on_10000_selected_routes_reads_each_name_a_few_times() {
        let names: Vec<String> = (0..ROUTES).map(|i| format!("route-{i}")).collect();
        // Every route selected, the last half also managed (in reverse, so
        // ordering has work to do).
        let managed: Vec<String> = names[ROUTES / 2..].iter().rev().cloned().collect();
        let rollout = rollout(&names, &managed);
        let config = RouterConfig::from_rollout(&rollout, DEFAULT_PLUGIN_NAME).unwrap();
        let reference = &config.virtual_services[0];
        let ctx = VirtualServiceContext {
            object: "VirtualService ns/vs",
            config: &config,
            reference,
        };
        let mut doc = virtual_service(&names);
        let request = WeightRequest::new(30, &[], config.max_weight).unwrap();
        let n = reads(|| {
            assert!(set_weight(&mut doc, &ctx, request).unwrap());
        });
        // A nested scan would read about ROUTES² / 2 = 50 000 000 names.
        assert!(n <= 8 * ROUTES, "{n} route-name reads for {ROUTES} routes");
        let http = doc["spec"]["http"].as_array().unwrap();
        assert_eq!(http[0]["name"], json!(format!("route-{}", ROUTES - 1)));
        assert_eq!(http[ROUTES / 2]["name"], json!("route-0"));
        assert!(
            http.iter()
                .all(|r| r["route"][1]["weight"] == json!(30)
                    && r["route"][0]["weight"] == json!(70))
        );
    }

    #[test]
    fn remove_managed_routes_on_10000_routes_reads_each_name_a_few_times() {
        let names: Vec<String> = (0..ROUTES).map(|i| format!("route-{i}")).collect();
        let rollout = rollout(&names[..1], &names[1..]);
        let config = RouterConfig::from_rollout(&rollout, DEFAULT_PLUGIN_NAME).unwrap();
        let ctx = VirtualServiceContext {
            object: "VirtualService ns/vs",
            config: &config,
            reference: &config.virtual_services[0],
        };
        let mut doc = virtual_service(&names);
        let n = reads(|| {
            assert!(remove_managed_routes(&mut doc, &ctx, &rollout).unwrap());
        });
        assert!(n <= 4 * ROUTES, "{n} route-name reads for {ROUTES} routes");
        assert_eq!(doc["spec"]["http"].as_array().unwrap().len(), 1);
    }
}
