//! The conformance case format (`tests/conformance/FORMAT.md`), parsed.

use istio_router::istio::core::INHERITED_OPTIONS;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use istio_router::istio;
use istio_router::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};
use istio_router::router::Call;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    #[allow(dead_code)] // documentation for readers of the case
    pub description: String,
    #[serde(default = "default_plugin_name")]
    pub plugin_name: String,
    #[serde(default = "default_istio_api_version")]
    pub istio_api_version: String,
    #[serde(default)]
    pub objects: Vec<Value>,
    pub rollout: Value,
    pub calls: Vec<Step>,
    pub transports: Option<Vec<String>>,
}

fn default_plugin_name() -> String {
    "conformance/istio".into()
}

fn default_istio_api_version() -> String {
    "v1alpha3".into()
}

/// One entry of `calls`: the arrangement, the call, the expectation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// One of [`Call::NAMES`].
    pub call: String,
    #[serde(default)]
    pub weight: i32,
    #[serde(default)]
    pub additional_destinations: Vec<WeightDestination>,
    #[serde(default)]
    pub canary_hash: String,
    #[serde(default)]
    pub stable_hash: String,
    pub set_header_route: Option<SetHeaderRoute>,
    pub set_mirror_route: Option<SetMirrorRoute>,
    pub rollout: Option<Value>,
    #[serde(default)]
    pub apply: Vec<Value>,
    #[serde(default)]
    pub delete: Vec<ObjectRef>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub expect: Expect,
}

impl Step {
    /// The call this step makes about `rollout`. A step without the route
    /// argument sends Go's zero value, as the controller would.
    pub fn to_call(&self, rollout: &Rollout) -> Result<Call, String> {
        let rollout = rollout.clone();
        let additional = self.additional_destinations.clone();
        Ok(match self.call.as_str() {
            "InitPlugin" => Call::InitPlugin,
            "Type" => Call::Type,
            "UpdateHash" => Call::UpdateHash {
                rollout,
                canary_hash: self.canary_hash.clone(),
                stable_hash: self.stable_hash.clone(),
                additional,
            },
            "SetWeight" => Call::SetWeight {
                rollout,
                desired_weight: self.weight,
                additional,
            },
            "VerifyWeight" => Call::VerifyWeight {
                rollout,
                desired_weight: self.weight,
                additional,
            },
            "SetHeaderRoute" => Call::SetHeaderRoute {
                rollout,
                route: self.set_header_route.clone().unwrap_or_default(),
            },
            "SetMirrorRoute" => Call::SetMirrorRoute {
                rollout,
                route: self.set_mirror_route.clone().unwrap_or_default(),
            },
            "RemoveManagedRoutes" => Call::RemoveManagedRoutes { rollout },
            "GetWeightUpdateDeadline" => Call::GetWeightUpdateDeadline { rollout },
            "ClearWeightUpdateDeadline" => Call::ClearWeightUpdateDeadline { rollout },
            other => {
                return Err(format!(
                    "unknown call {other:?}; calls are {}",
                    Call::NAMES.join(", ")
                ));
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub key: String,
}

/// Faults use the stand-in's own types: one definition of the format.
pub use test_support::apiserver::{Fault, FaultKind, FaultOn};

/// `expect`. `verified` and `deadline` distinguish "absent" (not checked)
/// from `null` (must be NotImplemented / no deadline).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub error: ErrorExpectation,
    #[serde(default, deserialize_with = "present")]
    pub verified: Option<Value>,
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    #[serde(default)]
    pub objects: Vec<Value>,
    #[serde(default)]
    pub absent: Vec<ObjectRef>,
    #[serde(default, rename = "absentAnnotations")]
    pub absent_annotations: Vec<ObjectRef>,
    pub writes: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub deadline: Option<Value>,
}

/// Keeps an explicit `null` as `Some(Value::Null)`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ErrorExpectation {
    Flag(bool),
    Contains(String),
}

impl Default for ErrorExpectation {
    fn default() -> Self {
        ErrorExpectation::Flag(false)
    }
}

/// Reads one case file; errors name the file and the field.
pub fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let value = istio_router::yaml::document(&text).map_err(|e| format!("not YAML: {e}"))?;
    serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

/// Every `*.yaml` under `dir`, recursively, sorted.
pub fn case_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The annotation the built-in router writes on DestinationRules it manages.
const BUILT_IN_MANAGED_BY: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";

/// A deliberate difference from the built-in, applied to every case
/// (shared ones and ones this runner has never seen): where a case expects
/// a DestinationRule to carry the built-in's managed-by annotation, the
/// plugin must have removed it instead. The real controller cleans the hash
/// labels out of any DestinationRule carrying it that no
/// `trafficRouting.istio` block references (docs/behaviour.md, UpdateHash;
/// shown by the end-to-end tier). Returns how many expectations it changed.
pub fn expect_no_built_in_annotation(case: &mut Case) -> usize {
    let mut changed = 0;
    for call in &mut case.calls {
        let mut absent = Vec::new();
        for object in &mut call.expect.objects {
            let Some(annotations) = object
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            if annotations.remove(BUILT_IN_MANAGED_BY).is_none() {
                continue;
            }
            changed += 1;
            absent.push(ObjectRef {
                kind: object["kind"].as_str().unwrap_or_default().to_string(),
                name: object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
                key: BUILT_IN_MANAGED_BY.to_string(),
            });
        }
        call.expect.absent_annotations.extend(absent);
    }
    changed
}

/// A deliberate difference from the built-in, for cases written against
/// it (the shared ones and any others this runner has never seen, from
/// `CONFORMANCE_CASES_DIR`): by default header and mirror routes inherit
/// the primary route's match and request options, which the built-in drops.
/// A foreign case that sets a header or mirror route on a VirtualService
/// where that makes a difference (an HTTP route with a `match` or one of
/// those options) and does not choose itself is run with
/// `inheritPrimaryRoute: false`, the built-in's shape, and says so. Cases
/// where inheritance changes nothing run with the default. Returns whether
/// the case was changed.
pub fn built_in_header_route_shape(case: &mut Case) -> bool {
    let sets_routes = case
        .calls
        .iter()
        .any(|c| c.set_header_route.is_some() || c.set_mirror_route.is_some());
    let objects = case
        .objects
        .iter()
        .chain(case.calls.iter().flat_map(|c| &c.apply));
    let differs = objects
        .filter(|o| o["kind"] == "VirtualService")
        .filter_map(|o| o.pointer("/spec/http").and_then(Value::as_array))
        .flatten()
        .any(|route| {
            // Its match and the request options it would pass on.
            std::iter::once(&"match")
                .chain(&INHERITED_OPTIONS)
                .any(|key| route.get(*key).is_some_and(|v| !v.is_null()))
        });
    if !sets_routes || !differs {
        return false;
    }
    let plugin = case.plugin_name.clone();
    let rollouts = std::iter::once(&mut case.rollout)
        .chain(case.calls.iter_mut().filter_map(|c| c.rollout.as_mut()));
    let mut changed = false;
    for rollout in rollouts {
        let Some(config) = rollout
            .pointer_mut("/spec/strategy/canary/trafficRouting/plugins")
            .and_then(|plugins| plugins.get_mut(&plugin))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if !config.contains_key("inheritPrimaryRoute") {
            config.insert("inheritPrimaryRoute".into(), Value::Bool(false));
            changed = true;
        }
    }
    changed
}

/// Reads and checks one case.
pub fn load_checked(path: &Path) -> Result<Case, String> {
    let mut case = load(path)?;
    let changed = expect_no_built_in_annotation(&mut case);
    if changed > 0 {
        eprintln!(
            "note: {}: {changed} expectation(s) of the built-in's {BUILT_IN_MANAGED_BY} annotation checked as its absence (docs/behaviour.md, UpdateHash)",
            case.name
        );
    }
    if let Some(step) = case
        .calls
        .iter()
        .find(|s| !Call::NAMES.contains(&s.call.as_str()))
    {
        return Err(format!(
            "calls: unknown call {:?}; calls are {}",
            step.call,
            Call::NAMES.join(", ")
        ));
    }
    if !istio::API_VERSIONS.contains(&case.istio_api_version.as_str()) {
        return Err(format!(
            "istioApiVersion {:?} is not one of {:?}",
            case.istio_api_version,
            istio::API_VERSIONS
        ));
    }
    Ok(case)
}
