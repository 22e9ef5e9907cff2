//! `simulate` plays every example in `examples/` to full promotion, and a
//! broken manifest stops it with one line naming the file and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The final objects of a simulation, from `--output yaml`.
fn final_objects(example: &Path) -> Vec<Value> {
    let out = simulate(&[
        "--rollout",
        example.to_str().expect("utf-8 path"),
        "--output",
        "yaml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    istio_router::yaml::documents(&text).expect("valid YAML documents")
}

fn all_weights(object: &Value) -> Vec<i64> {
    let mut weights = Vec::new();
    for kind in ["http", "tcp", "tls"] {
        for route in object["spec"][kind].as_array().into_iter().flatten() {
            for d in route["route"].as_array().into_iter().flatten() {
                weights.push(d["weight"].as_i64().unwrap_or(0));
            }
        }
    }
    weights
}

#[test]
fn every_example_plays_to_full_promotion() {
    let files = examples();
    assert!(
        files.len() >= 5,
        "expected the five example setups, found {files:?}"
    );
    for example in files {
        let out = simulate(&["--rollout", example.to_str().expect("utf-8 path")]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            example.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("fully promoted"),
            "{}:\n{stdout}",
            example.display()
        );
        assert!(
            !stdout.contains("NotVerified"),
            "{}:\n{stdout}",
            example.display()
        );
        assert!(
            stdout.contains("SetWeight(100)"),
            "{}: reaches maxTrafficWeight",
            example.display()
        );
        // Something changed along the way, shown as a diff.
        assert!(
            stdout.contains("     +") && stdout.contains("     -"),
            "{}:\n{stdout}",
            example.display()
        );

        // After promotion: all traffic on stable, no managed route left.
        for object in final_objects(&example) {
            if object["kind"] == "VirtualService" {
                let routes = object["spec"]["http"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    routes.iter().all(|r| r.get("mirror").is_none()),
                    "{}: {object}",
                    example.display()
                );
                let weights = all_weights(&object);
                assert!(
                    weights.contains(&100) && weights.iter().all(|w| *w == 0 || *w == 100),
                    "{}: {weights:?}",
                    example.display()
                );
            }
        }
    }
}

#[test]
fn subset_example_labels_both_subsets_with_the_new_hash_after_promotion() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/subset-split.yaml");
    let objects = final_objects(&example);
    let dr = objects
        .iter()
        .find(|o| o["kind"] == "DestinationRule")
        .expect("the DestinationRule");
    let hashes: Vec<&str> = dr["spec"]["subsets"]
        .as_array()
        .expect("subsets")
        .iter()
        .map(|s| {
            s["labels"]["rollouts-pod-template-hash"]
                .as_str()
                .expect("hash label")
        })
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_eq!(
        hashes[0], hashes[1],
        "promoted: both subsets select the new pods"
    );
    assert_eq!(
        dr["spec"]["trafficPolicy"]["loadBalancer"]["simple"],
        "LEAST_REQUEST"
    );
}

#[test]
fn header_example_adds_then_removes_the_header_route() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/header-route.yaml");
    let out = simulate(&["--rollout", example.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SetHeaderRoute(canary-testers)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "     added http route canary-testers (spec.http[0]):\n       + name: canary-testers\n"
        ),
        "{stdout}"
    );
    // The step that removes the route says so, in its title and its call.
    assert!(
        stdout.contains("== step 5/6: setHeaderRoute canary-testers: remove the route (1 write)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SetHeaderRoute(canary-testers, no match: removes the route)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("     removed http route canary-testers (was spec.http[0]):\n       - name: canary-testers\n"),
        "{stdout}"
    );
}

/// A weight change shows the whole route: both destinations with their
/// hosts, only the weight lines marked, so it cannot read as a host
/// rename.
#[test]
fn a_changed_route_is_shown_whole_with_only_its_weights_marked() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/header-route.yaml");
    let out = simulate(&["--rollout", example.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = "   VirtualService shop/checkout:
     http route primary (spec.http[0]):
         name: primary
         route:
         - destination:
             host: checkout-stable
             port:
               number: 8080
       -   weight: 100
       +   weight: 95
         - destination:
             host: checkout-canary
             port:
               number: 8080
       -   weight: 0
       +   weight: 5
";
    assert!(stdout.contains(want), "{stdout}");
    // In a weight step, only weight lines are marked.
    let step = stdout
        .split("== step 1/6")
        .nth(1)
        .and_then(|rest| rest.split("== step 2/6").next())
        .expect("step 1");
    let marked: Vec<&str> = step
        .lines()
        .filter(|l| l.starts_with("       -") || l.starts_with("       +"))
        .map(str::trim)
        .collect();
    assert_eq!(
        marked,
        [
            "-   weight: 100",
            "+   weight: 95",
            "-   weight: 0",
            "+   weight: 5"
        ]
    );
}

#[test]
fn pauses_are_shown_with_their_kind() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/header-route.yaml");
    let out = simulate(&["--rollout", example.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("== step 3/6: pause (until promoted) ("),
        "{stdout}"
    );
    assert!(stdout.contains("== step 6/6: pause 15m ("), "{stdout}");
}

/// `--output yaml` writes only YAML documents on stdout (what a pipe into
/// kubectl wants) and says what it played on stderr.
#[test]
fn yaml_output_is_pipeable() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/header-route.yaml");
    let out = simulate(&[
        "--rollout",
        example.to_str().expect("utf-8 path"),
        "--output",
        "yaml",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(stdout.starts_with("---\n"), "{stdout}");
    let documents = istio_router::yaml::documents(&stdout).expect("only YAML on stdout");
    assert_eq!(
        documents.len(),
        1,
        "only the VirtualService the Rollout names"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("Simulating rollout shop/checkout"),
        "{stderr}"
    );
}

/// Objects the Rollout does not name are indexed and dropped: they are
/// neither played nor printed.
#[test]
fn objects_the_rollout_does_not_name_are_left_out() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/host-split.yaml"),
    )
    .expect("example");
    let mut text = base.clone();
    for i in 0..50 {
        text.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata:\n  name: other-{i}\nspec:\n  hosts: [other-{i}]\n  http:\n    - route:\n        - destination: {{host: other-{i}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\ndata: {{a: b}}\n"
        ));
    }
    let dir = std::env::temp_dir().join(format!("simulate-unnamed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("many.yaml");
    std::fs::write(&path, text).expect("write");
    let out = simulate(&[
        "--rollout",
        path.to_str().expect("utf-8"),
        "--output",
        "yaml",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let documents =
        istio_router::yaml::documents(&String::from_utf8_lossy(&out.stdout)).expect("YAML");
    let names: Vec<&str> = documents
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["rollouts-demo-vsvc"]);
}

#[test]
fn the_embedded_default_runs_without_arguments() {
    let out = simulate(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("fully promoted"));
}

#[test]
fn an_invalid_manifest_gives_one_line_naming_file_and_field() {
    let dir = std::env::temp_dir().join(format!("simulate-invalid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (
            "wrong-type.yaml",
            "setWeight: twenty",
            "spec.strategy.canary.steps[0].setWeight",
        ),
        ("unknown-key.yaml", "setWeight: 20", "virtualServce"),
    ];
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/host-split.yaml"),
    )
    .expect("example");
    for (name, step, field) in cases {
        let mut text = base.replacen("- setWeight: 20", &format!("- {step}"), 1);
        if field == "virtualServce" {
            text = text.replacen("virtualService:", "virtualServce:", 1);
        }
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write manifest");
        let out = simulate(&["--rollout", path.to_str().expect("utf-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} should fail");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line, got:\n{stderr}"
        );
        assert!(
            stderr.contains(name) && stderr.contains(field),
            "{name}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the chosen controller release refuses never reaches the plugin:
/// simulate says so in the controller's words, as the end-to-end tier sees
/// argo-rollouts v1.9.3 do for a setMirrorRoute step.
#[test]
fn a_step_the_controller_release_refuses_is_refused_in_its_words() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mirror-route.yaml");
    let example = example.to_str().expect("utf-8 path");
    let old = simulate(&["--rollout", example, "--argo-rollouts-version", "v1.9.3"]);
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(!old.status.success(), "v1.9.3 must refuse:\n{stderr}");
    assert!(
        stderr.contains("argo-rollouts v1.9.3 refuses this Rollout")
            && stderr.contains(
                "setMirrorRoute: SetMirrorRoute requires TrafficRouting, supports Istio only"
            )
            && stderr.contains("accepted from argo-rollouts v1.10.0"),
        "{stderr}"
    );
    assert!(old.stdout.is_empty(), "nothing is played");
    let latest = simulate(&["--rollout", example]);
    assert!(
        latest.status.success(),
        "{}",
        String::from_utf8_lossy(&latest.stderr)
    );
}
