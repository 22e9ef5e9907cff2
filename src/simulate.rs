//! `simulate`: plays a Rollout's canary from start to full promotion against
//! an in-memory cluster, in the order the controller makes its calls
//! (see "Call order" in docs/behaviour.md), and reports every call and
//! every route or subset it changed. `validate` plays the same calls and
//! collects every failure instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::cluster::InMemoryCluster;
use crate::controller::{self, Refusal, Version};
use crate::istio::{IstioError, IstioRouter};
use crate::model::{CanaryStep, Rollout, SetHeaderRoute, SetMirrorRoute};
use crate::router::{TrafficRouter, Verification};
use crate::validate::{self, Manifests, Severity};

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

/// A Rollout and the objects the cluster starts with: only those the
/// Rollout's configuration names (its VirtualServices, its DestinationRule
/// and its ReplicaSets), whatever else the manifests hold.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub rollout: Rollout,
    pub objects: Vec<Value>,
    pub plugin_name: String,
    /// The controller release whose validation the Rollout must pass.
    pub controller: Version,
}

impl Scenario {
    /// Reads manifests: `rollout` holds exactly one Rollout (and may hold
    /// other objects); each of `objects` (a file, a directory or `-`) holds
    /// VirtualServices, DestinationRules, ReplicaSets, Services.
    pub fn load(
        rollout_file: &Path,
        object_files: &[PathBuf],
        plugin_name: Option<&str>,
    ) -> Result<Self, SimulateError> {
        let (manifests, problems) = Manifests::read(&[rollout_file.to_path_buf()], object_files);
        if let Some(problem) = problems.first() {
            return Err(manifest_error(problem));
        }
        Self::from_manifests(&manifests, plugin_name)
    }

    /// The embedded default example.
    pub fn embedded(plugin_name: Option<&str>) -> Result<Self, SimulateError> {
        let (file, text) = EMBEDDED_EXAMPLE;
        Self::from_texts(&[(file.to_string(), text.to_string())], plugin_name)
    }

    /// Reads manifests given as `(file name, text)` pairs, as [`Self::load`]
    /// does after reading the files; the first holds the Rollout.
    pub fn from_texts(
        files: &[(String, String)],
        plugin_name: Option<&str>,
    ) -> Result<Self, SimulateError> {
        let inputs = files
            .iter()
            .enumerate()
            .map(|(index, (name, text))| validate::Input {
                name: name.clone(),
                text: text.clone(),
                holds_rollouts: index == 0,
            })
            .collect();
        Self::from_manifests(&Manifests::index(inputs), plugin_name)
    }

    /// The one Rollout of `manifests`; the first error found in reading,
    /// parsing or configuring it.
    pub fn from_manifests(
        manifests: &Manifests,
        plugin_name: Option<&str>,
    ) -> Result<Self, SimulateError> {
        let first_error = |problems: &[validate::Problem]| {
            problems
                .iter()
                .find(|p| p.severity == Severity::Error)
                .map(manifest_error)
        };
        if let Some(error) = first_error(manifests.problems()) {
            return Err(error);
        }
        let rollouts = manifests.rollouts();
        if let Some(&second) = rollouts.get(1) {
            let (file, line) = manifests.position(second);
            return Err(SimulateError::Manifest {
                file: format!("{file}:{line}"),
                message: "a second Rollout; simulate plays one".into(),
            });
        }
        let Some(&rollout) = rollouts.first() else {
            return Err(SimulateError::Manifest {
                file: manifests.rollout_files(),
                message: "no Rollout found".into(),
            });
        };
        let options = validate::Options {
            plugin_name: plugin_name.map(str::to_string),
            controller: controller::LATEST_CHECKED,
        };
        let prepared = validate::prepare(manifests, rollout, &options);
        if let Some(error) = first_error(&prepared.problems) {
            return Err(error);
        }
        prepared.scenario.ok_or_else(|| SimulateError::Manifest {
            file: manifests.rollout_files(),
            message: "the Rollout cannot be played".into(),
        })
    }
}

fn manifest_error(problem: &validate::Problem) -> SimulateError {
    SimulateError::Manifest {
        file: problem.location(),
        message: problem.what(),
    }
}

/// What `simulate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Per step: the calls and every changed route or subset, whole.
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

/// A step in a reviewer's words: `setWeight 20`, `pause 10m`,
/// `pause (until promoted)`, `setHeaderRoute testers: remove the route`.
fn describe(step: &CanaryStep) -> String {
    let mut parts = Vec::new();
    if let Some(w) = step.set_weight {
        parts.push(format!("setWeight {w}"));
    }
    if let Some(r) = &step.set_header_route {
        parts.push(if r.matches.is_empty() {
            format!("setHeaderRoute {}: remove the route", r.name)
        } else {
            format!("setHeaderRoute {}", r.name)
        });
    }
    if let Some(r) = &step.set_mirror_route {
        parts.push(if r.matches.is_empty() {
            format!("setMirrorRoute {}: remove the route", r.name)
        } else {
            format!("setMirrorRoute {}", r.name)
        });
    }
    if step.set_canary_scale.is_some() {
        parts.push("setCanaryScale".into());
    }
    if let Some(pause) = &step.pause {
        parts.push(describe_pause(pause));
    }
    if parts.is_empty() {
        parts.push("(no traffic change)".into());
    }
    parts.join(", ")
}

/// `pause 10m`, `pause 30s`, or `pause (until promoted)` without a duration.
fn describe_pause(pause: &Value) -> String {
    match pause.get("duration") {
        None | Some(Value::Null) => "pause (until promoted)".into(),
        Some(Value::Number(n)) => format!("pause {n}s"),
        Some(Value::String(text)) if text.parse::<i64>().is_ok() => format!("pause {text}s"),
        Some(Value::String(text)) => format!("pause {text}"),
        Some(other) => format!("pause {other}"),
    }
}

/// One call of a phase, with the arguments the controller would send.
enum PlannedCall {
    RemoveManagedRoutes,
    SetHeaderRoute(SetHeaderRoute),
    SetMirrorRoute(SetMirrorRoute),
    UpdateHash { canary: String, stable: String },
    SetWeight(i32),
    VerifyWeight(i32),
}

impl PlannedCall {
    fn name(&self) -> &'static str {
        match self {
            PlannedCall::RemoveManagedRoutes => "RemoveManagedRoutes",
            PlannedCall::SetHeaderRoute(_) => "SetHeaderRoute",
            PlannedCall::SetMirrorRoute(_) => "SetMirrorRoute",
            PlannedCall::UpdateHash { .. } => "UpdateHash",
            PlannedCall::SetWeight(_) => "SetWeight",
            PlannedCall::VerifyWeight(_) => "VerifyWeight",
        }
    }

    /// How the report shows the call.
    fn label(&self) -> String {
        match self {
            PlannedCall::SetHeaderRoute(route) if route.matches.is_empty() => {
                format!(
                    "SetHeaderRoute({}, no match: removes the route)",
                    route.name
                )
            }
            PlannedCall::SetHeaderRoute(route) => format!("SetHeaderRoute({})", route.name),
            PlannedCall::SetMirrorRoute(route) if route.matches.is_empty() => {
                format!(
                    "SetMirrorRoute({}, no match: removes the route)",
                    route.name
                )
            }
            PlannedCall::SetMirrorRoute(route) => format!("SetMirrorRoute({})", route.name),
            PlannedCall::UpdateHash { canary, stable } => {
                format!("UpdateHash(canary={canary}, stable={stable})")
            }
            PlannedCall::SetWeight(w) | PlannedCall::VerifyWeight(w) => {
                format!("{}({w})", self.name())
            }
            PlannedCall::RemoveManagedRoutes => "RemoveManagedRoutes()".into(),
        }
    }

    async fn send(
        &self,
        router: &IstioRouter<std::sync::Arc<InMemoryCluster>>,
        rollout: &Rollout,
    ) -> Result<Option<Verification>, IstioError> {
        match self {
            PlannedCall::RemoveManagedRoutes => router.remove_managed_routes(rollout).await?,
            PlannedCall::SetHeaderRoute(route) => router.set_header_route(rollout, route).await?,
            PlannedCall::SetMirrorRoute(route) => router.set_mirror_route(rollout, route).await?,
            PlannedCall::UpdateHash { canary, stable } => {
                router.update_hash(rollout, canary, stable, &[]).await?;
            }
            PlannedCall::SetWeight(weight) => router.set_weight(rollout, *weight, &[]).await?,
            PlannedCall::VerifyWeight(weight) => {
                return Ok(Some(router.verify_weight(rollout, *weight, &[]).await?));
            }
        }
        Ok(None)
    }
}

fn planned_calls(phase: &Phase) -> Vec<PlannedCall> {
    let step = phase.step.as_ref();
    let mut calls = Vec::new();
    if phase.remove_managed_routes {
        calls.push(PlannedCall::RemoveManagedRoutes);
    }
    if let Some(route) = step.and_then(|s| s.set_header_route.clone()) {
        calls.push(PlannedCall::SetHeaderRoute(route));
    }
    if let Some(route) = step.and_then(|s| s.set_mirror_route.clone()) {
        calls.push(PlannedCall::SetMirrorRoute(route));
    }
    calls.push(PlannedCall::UpdateHash {
        canary: phase.canary_hash.clone(),
        stable: phase.stable_hash.clone(),
    });
    calls.push(PlannedCall::SetWeight(phase.weight));
    calls.push(PlannedCall::VerifyWeight(phase.weight));
    calls
}

/// A call that failed while playing.
#[derive(Debug)]
pub struct Failure {
    /// The phase, `step 2/5: setHeaderRoute testers`.
    pub phase: String,
    pub call: &'static str,
    pub error: IstioError,
}

/// What playing a scenario produced.
pub struct Played {
    /// The report of each phase (calls and changes), when asked for.
    pub report: String,
    pub failures: Vec<Failure>,
    pub cluster: std::sync::Arc<InMemoryCluster>,
}

/// Plays every phase of `scenario` against an in-memory cluster holding its
/// objects. With `keep_going`, a failed call is recorded and the play goes
/// on (`validate`); without, it stops at the first failure (`simulate`).
pub async fn play(scenario: &Scenario, keep_going: bool, report_steps: bool) -> Played {
    let cluster = std::sync::Arc::new(InMemoryCluster::new());
    // Every object has kind and metadata.name (checked when indexed).
    let _ = cluster.apply(
        scenario.objects.iter().cloned(),
        &scenario.rollout.metadata.namespace,
    );
    let router = IstioRouter::new(cluster.clone(), &scenario.plugin_name);
    let rollout = &scenario.rollout;
    let mut report = String::new();
    let mut failures = Vec::new();
    'phases: for phase in phases(rollout) {
        let before = report_steps.then(|| cluster.snapshot());
        let writes_before = cluster.writes();
        let mut calls = Vec::new();
        for call in planned_calls(&phase) {
            match call.send(&router, rollout).await {
                Ok(Some(verified)) => calls.push(format!("{} = {verified:?}", call.label())),
                Ok(None) => calls.push(call.label()),
                Err(error) => {
                    failures.push(Failure {
                        phase: phase.label.clone(),
                        call: call.name(),
                        error,
                    });
                    if !keep_going {
                        break 'phases;
                    }
                    calls.push(format!("{} failed", call.label()));
                }
            }
        }
        if let Some(before) = before {
            let writes = cluster.writes() - writes_before;
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
            report.push_str(&diff_objects(&before, &cluster.snapshot()));
        }
    }
    Played {
        report,
        failures,
        cluster,
    }
}

/// Plays the scenario and returns the report: with [`Output::Steps`] the
/// calls and changes of every phase, with [`Output::Yaml`] only the final
/// objects (what a pipe wants; say what is played on stderr).
pub async fn run(scenario: &Scenario, output: Output) -> Result<String, SimulateError> {
    let refused = controller::refusals(&scenario.rollout, scenario.controller);
    if !refused.is_empty() {
        return Err(SimulateError::Refused {
            version: scenario.controller,
            refusals: refused,
        });
    }
    let played = play(scenario, false, output == Output::Steps).await;
    if let Some(failure) = played.failures.into_iter().next() {
        return Err(SimulateError::Call {
            step: failure.phase,
            call: failure.call,
            message: failure.error.to_string(),
        });
    }
    let rollout = &scenario.rollout;
    let mut report = String::new();
    match output {
        Output::Yaml => {
            for object in played.cluster.snapshot().values() {
                report.push_str("---\n");
                report.push_str(&to_yaml(&without_server_fields(object)));
            }
        }
        Output::Steps => {
            let _ = writeln!(report, "{}", banner(scenario));
            report.push_str(&played.report);
            let _ = writeln!(report, "\nRollout {} fully promoted.", rollout.key());
        }
    }
    Ok(report)
}

/// The first line of a simulation's report.
pub fn banner(scenario: &Scenario) -> String {
    format!(
        "Simulating rollout {} with plugin configuration \"{}\"",
        scenario.rollout.key(),
        scenario.plugin_name
    )
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

/// The lists whose items `simulate` shows whole: `(field, what an item is)`.
const ITEM_LISTS: [(&str, &str); 4] = [
    ("http", "http route"),
    ("tls", "tls route"),
    ("tcp", "tcp route"),
    ("subsets", "subset"),
];

/// Every changed route or subset between two snapshots, each shown whole
/// with its changed lines marked, so a reader sees which destination or
/// subset changed; added and removed ones are labelled so. Anything else
/// that changed in an object is shown as a diff of the object without
/// those lists.
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
        let (kind, namespace, name) = key;
        let _ = writeln!(out, "   {kind} {namespace}/{name}:");
        let old = old.map(without_server_fields).unwrap_or(Value::Null);
        let new = without_server_fields(new);
        for (field, what) in ITEM_LISTS {
            let items = |object: &Value| -> Vec<Value> {
                object
                    .pointer(&format!("/spec/{field}"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            diff_items(&mut out, field, what, &items(&old), &items(&new));
        }
        let rest = |object: &Value| {
            let mut object = object.clone();
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                for (field, _) in ITEM_LISTS {
                    spec.shift_remove(field);
                }
            }
            object
        };
        let (old_rest, new_rest) = (rest(&old), rest(&new));
        if old_rest != new_rest {
            let old_text = if old_rest.is_null() {
                String::new()
            } else {
                to_yaml(&old_rest)
            };
            let _ = writeln!(out, "     other fields:");
            marked_lines(&mut out, &old_text, &to_yaml(&new_rest), true);
        }
    }
    out
}

/// `name` of a route or subset, else its position.
fn item_name(item: &Value, index: usize) -> String {
    item.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("#{index}"))
}

fn diff_items(out: &mut String, field: &str, what: &str, old: &[Value], new: &[Value]) {
    let names = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| item_name(item, i))
            .collect()
    };
    let (old_names, new_names) = (names(old), names(new));
    for (index, item) in new.iter().enumerate() {
        let name = &new_names[index];
        match old_names.iter().position(|n| n == name) {
            None => {
                let _ = writeln!(out, "     added {what} {name} (spec.{field}[{index}]):");
                marked_lines(out, "", &to_yaml(item), false);
            }
            Some(was) if old[was] != *item => {
                let moved = if was == index {
                    String::new()
                } else {
                    format!(", was spec.{field}[{was}]")
                };
                let _ = writeln!(out, "     {what} {name} (spec.{field}[{index}]{moved}):");
                marked_lines(out, &to_yaml(&old[was]), &to_yaml(item), false);
            }
            Some(was) if was != index => {
                let _ = writeln!(
                    out,
                    "     {what} {name} moved: spec.{field}[{was}] -> spec.{field}[{index}]"
                );
            }
            Some(_) => {}
        }
    }
    for (index, item) in old.iter().enumerate() {
        if !new_names.contains(&old_names[index]) {
            let _ = writeln!(
                out,
                "     removed {what} {} (was spec.{field}[{index}]):",
                old_names[index]
            );
            marked_lines(out, &to_yaml(item), "", false);
        }
    }
}

/// Every line of the new text (or, for a removal, of the old), unchanged
/// lines marked ` `, removed `-`, added `+`. `changes_only` leaves
/// unchanged lines out.
fn marked_lines(out: &mut String, old: &str, new: &str, changes_only: bool) {
    let diff = TextDiff::from_lines(old, new);
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Equal if changes_only => continue,
            ChangeTag::Equal => ' ',
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
        };
        let _ = writeln!(
            out,
            "       {sign} {}",
            change.value().trim_end_matches('\n')
        );
    }
}
