//! Runs scenarios against one controller: each in a namespace of its own,
//! each step an action a user takes, then expectations polled until they
//! hold (or the step's timeout).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use kube::api::Patch;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::controller::Controller;
use crate::expect::{check, lookup, remove_path, substitute, substitute_text};
use crate::kube_objects::Objects;
use crate::scenario::{Action, EventMatch, Expectation, Scenario, Step, applies};

/// Field manager of the user's own edits (kubectl's server-side apply name).
const USER_MANAGER: &str = "kubectl";
/// The plugin's `User-Agent` prefix, which tells its requests from the
/// controller's in the audit log (both run as the controller's
/// ServiceAccount).
const PLUGIN_USER_AGENT: &str = "rollouts-plugin-trafficrouter-istio/";

pub struct Outcome {
    pub name: String,
    pub failure: Option<String>,
    pub notes: Vec<String>,
}

struct Context<'a> {
    cluster: &'a Cluster,
    objects: Objects,
    controller: &'a Controller,
    argocd_normalize: &'a std::path::Path,
}

pub async fn run_all(
    cluster: &Cluster,
    controller: &Controller,
    scenarios: &[Scenario],
    argocd_normalize: &std::path::Path,
) -> Vec<Outcome> {
    let context = Context {
        cluster,
        objects: Objects::new(cluster.admin_client()),
        controller,
        argocd_normalize,
    };
    let shared = scenarios.iter().filter(|s| !s.exclusive);
    let mut outcomes = join_all(shared.map(|s| run_one(&context, s))).await;
    for scenario in scenarios.iter().filter(|s| s.exclusive) {
        outcomes.push(run_one(&context, scenario).await);
    }
    outcomes
}

async fn run_one(context: &Context<'_>, scenario: &Scenario) -> Outcome {
    let mut notes = Vec::new();
    let failure = run_steps(context, scenario, &mut notes).await.err();
    Outcome {
        name: scenario.name.clone(),
        failure,
        notes,
    }
}

fn namespace_for(scenario: &str, version: &str) -> String {
    let version = version.trim_start_matches('v').replace('.', "-");
    let mut name = format!("{scenario}-v{version}");
    name.truncate(63);
    name
}

async fn run_steps(
    context: &Context<'_>,
    scenario: &Scenario,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let version = &context.controller.version;
    let namespace = namespace_for(&scenario.name, version);
    eprintln!(
        "e2e: {} [argo-rollouts {version}] in namespace {namespace} ({})",
        scenario.name,
        scenario.file.display()
    );
    let mut vars = HashMap::from([("namespace".to_string(), namespace.clone())]);
    let manifests = substitute_text(&scenario.manifests, &vars);
    context
        .objects
        .apply_text(&manifests, Some(&namespace), USER_MANAGER)
        .await
        .map_err(|e| format!("manifests: {e:#}"))?;

    for (index, step) in scenario.steps.iter().enumerate() {
        if !applies(&step.versions, version) {
            continue;
        }
        let label = format!("step {} ({})", index + 1, step.name);
        if let Some(action) = &step.action {
            act(context, &namespace, action, &vars, notes)
                .await
                .map_err(|e| format!("{label}: {e}"))?;
        }
        wait_for(context, &namespace, step, &vars, version, &manifests)
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        for (name, source) in &step.save {
            let (kind, object) = split_object(&substitute_text(&source.object, &vars))?;
            let ns = source
                .namespace
                .as_ref()
                .map(|n| substitute_text(n, &vars))
                .unwrap_or_else(|| namespace.clone());
            let value = context
                .objects
                .get(&kind, &ns, &object)
                .await
                .map_err(|e| format!("{label}: save {name}: {e:#}"))?
                .and_then(|o| lookup(&o, &source.field).ok().flatten().cloned());
            let text = match value {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => {
                    return Err(format!(
                        "{label}: save {name}: {} has no {}",
                        source.object, source.field
                    ));
                }
            };
            vars.insert(name.clone(), text);
        }
    }
    let refused = refused_plugin_requests(context, &namespace);
    if !refused.is_empty() {
        return Err(format!(
            "the API server refused (403) requests of the plugin: {}",
            refused.join(", ")
        ));
    }
    Ok(())
}

async fn act(
    context: &Context<'_>,
    namespace: &str,
    action: &Action,
    vars: &HashMap<String, String>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let objects = &context.objects;
    match action {
        Action::Apply(text) => objects
            .apply_text(&substitute_text(text, vars), Some(namespace), USER_MANAGER)
            .await
            .map(|_| ())
            .map_err(|e| format!("apply: {e:#}")),
        Action::SetImage {
            rollout,
            container,
            image,
        } => {
            kubectl_argo_rollouts(
                context.controller,
                namespace,
                &["set", "image", rollout, &format!("{container}={image}")],
            )
            .await
        }
        Action::Promote { rollout, full } => {
            let mut args = vec!["promote", rollout.as_str()];
            if *full {
                args.push("--full");
            }
            kubectl_argo_rollouts(context.controller, namespace, &args).await
        }
        Action::Abort { rollout } => {
            kubectl_argo_rollouts(context.controller, namespace, &["abort", rollout]).await
        }
        Action::Retry { rollout } => {
            kubectl_argo_rollouts(
                context.controller,
                namespace,
                &["retry", "rollout", rollout],
            )
            .await
        }
        Action::Patch {
            object,
            namespace: ns,
            merge,
        } => {
            let (kind, name) = split_object(&substitute_text(object, vars))?;
            let ns = ns
                .as_ref()
                .map(|n| substitute_text(n, vars))
                .unwrap_or_else(|| namespace.to_string());
            let patch = Patch::Merge(substitute(merge, vars));
            objects
                .patch(&kind, &ns, &name, &patch, "e2e-outside-edit")
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        }
        Action::KillPlugin {} => match context.controller.kill_plugin() {
            0 => Err("no plugin process is running to kill".to_string()),
            n => {
                notes.push(format!("killed {n} plugin process(es)"));
                Ok(())
            }
        },
        Action::Wait(seconds) => {
            tokio::time::sleep(Duration::from_secs(*seconds)).await;
            Ok(())
        }
        Action::SteadyState {
            rollout,
            reconciles,
        } => {
            let note = steady_state(context, namespace, rollout, *reconciles).await?;
            notes.push(note);
            Ok(())
        }
        Action::RestartApiServer {
            down,
            meanwhile,
            compact,
        } => {
            let outage = async {
                if let Some(edit) = meanwhile {
                    let key =
                        etcd_key(context, namespace, &substitute_text(&edit.object, vars)).await?;
                    let mut stored = context.cluster.etcd_get(&key).await?;
                    merge_patch(&mut stored, &substitute(&edit.merge, vars));
                    context.cluster.etcd_put(&key, &stored).await?;
                }
                if *compact {
                    context.cluster.compact_etcd().await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let started = Instant::now();
            let compacted = context
                .cluster
                .restart_apiserver(Duration::from_secs(*down), outage)
                .await
                .map_err(|e| format!("restarting kube-apiserver: {e:#}"))?;
            notes.push(format!(
                "kube-apiserver restarted, ready again after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            notes.extend(compacted);
            Ok(())
        }
        Action::Concurrently(actions) => {
            let runs = actions.iter().map(|action| async move {
                let mut notes = Vec::new();
                let result = Box::pin(act(context, namespace, action, vars, &mut notes)).await;
                (result, notes)
            });
            let mut failures = Vec::new();
            for (result, more) in join_all(runs).await {
                notes.extend(more);
                if let Err(why) = result {
                    failures.push(why);
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("; "))
            }
        }
    }
}

/// Where the API server keeps a custom resource in etcd.
async fn etcd_key(context: &Context<'_>, namespace: &str, object: &str) -> anyhow::Result<String> {
    let (kind, name) = split_object(object).map_err(anyhow::Error::msg)?;
    let (resource, _) = context.objects.resource(&kind).await?;
    Ok(format!(
        "/registry/{}/{}/{namespace}/{name}",
        resource.group, resource.plural
    ))
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// How long the tier waits, once a step's expectations hold, before the
/// next `kubectl argo-rollouts` command: a person does not promote within
/// milliseconds of a pause. (argo-rollouts v1.9.3 can lose a promote or an
/// abort sent while it is still writing the pause it just reached; the tier
/// saw that before it waited.)
const USER_PACE: Duration = Duration::from_secs(3);

/// `kubectl argo-rollouts …`, built from the controller's own module, run
/// as the cluster's admin user.
async fn kubectl_argo_rollouts(
    controller: &Controller,
    namespace: &str,
    args: &[&str],
) -> Result<(), String> {
    tokio::time::sleep(USER_PACE).await;
    let output = tokio::process::Command::new(&controller.kubectl_plugin)
        .arg(format!(
            "--kubeconfig={}",
            controller.admin_kubeconfig.display()
        ))
        .arg(format!("--namespace={namespace}"))
        .args(args)
        .output()
        .await
        .map_err(|e| format!("running kubectl-argo-rollouts: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kubectl argo-rollouts {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

async fn wait_for(
    context: &Context<'_>,
    namespace: &str,
    step: &Step,
    vars: &HashMap<String, String>,
    version: &str,
    manifests: &str,
) -> Result<(), String> {
    let limit = Duration::from_secs(step.timeout.unwrap_or(60));
    let deadline = Instant::now() + limit;
    loop {
        let mut failure = None;
        for expectation in step.expect.iter().filter(|e| applies(&e.versions, version)) {
            if let Err(why) = holds(context, namespace, expectation, vars, manifests).await {
                failure = Some(why);
                break;
            }
        }
        let Some(why) = failure else {
            return Ok(());
        };
        if Instant::now() > deadline {
            let status = rollout_summary(&context.objects, namespace).await;
            let plugin = last_plugin_failure(context.controller, namespace);
            return Err(format!(
                "not within {}s: {why}{status}{plugin}",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

async fn holds(
    context: &Context<'_>,
    namespace: &str,
    expectation: &Expectation,
    vars: &HashMap<String, String>,
    manifests: &str,
) -> Result<(), String> {
    let object = substitute_text(&expectation.object, vars);
    let (kind, name) = split_object(&object)?;
    let ns = expectation
        .namespace
        .as_ref()
        .map(|n| substitute_text(n, vars))
        .unwrap_or_else(|| namespace.to_string());
    let live = context
        .objects
        .get(&kind, &ns, &name)
        .await
        .map_err(|e| format!("{object}: {e:#}"))?;
    let live = match (live, expectation.absent) {
        (None, true) => return Ok(()),
        (Some(_), true) => return Err(format!("{object} exists; it must not")),
        (None, false) => return Err(format!("{object} does not exist")),
        (Some(live), false) => live,
    };
    if let Some(argocd) = &expectation.argocd {
        let desired = manifest_of(manifests, &kind, &name)
            .ok_or_else(|| format!("{object}: not in the scenario's manifests"))?;
        let diff = argocd_diff(context.argocd_normalize, &live, &desired, &argocd.managers)?;
        if diff["inSync"] != argocd.in_sync {
            return Err(format!(
                "{object}: Argo CD with managedFieldsManagers {:?}: want inSync {}, got {} (live spec {}, desired spec {}; managers: {})",
                argocd.managers,
                argocd.in_sync,
                diff["inSync"],
                diff["liveSpec"],
                diff["desiredSpec"],
                managers(&live)
            ));
        }
    }
    for (manager, matcher) in &expectation.owners {
        let found = owned_by(&live, manager);
        let matcher = substitute(matcher, vars);
        check(found.as_ref(), &matcher).map_err(|why| {
            format!(
                "{object}: fields owned by {manager}: want {matcher}, {why} (managers: {})",
                managers(&live)
            )
        })?;
    }
    for (path, matcher) in &expectation.fields {
        let path = substitute_text(path, vars);
        let matcher = substitute(matcher, vars);
        let found = lookup(&live, &path).map_err(|e| format!("{object}: {e}"))?;
        check(found, &matcher).map_err(|why| format!("{object} {path}: want {matcher}, {why}"))?;
    }
    if let Some(event) = &expectation.event {
        let events = context
            .objects
            .core_events(&ns)
            .await
            .map_err(|e| format!("events: {e:#}"))?;
        let wanted = substitute_text(&event.contains, vars);
        let matching = matching_events(&events, &name, event, vars);
        if matching.is_empty() {
            let about = matching_events_by_reason(&events, &name, event);
            // Say what there is about the object at all.
            let about = if about.is_empty() {
                events
                    .iter()
                    .filter(|e| e["involvedObject"]["name"] == name.as_str())
                    .collect()
            } else {
                about
            };
            return Err(format!(
                "{object}: no event containing {wanted:?} (events: {})",
                shown_events(&about)
            ));
        }
    }
    if let Some(event) = &expectation.no_event {
        let events = context
            .objects
            .core_events(&ns)
            .await
            .map_err(|e| format!("events: {e:#}"))?;
        let matching = matching_events(&events, &name, event, vars);
        if !matching.is_empty() {
            return Err(format!(
                "{object}: an event it must not have: {}",
                shown_events(&matching)
            ));
        }
    }
    if let Some(count) = &expectation.requests {
        let found = plugin_requests_about(&context.controller.audit_log, &kind, &ns, &name)
            .filter(|e| {
                e["verb"] == count.verb.as_str() && e["responseStatus"]["code"] == count.code
            })
            .count();
        if count.at_least.is_some_and(|n| found < n) || count.at_most.is_some_and(|n| found > n) {
            return Err(format!(
                "{object}: the audit log shows {found} {} request(s) of the plugin answered {}, want at least {:?}, at most {:?}",
                count.verb, count.code, count.at_least, count.at_most
            ));
        }
    }
    if let Some(unchanged) = &expectation.unchanged {
        let desired = manifest_of(manifests, &kind, &name)
            .ok_or_else(|| format!("{object}: not in the scenario's manifests"))?;
        let mut differences = Vec::new();
        for part in ["spec", "metadata.labels", "metadata.annotations"] {
            let mut want = lookup(&desired, part)
                .map_err(|e| format!("{object}: {e}"))?
                .cloned()
                .unwrap_or(Value::Null);
            let mut have = lookup(&live, part)
                .map_err(|e| format!("{object}: {e}"))?
                .cloned()
                .unwrap_or(Value::Null);
            if part != "spec" {
                // Only what the manifest states: others (the controller's
                // own annotations) may add their own.
                let stated: Vec<String> = want
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                if let Value::Object(map) = &mut have {
                    map.retain(|k, _| stated.contains(k));
                }
                if want.is_null() && have.as_object().is_some_and(|m| m.is_empty()) {
                    have = Value::Null;
                }
            }
            for path in &unchanged.except {
                let relative = path.strip_prefix(&format!("{part}.")).unwrap_or("");
                if !relative.is_empty() {
                    remove_path(&mut want, relative).map_err(|e| format!("{object}: {e}"))?;
                    remove_path(&mut have, relative).map_err(|e| format!("{object}: {e}"))?;
                }
            }
            if want != have {
                differences.push(format!("{part}: manifest {want}, live {have}"));
            }
        }
        if !differences.is_empty() {
            return Err(format!(
                "{object}: fields outside {:?} differ from the manifest: {}",
                unchanged.except,
                differences.join("; ")
            ));
        }
    }
    Ok(())
}

/// Events about `name` that match `event` (reason, reporter, text).
fn matching_events<'a>(
    events: &'a [Value],
    name: &str,
    event: &EventMatch,
    vars: &HashMap<String, String>,
) -> Vec<&'a Value> {
    let wanted = substitute_text(&event.contains, vars);
    matching_events_by_reason(events, name, event)
        .into_iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(&wanted)))
        .collect()
}

fn matching_events_by_reason<'a>(
    events: &'a [Value],
    name: &str,
    event: &EventMatch,
) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .filter(|e| {
            event
                .reason
                .as_ref()
                .is_none_or(|r| e["reason"] == r.as_str())
        })
        .filter(|e| event.from.as_ref().is_none_or(|from| reporter(e) == from))
        .collect()
}

fn shown_events(events: &[&Value]) -> String {
    if events.is_empty() {
        return "none".to_string();
    }
    events
        .iter()
        .map(|e| format!("{} from {}: {}", e["reason"], reporter(e), e["message"]))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The plugin's completed requests about one object, from the audit log.
fn plugin_requests_about(
    audit_log: &std::path::Path,
    kind: &str,
    namespace: &str,
    name: &str,
) -> impl Iterator<Item = Value> {
    let resource = format!("{}s", kind.to_lowercase());
    let (namespace, name) = (namespace.to_string(), name.to_string());
    read(audit_log)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(move |e| {
            e["stage"] == "ResponseComplete"
                && e["objectRef"]["resource"] == resource.as_str()
                && e["objectRef"]["namespace"] == namespace.as_str()
                && e["objectRef"]["name"] == name.as_str()
                && e["userAgent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(PLUGIN_USER_AGENT))
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// The document of `kind`/`name` in a scenario's manifests.
fn manifest_of(manifests: &str, kind: &str, name: &str) -> Option<Value> {
    crate::kube_objects::yaml_documents(manifests)
        .ok()?
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// Runs Argo CD's managedFieldsManagers normalization (tests/e2e/argocd).
fn argocd_diff(
    binary: &std::path::Path,
    live: &Value,
    desired: &Value,
    managers: &[String],
) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("argocd: {e}"))?;
    let live_file = dir.path().join("live.json");
    let desired_file = dir.path().join("desired.json");
    std::fs::write(&live_file, live.to_string()).map_err(|e| format!("argocd: {e}"))?;
    std::fs::write(&desired_file, desired.to_string()).map_err(|e| format!("argocd: {e}"))?;
    let output = std::process::Command::new(binary)
        .arg(&live_file)
        .arg(&desired_file)
        .args(managers)
        .output()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "argocd normalization failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("argocd output: {e}"))
}

/// Who reported an Event: `reportingComponent`, else `source.component`.
fn reporter(event: &Value) -> &str {
    event["reportingComponent"]
        .as_str()
        .filter(|c| !c.is_empty())
        .or_else(|| event["source"]["component"].as_str())
        .unwrap_or_default()
}

/// The fields `manager` owns in `object` (its `managedFields` entries for
/// the main resource, merged); `None` when it owns nothing.
fn owned_by(object: &Value, manager: &str) -> Option<Value> {
    let entries = object["metadata"]["managedFields"].as_array()?;
    let mut owned: Option<Value> = None;
    for entry in entries.iter().filter(|e| {
        e["manager"] == manager && e["subresource"].as_str().unwrap_or_default().is_empty()
    }) {
        let fields = entry["fieldsV1"].clone();
        owned = Some(match owned {
            None => fields,
            Some(mut merged) => {
                merge_fields(&mut merged, fields);
                merged
            }
        });
    }
    owned
}

fn merge_fields(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => merge_fields(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

/// `manager (operation): fields` of every managedFields entry, for a failure.
fn managers(object: &Value) -> String {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| format!("{} ({}): {}", e["manager"], e["operation"], e["fieldsV1"]))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| "none".to_string())
}

/// Requests of the plugin in `namespace` the API server refused as
/// forbidden (403), from the audit log: the RBAC of the stock controller
/// plus `plugin-manifest.yaml` must cover everything the plugin does.
fn refused_plugin_requests(context: &Context<'_>, namespace: &str) -> Vec<String> {
    read(&context.controller.audit_log)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| {
            e["stage"] == "ResponseComplete"
                && e["responseStatus"]["code"] == 403
                && e["objectRef"]["namespace"] == namespace
                && e["userAgent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(PLUGIN_USER_AGENT))
                // A restarting API server refuses everyone until its RBAC
                // caches are filled; that is no gap in the RBAC.
                && !e["stageTimestamp"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                    .is_some_and(|t| context.cluster.during_restart(t))
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect()
}

/// The plugin's last failed call for this namespace, from the controller's
/// log, to explain a failed wait.
fn last_plugin_failure(controller: &Controller, namespace: &str) -> String {
    controller
        .log_text()
        .lines()
        .rev()
        .find(|l| l.contains("call failed") && l.contains(&format!("rollout={namespace}/")))
        .and_then(|l| l.split_once("error=").map(|(_, e)| e.to_string()))
        .map(|e| {
            format!(
                " [last plugin error: {}]",
                e.chars().take(400).collect::<String>()
            )
        })
        .unwrap_or_default()
}

/// The Rollouts' phase and message, to explain a failed wait.
async fn rollout_summary(objects: &Objects, namespace: &str) -> String {
    let Ok(rollouts) = objects.list("Rollout", namespace).await else {
        return String::new();
    };
    rollouts
        .iter()
        .map(|r| {
            format!(
                " [Rollout {}: phase {}, step {}, message {}]",
                r["metadata"]["name"],
                r["status"]["phase"],
                r["status"]["currentStepIndex"],
                r["status"]["message"]
            )
        })
        .collect()
}

fn split_object(object: &str) -> Result<(String, String), String> {
    object
        .split_once('/')
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .ok_or_else(|| format!("{object:?} is not Kind/name"))
}

/// Pokes the Rollout and counts what the plugin asks of the API server
/// meanwhile (from the audit log).
async fn steady_state(
    context: &Context<'_>,
    namespace: &str,
    rollout: &str,
    reconciles: u32,
) -> Result<String, String> {
    let audit_before = read(&context.controller.audit_log).len();
    let log_before = context.controller.log_text().len();
    for poke in 0..reconciles {
        let patch =
            json!({"metadata": {"annotations": {"e2e.rollouts-plugin/poke": poke.to_string()}}});
        context
            .objects
            .patch(
                "Rollout",
                namespace,
                rollout,
                &Patch::Merge(patch),
                "e2e-poke",
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = context.controller.log_text();
    let seen = log[log_before.min(log.len())..]
        .lines()
        .filter(|l| l.contains("Reconciliation completed") && l.contains(namespace))
        .count();
    let audit = read(&context.controller.audit_log);
    let mut plugin_requests = Vec::new();
    let mut controller_requests = 0;
    for line in audit[audit_before.min(audit.len())..].lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["stage"] != "ResponseComplete"
            || event["verb"] == "watch"
            || event["objectRef"]["namespace"] != namespace
        {
            continue;
        }
        let agent = event["userAgent"].as_str().unwrap_or_default();
        if agent.starts_with(PLUGIN_USER_AGENT) {
            plugin_requests.push(format!("{} {}", event["verb"], event["requestURI"]));
        } else {
            controller_requests += 1;
        }
    }
    if seen < reconciles as usize {
        return Err(format!(
            "steady state: {reconciles} pokes but only {seen} reconciles of {namespace}/{rollout} in the controller's log"
        ));
    }
    if !plugin_requests.is_empty() {
        return Err(format!(
            "steady state: the plugin sent {} API requests over {seen} reconciles: {}",
            plugin_requests.len(),
            plugin_requests.join(", ")
        ));
    }
    Ok(format!(
        "steady state: {seen} reconciles, 0 plugin API requests ({controller_requests} by the controller)"
    ))
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
