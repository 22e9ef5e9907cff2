//! Small helpers for reading and editing untyped Kubernetes JSON.

use serde_json::Value;

/// The three route kinds of a VirtualService.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Http,
    Tls,
    Tcp,
}

impl RouteKind {
    pub const ALL: [RouteKind; 3] = [RouteKind::Http, RouteKind::Tls, RouteKind::Tcp];

    pub fn field(self) -> &'static str {
        match self {
            RouteKind::Http => "http",
            RouteKind::Tls => "tls",
            RouteKind::Tcp => "tcp",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTP",
            RouteKind::Tls => "TLS",
            RouteKind::Tcp => "TCP",
        }
    }
}

/// `spec.<kind>` when it holds routes. An absent or null list is "no routes
/// of that kind"; so is an empty TLS or TCP list (the built-in indexes into
/// it and panics). Any other non-list value is an error.
pub fn routes(doc: &Value, kind: RouteKind) -> Result<Option<&Vec<Value>>, String> {
    match doc.get("spec").and_then(|spec| spec.get(kind.field())) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) if list.is_empty() && kind != RouteKind::Http => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list)),
        Some(other) => Err(format!(
            "spec.{} is {}, not a list of routes",
            kind.field(),
            type_name(other)
        )),
    }
}

/// Mutable `spec.<kind>` when it is a list.
pub fn routes_mut(doc: &mut Value, kind: RouteKind) -> Option<&mut Vec<Value>> {
    doc.get_mut("spec")
        .and_then(|spec| spec.get_mut(kind.field()))
        .and_then(Value::as_array_mut)
}

/// `spec.http` for removing and ordering routes, which need it present.
pub fn http_routes_required(doc: &Value) -> Result<&Vec<Value>, String> {
    routes(doc, RouteKind::Http)?.ok_or_else(|| "spec.http not found".to_string())
}

#[cfg(test)]
thread_local! {
    /// How many times [`route_name`] ran on this thread (the work-count
    /// tests in `super::tests`).
    pub static ROUTE_NAME_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A route's `name`; missing or not a string counts as "" (as in the built-in).
pub fn route_name(route: &Value) -> &str {
    #[cfg(test)]
    ROUTE_NAME_READS.with(|n| n.set(n.get() + 1));
    route.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Checks that every element of a route list is an object.
pub fn check_route_objects(list: &[Value], kind: RouteKind) -> Result<(), String> {
    match list.iter().position(|r| !r.is_object()) {
        Some(i) => Err(format!(
            "spec.{}[{i}] is {}, not a route object",
            kind.field(),
            type_name(&list[i])
        )),
        None => Ok(()),
    }
}

/// Reads a weight: absent or null is 0; an integer in `0..=i32::MAX`
/// (Istio's `weight` is an int32, and negative traffic means nothing) is
/// taken as is, also when written as a float without a fraction (`50.0`);
/// anything else is an error naming `path`.
pub fn weight(destination: &Value, path: &str) -> Result<i64, String> {
    match destination.get("weight") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => {
            let integer = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            });
            match integer {
                Some(w) if (0..=i64::from(i32::MAX)).contains(&w) => Ok(w),
                Some(_) => Err(format!("{path}.weight is {n}, outside 0..={}", i32::MAX)),
                None => Err(format!("{path}.weight is {n}, not an integer")),
            }
        }
        Some(other) => Err(format!(
            "{path}.weight is {}, not a number",
            type_name(other)
        )),
    }
}

/// A string field at `pointer`, "" when absent; an error when of another type.
pub fn string_at<'a>(value: &'a Value, pointer: &str, path: &str) -> Result<&'a str, String> {
    match value.pointer(pointer) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("{path} is {}, not a string", type_name(other))),
    }
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
