//! The plugin binary under the mock controller: what the Argo Rollouts
//! controller's plugin lifecycle (ping per reconcile, kill and relaunch on
//! a failed ping) means for the cluster.

use std::time::Duration;

use istio_router::model::{Rollout, WeightDestination};
use istio_router::router::{Call, Verification};
use istio_router::transport::netrpc::calls::decode_call;
use istio_router::transport::netrpc::gob::{RequestStream, split_message};
use serde_json::json;
use test_support::apiserver::{ApiServer, Fault, FaultKind, FaultOn};
use test_support::fixtures::virtual_service;
use test_support::host::encode_request;
use test_support::mock_controller::{self, MockController};
use test_support::plugin_binary;

const NAMESPACE: &str = "default";
const NAME: &str = "web";

/// The stand-in with `web-vsvc` (all traffic on stable), and the plugin
/// launched against it through a kubeconfig, as in a cluster.
async fn start() -> (ApiServer, tempfile::TempDir, MockController) {
    let server = ApiServer::start().await;
    server.apply(vec![virtual_service(NAMESPACE, NAME)], NAMESPACE);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig).expect("write kubeconfig");
    let args: Vec<String> = [
        "--protocol",
        "netrpc",
        "--plugin-name",
        "argoproj-labs/istio",
        "--kube-timeout",
        "3",
    ]
    .map(String::from)
    .into();
    let env = vec![("KUBECONFIG".to_string(), kubeconfig.display().to_string())];
    let controller = MockController::launch(plugin_binary!(), &args, &env)
        .await
        .expect("the plugin starts");
    (server, dir, controller)
}

fn rollout() -> Rollout {
    Rollout::from_json(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"strategy": {"canary": {
            "canaryService": format!("{NAME}-canary"),
            "stableService": format!("{NAME}-stable"),
            "trafficRouting": {"plugins": {"argoproj-labs/istio": {
                "virtualService": {"name": format!("{NAME}-vsvc"), "routes": ["primary"]}
            }}}
        }}}
    }))
    .expect("a valid Rollout")
}

/// (stable, canary) weights of the `primary` route.
fn weights(server: &ApiServer) -> (i64, i64) {
    let vs = server
        .get("VirtualService", NAMESPACE, &format!("{NAME}-vsvc"))
        .expect("the VirtualService exists");
    let route = vs["spec"]["http"][0]["route"]
        .as_array()
        .expect("a route list");
    let weight_of = |host: &str| {
        route
            .iter()
            .find(|r| r["destination"]["host"] == host)
            .map(|r| r["weight"].as_i64().unwrap_or(0))
            .unwrap_or_else(|| panic!("no destination {host} in {vs}"))
    };
    let all: i64 = route
        .iter()
        .map(|r| r["weight"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(all, 100, "weights sum to 100: {vs}");
    (
        weight_of(&format!("{NAME}-stable")),
        weight_of(&format!("{NAME}-canary")),
    )
}

fn set_weight(rollout: &Rollout, weight: i32) -> Call {
    Call::SetWeight {
        rollout: rollout.clone(),
        desired_weight: weight,
        additional: Vec::new(),
    }
}

/// Waits (bounded) until the stand-in has received more than `n` writes.
async fn writes_above(server: &ApiServer, n: u64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.writes() <= n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the plugin sends its write within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_killed_mid_call_is_relaunched_and_the_next_calls_land() {
    let (server, _dir, mut controller) = start().await;
    let rollout = rollout();

    let reply = controller.call(&set_weight(&rollout, 20)).await;
    assert_eq!(reply.error, "");
    assert_eq!(weights(&server), (80, 20));

    // Hold the next write, and SIGKILL the plugin while it waits for it.
    server.inject(vec![Fault::new(FaultOn::Write, FaultKind::Timeout, 1)]);
    let pid = controller.pid().expect("a running plugin");
    let before = server.writes();
    let held = set_weight(&rollout, 25);
    let (in_flight, ()) = tokio::join!(controller.call(&held), async {
        writes_above(&server, before).await;
        let pid = i32::try_from(pid).expect("a pid fits in pid_t");
        // SAFETY: plain kill(2) on the child this test launched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9");
    });
    server.clear_faults();
    assert!(
        in_flight.error.starts_with("SetWeight rpc call error:"),
        "the in-flight call fails: {in_flight:?}"
    );
    assert_eq!(controller.restarts(), 0, "no relaunch before the next call");
    assert_eq!(weights(&server), (80, 20), "the held write never landed");

    let reply = controller.call(&set_weight(&rollout, 30)).await;
    assert_eq!(reply.error, "");
    assert_eq!(controller.restarts(), 1, "the dead plugin was relaunched");
    assert_ne!(controller.pid(), Some(pid), "a new process");
    assert_eq!(weights(&server), (70, 30));

    let reply = controller
        .call(&Call::VerifyWeight {
            rollout: rollout.clone(),
            desired_weight: 30,
            additional: Vec::new(),
        })
        .await;
    assert_eq!(reply.error, "");
    assert_eq!(reply.verified, Some(Verification::Verified));
    assert_eq!(controller.restarts(), 1);
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_pings_before_every_call_and_the_plugin_answers_each() {
    let (server, _dir, mut controller) = start().await;
    let rollout = rollout();
    assert_eq!(controller.pings(), 1, "argo pings once after InitPlugin");

    let calls = [
        Call::Type,
        set_weight(&rollout, 10),
        Call::VerifyWeight {
            rollout: rollout.clone(),
            desired_weight: 10,
            additional: Vec::new(),
        },
        Call::GetWeightUpdateDeadline {
            rollout: rollout.clone(),
        },
        set_weight(&rollout, 0),
    ];
    for (index, call) in calls.iter().enumerate() {
        let reply = controller.call(call).await;
        assert_eq!(reply.error, "", "{call:?}");
        assert_eq!(
            controller.pings(),
            index as u32 + 2,
            "a ping answered before {call:?}"
        );
    }
    assert_eq!(controller.restarts(), 0, "no ping went unanswered");
    assert_eq!(weights(&server), (100, 0));
    controller.shutdown().await;
}

/// A Rollout with every field of the model set (non-zero, as gob drops
/// zero values).
fn full_rollout() -> Rollout {
    Rollout::from_json(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": NAME, "namespace": "shop", "uid": "0b5e-11",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "x"}
        },
        "spec": {
            "replicas": 3,
            "strategy": {"canary": {
                "canaryService": "web-canary",
                "stableService": "web-stable",
                "pingPong": {"pingService": "web-ping", "pongService": "web-pong"},
                "dynamicStableScale": true,
                "trafficRouting": {
                    "plugins": {
                        "argoproj-labs/istio": {"virtualService": {"name": "web-vsvc", "routes": ["primary"]}},
                        "other/plugin": [1, "two", null]
                    },
                    "managedRoutes": [{"name": "header-1"}, {"name": "mirror-1"}],
                    "maxTrafficWeight": 1000
                },
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "10s"}},
                    {"pause": {"duration": 30}},
                    {"pause": {}},
                    {"setCanaryScale": {"weight": 20, "replicas": 2, "matchTrafficWeight": true}},
                    {"setHeaderRoute": {"name": "header-1", "match": [
                        {"headerName": "x-a", "headerValue": {"exact": "1"}},
                        {"headerName": "x-b", "headerValue": {"prefix": "p"}},
                        {"headerName": "x-c", "headerValue": {"regex": "r.*"}}
                    ]}},
                    {"setMirrorRoute": {"name": "mirror-1", "percentage": 50, "match": [
                        {"method": {"exact": "GET"}, "path": {"prefix": "/api"},
                         "headers": {"x-m": {"regex": "m+"}, "x-n": {"exact": "n"}}}
                    ]}}
                ]
            }}
        },
        "status": {
            "abort": true,
            "promoteFull": true,
            "stableRS": "5f6d",
            "currentPodHash": "7c8b",
            "currentStepIndex": 4,
            "canary": {
                "stablePingPong": "ping",
                "weights": {
                    "canary": {"weight": 20, "serviceName": "web-canary", "podTemplateHash": "7c8b"},
                    "stable": {"weight": 80, "serviceName": "web-stable", "podTemplateHash": "5f6d"},
                    "additional": [{"weight": 5, "serviceName": "exp", "podTemplateHash": "e1"}],
                    "verified": true
                }
            }
        }
    }))
    .expect("a valid Rollout")
}

/// What the plugin's decoder makes of the bytes the mock controller sends.
fn decoded_by_the_plugin(method: &str, call: &Call) -> Call {
    let argument = mock_controller::argument(call).expect("the call encodes");
    let bytes = encode_request(&mut gobwire::Encoder::new(), method, 0, &argument)
        .expect("the request encodes");
    let mut stream = RequestStream::new();
    let mut rest = &bytes[..];
    while let Some((start, len)) = split_message(rest).expect("framing") {
        let message = &rest[start..start + len];
        rest = &rest[start + len..];
        if let Some(raw) = stream.push(message).expect("a readable header") {
            assert!(rest.is_empty(), "one request");
            let body = raw.body.expect("a readable body");
            return decode_call(&mut stream.values, &raw.header.service_method, &body)
                .unwrap_or_else(|e| panic!("{method}: {e}"));
        }
    }
    panic!("{method}: no complete request in {} bytes", bytes.len())
}

#[test]
fn every_model_field_reaches_the_plugin_through_the_go_types() {
    let rollout = full_rollout();
    let additional = [WeightDestination {
        weight: 5,
        service_name: "exp".into(),
        pod_template_hash: "e1".into(),
    }];
    let steps = &rollout.canary().expect("canary").steps;
    let header = steps[5].set_header_route.clone().expect("a header route");
    let mirror = steps[6].set_mirror_route.clone().expect("a mirror route");
    let calls = [
        Call::InitPlugin,
        Call::Type,
        Call::UpdateHash {
            rollout: rollout.clone(),
            canary_hash: "7c8b".into(),
            stable_hash: "5f6d".into(),
            additional: additional.to_vec(),
        },
        Call::SetWeight {
            rollout: rollout.clone(),
            desired_weight: 20,
            additional: additional.to_vec(),
        },
        Call::VerifyWeight {
            rollout: rollout.clone(),
            desired_weight: 20,
            additional: additional.to_vec(),
        },
        Call::SetHeaderRoute {
            rollout: rollout.clone(),
            route: header,
        },
        Call::SetMirrorRoute {
            rollout: rollout.clone(),
            route: mirror,
        },
        Call::RemoveManagedRoutes {
            rollout: rollout.clone(),
        },
        Call::GetWeightUpdateDeadline {
            rollout: rollout.clone(),
        },
        Call::ClearWeightUpdateDeadline {
            rollout: rollout.clone(),
        },
    ];
    assert_eq!(
        calls.iter().map(Call::name).collect::<Vec<_>>(),
        Call::NAMES,
        "every call is checked"
    );
    for call in calls {
        let method = format!("Plugin.{}", call.name());
        assert_eq!(decoded_by_the_plugin(&method, &call), call, "{method}");
    }
}
