//! The scenario format: one YAML file per scenario (documented in
//! tests/e2e/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    pub name: String,
    /// What the scenario shows (for readers of the file).
    #[serde(default, rename = "description")]
    _description: String,
    /// Runs alone (it disturbs what other scenarios share, e.g. the plugin
    /// process).
    #[serde(default)]
    pub exclusive: bool,
    /// Objects present before the first step, as one YAML text (documents
    /// separated by `---`); `$(namespace)` is the scenario's namespace.
    pub manifests: String,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    /// Only on controller versions matching this (`>=1.10`, `<1.10`, `1.9`).
    #[serde(default)]
    pub versions: Option<String>,
    #[serde(default, rename = "do", deserialize_with = "action")]
    pub action: Option<Action>,
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Variables to remember once the expectations hold:
    /// `name: {object: Kind/name, field: path}`.
    #[serde(default)]
    pub save: BTreeMap<String, Source>,
    /// Seconds the expectations may take to hold (default 60).
    #[serde(default)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Action {
    /// Server-side apply of a YAML text (as a user's `kubectl apply`).
    Apply(String),
    /// `kubectl argo-rollouts set image ROLLOUT CONTAINER=IMAGE`.
    SetImage {
        rollout: String,
        container: String,
        image: String,
    },
    /// `kubectl argo-rollouts promote ROLLOUT [--full]`.
    Promote {
        rollout: String,
        #[serde(default)]
        full: bool,
    },
    /// `kubectl argo-rollouts abort ROLLOUT`.
    Abort { rollout: String },
    /// `kubectl argo-rollouts retry rollout ROLLOUT`.
    Retry { rollout: String },
    /// An edit by someone else (a GitOps sync, a person): a JSON merge
    /// patch of one object.
    Patch {
        object: String,
        #[serde(default)]
        namespace: Option<String>,
        merge: Value,
    },
    /// SIGKILL the plugin process the controller started.
    KillPlugin {},
    /// Let this many seconds pass (reconciles happen meanwhile).
    Wait(u64),
    /// Poke the Rollout `reconciles` times (an annotation change each) and
    /// count the plugin's API requests meanwhile: must be zero.
    SteadyState { rollout: String, reconciles: u32 },
    /// Several actions at the same time (e.g. one promote per Rollout);
    /// done when all are, failed when any failed.
    Concurrently(Vec<Action>),
    /// Stop kube-apiserver, keep it down `down` seconds, start it again on
    /// the same etcd. `meanwhile`: a JSON merge patch written straight
    /// into the object's record in etcd during the outage (a write through
    /// another API server of the cluster).
    RestartApiServer {
        down: u64,
        #[serde(default)]
        meanwhile: Option<StoredEdit>,
        /// Also compact etcd's history during the outage (after the edit):
        /// the restarted API server cannot replay what a watch missed, so
        /// every watch from before the outage ends with 410 Gone.
        #[serde(default)]
        compact: bool,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoredEdit {
    /// `Kind/name` of a custom resource in the scenario's namespace.
    pub object: String,
    pub merge: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    /// `Kind/name`; `Kind.group/name` where a kind is ambiguous.
    pub object: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub versions: Option<String>,
    /// `true`: the object must not exist.
    #[serde(default)]
    pub absent: bool,
    /// path → matcher (see expect.rs).
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
    /// An Event about the object whose message contains this text (and
    /// whose reason is `reason`, when given).
    #[serde(default)]
    pub event: Option<EventMatch>,
    /// No Event about the object matches this (e.g. no `TrafficRoutingError`
    /// at all: `{reason: TrafficRoutingError}`).
    #[serde(default)]
    pub no_event: Option<EventMatch>,
    /// The plugin's requests about this object in the API server's audit
    /// log (since the cluster started): at least `atLeast` with this verb
    /// and response code.
    #[serde(default)]
    pub requests: Option<RequestCount>,
    /// Every field of the object outside these paths (`[*]`: every element
    /// of a list) equals its document in `manifests`: `spec`, and
    /// `metadata.labels` and `metadata.annotations` as far as the document
    /// states them.
    #[serde(default)]
    pub unchanged: Option<Unchanged>,
    /// Field manager → matcher of the fields it owns (`metadata.managedFields`,
    /// its `fieldsV1` merged over operations), e.g. exactly
    /// `{"f:spec": {"f:http": {}}}`, or `{$absent: true}`: owns nothing.
    #[serde(default)]
    pub owners: BTreeMap<String, Value>,
    /// Argo CD's diff of the live object against its manifest in the
    /// scenario's `manifests`, normalized by Argo CD's own
    /// managedFieldsManagers code with these managers.
    #[serde(default)]
    pub argocd: Option<ArgoCdMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoCdMatch {
    /// `ignoreDifferences[].managedFieldsManagers`.
    pub managers: Vec<String>,
    /// Whether the specs then compare equal (Argo CD: Synced).
    pub in_sync: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestCount {
    /// The audit verb (`get`, `update`, `list`, `watch`, …).
    pub verb: String,
    /// The response code (409: conflict).
    pub code: u16,
    #[serde(default)]
    pub at_least: Option<usize>,
    #[serde(default)]
    pub at_most: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Unchanged {
    /// Paths the plugin may change, e.g. `spec.http[*].route[*].weight`.
    #[serde(default)]
    pub except: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventMatch {
    #[serde(default)]
    pub reason: Option<String>,
    /// Text the message contains (empty: any message).
    #[serde(default)]
    pub contains: String,
    /// The reporting component (`reportingComponent`, else
    /// `source.component`) the Event must come from.
    #[serde(default)]
    pub from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    pub object: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub field: String,
}

/// `do: {setImage: {...}}`: an action is a map with one key (serde_yaml
/// would want a YAML tag; JSON's externally tagged form reads naturally).
fn action<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Action>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    serde_json::from_value(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading scenario directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut scenarios = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let mut scenario: Scenario =
            serde_yaml::from_str(&text).with_context(|| format!("scenario {}", file.display()))?;
        for step in &scenario.steps {
            for range in step
                .versions
                .iter()
                .chain(step.expect.iter().filter_map(|e| e.versions.as_ref()))
            {
                VersionRange::parse(range).with_context(|| {
                    format!("scenario {}: step {:?}", file.display(), step.name)
                })?;
            }
        }
        scenario.file = file;
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

/// `>=1.10`, `<1.10`, `=1.9.3`, `1.9` (a prefix).
pub struct VersionRange {
    op: String,
    bound: Vec<u64>,
}

impl VersionRange {
    pub fn parse(text: &str) -> anyhow::Result<VersionRange> {
        let text = text.trim();
        let split = text
            .find(|c: char| c.is_ascii_digit() || c == 'v')
            .unwrap_or(text.len());
        let (op, version) = text.split_at(split);
        let op = op.trim().to_string();
        if !["", "=", ">=", "<=", ">", "<"].contains(&op.as_str()) {
            bail!("version range {text:?}: unknown operator {op:?}");
        }
        Ok(VersionRange {
            op,
            bound: numbers(version).with_context(|| format!("version range {text:?}"))?,
        })
    }

    pub fn matches(&self, version: &str) -> bool {
        let Ok(have) = numbers(version) else {
            return false;
        };
        let have_cut: Vec<u64> = have.iter().take(self.bound.len()).copied().collect();
        let ordering = have_cut.cmp(&self.bound);
        match self.op.as_str() {
            "" | "=" => ordering.is_eq(),
            ">=" => ordering.is_ge(),
            "<=" => ordering.is_le(),
            ">" => ordering.is_gt(),
            "<" => ordering.is_lt(),
            _ => false,
        }
    }
}

fn numbers(version: &str) -> anyhow::Result<Vec<u64>> {
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|part| {
            part.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("{version:?} is not a version"))
        })
        .collect()
}

pub fn applies(range: &Option<String>, version: &str) -> bool {
    match range {
        None => true,
        Some(range) => VersionRange::parse(range).is_ok_and(|r| r.matches(version)),
    }
}
