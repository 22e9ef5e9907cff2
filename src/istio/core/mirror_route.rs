//! SetMirrorRoute (see docs/behaviour.md): a managed HTTP route that keeps the current split
//! for matching requests and mirrors a percentage of them to the canary.

use serde_json::{Map, Value, json};

use super::header_route::{push_unique, string_match};
use super::inherit;
use super::json;
use super::managed_routes::{Placement, replace_named_route};
use super::selection;
use super::{CanaryTarget, CoreError, VirtualServiceContext};
use crate::model::SetMirrorRoute;

/// Adds, replaces or removes (no `match`) the mirror route named
/// `step.name`. Returns whether the document changed.
pub fn set_mirror_route(
    doc: &mut Value,
    ctx: &VirtualServiceContext<'_>,
    step: &SetMirrorRoute,
    target: &CanaryTarget,
) -> Result<bool, CoreError> {
    let matches = route_matches(step)?;
    let percentage = step.percentage.unwrap_or(100);
    if !(0..=100).contains(&percentage) {
        return Err(CoreError::Argument(format!(
            "setMirrorRoute '{}': percentage {percentage} is outside 0..=100",
            step.name
        )));
    }
    let mut routes = Vec::new();
    if !matches.is_empty() {
        let mirror_percentage = if percentage == 0 {
            json!({})
        } else {
            json!({"value": percentage})
        };
        let build =
            |source: &Value,
             matches: Vec<Value>,
             options: &mut dyn Iterator<Item = (&'static str, &Value)>| {
                let route = copy_destinations(source)?;
                let port = route
                    .first()
                    .and_then(|d| d.pointer("/destination/port/number"));
                let mut built = Map::new();
                built.insert("name".into(), json!(step.name));
                built.insert("match".into(), Value::Array(matches));
                for (key, value) in options {
                    built.insert(key.into(), value.clone());
                }
                let mirror = target.destination(port);
                built.insert("route".into(), Value::Array(route));
                built.insert("mirror".into(), mirror);
                built.insert("mirrorPercentage".into(), mirror_percentage.clone());
                Ok::<_, String>(Value::Object(built))
            };
        let primaries = inherit::primary_routes(doc, ctx)?;
        let what = format!("setMirrorRoute '{}'", step.name);
        for primary in &primaries {
            let combined = primary
                .combine_matches(&what, &matches)
                .map_err(|e| ctx.error(e))?;
            let route = build(primary.route, combined, &mut primary.options()).map_err(|e| {
                ctx.error(format!(
                    "cannot build mirror route '{}' from {}: {e}",
                    step.name, primary.label
                ))
            })?;
            push_unique(&mut routes, route);
        }
        if primaries.is_empty() {
            let weighted = selection::first_weighted_http_route(doc, ctx)
                .map_err(|e| ctx.error(format!("cannot build mirror route '{}': {e}", step.name)))?
                .ok_or_else(|| {
                    ctx.error(format!(
                        "cannot build mirror route '{}': no HTTP route is selected for weights (list it under virtualService.routes)",
                        step.name
                    ))
                })?;
            let route = build(weighted, matches, &mut std::iter::empty()).map_err(|e| {
                ctx.error(format!("cannot build mirror route '{}': {e}", step.name))
            })?;
            routes.push(route);
        }
    }
    replace_named_route(doc, ctx, &step.name, routes, Placement::First)
}

/// `[{method?, uri?, headers?}, …]`; the step's `path` is Istio's `uri`.
fn route_matches(step: &SetMirrorRoute) -> Result<Vec<Value>, CoreError> {
    step.matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let context = format!("setMirrorRoute '{}' match[{i}]", step.name);
            let mut entry = Map::new();
            if let Some(method) = &m.method {
                entry.insert(
                    "method".into(),
                    string_match(method, &format!("{context}.method"))?,
                );
            }
            if let Some(path) = &m.path {
                entry.insert(
                    "uri".into(),
                    string_match(path, &format!("{context}.path"))?,
                );
            }
            if !m.headers.is_empty() {
                let mut headers = Map::new();
                for (name, value) in &m.headers {
                    headers.insert(
                        name.clone(),
                        string_match(value, &format!("{context}.headers.{name}"))?,
                    );
                }
                entry.insert("headers".into(), Value::Object(headers));
            }
            Ok(Value::Object(entry))
        })
        .collect()
}

/// The destinations of the weighted route, reduced to host, subset, port
/// and weight (0 omitted), so mirrored requests keep the current split.
fn copy_destinations(route: &Value) -> Result<Vec<Value>, String> {
    let destinations = selection::destinations(route, "the weighted route")?;
    destinations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let path = format!("route[{i}]");
            let mut destination = Map::new();
            let host =
                json::string_at(d, "/destination/host", &format!("{path}.destination.host"))?;
            destination.insert("host".into(), json!(host));
            let subset = json::string_at(
                d,
                "/destination/subset",
                &format!("{path}.destination.subset"),
            )?;
            if !subset.is_empty() {
                destination.insert("subset".into(), json!(subset));
            }
            if let Some(port) = d
                .pointer("/destination/port/number")
                .filter(|p| !p.is_null())
            {
                destination.insert("port".into(), json!({"number": port}));
            }
            let mut copy = Map::new();
            copy.insert("destination".into(), Value::Object(destination));
            let weight = json::weight(d, &path)?;
            if weight != 0 {
                copy.insert("weight".into(), json!(weight));
            }
            Ok(Value::Object(copy))
        })
        .collect()
}
