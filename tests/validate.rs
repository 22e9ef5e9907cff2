//! `validate` as a user runs it: the real binary over the manifests in
//! tests/validate/ and examples/.
//!
//! tests/validate/bad/NAME.yaml holds broken manifests; NAME.expected is
//! exactly what `validate --rollout NAME.yaml` prints. Each file uses its
//! own namespace, so the whole directory, validated at once, prints the
//! union of those lines. tests/validate/good/ holds setups that pass;
//! tests/validate/gate/ is a repository's worth of Rollouts, most of which
//! do not use this plugin (gate.expected: what `--strict` prints).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use test_support::repo_root as root;

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"))
        .current_dir(root())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("the binary finishes")
}

fn validate(args: &[&str]) -> Output {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    run(&all, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// Exit 0 and the summary of one clean Rollout (`what` names the input in
/// the failure message).
fn assert_one_clean_rollout(out: &Output, what: &str) {
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(0),
            "0 errors, 0 warnings; 1 Rollout checked\n".to_string()
        ),
        "{what}: {}",
        text(&out.stderr)
    );
}

/// `tests/validate/bad/*.yaml`, relative to the crate root, sorted.
fn bad_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(root().join("tests/validate/bad"))
        .expect("tests/validate/bad exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            format!(
                "tests/validate/bad/{}",
                p.file_name().expect("name").to_string_lossy()
            )
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "the broken manifests: {cases:?}");
    cases
}

fn expected(case: &str) -> String {
    let path = root().join(case.replace(".yaml", ".expected"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn each_broken_manifest_prints_exactly_its_expected_problems() {
    for case in bad_cases() {
        let out = validate(&["--rollout", &case]);
        let stdout = text(&out.stdout);
        let want = expected(&case);
        assert_eq!(stdout, want, "{case}: stdout differs from its .expected");
        let errors = want.lines().filter(|l| l.contains(": error: ")).count();
        assert_eq!(
            out.status.code(),
            Some(if errors > 0 { 1 } else { 0 }),
            "{case}: exit code\n{stdout}{}",
            text(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{case}: {}", text(&out.stderr));
        // Every problem names its file, and an object or a field.
        for line in want
            .lines()
            .filter(|l| l.contains(": error: ") || l.contains(": warning: "))
        {
            assert!(line.starts_with(&format!("{case}:")), "{line}");
        }
    }
}

#[test]
fn a_directory_of_broken_manifests_lists_every_problem_at_once() {
    let out = validate(&["--rollout", "tests/validate/bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut want: Vec<String> = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for case in bad_cases() {
        for line in expected(&case).lines() {
            if line.contains(": error: ") {
                errors += 1;
            } else if line.contains(": warning: ") {
                warnings += 1;
            } else {
                continue;
            }
            want.push(line.to_string());
        }
    }
    let got: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains(": error: ") || l.contains(": warning: "))
        .map(str::to_string)
        .collect();
    assert_eq!(got, want);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("{errors} errors, {warnings} warnings; ")),
        "{stdout}"
    );
}

#[test]
fn the_controller_rules_are_all_reported_with_their_fields() {
    let stdout = expected("tests/validate/bad/controller-refusals.yaml");
    for field in [
        "spec.strategy.steps[0].setWeight: Invalid value: 120",
        "spec.strategy.steps[1]: Invalid value: setWeight+pause",
        "spec.strategy.steps[2].pause.duration: Invalid value: \"ten minutes\"",
        "spec.strategy.steps[3].setHeaderRoute: Invalid value: \"qa\"",
        "spec.strategy.steps[4].setMirrorRoute: Invalid value: \"shadow\"",
    ] {
        assert!(stdout.contains(field), "{field}:\n{stdout}");
    }
    // A step the controller refuses is never sent to the plugin, so it
    // is not reported a second time as a failed call.
    assert!(!stdout.contains("SetWeight failed"), "{stdout}");
}

#[test]
fn warnings_alone_exit_0_unless_strict() {
    let case = "tests/validate/bad/warnings.yaml";
    let lenient = validate(&["--rollout", case]);
    assert_eq!(lenient.status.code(), Some(0));
    assert!(text(&lenient.stdout).ends_with("0 errors, 5 warnings; 1 Rollout checked\n"));
    let strict = validate(&["--rollout", case, "--strict"]);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(strict.stdout, lenient.stdout);
}

#[test]
fn json_output_carries_every_problem_with_file_object_and_field() {
    let out = validate(&["--rollout", "tests/validate/bad", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let problems = report["problems"].as_array().expect("problems");
    assert_eq!(
        report["errors"].as_u64().expect("errors") + report["warnings"].as_u64().expect("warnings"),
        problems.len() as u64
    );
    let text_lines = text(&validate(&["--rollout", "tests/validate/bad"]).stdout)
        .lines()
        .count();
    assert_eq!(problems.len() + 1, text_lines, "the same problems as text");
    for problem in problems {
        assert!(
            problem["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(".yaml"))
        );
        assert!(problem["line"].as_u64().is_some(), "{problem}");
        assert!(matches!(
            problem["severity"].as_str(),
            Some("error" | "warning")
        ));
        // A YAML error has a line but no object yet; everything else names both.
        if !problem["message"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate key")
        {
            assert!(problem["object"].is_string(), "{problem}");
            assert!(problem["field"].is_string(), "{problem}");
        }
    }
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_clean_even_with_strict() {
    let files = examples();
    assert!(files.len() >= 5, "{files:?}");
    for example in &files {
        let path = example.to_str().expect("utf-8 path");
        let out = validate(&["--rollout", path, "--strict"]);
        assert_one_clean_rollout(&out, path);
    }
    // And all of them at once, as a directory.
    let out = validate(&["--rollout", "examples", "--strict"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        format!("0 errors, 0 warnings; {} Rollouts checked\n", files.len())
    );
}

#[test]
fn objects_come_from_directories_and_stdin() {
    let good = "tests/validate/good/split-objects";
    let out = validate(&[
        "--rollout",
        &format!("{good}/rollout.yaml"),
        "--objects",
        &format!("{good}/objects"),
        "--strict",
    ]);
    assert_one_clean_rollout(&out, "");
    // A directory given with --rollout: its objects may come in a file read
    // before the Rollout's.
    let out = validate(&["--rollout", "tests/validate/good/rollout-dir", "--strict"]);
    assert_one_clean_rollout(&out, "");
    // Without its objects, the missing VirtualService is an error naming
    // the configuration field.
    let alone = validate(&["--rollout", &format!("{good}/rollout.yaml")]);
    assert_eq!(alone.status.code(), Some(1));
    let stdout = text(&alone.stdout);
    assert!(
        stdout.contains(
            ".virtualService.name: VirtualService split/ratings is not in the given manifests"
        ),
        "{stdout}"
    );
    // The Rollout on stdin.
    let example = std::fs::read_to_string(root().join("examples/tcp-split.yaml")).expect("example");
    let out = run(&["validate", "--rollout", "-"], Some(&example));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let broken = example.replacen("setWeight: 25", "setWeight: 250", 1);
    assert_ne!(broken, example);
    let out = run(&["validate", "--rollout", "-"], Some(&broken));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("-:"), "{}", text(&out.stdout));
}

#[test]
fn an_unreadable_input_stops_validate_with_exit_2() {
    // docs/validate.md: 2 when validate itself cannot run.
    for args in [
        &["--rollout", "tests/validate/no-such-file.yaml"][..],
        &[
            "--rollout",
            "tests/validate/gate",
            "--objects",
            "tests/validate/no-such-dir",
        ][..],
    ] {
        let out = validate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        let stderr = text(&out.stderr);
        let missing = args[args.len() - 1];
        assert_eq!(
            stderr,
            format!("error: {missing}: cannot read: No such file or directory (os error 2)\n")
        );
    }
}

#[test]
fn a_repository_gate_checks_only_this_plugins_rollouts() {
    // Blue-green Rollouts, a Gateway API plugin Rollout and one still on
    // the built-in Istio router are skipped and counted; this plugin's are
    // checked, and clean, so --strict exits 0.
    let out = validate(&["--rollout", "tests/validate/gate", "--strict"]);
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(root().join("tests/validate/gate.expected")).expect("expected")
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = validate(&["--rollout", "tests/validate/gate", "-o", "json"]);
    let report: Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(report["checked"], 2);
    let reasons: Vec<&str> = report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons,
        [
            "blue-green",
            "blue-green",
            "built-in Istio router",
            "another traffic router"
        ]
    );
    // With this plugin's objects broken, the same gate fails.
    let broken = validate(&[
        "--rollout",
        "tests/validate/gate",
        "tests/validate/bad/weights.yaml",
        "--strict",
    ]);
    assert_eq!(broken.status.code(), Some(1));
}

#[test]
fn a_file_reached_twice_is_read_once() {
    // `--objects .` next to the Rollout's own file: not a duplicate of itself.
    let out = Command::new(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"))
        .current_dir(root().join("tests/validate/good/rollout-dir"))
        .args([
            "validate",
            "--rollout",
            "rollout.yaml",
            "--objects",
            ".",
            "--strict",
        ])
        .output()
        .expect("the binary runs");
    assert_one_clean_rollout(&out, "");
}

#[test]
fn every_problem_points_at_the_line_of_its_field() {
    let out = validate(&["--rollout", "tests/validate/bad", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let mut checked = 0;
    for problem in report["problems"].as_array().expect("problems") {
        let Some(field) = problem["field"].as_str() else {
            continue;
        };
        let file = problem["file"].as_str().expect("file");
        let line = problem["line"].as_u64().expect("line") as usize;
        let source = std::fs::read_to_string(root().join(file)).expect("the file");
        let at = source
            .lines()
            .nth(line - 1)
            .expect("the line exists")
            .trim();
        // The field's last part: a key written on that line, or a list item.
        let last = field.rsplit(['.']).next().expect("a part");
        if let Some(key) = last.strip_prefix("plugins[\"") {
            let key = key.trim_end_matches("\"]");
            assert!(
                at.starts_with(&format!("{key}:")),
                "{file}:{line} {field}: {at}"
            );
        } else if last.ends_with(']') {
            let key = &last[..last.find('[').expect("[")];
            let item = at.starts_with('-') || at.starts_with(&format!("{key}:"));
            assert!(item, "{file}:{line} {field}: {at}");
        } else {
            // A field that is missing points at the list item that lacks it.
            let raw = source.lines().nth(line - 1).expect("the line");
            let indent = raw.len() - raw.trim_start().len();
            let missing = std::iter::once(raw.trim_start().trim_start_matches("- "))
                .chain(
                    source
                        .lines()
                        .skip(line)
                        .take_while(|l| l.len() - l.trim_start().len() > indent)
                        .map(str::trim_start),
                )
                .all(|l| !l.starts_with(&format!("{last}:")));
            assert!(
                at.trim_start_matches("- ").starts_with(&format!("{last}:"))
                    || at.contains(&format!("{{{last}:"))
                    || (missing && at.starts_with("- ")),
                "{file}:{line} {field}: {at}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked} problems with a field");
}

#[test]
fn a_budget_refusal_is_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.yaml");
    let list = vec!["0"; 250_001].join(",");
    std::fs::write(
        &path,
        format!("kind: ConfigMap\nmetadata: {{name: big, namespace: x}}\ndata:\n  a: [{list}]\n"),
    )
    .expect("write");
    let out = validate(&["--rollout", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{}:4: error: the input has more than 250000 nodes (mappings, lists and values), \
             the most the reader takes in one document: split it into smaller files\n",
            path.display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains('{'), "{stdout}");
}

#[test]
fn simulate_runs_the_same_checks_and_refuses_on_errors() {
    let case = "tests/validate/bad/controller-refusals.yaml";
    let out = run(&["simulate", "--rollout", case], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing simulated");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: 5 errors, nothing simulated"),
        "{stderr}"
    );
    // Each error as `validate` words it, without repeating "error".
    for line in expected(case).lines().filter(|l| l.contains(": error: ")) {
        let line = line.replacen(": error: ", ": ", 1);
        assert!(stderr.contains(&line), "{line}\n{stderr}");
    }
    assert!(!stderr.contains(": error: "), "{stderr}");
    // Warnings are shown and the simulation goes on.
    let out = run(
        &["simulate", "--rollout", "tests/validate/bad/warnings.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("fully promoted"));
    assert_eq!(
        text(&out.stderr)
            .lines()
            .filter(|l| l.contains(": warning: "))
            .count(),
        5
    );
}
