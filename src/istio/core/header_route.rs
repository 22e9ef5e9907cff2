//! SetHeaderRoute (see docs/behaviour.md): a managed HTTP route that sends requests matching
//! headers to the canary.

use serde_json::{Map, Value, json};

use super::inherit;
use super::managed_routes::{Placement, replace_named_route};
use super::selection;
use super::{CanaryTarget, CoreError, VirtualServiceContext};
use crate::model::{SetHeaderRoute, StringMatch};

/// Adds, replaces or removes (no `match`) the header route named
/// `step.name`. Returns whether the document changed.
///
/// With `inheritPrimaryRoute` (the default) there is one header route per
/// primary route, all named `step.name`: the primary's match blocks
/// combined with the step's, its request options, and the canary target on
/// the primary's port. Otherwise, or when no primary route is selected, one
/// route as the built-in builds it.
pub fn set_header_route(
    doc: &mut Value,
    ctx: &VirtualServiceContext<'_>,
    step: &SetHeaderRoute,
    target: &CanaryTarget,
) -> Result<bool, CoreError> {
    let matches = header_matches(step)?;
    let mut routes = Vec::new();
    if !matches.is_empty() {
        let primaries = inherit::primary_routes(doc, ctx)?;
        let what = format!("setHeaderRoute '{}'", step.name);
        for primary in &primaries {
            let combined = primary
                .combine_matches(&what, &matches)
                .map_err(|e| ctx.error(e))?;
            let mut route = Map::new();
            route.insert("name".into(), json!(step.name));
            route.insert("match".into(), Value::Array(combined));
            for (key, value) in primary.options() {
                route.insert(key.into(), value.clone());
            }
            route.insert(
                "route".into(),
                json!([{"destination": target.destination(primary.port()), "weight": 100}]),
            );
            push_unique(&mut routes, Value::Object(route));
        }
        if primaries.is_empty() {
            let port = selection::first_weighted_http_route(doc, ctx)
                .ok()
                .flatten()
                .and_then(|route| route.pointer("/route/0/destination/port/number"))
                .filter(|p| p.as_i64().is_some_and(|p| p > 0));
            routes.push(json!({
                "name": step.name,
                "match": matches,
                "route": [{"destination": target.destination(port), "weight": 100}],
            }));
        }
    }
    replace_named_route(doc, ctx, &step.name, routes, Placement::Last)
}

/// Adds `route` unless an equal one is already there (two primary routes
/// without match blocks or options give the same header route).
pub(crate) fn push_unique(routes: &mut Vec<Value>, route: Value) {
    if !routes.contains(&route) {
        routes.push(route);
    }
}

/// `[{headers: {<name>: {exact|prefix|regex: v}}}, …]`, one entry per match
/// (Istio ORs them). A match without exactly one value is rejected: the
/// built-in panics on a missing value and Istio's StringMatch is a oneof.
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
