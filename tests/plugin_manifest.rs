//! `plugin-manifest.yaml` is what users apply: it must be exactly what the
//! release build's generator (xtask/src/manifest.rs) writes for the release
//! it records, its entry what the controller can read, every argument one
//! the binary accepts, and its digests those of real release files.
//!
//! How the committed copy stays honest: a binary embeds the commit it was
//! built from, so no commit can hold the digest of its own build. The
//! committed manifest therefore records the commit its binaries were built
//! from (`# commit:`), and:
//! * here, it is regenerated from its own header and must match byte for
//!   byte, the commit must be in this repository's history, and when
//!   target/dist was built from that same commit the digests must match;
//!   target/dist/plugin-manifest.yaml, when present, must match the files
//!   next to it (with CI=true it must be present: `.ci/dist-check` runs
//!   `cargo xtask dist` first);
//! * `.ci/dist-check` runs `cargo xtask reproduce`, which rebuilds the
//!   recorded commit from `git archive` elsewhere and compares the bytes with
//!   the committed digests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use test_support::plugin_entry::PluginItem;
use test_support::repo_root as root;

#[allow(dead_code)]
#[path = "../xtask/src/manifest.rs"]
mod manifest;

fn committed_text() -> String {
    std::fs::read_to_string(root().join("plugin-manifest.yaml"))
        .expect("plugin-manifest.yaml exists")
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
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

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn git(args: &[&str]) -> Option<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(root())
        .args(args)
        .output()
        .ok()
}

fn dist_dir() -> PathBuf {
    std::env::var_os("DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/dist"))
}

#[test]
fn the_committed_manifest_is_the_generators_output() {
    let text = committed_text();
    let release = manifest::parse_header(&text).unwrap_or_else(|e| panic!("header: {e}"));
    assert_eq!(
        manifest::render(&release).expect("renders"),
        text,
        "plugin-manifest.yaml differs from what `cargo xtask dist` generates for the release \
         its header records; regenerate it (cargo xtask release vX.Y.Z)"
    );
    let arches: Vec<&str> = release.artifacts.iter().map(|a| a.arch.as_str()).collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    let mut digests = BTreeSet::new();
    for a in &release.artifacts {
        assert_eq!(a.file, manifest::file_name(&a.arch));
        assert!(
            a.sha256.len() == 64
                && a.sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{}: {} is not a sha256",
            a.file,
            a.sha256
        );
        assert!(
            digests.insert(a.sha256.clone()),
            "two files with one digest"
        );
    }
    assert!(text.contains(&format!("Argo Rollouts {}", manifest::MIN_ARGO_ROLLOUTS)));
    assert!(text.contains("MERGE, DO NOT REPLACE"));
    assert!(
        !text.contains("location: \"file://"),
        "the file:// variant lives in docs/install.md"
    );
}

#[test]
fn the_recorded_commit_is_real_and_target_dist_matches_it() {
    let release = manifest::parse_header(&committed_text()).unwrap();
    assert!(
        !release.commit.ends_with("-modified"),
        "built from a modified checkout: {}",
        release.commit
    );
    match git(&["merge-base", "--is-ancestor", &release.commit, "HEAD"]) {
        Some(out) if out.status.code() == Some(0) => {}
        Some(out) if out.status.code() == Some(1) => {
            panic!("commit {} is not in HEAD's history", release.commit)
        }
        other => {
            let message = format!("cannot ask git about commit {}: {other:?}", release.commit);
            assert!(!in_ci(), "{message}");
            eprintln!("SKIPPED the history check: {message} (run from a git clone)");
        }
    }
    let dist_manifest = dist_dir().join("plugin-manifest.yaml");
    let Ok(text) = std::fs::read_to_string(&dist_manifest) else {
        let message = format!(
            "{} is missing (run `cargo xtask dist`)",
            dist_manifest.display()
        );
        assert!(!in_ci(), "{message}");
        eprintln!("SKIPPED the target/dist checks: {message}");
        return;
    };
    let built = manifest::parse_header(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        manifest::render(&built).unwrap(),
        text,
        "{}",
        dist_manifest.display()
    );
    for a in &built.artifacts {
        assert_eq!(
            sha256_file(&dist_dir().join(&a.file)),
            a.sha256,
            "{} in {}",
            a.file,
            dist_manifest.display()
        );
    }
    if built.commit == release.commit && built.rustc == release.rustc {
        assert_eq!(
            built.artifacts, release.artifacts,
            "target/dist was built from the committed manifest's commit with the same \
             toolchain, so its digests must be the committed ones"
        );
    } else {
        eprintln!(
            "target/dist is from {} ({}); the committed manifest records {} ({}): \
             `cargo xtask reproduce` compares those",
            built.commit, built.rustc, release.commit, release.rustc
        );
    }
}

#[test]
fn the_configmap_entry_is_what_the_controller_reads() {
    let text = committed_text();
    let release = manifest::parse_header(&text).unwrap();
    let docs = documents(&text);
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(config["metadata"]["name"], "argo-rollouts-config");
    assert_eq!(config["metadata"]["namespace"], "argo-rollouts");
    let list = config["data"]["trafficRouterPlugins"]
        .as_str()
        .expect("trafficRouterPlugins is a string holding a YAML list");
    let entries: Vec<PluginItem> = serde_yaml::from_str(list).expect("a list of plugin entries");
    assert_eq!(entries.len(), 1, "one entry: {entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.name, manifest::PLUGIN_NAME);
    let amd64 = &release.artifacts[0];
    // The committed manifest is the project's release: downloaded from the
    // release page of its version.
    assert_eq!(
        entry.location,
        format!(
            "https://github.com/rollouts-plugin-trafficrouter-istio/rollouts-plugin-trafficrouter-istio/releases/download/v{}/{}",
            release.version, amd64.file
        )
    );
    assert_eq!(
        release.base_url,
        manifest::default_base_url(&release.version)
    );
    assert_eq!(entry.sha256.as_deref(), Some(amd64.sha256.as_str()));
    let help = help();
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
    assert_eq!(plugin_name, Some(entry.name.as_str()));
}

/// The committed manifest is a release's (`cargo xtask release vX.Y.Z`):
/// its version is X.Y.Z, which a build that is not that release never
/// prints (they say X.Y.Z-dev+<commit>).
#[test]
fn the_committed_manifest_records_a_release() {
    let release = manifest::parse_header(&committed_text()).unwrap();
    let numbers: Vec<&str> = release.version.split('.').collect();
    assert!(
        numbers.len() == 3
            && numbers
                .iter()
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())),
        "plugin-manifest.yaml records v{}, not a release vX.Y.Z",
        release.version
    );
    // A build of this checkout is not that release, and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"))
        .arg("--version")
        .output()
        .expect("the binary runs");
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let version = printed
        .split_whitespace()
        .nth(1)
        .expect("name, version, commit");
    assert!(
        version.contains("-dev+"),
        "a build outside `cargo xtask release` calls itself {version}"
    );
}

/// The entry alone and the Helm values (`controller.trafficRouterPlugins`)
/// hold the ConfigMap's entry, for the committed release and for
/// target/dist when built.
#[test]
fn the_entry_snippet_and_helm_values_hold_the_configmap_entry() {
    let mut manifests = vec![committed_text()];
    if let Ok(text) = std::fs::read_to_string(dist_dir().join("plugin-manifest.yaml")) {
        manifests.push(text);
        for (file, render) in [
            ("plugin-entry.yaml", manifest::render_entry as fn(&_) -> _),
            ("helm-values.yaml", manifest::render_helm_values),
        ] {
            let release = manifest::parse_header(manifests.last().unwrap()).unwrap();
            assert_eq!(
                std::fs::read_to_string(dist_dir().join(file)).ok(),
                Some(render(&release).unwrap()),
                "target/dist/{file}"
            );
        }
    }
    for text in manifests {
        let release = manifest::parse_header(&text).unwrap();
        let config = documents(&text)
            .into_iter()
            .find(|d| d["kind"] == "ConfigMap")
            .expect("a ConfigMap");
        let list: Value =
            serde_yaml::from_str(config["data"]["trafficRouterPlugins"].as_str().unwrap()).unwrap();
        let entry: Value =
            serde_yaml::from_str(&manifest::render_entry(&release).unwrap()).unwrap();
        assert_eq!(entry, list, "plugin-entry.yaml");
        let values: Value =
            serde_yaml::from_str(&manifest::render_helm_values(&release).unwrap()).unwrap();
        assert_eq!(
            values["controller"]["trafficRouterPlugins"], list,
            "helm-values.yaml"
        );
        assert_eq!(values.as_object().unwrap().len(), 1, "only controller");
    }
}

/// docs/install.md's file:// entry (the init-container install) names the
/// path `install` writes.
#[test]
fn the_file_location_in_the_install_doc_is_usable() {
    let doc = std::fs::read_to_string(root().join("docs/install.md")).expect("docs/install.md");
    let location = "file:///plugins/rollouts-plugin-trafficrouter-istio";
    assert!(doc.contains(location), "docs/install.md shows {location}");
    assert!(
        doc.contains("install /plugins"),
        "the init container runs `install /plugins`"
    );
    let help = help();
    assert!(
        help.contains("install"),
        "the binary has the install subcommand:\n{help}"
    );
}

#[test]
fn the_rbac_covers_what_the_plugin_reads_and_writes() {
    let docs = documents(&committed_text());
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
