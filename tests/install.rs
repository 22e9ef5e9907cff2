//! The install paths of docs/install.md, checked where a tool can run:
//!
//! * kustomize (Argo CD's or your own): `tests/install/kustomize/overlay`
//!   adds the plugin entry to an `argo-rollouts-config` that other plugins
//!   already use, and the init-container install to the controller
//!   Deployment; built with kustomize v5.8.3 (pinned in tests/install/go.mod,
//!   built from its Go module), the other keys must survive and the entry
//!   must be the release's. Without Go the build is skipped with a note
//!   (with `CI=true` it fails).
//! * Helm: the chart writes `controller.trafficRouterPlugins` into the
//!   ConfigMap with `toYaml` (argo-helm
//!   `charts/argo-rollouts/templates/controller/configmap.yaml`); helm itself
//!   is not run here, the values are checked against that shape.
//! * The snippets docs/install.md shows are the files tested here and the
//!   generator's output for the committed release.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use test_support::go_build::Unavailable;
use test_support::plugin_entry::PluginItem;
use test_support::{read_repo_file as read, repo_root as root};

#[allow(dead_code)]
#[path = "../xtask/src/manifest.rs"]
mod manifest;

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|d| !d.is_null())
        .collect()
}

fn release() -> manifest::Release {
    manifest::parse_header(&read("plugin-manifest.yaml")).expect("the committed manifest")
}

/// The committed release's entry, as the controller reads it.
fn release_entries() -> Vec<PluginItem> {
    serde_yaml::from_str(&manifest::render_entry(&release()).expect("renders")).expect("a list")
}

/// `kustomize build DIR` with the pinned kustomize (`tests/install/go.mod`,
/// built once like the genuine Go client); `None` (skipped, with a note)
/// without Go outside CI.
fn kustomize(dir: &Path) -> Option<String> {
    let kustomize = match test_support::go_build::kustomize() {
        Ok(path) => path,
        Err(Unavailable::Skip(why)) => {
            eprintln!(
                "SKIPPED: the kustomize install (tests/install/kustomize) was not built: {why}"
            );
            return None;
        }
        Err(Unavailable::Fail(why)) => panic!("{why}"),
    };
    let out = Command::new(kustomize)
        .arg("build")
        .arg(dir)
        .output()
        .expect("kustomize runs");
    assert!(
        out.status.success(),
        "kustomize build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("utf-8"))
}

#[test]
fn the_kustomize_patch_carries_the_release_entry() {
    let patch = documents(&read(
        "tests/install/kustomize/overlay/plugin-entry-patch.yaml",
    ));
    let list = patch[0]["data"]["trafficRouterPlugins"]
        .as_str()
        .expect("trafficRouterPlugins is a string");
    let entries: Vec<PluginItem> = serde_yaml::from_str(list).expect("a list of plugin entries");
    assert_eq!(
        entries,
        release_entries(),
        "the patch holds the entry of the committed plugin-manifest.yaml"
    );
}

#[test]
fn kustomize_adds_the_entry_and_keeps_every_other_key() {
    let Some(built) = kustomize(&root().join("tests/install/kustomize/overlay")) else {
        return;
    };
    let docs = documents(&built);
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the ConfigMap");
    assert_eq!(config["metadata"]["name"], "argo-rollouts-config");
    let base = documents(&read("tests/install/kustomize/base/argo-rollouts.yaml"));
    // The keys other plugins set survive, unchanged.
    for key in ["metricProviderPlugins", "stepPlugins"] {
        assert_eq!(config["data"][key], base[0]["data"][key], "{key}");
    }
    let entries: Vec<PluginItem> = serde_yaml::from_str(
        config["data"]["trafficRouterPlugins"]
            .as_str()
            .expect("trafficRouterPlugins"),
    )
    .expect("a list");
    assert_eq!(entries, release_entries());

    // The init-container install: the image copies itself into a volume
    // the controller mounts read-only; the controller keeps its own args.
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(init["args"], serde_json::json!(["install", "/plugins"]));
    assert_eq!(init["volumeMounts"][0]["mountPath"], "/plugins");
    assert_eq!(init["securityContext"]["runAsUser"], 999);
    assert_eq!(pod["volumes"][0]["name"], "istio-plugin");
    assert!(pod["volumes"][0]["emptyDir"].is_object());
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "the patch merges into the controller");
    let controller = &containers[0];
    assert_eq!(controller["name"], "argo-rollouts");
    assert_eq!(
        controller["args"],
        serde_json::json!(["--healthzPort=8080"]),
        "the controller's own args survive"
    );
    assert_eq!(controller["volumeMounts"][0]["mountPath"], "/plugins");
    assert_eq!(controller["volumeMounts"][0]["readOnly"], true);
    // The file:// location docs/install.md gives names what `install` writes.
    assert!(read("docs/install.md").contains(&format!(
        "file://{}/rollouts-plugin-trafficrouter-istio",
        init["volumeMounts"][0]["mountPath"].as_str().expect("path")
    )));
}

#[test]
fn the_helm_values_fill_the_charts_traffic_router_plugins() {
    let values = documents(&manifest::render_helm_values(&release()).expect("renders"));
    let list = &values[0]["controller"]["trafficRouterPlugins"];
    assert!(list.is_array(), "controller.trafficRouterPlugins is a list");
    // The chart renders the list with toYaml into the ConfigMap's string,
    // which the controller reads as a list of PluginItem.
    let rendered = serde_yaml::to_string(list).expect("toYaml");
    let entries: Vec<PluginItem> = serde_yaml::from_str(&rendered).expect("PluginItems");
    assert_eq!(entries, release_entries());
}

/// Every snippet of docs/install.md is a tested file or the generator's
/// output for the committed release.
#[test]
fn docs_install_shows_the_tested_snippets() {
    let doc = read("docs/install.md");
    let release = release();
    let entry = manifest::render_entry(&release).expect("entry");
    let entry_body = without_comments(&entry);
    assert!(
        doc.contains(&format!("```yaml\n{entry_body}```")),
        "docs/install.md shows the entry of plugin-entry.yaml:\n{entry_body}"
    );
    let helm = manifest::render_helm_values(&release).expect("helm");
    let helm_body = without_comments(&helm);
    assert!(
        doc.contains(&format!("```yaml\n{helm_body}```")),
        "docs/install.md shows helm-values.yaml:\n{helm_body}"
    );
    for file in [
        "kustomization.yaml",
        "plugin-entry-patch.yaml",
        "init-container-patch.yaml",
    ] {
        let text = read(&format!("tests/install/kustomize/overlay/{file}"));
        assert!(
            doc.contains(&format!("```yaml\n# {file}\n{text}```")),
            "docs/install.md shows tests/install/kustomize/overlay/{file} as it is"
        );
    }
}

/// The entries docs/install.md writes by hand (file://, headersFrom) are
/// entries the controller reads: only PluginItem's keys, the plugin's own
/// name and flags.
#[test]
fn the_hand_written_entries_are_plugin_items() {
    let doc = read("docs/install.md");
    let mut found = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let block = &block[..block.find("```").expect("closed block")];
        let Some(list) = block.strip_prefix("trafficRouterPlugins: |-\n") else {
            continue;
        };
        let list: String = list
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
            .collect();
        let entries: Vec<PluginItem> =
            serde_yaml::from_str(&list).unwrap_or_else(|e| panic!("{e}:\n{list}"));
        for entry in entries {
            assert_eq!(entry.name, manifest::PLUGIN_NAME);
            assert!(
                entry
                    .args
                    .contains(&format!("--plugin-name={}", manifest::PLUGIN_NAME))
            );
            found += 1;
        }
    }
    assert!(
        found >= 2,
        "the file:// and the headersFrom entries: {found}"
    );
}

/// A generated YAML file as the docs show it: its comment lines left out.
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}
