//! Property tests of SetWeight over generated VirtualServices: random extra
//! fields everywhere, random route lists, random weights, random calls.
//!
//! Properties: only the weights of the selected route's destinations change
//! (plus the experiment destinations the rules add and the stray ones they
//! remove); no weight is negative; no edited route ends all-zero; repeating
//! the call changes nothing and writes nothing, and VerifyWeight agrees.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use istio_router::cluster::InMemoryCluster;
use istio_router::istio::IstioRouter;
use istio_router::model::{Rollout, WeightDestination};
use istio_router::router::{TrafficRouter, Verification};

const CANARY: &str = "canary-svc";
const STABLE: &str = "stable-svc";

/// A small JSON value for unknown fields.
fn extra_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(|n| json!(n)),
        "[a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Extra keys that Istio does not define, prefixed so they never collide
/// with a key the plugin owns.
fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x-[a-z]{1,6}", extra_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

/// A destination towards `host` with optional port, subset-less.
fn destination(host: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
    (
        host,
        prop::option::of(1u16..9000),
        prop::option::of(0i64..=100),
        extra_fields(),
    )
        .prop_map(|(host, port, weight, extra)| {
            let mut target = Map::new();
            target.insert("host".into(), json!(host));
            if let Some(port) = port {
                target.insert("port".into(), json!({"number": port}));
            }
            let mut d = extra;
            d.insert("destination".into(), Value::Object(target));
            if let Some(weight) = weight {
                d.insert("weight".into(), json!(weight));
            }
            Value::Object(d)
        })
}

fn service_host(name: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(name.to_string()),
        Just(format!("{name}.default.svc.cluster.local")),
        Just(format!("{name}.default")),
    ]
}

fn other_host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "(stray|legacy|exp)-[a-c]".prop_map(String::from)
    ]
}

/// The route SetWeight edits: canary and stable somewhere among strays.
fn primary_route() -> impl Strategy<Value = Value> {
    (
        destination(service_host(STABLE)),
        destination(service_host(CANARY)),
        prop::collection::vec(destination(other_host()), 0..3),
        extra_fields(),
    )
        .prop_flat_map(|(stable, canary, strays, extra)| {
            let mut all = strays;
            all.push(stable);
            all.push(canary);
            (Just(all).prop_shuffle(), Just(extra))
        })
        .prop_map(|(destinations, mut route)| {
            route.insert("name".into(), json!("primary"));
            route.insert("route".into(), Value::Array(destinations));
            Value::Object(route)
        })
}

fn other_route(index: usize) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(destination(other_host()), 1..3),
        extra_fields(),
    )
        .prop_map(move |(destinations, mut route)| {
            route.insert("name".into(), json!(format!("other-{index}")));
            route.insert("route".into(), Value::Array(destinations));
            Value::Object(route)
        })
}

fn virtual_service() -> impl Strategy<Value = (Value, usize)> {
    (
        primary_route(),
        other_route(0),
        other_route(1),
        0usize..3,
        0usize..3,
        extra_fields(),
        extra_fields(),
    )
        .prop_map(
            |(primary, first, second, others, position, spec_extra, meta_extra)| {
                let mut routes: Vec<Value> = [first, second].into_iter().take(others).collect();
                let position = position.min(routes.len());
                routes.insert(position, primary);
                let mut spec = spec_extra;
                spec.insert("hosts".into(), json!(["app.example.com"]));
                spec.insert("http".into(), Value::Array(routes));
                let mut metadata = meta_extra;
                metadata.insert("name".into(), json!("vs"));
                metadata.insert("namespace".into(), json!("default"));
                let vs = json!({
                    "apiVersion": "networking.istio.io/v1beta1",
                    "kind": "VirtualService",
                    "metadata": metadata,
                    "spec": spec,
                });
                (vs, position)
            },
        )
}

fn experiments() -> impl Strategy<Value = Vec<WeightDestination>> {
    prop::collection::btree_map("exp-[a-c]", 0i32..=30, 0..3).prop_map(|m| {
        m.into_iter()
            .map(|(service_name, weight)| WeightDestination {
                weight,
                service_name,
                pod_template_hash: String::new(),
            })
            .collect()
    })
}

fn rollout(name_routes: bool) -> Rollout {
    let routes = if name_routes {
        json!(["primary"])
    } else {
        json!([])
    };
    Rollout::from_json(json!({
        "metadata": {"name": "ro", "namespace": "default"},
        "spec": {"strategy": {"canary": {
            "canaryService": CANARY,
            "stableService": STABLE,
            "trafficRouting": {"plugins": {"istio": {"virtualService": {"name": "vs", "routes": routes}}}},
        }}},
    }))
    .expect("the test rollout is valid")
}

fn short(host: &str) -> &str {
    host.split('.').next().unwrap_or("")
}

fn weight(d: &Value) -> i64 {
    d.get("weight").and_then(Value::as_i64).unwrap_or(0)
}

fn host(d: &Value) -> &str {
    d.pointer("/destination/host")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A destination without its weight, to compare everything else.
fn without_weight(d: &Value) -> Value {
    let mut d = d.clone();
    if let Some(map) = d.as_object_mut() {
        map.shift_remove("weight");
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn set_weight_edits_only_weights_and_is_idempotent(
        (vs, primary) in virtual_service(),
        desired in 0i32..=100,
        additional in experiments(),
        name_routes in any::<bool>(),
    ) {
        let cluster = Arc::new(InMemoryCluster::new());
        cluster.apply([vs.clone()], "default").expect("valid object");
        let router = IstioRouter::new(cluster.clone(), "istio");
        let rollout = rollout(name_routes);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let result = runtime.block_on(router.set_weight(&rollout, desired, &additional));
        let routes_in_vs = vs["spec"]["http"].as_array().map(Vec::len).unwrap_or(0);
        if !name_routes && routes_in_vs > 1 {
            // Ambiguous without `routes`: an error, and nothing written.
            prop_assert!(result.is_err());
            prop_assert_eq!(cluster.writes(), 0);
            return Ok(());
        }
        prop_assert!(result.is_ok(), "{:?}", result);
        let after = cluster.object("VirtualService", "default", "vs").expect("still there");

        // Everything but spec.http[primary].route is untouched.
        let mut outside_before = vs.clone();
        let mut outside_after = after.clone();
        outside_before["spec"]["http"][primary]["route"] = Value::Null;
        outside_after["spec"]["http"][primary]["route"] = Value::Null;
        outside_after["metadata"].as_object_mut().expect("metadata").shift_remove("resourceVersion");
        prop_assert_eq!(&outside_before, &outside_after);

        // Inside the route: canary and stable get their weights, experiments
        // theirs, strays with traffic go, everything else keeps every field.
        let before_route = vs["spec"]["http"][primary]["route"].as_array().expect("route").clone();
        let after_route = after["spec"]["http"][primary]["route"].as_array().expect("route").clone();
        let experiments: i64 = additional.iter().map(|d| i64::from(d.weight)).sum();
        let stable_weight = (100 - i64::from(desired) - experiments).max(0);
        let mut kept = after_route.iter();
        let mut claimed = std::collections::BTreeSet::new();
        for d in &before_route {
            let h = short(host(d));
            // Only the first destination of an experiment service is its own.
            let experiment = additional
                .iter()
                .find(|e| e.service_name == h && h != CANARY && h != STABLE)
                .filter(|e| claimed.insert(e.service_name.clone()));
            let expected = if h.is_empty() {
                Some(weight(d))
            } else if h == CANARY {
                Some(i64::from(desired))
            } else if h == STABLE {
                Some(stable_weight)
            } else if let Some(e) = experiment {
                Some(i64::from(e.weight))
            } else if weight(d) != 0 {
                None
            } else {
                Some(0)
            };
            if let Some(expected) = expected {
                let now = kept.next().expect("a kept destination is still there");
                prop_assert_eq!(without_weight(now), without_weight(d));
                prop_assert_eq!(weight(now), expected);
            }
        }
        let appended: Vec<&Value> = kept.collect();
        let mut expected_appends: Vec<&WeightDestination> = additional
            .iter()
            .filter(|e| !claimed.contains(&e.service_name) && e.weight > 0)
            .collect();
        expected_appends.sort_by(|a, b| a.service_name.cmp(&b.service_name));
        prop_assert_eq!(appended.len(), expected_appends.len());
        for (got, wanted) in appended.iter().zip(expected_appends) {
            prop_assert_eq!(host(got), wanted.service_name.as_str());
            prop_assert_eq!(weight(got), i64::from(wanted.weight));
        }
        prop_assert!(after_route.iter().all(|d| weight(d) >= 0));
        prop_assert!(after_route.iter().map(weight).sum::<i64>() > 0);

        // Again: no change, no write, and VerifyWeight says so.
        let writes = cluster.writes();
        let again = runtime.block_on(router.set_weight(&rollout, desired, &additional));
        prop_assert!(again.is_ok());
        prop_assert_eq!(cluster.writes(), writes);
        let verified = runtime.block_on(router.verify_weight(&rollout, desired, &additional));
        prop_assert_eq!(verified.ok(), Some(Verification::Verified));
    }
}
