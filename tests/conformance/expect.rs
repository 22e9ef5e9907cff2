//! Checks a call's outcome and the cluster against a case's `expect`.

use std::time::SystemTime;

use serde_json::Value;

use super::case::{ErrorExpectation, Expect};
use super::session::{CallReply, ClusterSide};
use istio_router::router::Verification;

/// Everything that does not hold, as readable lines; empty when all holds.
pub fn check(
    expect: &Expect,
    outcome: &CallReply,
    writes: u64,
    cluster: &dyn ClusterSide,
    namespace: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    match &expect.error {
        ErrorExpectation::Flag(false) if !outcome.error.is_empty() => {
            problems.push(format!("unexpected error: {}", outcome.error))
        }
        ErrorExpectation::Flag(true) if outcome.error.is_empty() => {
            problems.push("expected an error, got none".into())
        }
        ErrorExpectation::Contains(text) if !outcome.error.contains(text.as_str()) => problems
            .push(format!(
                "expected an error containing {text:?}, got {:?}",
                outcome.error
            )),
        _ => {}
    }
    if let Some(expected) = &expect.verified {
        let wanted = match expected {
            Value::Bool(true) => Some(Verification::Verified),
            Value::Bool(false) => Some(Verification::NotVerified),
            Value::Null => Some(Verification::NotImplemented),
            other => {
                problems.push(format!(
                    "expect.verified must be true, false or null, not {other}"
                ));
                None
            }
        };
        if wanted.is_some() && wanted != outcome.verified {
            problems.push(format!(
                "verified: expected {wanted:?}, got {:?}",
                outcome.verified
            ));
        }
    }
    if let Some(expected) = &expect.type_name
        && outcome.type_name.as_ref() != Some(expected)
    {
        problems.push(format!(
            "type: expected {expected:?}, got {:?}",
            outcome.type_name
        ));
    }
    if let Some(expected) = &expect.deadline {
        let wanted = expected.as_str().map(parse_time);
        let got = outcome.deadline.map(Ok);
        if wanted != got {
            problems.push(format!(
                "deadline: expected {expected}, got {:?}",
                outcome.deadline
            ));
        }
    }
    if let Some(expected) = expect.writes
        && expected != writes
    {
        problems.push(format!("writes: expected {expected}, got {writes}"));
    }
    for wanted in &expect.objects {
        let (kind, ns, name) = identity(wanted, namespace);
        let Some(live) = cluster.object(&kind, &ns, &name) else {
            problems.push(format!("{kind} {ns}/{name} does not exist"));
            continue;
        };
        if let Some(spec) = wanted.get("spec")
            && !json_equal(spec, live.get("spec").unwrap_or(&Value::Null))
        {
            problems.push(format!(
                "{kind} {ns}/{name}: spec differs: expected {spec}, live {}",
                live.get("spec").unwrap_or(&Value::Null)
            ));
        }
        for field in ["labels", "annotations"] {
            let Some(Value::Object(expected)) = wanted.pointer(&format!("/metadata/{field}"))
            else {
                continue;
            };
            for (key, value) in expected {
                let actual = live
                    .pointer(&format!("/metadata/{field}"))
                    .and_then(|m| m.get(key));
                if actual != Some(value) {
                    problems.push(format!(
                        "{kind} {ns}/{name}: {field}[{key}] expected {value}, got {actual:?}"
                    ));
                }
            }
        }
    }
    for gone in &expect.absent {
        let ns = gone
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string());
        if cluster.object(&gone.kind, &ns, &gone.name).is_some() {
            problems.push(format!("{} {ns}/{} should not exist", gone.kind, gone.name));
        }
    }
    for gone in &expect.absent_annotations {
        let ns = gone
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string());
        if let Some(live) = cluster.object(&gone.kind, &ns, &gone.name)
            && live
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(&gone.key))
                .is_some()
        {
            problems.push(format!(
                "{} {ns}/{}: annotation {} should be absent",
                gone.kind, gone.name, gone.key
            ));
        }
    }
    problems
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text).map_err(|e| e.to_string())
}

/// `(kind, namespace, name)` of an object in a case.
pub fn identity(object: &Value, default_namespace: &str) -> (String, String, String) {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ns = text("/metadata/namespace");
    (
        text("/kind"),
        if ns.is_empty() {
            default_namespace.to_string()
        } else {
            ns
        },
        text("/metadata/name"),
    )
}

/// JSON equality where object key order is ignored, list order is not, and
/// numbers compare by value (`90` equals `90.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
