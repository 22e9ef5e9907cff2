//! Field paths and matchers of the scenario format (see tests/e2e/README.md).
//!
//! A path is dot-separated; each segment may carry selectors:
//! `[2]` (index), `[name=primary]` (the first element whose `name` is
//! `primary`; dotted keys work: `[destination.host=stable-svc]`) and
//! `["a.b/c"]` (a key holding dots or slashes).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Select(String, String),
    /// `[*]`: every element (only where paths name fields to remove).
    All,
}

fn parse(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut chars = path.chars().peekable();
    let mut key = String::new();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !key.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                }
            }
            '[' => {
                if !key.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                }
                let mut inner = String::new();
                let mut closed = false;
                let quoted = chars.peek() == Some(&'"');
                if quoted {
                    chars.next();
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        inner.push(c);
                    }
                    closed = chars.next() == Some(']');
                    if !closed {
                        return Err(format!("path {path:?}: expected ] after \"{inner}\""));
                    }
                    steps.push(Step::Key(inner));
                    continue;
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    return Err(format!("path {path:?}: unclosed ["));
                }
                if inner == "*" {
                    steps.push(Step::All);
                    continue;
                }
                match inner.split_once('=') {
                    Some((k, v)) => steps.push(Step::Select(k.to_string(), v.to_string())),
                    None => steps.push(Step::Index(inner.parse().map_err(|_| {
                        format!("path {path:?}: [{inner}] is neither an index nor key=value")
                    })?)),
                }
            }
            c => key.push(c),
        }
    }
    if !key.is_empty() {
        steps.push(Step::Key(key));
    }
    if steps.is_empty() {
        return Err("empty path".to_string());
    }
    Ok(steps)
}

/// The value at `path`, `None` when any part of it is missing.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let mut current = value;
    for step in parse(path)? {
        let next = match &step {
            Step::Key(key) => current.get(key),
            Step::Index(index) => current.get(index),
            Step::Select(key, wanted) => current
                .as_array()
                .and_then(|items| items.iter().find(|item| selected(item, key, wanted))),
            Step::All => return Err(format!("path {path:?}: [*] names no single value")),
        };
        match next {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

fn selected(item: &Value, key: &str, wanted: &str) -> bool {
    lookup(item, key)
        .ok()
        .flatten()
        .is_some_and(|found| scalar_text(found).as_deref() == Some(wanted))
}

/// Removes the field(s) at `path` from `value`; `[*]` stands for every
/// element of a list, `[key=value]` for every matching one. Missing parts
/// remove nothing.
pub fn remove_path(value: &mut Value, path: &str) -> Result<(), String> {
    let steps = parse(path)?;
    remove_steps(value, &steps);
    Ok(())
}

fn remove_steps(value: &mut Value, steps: &[Step]) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    if rest.is_empty() {
        match (first, value) {
            (Step::Key(key), Value::Object(map)) => {
                map.remove(key);
            }
            (Step::Index(index), Value::Array(items)) if *index < items.len() => {
                items.remove(*index);
            }
            (Step::Select(key, wanted), Value::Array(items)) => {
                items.retain(|item| !selected(item, key, wanted));
            }
            (Step::All, Value::Array(items)) => items.clear(),
            _ => {}
        }
        return;
    }
    match (first, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(next) = map.get_mut(key) {
                remove_steps(next, rest);
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(next) = items.get_mut(*index) {
                remove_steps(next, rest);
            }
        }
        (Step::Select(key, wanted), Value::Array(items)) => {
            for item in items.iter_mut().filter(|item| selected(item, key, wanted)) {
                remove_steps(item, rest);
            }
        }
        (Step::All, Value::Array(items)) => {
            for item in items {
                remove_steps(item, rest);
            }
        }
        _ => {}
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks one matcher against the value found (if any). `Err` says what
/// was found instead.
pub fn check(found: Option<&Value>, matcher: &Value) -> Result<(), String> {
    let shown = || match found {
        Some(v) => v.to_string(),
        None => "absent".to_string(),
    };
    if let Some(map) = matcher.as_object()
        && map.len() == 1
    {
        let (op, arg) = map.iter().next().expect("one entry");
        match op.as_str() {
            "$absent" => {
                let absent = found.is_none_or(Value::is_null);
                return if absent == arg.as_bool().unwrap_or(true) {
                    Ok(())
                } else {
                    Err(format!("found {}", shown()))
                };
            }
            "$contains" => {
                let needle = arg.as_str().unwrap_or_default();
                return match found.and_then(Value::as_str) {
                    Some(text) if text.contains(needle) => Ok(()),
                    _ => Err(format!("found {}, not containing {needle:?}", shown())),
                };
            }
            "$len" => {
                let len = found.and_then(Value::as_array).map(Vec::len);
                return if len.is_some() && len == arg.as_u64().map(|n| n as usize) {
                    Ok(())
                } else {
                    Err(format!("found {} (length {len:?})", shown()))
                };
            }
            "$not" => {
                return match check(found, arg) {
                    Ok(()) => Err(format!("found {}, which it must not be", shown())),
                    Err(_) => Ok(()),
                };
            }
            _ if op.starts_with('$') => return Err(format!("unknown matcher {op}")),
            _ => {}
        }
    }
    match found {
        Some(value) if equal(value, matcher) => Ok(()),
        _ => Err(format!("found {}", shown())),
    }
}

/// JSON equality where 90 equals 90.0 and object key order is ignored.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// Replaces every `$(name)` in the strings of `value` with its variable.
pub fn substitute(value: &Value, vars: &std::collections::HashMap<String, String>) -> Value {
    match value {
        Value::String(s) => Value::String(substitute_text(s, vars)),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (substitute_text(k, vars), substitute(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn substitute_text(text: &str, vars: &std::collections::HashMap<String, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}
