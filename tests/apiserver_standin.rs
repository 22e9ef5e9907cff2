//! The Kubernetes API stand-in, driven with plain HTTP requests.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::apiserver::client::{next_event, request, send};
use test_support::apiserver::{ApiServer, Fault, FaultKind, FaultOn};

const VS: &str = "/apis/networking.istio.io/v1alpha3/namespaces/ns/virtualservices";
const MERGE: Option<&str> = Some("application/merge-patch+json");
const JSON_PATCH: Option<&str> = Some("application/json-patch+json");

fn vs(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": name, "labels": labels},
        "spec": {"hosts": ["a"]},
    })
}

fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

async fn standin_with_vs() -> ApiServer {
    let server = ApiServer::start().await;
    server.apply(vec![vs("web", json!({"app": "web"}))], "ns");
    server
}

#[tokio::test]
async fn get_serves_every_istio_version_from_one_storage() {
    let server = standin_with_vs().await;
    for version in ["v1alpha3", "v1beta1", "v1"] {
        let path = format!("/apis/networking.istio.io/{version}/namespaces/ns/virtualservices/web");
        let answer = request(&server.base_url(), "GET", &path, None, None)
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body["apiVersion"],
            format!("networking.istio.io/{version}")
        );
        assert_eq!(answer.body["spec"]["hosts"], json!(["a"]));
    }
    assert_eq!(server.reads(), 3);
    let missing = request(&server.base_url(), "GET", &format!("{VS}/nope"), None, None)
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["kind"], "Status");
    assert_eq!(missing.body["apiVersion"], "v1");
    assert_eq!(missing.body["status"], "Failure");
    assert_eq!(missing.body["reason"], "NotFound");
    assert_eq!(missing.body["code"], 404);
    assert_eq!(missing.body["details"]["name"], "nope");
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\" not found")
    );
}

#[tokio::test]
async fn create_update_and_stale_resource_version() {
    let server = ApiServer::start().await;
    let base = server.base_url();
    let created = request(&base, "POST", VS, None, Some(&vs("web", json!({}))))
        .await
        .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.body["metadata"]["namespace"], "ns");
    let again = request(&base, "POST", VS, None, Some(&vs("web", json!({}))))
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.body["reason"].clone()),
        (409, json!("AlreadyExists"))
    );

    let mut edited = created.body.clone();
    edited["spec"]["hosts"] = json!(["b"]);
    let updated = request(&base, "PUT", &format!("{VS}/web"), None, Some(&edited))
        .await
        .unwrap();
    assert_eq!(updated.status, 200);
    let first: u64 = rv(&created.body).parse().unwrap();
    let second: u64 = rv(&updated.body).parse().unwrap();
    assert!(second > first);
    assert_eq!(updated.body["metadata"]["generation"], 2);

    // `edited` still carries the first resourceVersion.
    let stale = request(&base, "PUT", &format!("{VS}/web"), None, Some(&edited))
        .await
        .unwrap();
    assert_eq!(stale.status, 409);
    assert_eq!(stale.body["reason"], "Conflict");
    assert!(
        stale.body["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    let renamed = request(
        &base,
        "PUT",
        &format!("{VS}/web"),
        None,
        Some(&vs("other", json!({}))),
    )
    .await
    .unwrap();
    assert_eq!(
        (renamed.status, renamed.body["reason"].clone()),
        (422, json!("Invalid"))
    );
    let garbage = request(
        &base,
        "PUT",
        &format!("{VS}/web"),
        None,
        Some(&json!("text")),
    )
    .await
    .unwrap();
    assert_eq!(garbage.status, 422);
    assert_eq!(server.writes(), 6);
    assert_eq!(
        server.get("VirtualService", "ns", "web").unwrap()["spec"]["hosts"],
        json!(["b"])
    );
}

#[tokio::test]
async fn merge_and_json_patches() {
    let server = standin_with_vs().await;
    let base = server.base_url();
    let path = format!("{VS}/web");
    let merged = request(
        &base,
        "PATCH",
        &path,
        MERGE,
        Some(&json!({"spec": {"gateways": ["g"]}, "metadata": {"labels": {"app": null}}})),
    )
    .await
    .unwrap();
    assert_eq!(merged.status, 200);
    assert_eq!(
        merged.body["spec"],
        json!({"hosts": ["a"], "gateways": ["g"]})
    );
    assert_eq!(merged.body["metadata"]["labels"], json!({}));

    let stale = request(
        &base,
        "PATCH",
        &path,
        MERGE,
        Some(&json!({"metadata": {"resourceVersion": "1"}, "spec": {"hosts": []}})),
    )
    .await
    .unwrap();
    assert_eq!(stale.status, 409);

    let current = rv(&merged.body);
    let patched = request(
        &base,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(&json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "add", "path": "/spec/hosts/-", "value": "b"},
            {"op": "replace", "path": "/spec/gateways/0", "value": "h"},
            {"op": "copy", "from": "/spec/hosts/0", "path": "/spec/first"},
            {"op": "move", "from": "/spec/first", "path": "/spec/moved"},
            {"op": "remove", "path": "/spec/gateways"},
        ])),
    )
    .await
    .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.body["spec"],
        json!({"hosts": ["a", "b"], "moved": "a"})
    );

    let failed_test = request(
        &base,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(&json!([
            {"op": "test", "path": "/spec/hosts", "value": ["x"]},
            {"op": "remove", "path": "/spec/hosts"},
        ])),
    )
    .await
    .unwrap();
    assert_eq!(failed_test.status, 422);
    assert_eq!(
        server.get("VirtualService", "ns", "web").unwrap()["spec"]["hosts"],
        json!(["a", "b"])
    );

    let unsupported = request(
        &base,
        "PATCH",
        &path,
        Some("application/apply-patch+yaml"),
        Some(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(unsupported.status, 415);
    assert_eq!(server.writes(), 5);
}

#[tokio::test]
async fn list_filters_by_label_selector_and_namespace() {
    let server = ApiServer::start().await;
    server.apply(
        vec![
            vs("a", json!({"app": "web", "tier": "front"})),
            vs("b", json!({"app": "api"})),
            vs("c", json!({})),
        ],
        "ns",
    );
    server.apply(vec![vs("d", json!({"app": "web"}))], "other");
    let names = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (selector, expected) in [
        ("", vec!["a", "b", "c"]),
        ("app%3Dweb", vec!["a"]),
        ("app!%3Dweb", vec!["b", "c"]),
        ("app%20in%20(web,api)", vec!["a", "b"]),
        ("app%20notin%20(web)", vec!["b", "c"]),
        ("app", vec!["a", "b"]),
        ("!app", vec!["c"]),
        ("app%3Dweb,tier%3D%3Dfront", vec!["a"]),
    ] {
        let answer = request(
            &server.base_url(),
            "GET",
            &format!("{VS}?labelSelector={selector}"),
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(names(&answer.body), expected, "selector {selector}");
        assert_eq!(
            answer.body["metadata"]["resourceVersion"],
            server.resource_version().to_string()
        );
        assert_eq!(answer.body["kind"], "VirtualServiceList");
    }
}

#[tokio::test]
async fn watch_streams_added_modified_deleted_from_a_resource_version() {
    let server = ApiServer::start().await;
    server.apply(vec![vs("before", json!({}))], "ns");
    let since = server.resource_version();
    server.apply(vec![vs("early", json!({}))], "ns");
    let response = send(
        &server.base_url(),
        "GET",
        &format!("{VS}?watch=true&resourceVersion={since}&labelSelector=skip!%3Dyes"),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut pending = Vec::new();
    let event = next_event(&mut body, &mut pending).await.unwrap();
    assert_eq!(
        (
            event["type"].clone(),
            event["object"]["metadata"]["name"].clone()
        ),
        (json!("ADDED"), json!("early"))
    );

    server.wait_open_watches(1).await;
    server.apply(vec![vs("early", json!({"changed": "yes"}))], "ns");
    server.apply(vec![vs("elsewhere", json!({}))], "other");
    server.apply(vec![vs("skipped", json!({"skip": "yes"}))], "ns");
    assert!(server.delete("VirtualService", "ns", "early"));
    server.wait_watchers_caught_up().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = next_event(&mut body, &mut pending).await.unwrap();
        seen.push((
            event["type"].as_str().unwrap().to_string(),
            rv(&event["object"]),
        ));
        assert_eq!(event["object"]["metadata"]["name"], "early");
        assert_eq!(
            event["object"]["apiVersion"],
            "networking.istio.io/v1alpha3"
        );
    }
    assert_eq!(seen[0].0, "MODIFIED");
    assert_eq!(
        seen[1],
        ("DELETED".to_string(), server.resource_version().to_string())
    );
    assert_eq!(server.watches(), 1);
}

#[tokio::test]
async fn closed_and_expired_watches() {
    let server = standin_with_vs().await;
    let since = server.resource_version();
    let path = format!("{VS}?watch=true&resourceVersion={since}");
    let response = send(&server.base_url(), "GET", &path, None, None)
        .await
        .unwrap();
    let mut body = response.into_body();
    server.wait_open_watches(1).await;
    server.close_watches();
    assert_eq!(next_event(&mut body, &mut Vec::new()).await, None);

    server.compact();
    let response = send(&server.base_url(), "GET", &path, None, None)
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut pending = Vec::new();
    let event = next_event(&mut body, &mut pending).await.unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(next_event(&mut body, &mut pending).await, None);

    // From the current version a watch works again.
    let current = server.resource_version();
    let path = format!("{VS}?watch=true&resourceVersion={current}");
    let response = send(&server.base_url(), "GET", &path, None, None)
        .await
        .unwrap();
    let mut body = response.into_body();
    server.apply(vec![vs("web", json!({"v": "2"}))], "ns");
    let event = next_event(&mut body, &mut Vec::new()).await.unwrap();
    assert_eq!(event["type"], "MODIFIED");
}

async fn faulted(
    server: &ApiServer,
    fault: Fault,
) -> Result<test_support::apiserver::client::Answer, hyper::Error> {
    server.inject(vec![fault]);
    request(&server.base_url(), "GET", &format!("{VS}/web"), None, None).await
}

#[tokio::test]
async fn status_faults_apply_a_number_of_times_then_pass() {
    let server = standin_with_vs().await;
    for (kind, code, reason) in [
        (FaultKind::Conflict, 409, "Conflict"),
        (FaultKind::Unavailable, 503, "ServiceUnavailable"),
        (FaultKind::Error, 500, "InternalError"),
    ] {
        let answer = faulted(&server, Fault::new(FaultOn::Get, kind, 1))
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.body["reason"].as_str().unwrap()),
            (code, reason)
        );
        assert_eq!(answer.body["kind"], "Status");
        let after = request(&server.base_url(), "GET", &format!("{VS}/web"), None, None)
            .await
            .unwrap();
        assert_eq!(after.status, 200);
    }
}

#[tokio::test]
async fn faults_match_the_operation_and_resource_and_count_as_writes() {
    let server = standin_with_vs().await;
    let base = server.base_url();
    server.inject(vec![
        Fault::new(FaultOn::Write, FaultKind::Unavailable, 2).on_resource("destinationrules"),
        Fault::new(FaultOn::List, FaultKind::Error, 1),
    ]);
    let get = request(&base, "GET", &format!("{VS}/web"), None, None)
        .await
        .unwrap();
    assert_eq!(get.status, 200);
    let patch = request(
        &base,
        "PATCH",
        &format!("{VS}/web"),
        MERGE,
        Some(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(patch.status, 200);
    let dr_path = "/apis/networking.istio.io/v1beta1/namespaces/ns/destinationrules/x";
    for _ in 0..2 {
        let answer = request(&base, "DELETE", dr_path, None, None).await.unwrap();
        assert_eq!(answer.status, 503);
    }
    let answer = request(&base, "DELETE", dr_path, None, None).await.unwrap();
    assert_eq!(answer.status, 404);
    let list = request(&base, "GET", VS, None, None).await.unwrap();
    assert_eq!(list.status, 500);
    assert_eq!(server.writes(), 4);

    server.inject(vec![Fault::new(FaultOn::Any, FaultKind::Conflict, 5)]);
    server.clear_faults();
    let get = request(&base, "GET", &format!("{VS}/web"), None, None)
        .await
        .unwrap();
    assert_eq!(get.status, 200);
}

#[tokio::test]
async fn faults_parse_from_the_conformance_format() {
    let faults: Vec<Fault> = serde_json::from_value(json!([
        {"on": "write", "resource": "virtualservices", "kind": "timeout", "times": 2},
        {"on": "any", "kind": "disconnect"},
    ]))
    .unwrap();
    assert_eq!(
        faults,
        vec![
            Fault::new(FaultOn::Write, FaultKind::Timeout, 2).on_resource("virtualservices"),
            Fault::new(FaultOn::Any, FaultKind::Disconnect, 1),
        ]
    );
}

#[tokio::test]
async fn disconnect_closes_the_connection_without_an_answer() {
    let server = standin_with_vs().await;
    let answer = faulted(&server, Fault::new(FaultOn::Get, FaultKind::Disconnect, 1)).await;
    assert!(answer.is_err(), "expected a dropped connection");
    assert_eq!(server.reads(), 1);
}

#[tokio::test]
async fn timeout_holds_the_request_unanswered() {
    let server = standin_with_vs().await;
    let held = tokio::time::timeout(
        Duration::from_millis(300),
        faulted(&server, Fault::new(FaultOn::Get, FaultKind::Timeout, 1)),
    )
    .await;
    assert!(held.is_err(), "the request was answered");
    let after = request(&server.base_url(), "GET", &format!("{VS}/web"), None, None)
        .await
        .unwrap();
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn replica_sets_and_discovery() {
    let server = ApiServer::start().await;
    server.apply(
        vec![json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": "rs-1", "namespace": "ns"}, "spec": {"replicas": 2}})],
        "default",
    );
    let base = server.base_url();
    let list = request(
        &base,
        "GET",
        "/apis/apps/v1/namespaces/ns/replicasets",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(list.body["items"][0]["metadata"]["name"], "rs-1");
    assert_eq!(list.body["items"][0]["apiVersion"], "apps/v1");
    let apis = request(&base, "GET", "/apis", None, None).await.unwrap();
    assert_eq!(apis.body["groups"][0]["name"], "networking.istio.io");
    let version = request(&base, "GET", "/version", None, None).await.unwrap();
    assert_eq!(version.body["major"], "1");
    let wrong = request(
        &base,
        "GET",
        "/apis/apps/v2/namespaces/ns/replicasets",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 404);
}
