//! `simulate`: plays a Rollout's canary from start to full promotion against
//! an in-memory cluster, in the order the controller makes its calls
//! (see "Call order" in docs/behaviour.md), and reports every call and
//! every object it changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use similar::TextDiff;

use crate::cluster::InMemoryCluster;
use crate::controller::{self, Refusal, Version};
use crate::istio::IstioRouter;
use crate::istio::config::{DEFAULT_PLUGIN_NAME, RouterConfig};
use crate::model::{CanaryStep, Rollout};
use crate::router::{Call, Outcome, dispatch};

/// The example `simulate` plays when no Rollout is given.
pub const EMBEDDED_EXAMPLE: (&str, &str) = (
    "examples/host-split.yaml (embedded)",
    include_str!("../examples/host-split.yaml"),
);

const DEFAULT_STABLE_HASH: &str = "5d8c7b6f9a";
const DEFAULT_CANARY_HASH: &str = "7f9b6c5d8e";

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{file}: {message}")]
    Manifest { file: String, message: String },
    #[error(
        "argo-rollouts {version} refuses this Rollout before it calls any traffic router \
         (condition InvalidSpec):\n  {}",
        refusals.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Refused {
        version: Version,
        refusals: Vec<Refusal>,
    },
    #[error("{step}: {call} failed: {message}")]
    Call {
        step: String,
        call: &'static str,
        message: String,
    },
}

/// A Rollout and the objects the cluster starts with.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub rollout: Rollout,
    pub objects: Vec<Value>,
    pub plugin_name: String,
    /// The controller release whose validation the Rollout must pass.
    pub controller: Version,
}

/// One manifest file's YAML documents as JSON.
fn parse_documents(file: &str, text: &str) -> Result<Vec<Value>, SimulateError> {
    crate::yaml::documents(text).map_err(|e| SimulateError::Manifest {
        file: file.to_string(),
        message: e.to_string(),
    })
}

fn object_label(document: &Value) -> String {
    let text = |pointer| {
        document
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
    };
    format!("{} {}", text("/kind"), text("/metadata/name"))
}

impl Scenario {
    /// Reads manifests: `rollout` holds exactly one Rollout (and may hold
    /// other objects); each of `objects` holds VirtualServices,
    /// DestinationRules, ReplicaSets, Services.
    pub fn load(
        rollout_file: &Path,
        object_files: &[PathBuf],
        plugin_name: Option<&str>,
    ) -> Result<Self, SimulateError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| SimulateError::Manifest {
                file: path.display().to_string(),
                message: format!("cannot read: {e}"),
            })
        };
        let mut files = vec![(rollout_file.display().to_string(), read(rollout_file)?)];
        for path in object_files {
            files.push((path.display().to_string(), read(path)?));
        }
        Self::from_texts(&files, plugin_name)
    }

    /// The embedded default example.
    pub fn embedded(plugin_name: Option<&str>) -> Result<Self, SimulateError> {
        let (file, text) = EMBEDDED_EXAMPLE;
        Self::from_texts(&[(file.to_string(), text.to_string())], plugin_name)
    }

    /// Reads manifests given as `(file name, text)` pairs, as [`Self::load`]
    /// does after reading the files.
    pub fn from_texts(
        files: &[(String, String)],
        plugin_name: Option<&str>,
    ) -> Result<Self, SimulateError> {
        let mut rollout = None;
        let mut objects = Vec::new();
        for (file, text) in files {
            let error = |message: String| SimulateError::Manifest {
                file: file.clone(),
                message,
            };
            for (index, document) in parse_documents(file, text)?.into_iter().enumerate() {
                let position = format!("document {}", index + 1);
                if document
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(error(format!("{position}: metadata.name is missing")));
                }
                match document.get("kind").and_then(Value::as_str) {
                    Some("Rollout") => {
                        let label = object_label(&document);
                        let mut parsed = Rollout::from_json(document).map_err(|e| {
                            error(format!("{position} ({label}): {}: {}", e.path, e.message))
                        })?;
                        if parsed.metadata.namespace.is_empty() {
                            parsed.metadata.namespace = "default".into();
                        }
                        if rollout.replace(parsed).is_some() {
                            return Err(error(format!(
                                "{position}: a second Rollout; simulate plays one"
                            )));
                        }
                    }
                    Some(_) => objects.push(document),
                    None => return Err(error(format!("{position}: kind is missing"))),
                }
            }
        }
        let first_file = files.first().map(|(f, _)| f.clone()).unwrap_or_default();
        let rollout = rollout.ok_or_else(|| SimulateError::Manifest {
            file: first_file.clone(),
            message: "no Rollout found".into(),
        })?;
        let plugin_name = match plugin_name {
            Some(name) => name.to_string(),
            None => default_plugin_name(&rollout),
        };
        RouterConfig::from_rollout(&rollout, &plugin_name).map_err(|e| {
            SimulateError::Manifest {
                file: first_file,
                message: e.to_string(),
            }
        })?;
        Ok(Scenario {
            rollout,
            objects,
            plugin_name,
            controller: controller::LATEST_CHECKED,
        })
    }
}

/// The only configured plugin key, else the documented default.
fn default_plugin_name(rollout: &Rollout) -> String {
    match rollout.traffic_routing().map(|r| &r.plugins) {
        Some(plugins) if plugins.len() == 1 && !plugins.contains_key(DEFAULT_PLUGIN_NAME) => {
            plugins.keys().next().cloned().unwrap_or_default()
        }
        _ => DEFAULT_PLUGIN_NAME.to_string(),
    }
}

/// What `simulate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Per step: the calls and a diff of every changed object.
    Steps,
    /// Only the final objects, as YAML documents.
    Yaml,
}

/// One controller reconcile of the simulation.
struct Phase {
    label: String,
    step: Option<CanaryStep>,
    canary_hash: String,
    stable_hash: String,
    weight: i32,
    remove_managed_routes: bool,
}

fn phases(rollout: &Rollout) -> Vec<Phase> {
    let stable = if rollout.status.stable_rs.is_empty() {
        DEFAULT_STABLE_HASH.to_string()
    } else {
        rollout.status.stable_rs.clone()
    };
    let canary = match rollout.status.current_pod_hash.as_str() {
        hash if !hash.is_empty() && hash != stable => hash.to_string(),
        _ if stable == DEFAULT_CANARY_HASH => DEFAULT_STABLE_HASH.to_string(),
        _ => DEFAULT_CANARY_HASH.to_string(),
    };
    let steps = rollout
        .canary()
        .map(|c| c.steps.clone())
        .unwrap_or_default();
    let max_weight = rollout
        .traffic_routing()
        .and_then(|r| r.max_traffic_weight)
        .unwrap_or(100);
    let mut weight = 0;
    let mut phases = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        if let Some(w) = step.set_weight {
            weight = w;
        }
        phases.push(Phase {
            label: format!("step {}/{}: {}", index + 1, steps.len(), describe(step)),
            step: Some(step.clone()),
            canary_hash: canary.clone(),
            stable_hash: stable.clone(),
            weight,
            remove_managed_routes: false,
        });
    }
    phases.push(Phase {
        label: format!("end of steps: maxTrafficWeight {max_weight}"),
        step: None,
        canary_hash: canary.clone(),
        stable_hash: stable,
        weight: max_weight,
        remove_managed_routes: false,
    });
    phases.push(Phase {
        label: "promotion: canary becomes stable".into(),
        step: None,
        canary_hash: canary.clone(),
        stable_hash: canary,
        weight: 0,
        remove_managed_routes: true,
    });
    phases
}

fn describe(step: &CanaryStep) -> String {
    let mut parts = Vec::new();
    if let Some(w) = step.set_weight {
        parts.push(format!("setWeight {w}"));
    }
    if let Some(r) = &step.set_header_route {
        parts.push(format!("setHeaderRoute {}", r.name));
    }
    if let Some(r) = &step.set_mirror_route {
        parts.push(format!("setMirrorRoute {}", r.name));
    }
    if step.set_canary_scale.is_some() {
        parts.push("setCanaryScale".into());
    }
    if step.pause.is_some() {
        parts.push("pause".into());
    }
    if parts.is_empty() {
        parts.push("(no traffic change)".into());
    }
    parts.join(", ")
}

/// How the report shows a call.
fn describe_call(call: &Call) -> String {
    match call {
        Call::SetHeaderRoute { route, .. } => format!("SetHeaderRoute({})", route.name),
        Call::SetMirrorRoute { route, .. } => format!("SetMirrorRoute({})", route.name),
        Call::UpdateHash {
            canary_hash,
            stable_hash,
            ..
        } => format!("UpdateHash(canary={canary_hash}, stable={stable_hash})"),
        Call::SetWeight { desired_weight, .. } | Call::VerifyWeight { desired_weight, .. } => {
            format!("{}({desired_weight})", call.name())
        }
        _ => format!("{}()", call.name()),
    }
}

/// Plays the scenario and returns the report.
pub async fn run(scenario: &Scenario, output: Output) -> Result<String, SimulateError> {
    let refused = controller::refusals(&scenario.rollout, scenario.controller);
    if !refused.is_empty() {
        return Err(SimulateError::Refused {
            version: scenario.controller,
            refusals: refused,
        });
    }
    let cluster = InMemoryCluster::new();
    cluster
        .apply(
            scenario.objects.iter().cloned(),
            &scenario.rollout.metadata.namespace,
        )
        .map_err(|e| SimulateError::Manifest {
            file: "objects".into(),
            message: e.to_string(),
        })?;
    let router = IstioRouter::new(cluster, &scenario.plugin_name);
    let rollout = &scenario.rollout;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "Simulating rollout {} with plugin configuration \"{}\"",
        rollout.key(),
        scenario.plugin_name
    );
    for phase in phases(rollout) {
        let before = router.cluster().snapshot();
        let writes_before = router.cluster().writes();
        let mut calls = Vec::new();
        let step_calls = [
            phase
                .remove_managed_routes
                .then(|| Call::RemoveManagedRoutes {
                    rollout: rollout.clone(),
                }),
            phase
                .step
                .as_ref()
                .and_then(|s| s.set_header_route.clone())
                .map(|route| Call::SetHeaderRoute {
                    rollout: rollout.clone(),
                    route,
                }),
            phase
                .step
                .as_ref()
                .and_then(|s| s.set_mirror_route.clone())
                .map(|route| Call::SetMirrorRoute {
                    rollout: rollout.clone(),
                    route,
                }),
            Some(Call::UpdateHash {
                rollout: rollout.clone(),
                canary_hash: phase.canary_hash.clone(),
                stable_hash: phase.stable_hash.clone(),
                additional: Vec::new(),
            }),
            Some(Call::SetWeight {
                rollout: rollout.clone(),
                desired_weight: phase.weight,
                additional: Vec::new(),
            }),
            Some(Call::VerifyWeight {
                rollout: rollout.clone(),
                desired_weight: phase.weight,
                additional: Vec::new(),
            }),
        ];
        for call in step_calls.into_iter().flatten() {
            let label = describe_call(&call);
            let name = call.name();
            let outcome = dispatch(&router, call).await;
            if !outcome.error().is_empty() {
                return Err(SimulateError::Call {
                    step: phase.label.clone(),
                    call: name,
                    message: outcome.error().to_string(),
                });
            }
            calls.push(match outcome {
                Outcome::Verified(Ok(verified)) => format!("{label} = {verified:?}"),
                _ => label,
            });
        }
        if output == Output::Steps {
            let after = router.cluster().snapshot();
            let writes = router.cluster().writes() - writes_before;
            let _ = writeln!(
                report,
                "\n== {} ({} write{})",
                phase.label,
                writes,
                if writes == 1 { "" } else { "s" }
            );
            for call in &calls {
                let _ = writeln!(report, "   {call}");
            }
            report.push_str(&diff_objects(&before, &after));
        }
    }
    if output == Output::Yaml {
        for object in router.cluster().snapshot().values() {
            report.push_str("---\n");
            report.push_str(&to_yaml(&without_server_fields(object)));
        }
    } else {
        let _ = writeln!(report, "\nRollout {} fully promoted.", rollout.key());
    }
    Ok(report)
}

fn without_server_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.shift_remove("resourceVersion");
    }
    object
}

fn to_yaml(value: &Value) -> String {
    crate::yaml::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// A unified diff of every object that changed between two snapshots.
fn diff_objects(
    before: &BTreeMap<(String, String, String), Value>,
    after: &BTreeMap<(String, String, String), Value>,
) -> String {
    let mut out = String::new();
    for (key, new) in after {
        let old = before.get(key);
        if old == Some(new) {
            continue;
        }
        let old_text = old
            .map(|o| to_yaml(&without_server_fields(o)))
            .unwrap_or_default();
        let new_text = to_yaml(&without_server_fields(new));
        let (kind, namespace, name) = key;
        let _ = writeln!(out, "   {kind} {namespace}/{name}:");
        let diff = TextDiff::from_lines(&old_text, &new_text);
        for hunk in diff.unified_diff().context_radius(2).iter_hunks() {
            for line in hunk.to_string().lines() {
                let _ = writeln!(out, "     {line}");
            }
        }
    }
    out
}
