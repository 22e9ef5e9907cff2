//! SetHeaderRoute (§7): a managed HTTP route that sends requests matching
//! headers to the canary.

use serde_json::{Map, Value, json};

use super::json;
use super::managed_routes::{order_routes, remove_route};
use super::selection;
use super::{CanaryTarget, CoreError, VirtualServiceContext};
use crate::model::{SetHeaderRoute, StringMatch};

/// Adds, replaces or removes (no `match`) the header route named
/// `step.name`. Returns whether the document changed.
pub fn set_header_route(
    doc: &mut Value,
    ctx: &VirtualServiceContext<'_>,
    step: &SetHeaderRoute,
    target: &CanaryTarget,
) -> Result<bool, CoreError> {
    let matches = header_matches(step)?;
    let mut edited = doc.clone();
    remove_route(&mut edited, &step.name).map_err(|e| ctx.error(e))?;
    if !matches.is_empty() {
        let port = selection::first_weighted_http_route(doc, ctx)
            .ok()
            .flatten()
            .and_then(|route| route.pointer("/route/0/destination/port/number"))
            .and_then(Value::as_i64)
            .filter(|&p| p > 0);
        let mut destination = Map::new();
        destination.insert("host".into(), json!(target.host));
        if let Some(port) = port {
            destination.insert("port".into(), json!({"number": port}));
        }
        if let Some(subset) = &target.subset {
            destination.insert("subset".into(), json!(subset));
        }
        let route = json!({
            "name": step.name,
            "match": matches,
            "route": [{"destination": destination, "weight": 100}],
        });
        if let Some(routes) = json::routes_mut(&mut edited, json::RouteKind::Http) {
            routes.push(route);
        }
    }
    order_routes(&mut edited, ctx.config).map_err(|e| ctx.error(e))?;
    let changed = edited != *doc;
    *doc = edited;
    Ok(changed)
}

/// `[{headers: {<name>: {exact|prefix|regex: v}}}, …]`, one entry per match
/// (Istio ORs them). A match without exactly one value is rejected: the
/// built-in panics on a missing value (Q18) and Istio's StringMatch is a oneof.
fn header_matches(step: &SetHeaderRoute) -> Result<Vec<Value>, CoreError> {
    step.matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let context = format!("setHeaderRoute '{}' match[{i}]", step.name);
            if m.header_name.is_empty() {
                return Err(CoreError::Argument(format!(
                    "{context}: headerName is empty"
                )));
            }
            let value = m
                .header_value
                .as_ref()
                .ok_or_else(|| CoreError::Argument(format!("{context}: headerValue is missing")))?;
            Ok(json!({"headers": {m.header_name.clone(): string_match(value, &context)?}}))
        })
        .collect()
}

/// An Istio StringMatch with exactly one of exact / prefix / regex.
pub(crate) fn string_match(value: &StringMatch, context: &str) -> Result<Value, CoreError> {
    let set: Vec<(&str, &String)> = [
        ("exact", &value.exact),
        ("prefix", &value.prefix),
        ("regex", &value.regex),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    match set.as_slice() {
        [(key, v)] => Ok(json!({*key: v})),
        [] => Err(CoreError::Argument(format!(
            "{context}: needs one of exact, prefix or regex"
        ))),
        _ => Err(CoreError::Argument(format!(
            "{context}: sets more than one of exact, prefix and regex"
        ))),
    }
}
