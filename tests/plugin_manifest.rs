//! `plugin-manifest.yaml` is what users apply: the argo-rollouts-config
//! entry must be what the controller can read, and every argument one the
//! binary accepts.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    name: String,
    location: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

fn documents() -> Vec<Value> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin-manifest.yaml"))
            .expect("plugin-manifest.yaml exists");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .collect()
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn the_configmap_entry_is_what_the_controller_reads() {
    let docs = documents();
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(config["metadata"]["name"], "argo-rollouts-config");
    let list = config["data"]["trafficRouterPlugins"]
        .as_str()
        .expect("trafficRouterPlugins is a string holding a YAML list");
    let entries: Vec<PluginEntry> = serde_yaml::from_str(list).expect("a list of plugin entries");
    assert!(!entries.is_empty());

    let mut names = BTreeSet::new();
    let mut locations = BTreeSet::new();
    let help = help();
    for entry in &entries {
        assert!(
            names.insert(entry.name.clone()),
            "duplicate plugin name {}",
            entry.name
        );
        let (org, name) = entry
            .name
            .split_once('/')
            .expect("plugin names are org/name");
        assert!(!org.is_empty() && !name.is_empty(), "{}", entry.name);
        let scheme = entry
            .location
            .split("://")
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(scheme == "https" || scheme == "file", "{}", entry.location);
        locations.insert(scheme.clone());
        if scheme == "https" {
            let sha = entry
                .sha256
                .as_deref()
                .expect("an https location carries sha256");
            assert_eq!(sha.len(), 64, "{sha}");
            assert!(
                sha.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{sha}"
            );
        }
        for arg in &entry.args {
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(
                flag.starts_with("--") && help.contains(flag),
                "{arg} is not a flag of the binary"
            );
        }
        // The plugin reads its configuration under its own name.
        let plugin_name = entry
            .args
            .iter()
            .find_map(|a| a.strip_prefix("--plugin-name="));
        assert_eq!(plugin_name, Some(entry.name.as_str()), "{}", entry.name);
    }
    assert_eq!(
        locations,
        BTreeSet::from(["file".into(), "https".into()]),
        "both location kinds shown"
    );
}

#[test]
fn the_rbac_covers_what_the_plugin_reads_and_writes() {
    let docs = documents();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            let has =
                |key: &str, v: &str| r[key].as_array().is_some_and(|l| l.iter().any(|x| x == v));
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for resource in ["virtualservices", "destinationrules"] {
        for verb in ["get", "list", "watch", "update"] {
            assert!(
                allows("networking.istio.io", resource, verb),
                "{verb} {resource}"
            );
        }
    }
    assert!(allows("apps", "replicasets", "list"));
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("a binding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
}
