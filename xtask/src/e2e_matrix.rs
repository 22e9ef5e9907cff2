//! `cargo xtask e2e-matrix`: the end-to-end tier on every Kubernetes release
//! and every argo-rollouts release with a module under `tests/e2e/`, one
//! cluster per Kubernetes release, and the table of what passed written
//! into docs/controller-compat.md between its two markers.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

const BEGIN: &str = "<!-- e2e-matrix: begin (written by `cargo xtask e2e-matrix`) -->";
const END: &str = "<!-- e2e-matrix: end -->";

/// Results of one Kubernetes release: per controller release, scenario
/// lines passed and failed (with the names of the failed ones).
#[derive(Default)]
struct Cell {
    passed: usize,
    failed: Vec<String>,
}

pub fn run(root: &Path) -> Result<()> {
    eprintln!("== e2e-matrix: cargo test --test e2e with E2E_KUBERNETES=all E2E_CONTROLLERS=all");
    let mut child = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .current_dir(root)
        .args(["test", "--locked", "--test", "e2e"])
        .env("E2E_KUBERNETES", "all")
        .env("E2E_CONTROLLERS", "all")
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test --test e2e")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut matrix = Matrix::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        matrix.read(&line);
    }
    child.wait()?;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .context("running date")?;
    let text = matrix.render(String::from_utf8_lossy(&date.stdout).trim());
    let doc = root.join("docs/controller-compat.md");
    let current = std::fs::read_to_string(&doc).with_context(|| doc.display().to_string())?;
    let (Some(begin), Some(end)) = (current.find(BEGIN), current.find(END)) else {
        bail!("{} has no {BEGIN} … {END} markers", doc.display());
    };
    let updated = format!(
        "{}{}\n{}{}",
        &current[..begin],
        BEGIN,
        text,
        &current[end..]
    );
    std::fs::write(&doc, updated).with_context(|| doc.display().to_string())?;
    print!("{text}");
    eprintln!("e2e-matrix: wrote {}", doc.display());
    let failures: usize = matrix.cells.values().map(|c| c.failed.len()).sum();
    if failures > 0 || !matrix.other_failures.is_empty() || matrix.cells.is_empty() {
        bail!(
            "{failures} scenario runs failed, {} other failures",
            matrix.other_failures.len()
        );
    }
    Ok(())
}

/// What the tier printed, by (controller, Kubernetes) release.
#[derive(Default)]
struct Matrix {
    kubernetes: Vec<String>,
    controllers: Vec<String>,
    cells: BTreeMap<(String, String), Cell>,
    other_failures: Vec<String>,
}

impl Matrix {
    /// One line of the tier's output: `e2e: Kubernetes v1.37.2, …` opens a
    /// cluster; PASS/FAIL lines count in its column.
    fn read(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("e2e: Kubernetes ") {
            let release = rest.split(',').next().unwrap_or(rest).to_string();
            self.kubernetes.push(release);
        } else if let Some((passed, name, controller)) = parse(line) {
            let k8s = self.kubernetes.last().cloned().unwrap_or_default();
            if !self.controllers.contains(&controller) {
                self.controllers.push(controller.clone());
            }
            let cell = self.cells.entry((controller, k8s)).or_default();
            if passed {
                cell.passed += 1;
            } else {
                cell.failed.push(name);
            }
        } else if line.starts_with("FAIL ") {
            self.other_failures.push(line.to_string());
        }
    }

    fn render(&self, date: &str) -> String {
        let mut out = format!(
            "\nRun on {date} with `cargo xtask e2e-matrix`: every scenario of the tier \
             and its `plugin-logs` check, per cell passed / run.\n\n| argo-rollouts |"
        );
        for k8s in &self.kubernetes {
            out.push_str(&format!(" Kubernetes {k8s} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(self.kubernetes.len()));
        out.push('\n');
        for controller in &self.controllers {
            out.push_str(&format!("| {controller} |"));
            for k8s in &self.kubernetes {
                match self.cells.get(&(controller.clone(), k8s.clone())) {
                    None => out.push_str(" not run |"),
                    Some(cell) if cell.failed.is_empty() => {
                        out.push_str(&format!(" {0} / {0} pass |", cell.passed))
                    }
                    Some(cell) => out.push_str(&format!(
                        " {} / {}, failed: {} |",
                        cell.passed,
                        cell.passed + cell.failed.len(),
                        cell.failed.join(", ")
                    )),
                }
            }
            out.push('\n');
        }
        for failure in &self.other_failures {
            out.push_str(&format!("\n{failure}\n"));
        }
        out.push('\n');
        out
    }
}

/// `PASS name [argo-rollouts v1.10.2]…` or `FAIL name [argo-rollouts v1.10.2]: why`.
fn parse(line: &str) -> Option<(bool, String, String)> {
    let (passed, rest) = match line.split_once(' ')? {
        ("PASS", rest) => (true, rest),
        ("FAIL", rest) => (false, rest),
        _ => return None,
    };
    let (name, rest) = rest.split_once(" [argo-rollouts ")?;
    let (controller, _) = rest.split_once(']')?;
    Some((
        passed,
        name.trim_end_matches(':').to_string(),
        controller.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        assert_eq!(
            parse("PASS host-split [argo-rollouts v1.10.2] (12 steps)"),
            Some((true, "host-split".into(), "v1.10.2".into()))
        );
        assert_eq!(
            parse("FAIL plugin-logs [argo-rollouts v1.7.2]: no line"),
            Some((false, "plugin-logs".into(), "v1.7.2".into()))
        );
        assert_eq!(parse("PASS minimum-version: states v1.7.2"), None);
        assert_eq!(parse("e2e: 3 passed, 0 failed"), None);
    }

    #[test]
    fn renders_a_cell_per_pair() {
        let mut matrix = Matrix::default();
        for line in [
            "PASS minimum-version: states v1.7.2",
            "e2e: Kubernetes v1.35.4, argo-rollouts v1.7.2, v1.8.5",
            "PASS a [argo-rollouts v1.7.2]",
            "PASS b [argo-rollouts v1.7.2] (notes)",
            "e2e: Kubernetes v1.37.2, argo-rollouts v1.7.2, v1.8.5",
            "PASS a [argo-rollouts v1.7.2]",
            "FAIL b [argo-rollouts v1.7.2]: why",
            "PASS a [argo-rollouts v1.8.5]",
        ] {
            matrix.read(line);
        }
        let text = matrix.render("2026-12-08");
        assert!(
            text.contains("| argo-rollouts | Kubernetes v1.35.4 | Kubernetes v1.37.2 |"),
            "{text}"
        );
        assert!(
            text.contains("| v1.7.2 | 2 / 2 pass | 1 / 2, failed: b |"),
            "{text}"
        );
        assert!(text.contains("| v1.8.5 | not run | 1 / 1 pass |"), "{text}");
    }
}
