//! SetWeight and VerifyWeight on one VirtualService with 10 000 HTTP routes,
//! every one selected by name and half of them managed routes, through the
//! Istio router and the in-memory cluster. Prints the time per call; route
//! selection, ordering and diffing are linear, so this is milliseconds, not
//! the minute a nested scan took. Asserts only that every call succeeds.
//!
//! `cargo bench --bench large_virtualservice`

use std::time::Instant;

use istio_router::cluster::InMemoryCluster;
use istio_router::istio::{DEFAULT_PLUGIN_NAME, IstioRouter};
use istio_router::model::Rollout;
use istio_router::router::{Call, Outcome, dispatch};
use serde_json::{Value, json};

const ROUTES: usize = 10_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(measure());
}

async fn measure() {
    let names: Vec<String> = (0..ROUTES).map(|i| format!("route-{i}")).collect();
    let http: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({"name": name, "route": [
                {"destination": {"host": "stable"}, "weight": 100},
                {"destination": {"host": "canary"}, "weight": 0},
            ]})
        })
        .collect();
    let cluster = InMemoryCluster::new();
    cluster
        .apply(
            [json!({
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "VirtualService",
                "metadata": {"name": "vs", "namespace": "ns"},
                "spec": {"hosts": ["x"], "http": http},
            })],
            "ns",
        )
        .unwrap();
    let managed: Vec<Value> = names[ROUTES / 2..]
        .iter()
        .rev()
        .map(|n| json!({"name": n}))
        .collect();
    let rollout = Rollout::from_json(json!({
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"strategy": {"canary": {
            "canaryService": "canary",
            "stableService": "stable",
            "trafficRouting": {
                "managedRoutes": managed,
                "plugins": {DEFAULT_PLUGIN_NAME: {
                    "virtualService": {"name": "vs", "routes": names},
                }},
            },
        }}},
    }))
    .unwrap();
    let router = IstioRouter::new(cluster, DEFAULT_PLUGIN_NAME);
    for (label, weight) in [
        ("SetWeight 10 (first)", 10),
        ("SetWeight 20", 20),
        ("SetWeight 20 (no change)", 20),
    ] {
        let started = Instant::now();
        let outcome = dispatch(
            &router,
            Call::SetWeight {
                rollout: rollout.clone(),
                desired_weight: weight,
                additional: vec![],
            },
        )
        .await;
        let elapsed = started.elapsed();
        assert!(matches!(outcome, Outcome::Done(Ok(()))), "{outcome:?}");
        println!("{label}: {ROUTES} routes in {elapsed:?}");
    }
    let started = Instant::now();
    let outcome = dispatch(
        &router,
        Call::VerifyWeight {
            rollout: rollout.clone(),
            desired_weight: 20,
            additional: vec![],
        },
    )
    .await;
    assert!(matches!(outcome, Outcome::Verified(Ok(_))), "{outcome:?}");
    println!(
        "VerifyWeight 20: {ROUTES} routes in {:?}",
        started.elapsed()
    );
}
