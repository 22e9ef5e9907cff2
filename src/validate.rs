//! `validate`: checks a Rollout with its VirtualServices and
//! DestinationRules before they are deployed, offline, and reports every
//! problem at once, each naming the file, the object and the field.
//!
//! Errors are found by the code that runs in the plugin: what the Argo
//! Rollouts controller refuses ([`crate::controller::refusals`]), the
//! plugin's configuration ([`RouterConfig`]), and every call the Rollout's
//! steps make, played against an in-memory cluster by the router itself
//! ([`crate::simulate::play`]), collecting each failure instead of stopping
//! at the first. Warnings are for what is legal but almost certainly wrong;
//! they are this module's own checks.
//!
//! Reading is lazy: each input is indexed as soon as it is read; every
//! document is parsed once to index it (kind, namespace, name, file, line)
//! and dropped, and of the text only the documents a Rollout names are
//! kept, to be parsed again when they are checked. Memory follows the
//! largest single input and the objects the Rollout touches, not the size
//! of the whole input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::cluster::ClusterError;
use crate::controller::{self, Version};
use crate::istio::IstioError;
use crate::istio::config::{
    ConfigError, DEFAULT_PLUGIN_NAME, RouterConfig, virtual_service_location,
};
use crate::istio::core::CoreError;
use crate::model::Rollout;
use crate::simulate::{self, Scenario};
use crate::yaml::{self, DocumentSpan};

/// The largest manifest file read (a document is further bounded by
/// [`yaml::MAX_INPUT_BYTES`]).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// How bad a problem is: errors fail `validate` (exit 1) and stop
/// `simulate`; warnings fail only `validate --strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: String,
    /// The line of the object (or of the YAML error) in `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `Kind namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The field path in the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// `file:line` (or `file`).
    pub fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        }
    }

    /// `object: field: message`, as much of it as is known.
    pub fn what(&self) -> String {
        let mut text = String::new();
        for part in [&self.object, &self.field].into_iter().flatten() {
            text.push_str(part);
            text.push_str(": ");
        }
        text.push_str(&self.message);
        text
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location(), self.severity, self.what())
    }
}

/// One manifest input: a file, or standard input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The path as given (or `-` for standard input).
    pub name: String,
    pub text: String,
    /// Given with `--rollout`: its Rollouts are the ones checked.
    pub holds_rollouts: bool,
}

/// Reads `--rollout` and `--objects` paths: files, directories (every
/// `.yaml`, `.yml` and `.json` file below, in name order) and `-` for
/// standard input, handing each input to `sink` as soon as it is read:
/// `--rollout` inputs first, then `--objects`. A path that cannot be read
/// is a problem, not a stop.
fn read_each(
    rollouts: &[PathBuf],
    objects: &[PathBuf],
    sink: &mut dyn FnMut(Input),
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut stdin_read = false;
    let mut files = HashSet::new();
    for (paths, holds_rollouts) in [(rollouts, true), (objects, false)] {
        for path in paths {
            let mut reader = Reader {
                sink: &mut *sink,
                read: 0,
                problems: &mut problems,
                stdin_read: &mut stdin_read,
                files: &mut files,
                holds_rollouts,
            };
            reader.read(path, true);
        }
    }
    problems
}

struct Reader<'a> {
    sink: &'a mut dyn FnMut(Input),
    /// Inputs handed to `sink` so far.
    read: usize,
    problems: &'a mut Vec<Problem>,
    stdin_read: &'a mut bool,
    /// Files read so far, canonical: a file reached twice (given, and again
    /// through a directory) is read once.
    files: &'a mut HashSet<PathBuf>,
    holds_rollouts: bool,
}

impl Reader<'_> {
    fn push(&mut self, input: Input) {
        self.read += 1;
        (self.sink)(input);
    }

    fn problem(&mut self, path: &Path, message: String) {
        self.problems.push(Problem {
            severity: Severity::Error,
            file: path.display().to_string(),
            line: None,
            object: None,
            field: None,
            message,
        });
    }

    fn read(&mut self, path: &Path, named: bool) {
        if path.as_os_str() == "-" {
            if std::mem::replace(self.stdin_read, true) {
                return self.problem(path, "standard input is given twice".into());
            }
            let mut text = String::new();
            let limit = MAX_FILE_BYTES + 1;
            return match std::io::stdin().take(limit).read_to_string(&mut text) {
                Ok(_) if text.len() as u64 >= limit => self.problem(
                    path,
                    format!("standard input exceeds the limit of {MAX_FILE_BYTES} bytes"),
                ),
                Ok(_) => self.push(Input {
                    name: "-".into(),
                    text,
                    holds_rollouts: self.holds_rollouts,
                }),
                Err(e) => self.problem(path, format!("cannot read standard input: {e}")),
            };
        }
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(e) => return self.problem(path, format!("cannot read: {e}")),
        };
        if metadata.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => return self.problem(path, format!("cannot read the directory: {e}")),
            };
            entries.sort();
            let before = self.read;
            for entry in entries {
                let manifest = entry
                    .extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
                if entry.is_dir() || manifest {
                    self.read(&entry, false);
                }
            }
            if named && self.read == before {
                self.problem(
                    path,
                    "no .yaml, .yml or .json file in this directory".into(),
                );
            }
            return;
        }
        if let Ok(canonical) = path.canonicalize()
            && !self.files.insert(canonical)
        {
            // Counted as read: a directory holding only it is not empty.
            self.read += 1;
            return;
        }
        if metadata.len() > MAX_FILE_BYTES {
            return self.problem(
                path,
                format!(
                    "{} bytes exceed the limit of {MAX_FILE_BYTES} bytes",
                    metadata.len()
                ),
            );
        }
        match std::fs::read_to_string(path) {
            Ok(text) => self.push(Input {
                name: path.display().to_string(),
                text,
                holds_rollouts: self.holds_rollouts,
            }),
            Err(e) => self.problem(path, format!("cannot read: {e}")),
        }
    }
}

/// Where one document is and what it is.
#[derive(Debug, Clone)]
struct Entry {
    input: usize,
    span: DocumentSpan,
    kind: String,
    /// As written; empty means the Rollout's namespace.
    namespace: String,
    name: String,
    /// For ReplicaSets: the Rollouts owning it.
    owners: Vec<String>,
}

/// Every document of the inputs, indexed; only Rollouts are kept parsed,
/// and only the text of the objects the Rollouts can fetch is kept.
#[derive(Default)]
pub struct Manifests {
    /// Each input with `text` holding only the documents kept (see
    /// [`Manifests::add`]); entries' ranges point into it.
    inputs: Vec<Input>,
    /// The Rollouts of `--rollout` inputs and the objects they name.
    entries: Vec<Entry>,
    /// Parsed Rollouts of `--rollout` inputs, by entry.
    rollouts: BTreeMap<usize, Value>,
    problems: Vec<Problem>,
    /// Every object given, by kind, namespace (as written) and name: where
    /// it was first given, as `(input, line)`. Entries are kept only for
    /// Rollouts and the objects they name; this finds objects given twice
    /// and lists what exists at a cost of a name per object.
    seen: HashMap<String, HashMap<String, FirstGiven>>,
    /// What the Rollouts read so far name: their VirtualServices,
    /// DestinationRules and their own names (owners of ReplicaSets).
    named: Named,
}

/// Names of objects of one kind and namespace, each with where it was
/// first given: `(input, line)`.
type FirstGiven = HashMap<Box<str>, (u32, u32)>;

/// Names the Rollouts of `--rollout` inputs give, namespaces left out (a
/// superset of what any of them fetches).
#[derive(Default)]
struct Named {
    virtual_services: HashSet<String>,
    destination_rules: HashSet<String>,
    rollouts: HashSet<String>,
}

impl Named {
    /// Adds what a Rollout names, under any plugin key.
    fn add(&mut self, rollout: &Value) {
        if let Some(name) = rollout.pointer("/metadata/name").and_then(Value::as_str) {
            self.rollouts.insert(name.to_string());
        }
        let plugins = rollout
            .pointer("/spec/strategy/canary/trafficRouting/plugins")
            .and_then(Value::as_object);
        for config in plugins.into_iter().flat_map(|p| p.values()) {
            let listed = config
                .get("virtualServices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for reference in config.get("virtualService").into_iter().chain(listed) {
                if let Some(name) = reference.get("name").and_then(Value::as_str) {
                    let (_, short) = virtual_service_location(name, "");
                    self.virtual_services.insert(short);
                    self.virtual_services.insert(name.to_string());
                }
            }
            if let Some(name) = config
                .pointer("/destinationRule/name")
                .and_then(Value::as_str)
            {
                self.destination_rules.insert(name.to_string());
            }
        }
    }

    /// Whether a Rollout may fetch the entry's document: a VirtualService
    /// or DestinationRule it names, or a ReplicaSet it owns. In `--rollout`
    /// inputs, every one of these kinds: a Rollout read later (a directory
    /// holding `istio.yaml` and `rollout.yaml`) may name it.
    fn wants(&self, entry: &Entry, in_rollout_input: bool) -> bool {
        let fetched = ["VirtualService", "DestinationRule", "ReplicaSet"];
        if in_rollout_input {
            return fetched.contains(&entry.kind.as_str());
        }
        match entry.kind.as_str() {
            "VirtualService" => self.virtual_services.contains(&entry.name),
            "DestinationRule" => self.destination_rules.contains(&entry.name),
            "ReplicaSet" => entry.owners.iter().any(|o| self.rollouts.contains(o)),
            _ => false,
        }
    }
}

/// The `Kind namespace/name` label errors use (the cluster port's form).
fn label(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name}")
}

impl Manifests {
    /// Indexes inputs already read, `--rollout` inputs first (as
    /// [`Manifests::read`] reads them), each as [`Manifests::add`] does.
    pub fn index(mut inputs: Vec<Input>) -> Self {
        inputs.sort_by_key(|i| !i.holds_rollouts);
        let mut manifests = Self::default();
        for input in inputs {
            manifests.add(input);
        }
        manifests
    }

    /// Reads the `--rollout` and `--objects` paths (files, directories,
    /// `-` for standard input), indexing each input as soon as it is read and dropping its text:
    /// the full text of one input at a time is held, never all of them.
    /// Returns the problems of reading apart from those of indexing.
    pub fn read(rollouts: &[PathBuf], objects: &[PathBuf]) -> (Self, Vec<Problem>) {
        let mut manifests = Self::default();
        let problems = read_each(rollouts, objects, &mut |input| manifests.add(input));
        (manifests, problems)
    }

    /// Parses every document of `input` once: YAML errors (duplicate keys
    /// included), documents without kind or name, and objects given twice
    /// are problems. Then keeps Rollouts of `--rollout` inputs parsed, and
    /// of the text only the documents a Rollout can fetch: in `--objects`
    /// inputs (read after every `--rollout` input), only those the Rollouts
    /// name. Everything else is dropped.
    fn add(&mut self, mut input: Input) {
        let input_index = self.inputs.len();
        // This input's entries, with the Rollout parsed for `--rollout`
        // inputs; what is kept is decided once the whole input is read.
        let mut indexed: Vec<(Entry, Option<Value>)> = Vec::new();
        for span in yaml::split_documents(&input.text) {
            let problem = |line: Option<usize>, message: String| Problem {
                severity: Severity::Error,
                file: input.name.clone(),
                line,
                object: None,
                field: None,
                message,
            };
            let document = match yaml::document_in(&input.text, &span) {
                Ok(Some(document)) => document,
                Ok(None) => continue,
                Err(e) => {
                    self.problems.push(problem(
                        e.line().or(Some(span.content_line)),
                        e.message().to_string(),
                    ));
                    continue;
                }
            };
            let text = |pointer: &str| document.pointer(pointer).and_then(Value::as_str);
            let (Some(kind), Some(name)) = (text("/kind"), text("/metadata/name")) else {
                let missing = if text("/kind").is_none() {
                    "kind"
                } else {
                    "metadata.name"
                };
                self.problems.push(Problem {
                    field: Some(missing.into()),
                    ..problem(
                        Some(span.content_line),
                        format!("{missing} is missing (every manifest names its kind and name)"),
                    )
                });
                continue;
            };
            let namespace = text("/metadata/namespace").unwrap_or_default();
            let names = self
                .seen
                .entry(kind.to_string())
                .or_default()
                .entry(namespace.to_string())
                .or_default();
            if let Some(&(first_input, first_line)) = names.get(name) {
                let first_file = match self.inputs.get(first_input as usize) {
                    Some(first) => &first.name,
                    None => &input.name,
                };
                let line = yaml::field_line(&input.text, &span, "metadata.name");
                self.problems.push(Problem {
                    severity: Severity::Warning,
                    object: Some(label(kind, namespace, name)),
                    field: Some("metadata.name".into()),
                    ..problem(
                        line.or(Some(span.content_line)),
                        format!(
                            "given twice (first at {first_file}:{first_line}); the last one \
                             given is used"
                        ),
                    )
                });
            } else {
                let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                names.insert(name.into(), (at(input_index), at(span.content_line)));
            }
            let entry = Entry {
                input: input_index,
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                owners: owners(&document),
                span,
            };
            let rollout = (kind == "Rollout" && input.holds_rollouts).then(|| {
                self.named.add(&document);
                document
            });
            indexed.push((entry, rollout));
        }
        // Keep the Rollouts and the documents a Rollout may fetch, their
        // ranges moved into the kept text (lines stay those of the file).
        let mut kept = String::new();
        for (mut entry, rollout) in indexed {
            let range = entry.span.range.clone();
            // A Rollout's text is kept too, to find the line of a field.
            if self.named.wants(&entry, input.holds_rollouts) || rollout.is_some() {
                let start = kept.len();
                kept.push_str(&input.text[range]);
                entry.span.range = start..kept.len();
            } else {
                continue;
            }
            if let Some(rollout) = rollout {
                self.rollouts.insert(self.entries.len(), rollout);
            }
            self.entries.push(entry);
        }
        kept.shrink_to_fit();
        input.text = kept;
        self.inputs.push(input);
    }

    /// Problems found while reading.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The Rollouts to check, in input order.
    pub fn rollouts(&self) -> Vec<usize> {
        self.rollouts.keys().copied().collect()
    }

    /// The `--rollout` inputs, for a problem about none of them.
    pub fn rollout_files(&self) -> String {
        let names: Vec<&str> = self
            .inputs
            .iter()
            .filter(|i| i.holds_rollouts)
            .map(|i| i.name.as_str())
            .collect();
        names.join(", ")
    }

    /// `(file, line)` of an entry.
    pub fn position(&self, entry: usize) -> (&str, usize) {
        let entry = &self.entries[entry];
        (&self.inputs[entry.input].name, entry.span.content_line)
    }

    /// The line of `field` in the entry's document (the deepest part of it
    /// written on a line of its own); `None` when its text was not kept.
    fn field_line(&self, entry: usize, field: &str) -> Option<usize> {
        let e = &self.entries[entry];
        if e.span.range.is_empty() {
            return None;
        }
        // The controller names steps `spec.strategy.steps[i]`; they are
        // written under `spec.strategy.canary`.
        let field = match field.strip_prefix("spec.strategy.steps") {
            Some(rest) => format!("spec.strategy.canary.steps{rest}"),
            None => field.to_string(),
        };
        yaml::field_line(&self.inputs[e.input].text, &e.span, &field)
    }

    /// Moves each problem about an object's field to the line of that
    /// field (it starts at the object's line).
    fn point_at_fields(&self, problems: &mut [Problem], default_ns: &str) {
        for problem in problems {
            let (Some(object), Some(field)) = (&problem.object, &problem.field) else {
                continue;
            };
            let Some(entry) = self.find_label(object, default_ns) else {
                continue;
            };
            if self.inputs[self.entries[entry].input].name != problem.file {
                continue;
            }
            if let Some(line) = self.field_line(entry, field) {
                problem.line = Some(line);
            }
        }
    }

    /// Where else objects of `kind` named `name` were given: their
    /// namespaces, sorted.
    fn namespaces_of(&self, kind: &str, name: &str) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .seen
            .get(kind)
            .into_iter()
            .flatten()
            .filter(|(ns, names)| !ns.is_empty() && names.contains_key(name))
            .map(|(ns, _)| ns.clone())
            .collect();
        namespaces.sort();
        namespaces
    }

    /// The entry's document, parsed again; `None` for a document whose
    /// text was not kept (no Rollout names it).
    fn fetch(&self, entry: usize) -> Option<Value> {
        let e = &self.entries[entry];
        if e.span.range.is_empty() {
            return None;
        }
        yaml::document_in(&self.inputs[e.input].text, &e.span)
            .ok()
            .flatten()
    }

    /// The last entry of `kind` named `name` in `namespace` (an empty
    /// namespace in a manifest is the Rollout's).
    fn find(&self, kind: &str, namespace: &str, name: &str, default_ns: &str) -> Option<usize> {
        self.entries.iter().rposition(|e| {
            e.kind == kind && e.name == name && effective(&e.namespace, default_ns) == namespace
        })
    }

    /// The entry of a `Kind namespace/name` label.
    fn find_label(&self, object: &str, default_ns: &str) -> Option<usize> {
        let (kind, rest) = object.split_once(' ')?;
        let (ns, name) = rest.split_once('/')?;
        self.find(kind, ns, name, default_ns)
    }

    /// Labels of the objects of `kind` in `namespace`, for "what exists"
    /// in a message.
    fn labels_of(&self, kind: &str, namespace: &str, default_ns: &str) -> Vec<String> {
        let by_namespace = self.seen.get(kind);
        let written = [
            namespace,
            if namespace == default_ns {
                ""
            } else {
                namespace
            },
        ];
        let mut labels: Vec<String> = written
            .iter()
            .filter_map(|ns| by_namespace.and_then(|n| n.get(*ns)))
            .flat_map(|names| names.keys())
            .map(|name| label(kind, namespace, name))
            .collect();
        labels.sort();
        labels.dedup();
        labels
    }
}

fn effective<'a>(namespace: &'a str, default_ns: &'a str) -> &'a str {
    if namespace.is_empty() {
        default_ns
    } else {
        namespace
    }
}

fn owners(document: &Value) -> Vec<String> {
    if document.get("kind").and_then(Value::as_str) != Some("ReplicaSet") {
        return Vec::new();
    }
    document
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Rollout"))
        .filter_map(|o| o.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// What to check against.
#[derive(Debug, Clone)]
pub struct Options {
    /// The key under trafficRouting.plugins, as registered in the
    /// controller's trafficRouterPlugins; default `argoproj-labs/istio`.
    pub plugin_name: Option<String>,
    /// The controller release whose validation the Rollout must pass.
    pub controller: Version,
}

impl Options {
    /// The registered plugin name the Rollouts' key must match exactly.
    pub fn plugin_name(&self) -> String {
        self.plugin_name
            .clone()
            .unwrap_or_else(|| DEFAULT_PLUGIN_NAME.to_string())
    }
}

/// A Rollout read and configured, ready to play.
pub struct Prepared {
    pub problems: Vec<Problem>,
    /// `None` when the Rollout or its configuration cannot be read.
    pub scenario: Option<Scenario>,
}

/// Where the checks of one Rollout report.
struct Context<'a> {
    manifests: &'a Manifests,
    file: String,
    line: usize,
    label: String,
    namespace: String,
    problems: Vec<Problem>,
}

impl Context<'_> {
    fn push(&mut self, severity: Severity, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            severity,
            file: self.file.clone(),
            line: Some(self.line),
            object: Some(self.label.clone()),
            field: Some(field.into()),
            message: message.into(),
        });
    }

    /// A problem in another object, by its label.
    fn push_at(
        &mut self,
        severity: Severity,
        entry: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let e = &self.manifests.entries[entry];
        self.problems.push(Problem {
            severity,
            file: self.manifests.inputs[e.input].name.clone(),
            line: Some(e.span.content_line),
            object: Some(label(
                &e.kind,
                effective(&e.namespace, &self.namespace),
                &e.name,
            )),
            field: Some(field.into()),
            message: message.into(),
        });
    }
}

const ROUTING: &str = "spec.strategy.canary.trafficRouting";

/// Reads the Rollout of `entry`, checks what the controller refuses and
/// the plugin's configuration, finds the objects it names and lints them.
/// Does not play its calls (see [`check_rollout`]).
pub fn prepare(manifests: &Manifests, entry: usize, options: &Options) -> Prepared {
    let Some(raw) = manifests.rollouts.get(&entry) else {
        return Prepared {
            problems: Vec::new(),
            scenario: None,
        };
    };
    let (file, line) = manifests.position(entry);
    let written_ns = manifests.entries[entry].namespace.clone();
    let namespace = effective(&written_ns, "default").to_string();
    let mut cx = Context {
        manifests,
        file: file.to_string(),
        line,
        label: label("Rollout", &namespace, &manifests.entries[entry].name),
        namespace: namespace.clone(),
        problems: Vec::new(),
    };
    let builtin_block = raw
        .pointer("/spec/strategy/canary/trafficRouting/istio")
        .is_some();
    let mut rollout = match Rollout::from_json(raw.clone()) {
        Ok(rollout) => rollout,
        Err(e) => {
            cx.push(Severity::Error, e.path, e.message);
            return Prepared {
                problems: cx.problems,
                scenario: None,
            };
        }
    };
    rollout.metadata.namespace = namespace;
    let other_actions = controller::OtherActions::of_manifest(raw);
    for refusal in controller::refusals_with(&rollout, &other_actions, options.controller) {
        let accepted = refusal
            .accepted_from
            .map(|v| format!("; accepted from argo-rollouts {v}"))
            .unwrap_or_default();
        cx.push(
            Severity::Error,
            refusal.field,
            format!(
                "{} (argo-rollouts {} refuses this Rollout{accepted})",
                refusal.message, options.controller
            ),
        );
    }
    let plugin_name = options.plugin_name();
    let plugin_field = format!("{ROUTING}.plugins[\"{plugin_name}\"]");
    if let Some(key) = near_miss(raw, &plugin_name) {
        cx.push(
            Severity::Error,
            format!("{ROUTING}.plugins[\"{key}\"]"),
            format!(
                "no plugin is registered as {key:?}: this plugin is registered as \
                 {plugin_name:?} and the controller matches the key exactly, so it would find \
                 no router for this Rollout; rename the key to {plugin_name:?}"
            ),
        );
        return Prepared {
            problems: cx.problems,
            scenario: None,
        };
    }
    let config = match RouterConfig::from_rollout(&rollout, &plugin_name) {
        Ok(config) => config,
        Err(e) => {
            let (field, mut message) = match &e {
                ConfigError::NoTrafficRouting { .. } => (
                    ROUTING.to_string(),
                    "no canary strategy with trafficRouting".to_string(),
                ),
                ConfigError::MissingPluginConfig { .. } => (
                    format!("{ROUTING}.plugins"),
                    format!("no configuration for plugin \"{plugin_name}\""),
                ),
                ConfigError::Invalid { detail, .. } => (plugin_field.clone(), detail.clone()),
            };
            if builtin_block {
                message.push_str(&format!(
                    "; the built-in router's trafficRouting.istio block is there instead: \
                     move its content under {ROUTING}.plugins[\"{plugin_name}\"] \
                     (same fields) and remove trafficRouting.istio"
                ));
            }
            cx.push(Severity::Error, field, message);
            return Prepared {
                problems: cx.problems,
                scenario: None,
            };
        }
    };
    if builtin_block {
        cx.push(
            Severity::Warning,
            format!("{ROUTING}.istio"),
            format!(
                "the built-in Istio router is configured too: the controller runs both it and \
                 this plugin on the same VirtualServices; keep only \
                 {ROUTING}.plugins[\"{plugin_name}\"] and remove trafficRouting.istio"
            ),
        );
    }

    // The objects the Rollout names, and only those.
    let mut objects = Vec::new();
    let mut virtual_services = Vec::new();
    for reference in &config.virtual_services {
        let (ns, name) = virtual_service_location(&reference.name, &config.namespace);
        if let Some(found) = manifests.find("VirtualService", &ns, &name, &config.namespace) {
            virtual_services.push((found, reference));
            objects.push(found);
        }
    }
    let destination_rule = config.destination_rule.as_ref().and_then(|dr| {
        manifests.find(
            "DestinationRule",
            &config.namespace,
            &dr.name,
            &config.namespace,
        )
    });
    objects.extend(destination_rule);
    objects.extend(manifests.entries.iter().enumerate().filter_map(|(i, e)| {
        (e.kind == "ReplicaSet"
            && effective(&e.namespace, &config.namespace) == config.namespace
            && e.owners.contains(&config.rollout_name))
        .then_some(i)
    }));
    let values: Vec<(usize, Value)> = objects
        .into_iter()
        .filter_map(|i| manifests.fetch(i).map(|v| (i, v)))
        .collect();
    let value_of = |entry: usize| values.iter().find(|(i, _)| *i == entry).map(|(_, v)| v);

    lint_virtual_services(&mut cx, &config, &virtual_services, &value_of);
    if let Some(entry) = destination_rule
        && let Some(dr) = value_of(entry)
    {
        lint_destination_rule(&mut cx, &config, entry, dr, &virtual_services, &value_of);
    }
    let scenario = Scenario {
        rollout,
        objects: values.into_iter().map(|(_, v)| v).collect(),
        plugin_name,
        controller: options.controller,
    };
    Prepared {
        problems: cx.problems,
        scenario: Some(scenario),
    }
}

/// The plugin keys of a Rollout manifest.
fn plugin_keys(raw: &Value) -> impl Iterator<Item = &String> {
    raw.pointer("/spec/strategy/canary/trafficRouting/plugins")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|plugins| plugins.keys())
}

/// A key meant for this plugin but not its registered name: the name in
/// another case, or another prefix before the same last part
/// (`istio`, `argoproj/istio` for `argoproj-labs/istio`). `None` when the
/// exact key is there.
fn near_miss(raw: &Value, plugin_name: &str) -> Option<String> {
    if plugin_keys(raw).any(|k| k == plugin_name) {
        return None;
    }
    let last = |name: &str| name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    plugin_keys(raw)
        .find(|k| k.eq_ignore_ascii_case(plugin_name) || last(k) == last(plugin_name))
        .cloned()
}

/// Why a Rollout is not this plugin's to check; `None` when it uses the
/// plugin (or a near miss of its name, which is an error).
fn skip_reason(raw: &Value, plugin_name: &str) -> Option<&'static str> {
    if plugin_keys(raw).any(|k| k == plugin_name) || near_miss(raw, plugin_name).is_some() {
        return None;
    }
    let routing = raw.pointer("/spec/strategy/canary/trafficRouting");
    Some(if raw.pointer("/spec/strategy/blueGreen").is_some() {
        "blue-green"
    } else if routing.and_then(|r| r.get("istio")).is_some() {
        "built-in Istio router"
    } else if routing.is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty())) {
        "another traffic router"
    } else {
        "no traffic routing"
    })
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn short_host(host: &str) -> &str {
    host.split('.').next().unwrap_or("")
}

/// Warnings about the configured VirtualServices.
fn lint_virtual_services<'v>(
    cx: &mut Context<'_>,
    config: &RouterConfig,
    virtual_services: &[(usize, &crate::istio::config::VirtualServiceRef)],
    value_of: &impl Fn(usize) -> Option<&'v Value>,
) {
    for &(entry, reference) in virtual_services {
        let Some(vs) = value_of(entry) else { continue };
        let e = &cx.manifests.entries[entry];
        let object = label(&e.kind, effective(&e.namespace, &cx.namespace), &e.name);
        let ctx = crate::istio::core::VirtualServiceContext {
            object: &object,
            config,
            reference,
        };
        for (kind, index) in crate::istio::core::selected_routes(vs, &ctx) {
            let destinations = vs
                .pointer(&format!("/spec/{kind}/{index}/route"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if destinations.len() < 2 {
                // One destination takes all traffic whatever its weight.
                continue;
            }
            let weights: Vec<i64> = destinations
                .iter()
                .map(|d| d.get("weight").and_then(Value::as_i64).unwrap_or(0))
                .collect();
            let sum: i64 = weights.iter().sum();
            if sum != 100 {
                let terms: Vec<String> = weights.iter().map(i64::to_string).collect();
                cx.push_at(
                    Severity::Error,
                    entry,
                    format!("spec.{kind}[{index}].route"),
                    format!(
                        "the weights of this route sum to {sum} ({}), not 100: Istio sends \
                         each destination weight/sum of the traffic, so the numbers written \
                         are not the shares, and every step writes weights totalling 100; \
                         make them total 100 (an omitted weight is 0)",
                        terms.join(" + ")
                    ),
                );
            }
        }
        if let Some(gateways) = vs.pointer("/spec/gateways").and_then(Value::as_array)
            && !gateways.is_empty()
            && !gateways.iter().any(|g| g.as_str() == Some("mesh"))
        {
            let names: Vec<&str> = gateways.iter().filter_map(Value::as_str).collect();
            cx.push_at(
                Severity::Warning,
                entry,
                "spec.gateways",
                format!(
                    "bound to gateways [{}] but not `mesh`: callers inside the mesh do not go \
                     through these routes and reach canary and stable pods in proportion to \
                     their pod counts, not the weights; add `mesh` to spec.gateways",
                    names.join(", ")
                ),
            );
        }
        let routes = vs
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (index, route) in routes.iter().enumerate() {
            let name = str_at(route, "/name");
            if !name.is_empty() && config.is_managed(name) {
                cx.push_at(
                    Severity::Warning,
                    entry,
                    format!("spec.http[{index}].name"),
                    format!(
                        "route {name:?} is also a name in {ROUTING}.managedRoutes: the plugin \
                         owns routes of those names and deletes this one when the rollout \
                         completes or aborts; rename the route or the managed route"
                    ),
                );
                continue;
            }
            // A route the plugin does not weight that sends to the stable
            // side only: its traffic never reaches the canary.
            if reference.routes.is_empty() || reference.routes.iter().any(|r| r == name) {
                continue;
            }
            let destinations: Vec<(&str, &str)> = route
                .get("route")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        short_host(str_at(d, "/destination/host")),
                        str_at(d, "/destination/subset"),
                    )
                })
                .collect();
            let (stable, canary, what) = match &config.destination_rule {
                Some(dr) => (
                    destinations
                        .iter()
                        .any(|(_, s)| *s == dr.stable_subset_name),
                    destinations
                        .iter()
                        .any(|(_, s)| *s == dr.canary_subset_name),
                    format!("the canary subset {:?}", dr.canary_subset_name),
                ),
                None => (
                    destinations
                        .iter()
                        .any(|(h, _)| *h == config.stable_service),
                    destinations
                        .iter()
                        .any(|(h, _)| *h == config.canary_service),
                    format!("the canary Service {:?}", config.canary_service),
                ),
            };
            if stable && !canary {
                let route_label = if name.is_empty() {
                    format!("spec.http[{index}]")
                } else {
                    format!("route {name:?}")
                };
                cx.push_at(
                    Severity::Warning,
                    entry,
                    format!("spec.http[{index}]"),
                    format!(
                        "{route_label} sends to the stable side but not to {what}, and it is \
                         not in virtualService.routes: the plugin does not weight it, so its \
                         traffic never reaches the canary; add it to routes (with a canary \
                         destination of weight 0) if it should"
                    ),
                );
            }
        }
    }
}

/// Warnings about the configured DestinationRule.
fn lint_destination_rule<'v>(
    cx: &mut Context<'_>,
    config: &RouterConfig,
    entry: usize,
    dr: &Value,
    virtual_services: &[(usize, &crate::istio::config::VirtualServiceRef)],
    value_of: &impl Fn(usize) -> Option<&'v Value>,
) {
    let Some(reference) = &config.destination_rule else {
        return;
    };
    let host = str_at(dr, "/spec/host");
    for (index, subset) in dr
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = str_at(subset, "/name");
        if name == reference.canary_subset_name || name == reference.stable_subset_name {
            continue;
        }
        let labelled = subset
            .get("labels")
            .and_then(Value::as_object)
            .is_some_and(|l| !l.is_empty());
        if !labelled {
            cx.push_at(
                Severity::Warning,
                entry,
                format!("spec.subsets[{index}].labels"),
                format!(
                    "subset {name:?} has no labels, so it selects every pod of {host:?}, canary \
                     and stable alike"
                ),
            );
        }
    }
    let mut hosts = Vec::new();
    for &(vs_entry, _) in virtual_services {
        let Some(vs) = value_of(vs_entry) else {
            continue;
        };
        for kind in ["http", "tls", "tcp"] {
            for route in vs
                .pointer(&format!("/spec/{kind}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for d in route
                    .get("route")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    hosts.push(short_host(str_at(d, "/destination/host")).to_string());
                }
            }
        }
    }
    if !host.is_empty()
        && !virtual_services.is_empty()
        && !hosts.iter().any(|h| h == short_host(host))
    {
        hosts.sort();
        hosts.dedup();
        cx.push_at(
            Severity::Warning,
            entry,
            "spec.host",
            format!(
                "host {host:?} matches no route destination of the configured VirtualServices \
                 (their destination hosts: {}); its subsets route nothing",
                if hosts.is_empty() {
                    "none".into()
                } else {
                    hosts.join(", ")
                }
            ),
        );
    }
}

/// Everything wrong with the Rollout of `entry`: [`prepare`]'s problems,
/// then every call its steps make, played by the router against an
/// in-memory cluster holding the objects it names, each failure reported
/// once.
pub async fn check_rollout(manifests: &Manifests, entry: usize, options: &Options) -> Prepared {
    let Prepared {
        mut problems,
        scenario,
    } = prepare(manifests, entry, options);
    let Some(scenario) = scenario else {
        let namespace = effective(&manifests.entries[entry].namespace, "default").to_string();
        manifests.point_at_fields(&mut problems, &namespace);
        return Prepared { problems, scenario };
    };
    let (file, line) = manifests.position(entry);
    let rollout_label = label(
        "Rollout",
        &scenario.rollout.metadata.namespace,
        &scenario.rollout.metadata.name,
    );
    for failure in play_each(&scenario, options).await {
        let mut problem = Problem {
            severity: Severity::Error,
            file: file.to_string(),
            line: Some(line),
            object: Some(rollout_label.clone()),
            field: None,
            message: String::new(),
        };
        let during = format!("{} failed at {}", failure.call, failure.phase);
        let plugin_field = format!("{ROUTING}.plugins[\"{}\"]", scenario.plugin_name);
        match &failure.error {
            IstioError::Cluster {
                error: ClusterError::NotFound(key),
                ..
            } => {
                let ns = &scenario.rollout.metadata.namespace;
                let kind = key.resource.kind;
                let given = manifests.labels_of(kind, &key.namespace, ns);
                let config = scenario
                    .rollout
                    .traffic_routing()
                    .and_then(|r| r.plugins.get(&scenario.plugin_name));
                let listed = config
                    .and_then(|c| c.get("virtualServices"))
                    .and_then(Value::as_array);
                let field = if kind == "DestinationRule" {
                    "destinationRule.name".to_string()
                } else if let Some(listed) = listed {
                    // The reference that names this VirtualService.
                    listed
                        .iter()
                        .position(|r| {
                            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                            virtual_service_location(name, ns)
                                == (key.namespace.clone(), key.name.clone())
                        })
                        .map(|i| format!("virtualServices[{i}].name"))
                        .unwrap_or_else(|| "virtualServices[].name".to_string())
                } else {
                    "virtualService.name".to_string()
                };
                problem.field = Some(format!("{plugin_field}.{field}"));
                problem.message = format!(
                    "{key} is not in the given manifests ({kind}s given in namespace {}: {})",
                    key.namespace,
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                );
                // The same name in another namespace: how to reach it.
                let elsewhere: Vec<String> = manifests
                    .namespaces_of(kind, &key.name)
                    .into_iter()
                    .filter(|other| *other != key.namespace)
                    .collect();
                for other in elsewhere {
                    problem.message.push_str(&if kind == "VirtualService" {
                        format!(
                            "; {kind} {other}/{name} exists: a VirtualService in another \
                             namespace is named with its namespace, `name: {name}.{other}`",
                            name = key.name
                        )
                    } else {
                        format!(
                            "; {kind} {other}/{name} exists, but the plugin reads the \
                             DestinationRule from the Rollout's namespace {ns}",
                            name = key.name
                        )
                    });
                }
            }
            IstioError::Core(CoreError::Object { object, message }) => {
                let ns = &scenario.rollout.metadata.namespace;
                let found = manifests.find_label(object, ns);
                let in_object = field_in(message).or_else(|| {
                    found
                        .and_then(|f| manifests.fetch(f))
                        .and_then(|vs| route_field(&vs, message))
                });
                match (found, in_object) {
                    // A field of the VirtualService or DestinationRule.
                    (Some(found), Some(field)) => {
                        let (file, line) = manifests.position(found);
                        problem.file = file.to_string();
                        problem.line = Some(line);
                        problem.object = Some(object.clone());
                        problem.field = Some(field);
                        problem.message = format!("{message} ({during})");
                    }
                    // What the configuration asks of the object.
                    _ => {
                        let routes =
                            message.contains("Route '") || message.contains("routes found");
                        let subset = ["canarySubsetName", "stableSubsetName"]
                            .into_iter()
                            .find(|f| message.contains(&format!("(destinationRule.{f})")));
                        problem.field = Some(if routes {
                            format!("{plugin_field}.{}", routes_field(&scenario, object))
                        } else if let Some(subset) = subset {
                            format!("{plugin_field}.destinationRule.{subset}")
                        } else {
                            plugin_field.clone()
                        });
                        problem.message = format!("{object}: {message} ({during})");
                    }
                }
            }
            other => {
                problem.field = Some(plugin_field);
                problem.message = format!("{other} ({during})");
            }
        }
        // The same failure in several phases is reported once, at the first.
        let first_part = |p: &Problem| p.message.split(" (").next().map(str::to_string);
        let seen = problems.iter().any(|p| {
            p.object == problem.object
                && p.field == problem.field
                && first_part(p) == first_part(&problem)
        });
        if !seen {
            problems.push(problem);
        }
    }
    manifests.point_at_fields(&mut problems, &scenario.rollout.metadata.namespace);
    Prepared {
        problems,
        scenario: Some(scenario),
    }
}

/// `spec.http[2]` for a message about `HTTP route 'name'` (or TLS, TCP).
fn route_field(vs: &Value, message: &str) -> Option<String> {
    for (word, field) in [("HTTP", "http"), ("TLS", "tls"), ("TCP", "tcp")] {
        let marker = format!("{word} route '");
        let Some(at) = message.find(&marker) else {
            continue;
        };
        let rest = &message[at + marker.len()..];
        let name = &rest[..rest.find('\'')?];
        let index = vs
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)?
            .iter()
            .position(|r| str_at(r, "/name") == name)?;
        return Some(format!("spec.{field}[{index}]"));
    }
    None
}

/// Where the configuration names the routes of `object` (`VirtualService
/// ns/name`): `virtualService.routes` or `virtualServices[i].routes`.
fn routes_field(scenario: &Scenario, object: &str) -> String {
    let listed = scenario
        .rollout
        .traffic_routing()
        .and_then(|r| r.plugins.get(&scenario.plugin_name))
        .and_then(|c| c.get("virtualServices"))
        .and_then(Value::as_array);
    let Some(listed) = listed else {
        return "virtualService.routes".to_string();
    };
    let ns = &scenario.rollout.metadata.namespace;
    listed
        .iter()
        .position(|r| {
            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let (namespace, name) = virtual_service_location(name, ns);
            label("VirtualService", &namespace, &name) == object
        })
        .map(|i| format!("virtualServices[{i}].routes"))
        .unwrap_or_else(|| "virtualServices[].routes".to_string())
}

/// Plays the scenario's calls, collecting every failure. The controller
/// never sends a step it refuses, so those steps are played as steps that
/// change no traffic (their refusal is reported already). A call stops at
/// the first VirtualService it cannot edit, so with several configured,
/// each is also played on its own: every VirtualService's problems show.
async fn play_each(scenario: &Scenario, options: &Options) -> Vec<simulate::Failure> {
    let mut scenario = scenario.clone();
    let refused: Vec<String> = controller::refusals(&scenario.rollout, options.controller)
        .into_iter()
        .map(|r| r.field)
        .collect();
    if let Some(canary) = scenario.rollout.spec.strategy.canary.as_mut() {
        for (index, step) in canary.steps.iter_mut().enumerate() {
            let at = format!("spec.strategy.steps[{index}]");
            if refused
                .iter()
                .any(|f| f == &at || f.starts_with(&format!("{at}.")))
            {
                *step = Default::default();
            }
        }
    }
    let mut failures = simulate::play(&scenario, true, false).await.failures;
    let listed = scenario
        .rollout
        .traffic_routing()
        .and_then(|r| r.plugins.get(&scenario.plugin_name))
        .and_then(|c| c.get("virtualServices"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if failures.is_empty() || listed.len() < 2 {
        return failures;
    }
    for reference in listed {
        let mut one = scenario.clone();
        let plugins = one
            .rollout
            .spec
            .strategy
            .canary
            .as_mut()
            .and_then(|c| c.traffic_routing.as_mut())
            .map(|r| &mut r.plugins);
        if let Some(config) = plugins.and_then(|p| p.get_mut(&scenario.plugin_name)) {
            config["virtualServices"] = Value::Array(vec![reference]);
        }
        failures.extend(simulate::play(&one, true, false).await.failures);
    }
    failures
}

/// The first `spec.…` path in a core message, the field it is about.
fn field_in(message: &str) -> Option<String> {
    let start = message.find("spec.")?;
    let path: String = message[start..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-'))
        .collect();
    Some(path.trim_end_matches('.').to_string())
}

/// A Rollout `validate` did not check: it does not use this plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub file: String,
    pub line: usize,
    /// `Rollout namespace/name`.
    pub object: String,
    /// `blue-green`, `built-in Istio router`, `another traffic router` or
    /// `no traffic routing`.
    pub reason: &'static str,
}

/// What `validate` found: every problem, and which Rollouts it checked.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Rollouts that use the plugin (or a near miss of its name).
    pub checked: usize,
    /// Rollouts that do not use it, not checked.
    pub skipped: Vec<Skipped>,
    /// The registered name the Rollouts' keys were matched against.
    pub plugin_name: String,
}

/// Every problem of every Rollout in the `--rollout` inputs that uses the
/// plugin, in file and line order, errors and warnings mixed as they come;
/// Rollouts that do not use it are skipped and counted.
pub async fn check(manifests: &Manifests, options: &Options) -> Report {
    let plugin_name = options.plugin_name();
    let mut report = Report {
        problems: manifests.problems().to_vec(),
        plugin_name: plugin_name.clone(),
        ..Report::default()
    };
    let rollouts = manifests.rollouts();
    if rollouts.is_empty()
        && !report
            .problems
            .iter()
            .any(|p| p.severity == Severity::Error)
    {
        report.problems.push(Problem {
            severity: Severity::Error,
            file: manifests.rollout_files(),
            line: None,
            object: None,
            field: None,
            message: "no Rollout found (validate checks the Rollouts of --rollout)".into(),
        });
    }
    for entry in rollouts {
        if let Some(reason) = manifests
            .rollouts
            .get(&entry)
            .and_then(|raw| skip_reason(raw, &plugin_name))
        {
            let (file, line) = manifests.position(entry);
            let e = &manifests.entries[entry];
            report.skipped.push(Skipped {
                file: file.to_string(),
                line,
                object: label("Rollout", effective(&e.namespace, "default"), &e.name),
                reason,
            });
            continue;
        }
        report.checked += 1;
        report
            .problems
            .extend(check_rollout(manifests, entry, options).await.problems);
    }
    report
        .problems
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report
}

impl Report {
    /// `1 Rollout checked, 3 skipped (not using "argoproj-labs/istio": 2
    /// blue-green, 1 another traffic router)`.
    pub fn rollouts_summary(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut out = format!("{} Rollout{} checked", self.checked, plural(self.checked));
        if !self.skipped.is_empty() {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for skipped in &self.skipped {
                *reasons.entry(skipped.reason).or_default() += 1;
            }
            let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            out.push_str(&format!(
                ", {} skipped (not using {:?}: {})",
                self.skipped.len(),
                self.plugin_name,
                reasons.join(", ")
            ));
        }
        out
    }
}

/// The report as text: one line per problem, then the counts.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        out.push_str(&problem.to_string());
        out.push('\n');
    }
    let (errors, warnings) = counts(&report.problems);
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    out.push_str(&format!(
        "{}, {}; {}\n",
        plural(errors, "error"),
        plural(warnings, "warning"),
        report.rollouts_summary()
    ));
    out
}

/// The report as JSON: `{"problems": [...], "errors": n, "warnings": n,
/// "checked": n, "skipped": [{"file", "line", "object", "reason"}]}`.
pub fn render_json(report: &Report) -> String {
    let (errors, warnings) = counts(&report.problems);
    let json = serde_json::json!({
        "problems": report.problems,
        "errors": errors,
        "warnings": warnings,
        "checked": report.checked,
        "skipped": report.skipped,
    });
    serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
}

/// `(errors, warnings)`.
pub fn counts(problems: &[Problem]) -> (usize, usize) {
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    (errors, problems.len() - errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, text: &str, holds_rollouts: bool) -> Input {
        Input {
            name: name.into(),
            text: text.into(),
            holds_rollouts,
        }
    }

    #[test]
    fn only_named_documents_are_kept_and_keep_their_lines() {
        let example = include_str!("../examples/header-route.yaml");
        let (rollout, virtual_service) = example.split_at(example.find("\n---\n").unwrap() + 1);
        let objects = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: unrelated, namespace: shop}}\n\
             data: {{a: b}}\n---\nkind: ConfigMap\nmetadata: {{name: twice, name: again}}\n\
             {virtual_service}"
        );
        let manifests = Manifests::index(vec![
            input("objects.yaml", &objects, false),
            input("rollout.yaml", rollout, true),
        ]);
        // The duplicate key is found while indexing, on its line.
        let problems: Vec<String> = manifests.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("objects.yaml:7: error: duplicate key \"name\""),
            "{problems:?}"
        );
        // Only the VirtualService's text is kept, and it parses again with
        // its line in the file.
        let kept = &manifests
            .inputs
            .iter()
            .find(|i| !i.holds_rollouts)
            .unwrap()
            .text;
        assert_eq!(kept.as_str(), virtual_service);
        let found = manifests
            .find("VirtualService", "shop", "checkout", "shop")
            .unwrap();
        assert_eq!(manifests.position(found), ("objects.yaml", 9));
        let value = manifests.fetch(found).unwrap();
        assert_eq!(str_at(&value, "/spec/http/0/name"), "primary");
        // The ConfigMap is not indexed, but still listed as given.
        assert!(
            manifests
                .find("ConfigMap", "shop", "unrelated", "shop")
                .is_none()
        );
        assert_eq!(
            manifests.labels_of("ConfigMap", "shop", "shop"),
            ["ConfigMap shop/unrelated"]
        );
    }
}
