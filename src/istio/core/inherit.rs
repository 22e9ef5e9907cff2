//! Header and mirror routes serve what the primary route serves (see
//! "Header and mirror routes inherit the primary route" in
//! docs/behaviour.md): each primary route's `match` blocks are combined with
//! the step's, and its request options are carried over.

use serde_json::{Map, Value};

use super::json::{self, RouteKind};
use super::selection;
use super::{CoreError, VirtualServiceContext};

/// The request options of a primary route that its header and mirror
/// routes carry. Destinations, mirror settings, redirects and delegation
/// are not request options and are never copied.
pub const INHERITED_OPTIONS: [&str; 6] = [
    "rewrite",
    "timeout",
    "retries",
    "headers",
    "corsPolicy",
    "fault",
];

/// Match fields that are maps: two blocks combine key by key.
const MAP_FIELDS: [&str; 4] = ["headers", "queryParams", "withoutHeaders", "sourceLabels"];

/// A primary route: one HTTP route SetWeight edits.
pub struct Primary<'a> {
    /// `HTTP route 'primary'`, for messages.
    pub label: String,
    pub route: &'a Value,
}

/// The primary routes of `doc` when inheritance is on (in selection
/// order), empty when it is off or nothing is selected.
pub fn primary_routes<'a>(
    doc: &'a Value,
    ctx: &VirtualServiceContext<'_>,
) -> Result<Vec<Primary<'a>>, CoreError> {
    if !ctx.config.inherit_primary_route {
        return Ok(vec![]);
    }
    let selected = selection::configured_selection(doc, RouteKind::Http, ctx)
        .map_err(|e| ctx.error(e))?
        .unwrap_or_default();
    let routes = json::routes(doc, RouteKind::Http)
        .map_err(|e| ctx.error(e))?
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    Ok(selected
        .into_iter()
        .map(|i| Primary {
            label: selection::route_label(RouteKind::Http, &routes[i], i),
            route: &routes[i],
        })
        .collect())
}

impl Primary<'_> {
    /// Each of the primary's match blocks combined with each of the step's
    /// (the primary's blocks outer, the step's inner); a primary without
    /// match blocks matches everything, so the step's blocks stand alone.
    /// `step` names the step in messages (`setHeaderRoute 'x'`).
    pub fn combine_matches(&self, step: &str, blocks: &[Value]) -> Result<Vec<Value>, String> {
        let primary_blocks: &[Value] = match self.route.get("match") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(format!(
                    "{}: match is {}, not a list",
                    self.label,
                    json::type_name(other)
                ));
            }
        };
        if primary_blocks.is_empty() {
            return Ok(blocks.to_vec());
        }
        let mut combined = Vec::with_capacity(primary_blocks.len() * blocks.len());
        for (p, primary) in primary_blocks.iter().enumerate() {
            let Some(primary) = primary.as_object() else {
                return Err(format!(
                    "{}: match[{p}] is {}, not an object",
                    self.label,
                    json::type_name(primary)
                ));
            };
            for (s, block) in blocks.iter().enumerate() {
                let Some(block) = block.as_object() else {
                    continue;
                };
                let merged = merge_block(primary, block).map_err(|conflict| {
                    let (field, ours, theirs) = *conflict;
                    format!(
                        "{step} match[{s}] matches {field} as {ours}, and {label} match[{p}] matches it as {theirs}: one Istio match block cannot hold both; change the step's match, or set inheritPrimaryRoute: false to match the step's conditions alone",
                        ours = compact(&ours),
                        theirs = compact(&theirs),
                        label = self.label,
                    )
                })?;
                combined.push(Value::Object(merged));
            }
        }
        Ok(combined)
    }

    /// The primary's request options, to add to a header or mirror route.
    pub fn options(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        INHERITED_OPTIONS.into_iter().filter_map(|key| {
            self.route
                .get(key)
                .filter(|v| !v.is_null())
                .map(|v| (key, v))
        })
    }

    /// The port number of the primary's first destination, when positive.
    pub fn port(&self) -> Option<&Value> {
        self.route
            .pointer("/route/0/destination/port/number")
            .filter(|p| p.as_i64().is_some_and(|p| p > 0))
    }
}

/// One field both blocks constrain: `(field, step's value, primary's value)`.
type Conflict = (String, Value, Value);

/// The primary block with the step block's conditions added; `Err((field,
/// step's value, primary's value))` when both constrain one field
/// differently.
fn merge_block(
    primary: &Map<String, Value>,
    step: &Map<String, Value>,
) -> Result<Map<String, Value>, Box<Conflict>> {
    let mut merged = primary.clone();
    for (key, value) in step {
        let Some(existing) = merged.get_mut(key).filter(|v| !v.is_null()) else {
            merged.insert(key.clone(), value.clone());
            continue;
        };
        if existing == value {
            continue;
        }
        match (existing, value) {
            (Value::Object(ours), Value::Object(theirs)) if MAP_FIELDS.contains(&key.as_str()) => {
                for (name, condition) in theirs {
                    match ours.get(name) {
                        Some(current) if current != condition => {
                            return Err(Box::new((
                                format!("{key}.{name}"),
                                condition.clone(),
                                current.clone(),
                            )));
                        }
                        Some(_) => {}
                        None => {
                            ours.insert(name.clone(), condition.clone());
                        }
                    }
                }
            }
            (existing, _) => {
                return Err(Box::new((key.clone(), value.clone(), existing.clone())));
            }
        }
    }
    Ok(merged)
}

/// A value on one line, as JSON.
fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn primary(route: &Value) -> Primary<'_> {
        Primary {
            label: "HTTP route 'primary'".into(),
            route,
        }
    }

    #[test]
    fn every_primary_block_is_combined_with_every_step_block() {
        let route = json!({"match": [
            {"uri": {"prefix": "/api"}},
            {"uri": {"prefix": "/v2"}, "headers": {"x-tenant": {"exact": "a"}}},
        ]});
        let step = [
            json!({"headers": {"x-canary": {"exact": "yes"}}}),
            json!({"headers": {"x-beta": {"prefix": "1"}}}),
        ];
        let combined = primary(&route)
            .combine_matches("setHeaderRoute 'h'", &step)
            .unwrap();
        assert_eq!(
            combined,
            vec![
                json!({"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "yes"}}}),
                json!({"uri": {"prefix": "/api"}, "headers": {"x-beta": {"prefix": "1"}}}),
                json!({"uri": {"prefix": "/v2"}, "headers": {"x-tenant": {"exact": "a"}, "x-canary": {"exact": "yes"}}}),
                json!({"uri": {"prefix": "/v2"}, "headers": {"x-tenant": {"exact": "a"}, "x-beta": {"prefix": "1"}}}),
            ]
        );
    }

    #[test]
    fn a_field_matched_two_ways_is_an_error_naming_both() {
        let route = json!({"match": [{"headers": {"x-canary": {"exact": "no"}}}]});
        let step = [json!({"headers": {"x-canary": {"exact": "yes"}}})];
        let error = primary(&route)
            .combine_matches("setHeaderRoute 'h'", &step)
            .unwrap_err();
        assert_eq!(
            error,
            "setHeaderRoute 'h' match[0] matches headers.x-canary as {\"exact\":\"yes\"}, and HTTP route 'primary' match[0] matches it as {\"exact\":\"no\"}: one Istio match block cannot hold both; change the step's match, or set inheritPrimaryRoute: false to match the step's conditions alone"
        );
        let route = json!({"match": [{"uri": {"prefix": "/api"}}]});
        let step = [json!({"uri": {"exact": "/health"}})];
        let error = primary(&route)
            .combine_matches("setMirrorRoute 'm'", &step)
            .unwrap_err();
        assert!(error.starts_with("setMirrorRoute 'm' match[0] matches uri as {\"exact\":\"/health\"}, and HTTP route 'primary' match[0] matches it as {\"prefix\":\"/api\"}"), "{error}");
    }

    #[test]
    fn the_same_condition_twice_is_no_conflict() {
        let route = json!({"match": [{"method": {"exact": "GET"}}]});
        let step = [json!({"method": {"exact": "GET"}, "uri": {"exact": "/x"}})];
        let combined = primary(&route)
            .combine_matches("setMirrorRoute 'm'", &step)
            .unwrap();
        assert_eq!(
            combined,
            vec![json!({"method": {"exact": "GET"}, "uri": {"exact": "/x"}})]
        );
    }

    #[test]
    fn only_request_options_are_carried() {
        let route = json!({
            "name": "primary", "match": [], "route": [], "mirror": {"host": "m"},
            "mirrorPercentage": {"value": 5}, "rewrite": {"uri": "/"}, "timeout": "2s",
            "retries": {"attempts": 3}, "headers": {"request": {"set": {"a": "b"}}},
            "corsPolicy": {"allowOrigins": [{"exact": "x"}]}, "fault": {"abort": {"httpStatus": 500}},
            "redirect": {"uri": "/elsewhere"},
        });
        let keys: Vec<&str> = primary(&route).options().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "rewrite",
                "timeout",
                "retries",
                "headers",
                "corsPolicy",
                "fault"
            ]
        );
    }
}
