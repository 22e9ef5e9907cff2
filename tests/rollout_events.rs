//! The Events the router reports on a Rollout for each change it makes,
//! as the in-memory cluster records them (the kube cluster writes the same
//! ones as core/v1 Events; the end-to-end tier checks those).

use std::sync::Arc;

use istio_router::cluster::{EventType, InMemoryCluster, REPORTING_COMPONENT, RolloutEvent};
use istio_router::istio::IstioRouter;
use istio_router::model::{Rollout, SetHeaderRoute};
use istio_router::router::TrafficRouter;
use serde_json::{Value, json};

fn vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": "rollout-vsvc"},
        "spec": {"hosts": ["h"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "stable-svc"}, "weight": 100},
            {"destination": {"host": "canary-svc"}, "weight": 0},
        ]}]},
    })
}

fn rollout(plugin: Value, canary: Value) -> Rollout {
    let mut canary = canary;
    canary["trafficRouting"] = json!({"plugins": {"argoproj-labs/istio": plugin}});
    serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": "ns", "uid": "u-1"},
        "spec": {"strategy": {"canary": canary}},
    }))
    .expect("a Rollout")
}

fn host_split() -> Rollout {
    rollout(
        json!({"virtualService": {"name": "rollout-vsvc", "routes": ["primary"]}}),
        json!({
            "canaryService": "canary-svc",
            "stableService": "stable-svc",
            "managedRoutes": [{"name": "testers"}],
        }),
    )
}

fn reasons(events: &[RolloutEvent]) -> Vec<&str> {
    events.iter().map(|e| e.reason).collect()
}

#[tokio::test]
async fn every_write_is_reported_once_and_nothing_else() {
    let cluster = Arc::new(InMemoryCluster::new());
    cluster.apply([vs()], "ns").unwrap();
    let router = IstioRouter::new(cluster.clone(), "argoproj-labs/istio");
    let rollout = host_split();

    router.set_weight(&rollout, 20, &[]).await.unwrap();
    let events = cluster.recorded_events();
    assert_eq!(
        events,
        vec![RolloutEvent {
            namespace: "ns".into(),
            rollout: "app".into(),
            uid: "u-1".into(),
            event_type: EventType::Normal,
            reason: "VirtualServiceWeightsUpdated",
            action: "SetWeight",
            message:
                "Weights set to canary 20 (stable: the rest) in VirtualService ns/rollout-vsvc"
                    .into(),
        }]
    );

    // The same weight again writes nothing, so reports nothing.
    router.set_weight(&rollout, 20, &[]).await.unwrap();
    router.remove_managed_routes(&rollout).await.unwrap();
    assert_eq!(cluster.recorded_events().len(), 1);

    let add: SetHeaderRoute = serde_json::from_value(json!({
        "name": "testers",
        "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}],
    }))
    .unwrap();
    router.set_header_route(&rollout, &add).await.unwrap();
    let remove = SetHeaderRoute {
        name: "testers".into(),
        matches: vec![],
    };
    router.set_header_route(&rollout, &remove).await.unwrap();
    let events = cluster.recorded_events();
    assert_eq!(
        reasons(&events),
        [
            "VirtualServiceWeightsUpdated",
            "HeaderRouteAdded",
            "HeaderRouteRemoved"
        ]
    );
    assert_eq!(
        events[1].message,
        "Header route 'testers' set in VirtualService ns/rollout-vsvc"
    );
    assert_eq!(
        events[2].message,
        "Header route 'testers' removed from VirtualService ns/rollout-vsvc"
    );
    assert_eq!(REPORTING_COMPONENT, "rollouts-plugin-trafficrouter-istio");
}

fn subset_split_objects(available: i64) -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "rollout-vsvc"},
            "spec": {"hosts": ["h"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "svc", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "svc", "subset": "canary"}, "weight": 0},
            ]}]},
        }),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "DestinationRule",
            "metadata": {"name": "rollout-destrule"},
            "spec": {"host": "svc", "subsets": [
                {"name": "canary", "labels": {"app": "a"}},
                {"name": "stable", "labels": {"app": "a"}},
            ]},
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "app-new",
                "labels": {"rollouts-pod-template-hash": "new"},
                "ownerReferences": [{"kind": "Rollout", "name": "app"}],
            },
            "spec": {"replicas": 1},
            "status": {"availableReplicas": available},
        }),
    ]
}

fn subset_split() -> Rollout {
    rollout(
        json!({
            "virtualService": {"name": "rollout-vsvc", "routes": ["primary"]},
            "destinationRule": {
                "name": "rollout-destrule",
                "canarySubsetName": "canary",
                "stableSubsetName": "stable",
            },
        }),
        json!({}),
    )
}

#[tokio::test]
async fn subset_switches_and_holds_are_reported() {
    let cluster = Arc::new(InMemoryCluster::new());
    cluster.apply(subset_split_objects(0), "ns").unwrap();
    let router = IstioRouter::new(cluster.clone(), "argoproj-labs/istio");
    let rollout = subset_split();

    router
        .update_hash(&rollout, "new", "old", &[])
        .await
        .expect("a hold keeps the call successful");
    let events = cluster.recorded_events();
    assert_eq!(
        reasons(&events),
        [
            "DestinationRuleSubsetSwitchHeld",
            "DestinationRuleSubsetsSwitched"
        ]
    );
    assert_eq!(events[0].event_type, EventType::Warning);
    assert!(
        events[0]
            .message
            .starts_with("Subset switch of DestinationRule ns/rollout-destrule held: "),
        "{}",
        events[0].message
    );
    assert!(
        events[0].message.contains("app-new"),
        "{}",
        events[0].message
    );
    assert_eq!(
        events[1].message,
        "Subsets of DestinationRule ns/rollout-destrule point at pod-template-hash canary=(held), stable=old"
    );

    cluster.apply(subset_split_objects(1), "ns").unwrap();
    router
        .update_hash(&rollout, "new", "old", &[])
        .await
        .unwrap();
    let events = cluster.recorded_events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].reason, "DestinationRuleSubsetsSwitched");
    assert_eq!(
        events[2].message,
        "Subsets of DestinationRule ns/rollout-destrule point at pod-template-hash canary=new, stable=old"
    );
}
