//! The end-to-end tier: the genuine Argo Rollouts controller runs canaries
//! through the plugin on a real kube-apiserver (with etcd and
//! kube-controller-manager), Istio's CRDs with their schemas, and the
//! controller's stock RBAC plus what `plugin-manifest.yaml` adds.
//!
//! Every Go program comes from the pinned modules under `tests/e2e/` and is
//! built once into a cache outside the checkout. Scenarios are data
//! (`tests/e2e/scenarios/*.yaml`, format in `tests/e2e/README.md`); every
//! scenario under `E2E_SCENARIOS_DIR` runs too. One line per scenario and
//! controller version, then `e2e: N passed, M failed`.

mod cluster;
mod controller;
mod expect;
mod kube_objects;
mod pods;
mod release_server;
mod runner;
mod scenario;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::cluster::Cluster;
use crate::controller::{Controller, PluginArtifact};

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("e2e: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok((_, 0)) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            println!("FAIL e2e [setup]: {e:#}");
            println!("e2e: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<(usize, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios = load_scenarios(root)?;
    let kubernetes = selected_kubernetes(root)?;
    let versions = selected_versions(root)?;

    let started = Instant::now();
    let mut builds = Vec::new();
    for release in &kubernetes {
        builds.push(tools::build_all(root, release, &versions)?);
    }
    eprintln!(
        "e2e: Go programs ready in {:.1}s (cache {})",
        started.elapsed().as_secs_f64(),
        tools::cache_dir()?.display()
    );
    if std::env::var_os("E2E_BUILD_ONLY").is_some() {
        println!("e2e: built, nothing run (E2E_BUILD_ONLY)");
        return Ok((0, 0));
    }
    let plugin = PluginArtifact::locate(root)?;
    eprintln!(
        "e2e: plugin {} (sha256 {}) installed through {}{}",
        plugin.binary.display(),
        plugin.sha256,
        plugin.manifest.display(),
        if plugin.release_dir.is_some() {
            ", downloaded over https from a loopback release server"
        } else {
            ", as file://"
        }
    );

    let (mut passed, mut failed) = (0, 0);
    tally(
        &mut passed,
        &mut failed,
        "minimum-version",
        check_minimum_version(root, &plugin.manifest, &versions),
    );
    for built in &builds {
        println!(
            "e2e: Kubernetes {}, argo-rollouts {}",
            built.kubernetes,
            versions.join(", ")
        );
        let (p, f) = run_cluster(root, built, &versions, &scenarios, &plugin).await?;
        passed += p;
        failed += f;
    }
    println!("e2e: {passed} passed, {failed} failed");
    Ok((passed, failed))
}

/// One cluster of one Kubernetes release; every controller release in turn.
async fn run_cluster(
    root: &Path,
    built: &tools::Built,
    versions: &[String],
    scenarios: &[scenario::Scenario],
    plugin: &PluginArtifact,
) -> anyhow::Result<(usize, usize)> {
    let started = Instant::now();
    let cluster = Cluster::start(built, root).await?;
    eprintln!(
        "e2e: cluster (Kubernetes {}) up in {:.1}s (work dir {})",
        built.kubernetes,
        started.elapsed().as_secs_f64(),
        cluster.work_dir().display()
    );
    let stand_in = pods::ReadinessStandIn::start(cluster.admin_client());
    let release_server = match &plugin.release_dir {
        Some(dir) => Some(
            release_server::ReleaseServer::start(dir, &cluster.serving_cert, &cluster.serving_key)
                .await?,
        ),
        None => None,
    };

    let (mut passed, mut failed) = (0, 0);
    for version in versions {
        let started = Instant::now();
        let controller =
            Controller::start(&cluster, built, version, plugin, release_server.as_ref()).await?;
        eprintln!(
            "e2e: argo-rollouts {version} running with plugin {}",
            controller.plugin_name
        );
        let outcomes =
            runner::run_all(&cluster, &controller, scenarios, &built.argocd_normalize).await;
        for outcome in &outcomes {
            match &outcome.failure {
                None => {
                    passed += 1;
                    let notes = if outcome.notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", outcome.notes.join("; "))
                    };
                    println!("PASS {} [argo-rollouts {version}]{notes}", outcome.name);
                }
                Some(why) => {
                    failed += 1;
                    println!("FAIL {} [argo-rollouts {version}]: {why}", outcome.name);
                }
            }
        }
        let error_expected = scenarios.iter().any(|s| s.name == "broken-config");
        tally(
            &mut passed,
            &mut failed,
            &format!("plugin-logs [argo-rollouts {version}]"),
            controller.check_plugin_logs(error_expected),
        );
        controller.stop();
        eprintln!(
            "e2e: argo-rollouts {version} done in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    stand_in.stop();
    if let Some(server) = release_server {
        server.stop();
    }
    cluster.finish(failed == 0);
    Ok((passed, failed))
}

/// Prints a check's `PASS what: summary` or `FAIL what: why` and counts it.
fn tally(passed: &mut usize, failed: &mut usize, what: &str, result: Result<String, String>) {
    match result {
        Ok(summary) => {
            *passed += 1;
            println!("PASS {what}: {summary}");
        }
        Err(why) => {
            *failed += 1;
            println!("FAIL {what}: {why}");
        }
    }
}

/// The manifest states the oldest controller release the plugin needs; it
/// must be the one the plugin itself states (simulate's checks use it) and
/// no newer than any release this tier runs, and one of the releases the
/// tier runs by default: the minimum stated is the minimum proven.
fn check_minimum_version(
    root: &Path,
    manifest: &Path,
    versions: &[String],
) -> Result<String, String> {
    let text =
        std::fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let stated = text
        .lines()
        .find_map(|line| line.strip_prefix("# Needs Argo Rollouts "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| {
            format!(
                "{} states no minimum Argo Rollouts release",
                manifest.display()
            )
        })?;
    let stated: istio_router::controller::Version = stated.parse().map_err(|e| format!("{e}"))?;
    let minimum = istio_router::controller::MINIMUM_SUPPORTED;
    if stated != minimum {
        return Err(format!(
            "{} states {stated}, the plugin states {minimum}",
            manifest.display()
        ));
    }
    let defaults = default_versions(root).map_err(|e| format!("{e:#}"))?;
    if !defaults.contains(&stated.to_string()) {
        return Err(format!(
            "{} states {stated}, which is not a release the tier runs by default ({})",
            manifest.display(),
            defaults.join(", ")
        ));
    }
    for version in versions {
        let run: istio_router::controller::Version = version.parse().map_err(|e| format!("{e}"))?;
        if run < stated {
            return Err(format!(
                "the tier runs {run}, older than the stated minimum {stated}"
            ));
        }
    }
    Ok(format!(
        "{} states argo-rollouts {stated} or newer, as the plugin does; the tier runs {}",
        manifest.display(),
        versions.join(", ")
    ))
}

/// The tier's own scenarios, then those under `E2E_SCENARIOS_DIR`.
fn load_scenarios(root: &Path) -> anyhow::Result<Vec<scenario::Scenario>> {
    let mut dirs = vec![root.join("tests/e2e/scenarios")];
    if let Some(dir) = std::env::var_os("E2E_SCENARIOS_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let mut scenarios = Vec::new();
    for dir in dirs {
        scenarios.extend(scenario::load_dir(&dir)?);
    }
    if let Ok(only) = std::env::var("E2E_ONLY") {
        scenarios.retain(|s| only.split(',').any(|name| name == s.name));
    }
    anyhow::ensure!(!scenarios.is_empty(), "no scenario to run");
    Ok(scenarios)
}

/// `E2E_KUBERNETES=v1.35.4,v1.37.2` or `all` (one cluster each, in turn);
/// default the newest module under `kubernetes/`.
fn selected_kubernetes(root: &Path) -> anyhow::Result<Vec<String>> {
    match std::env::var("E2E_KUBERNETES") {
        Ok(list) if !list.is_empty() => tools::select(root, "kubernetes", &list),
        _ => Ok(vec![tools::newest(root, "kubernetes")?]),
    }
}

/// `E2E_CONTROLLERS=v1.10.2,v1.8.5` or `all`; default the newest release
/// with a module under `controller/` and the minimum the plugin states.
fn selected_versions(root: &Path) -> anyhow::Result<Vec<String>> {
    match std::env::var("E2E_CONTROLLERS") {
        Ok(list) if !list.is_empty() => tools::select(root, "controller", &list),
        _ => default_versions(root),
    }
}

fn default_versions(root: &Path) -> anyhow::Result<Vec<String>> {
    let newest = tools::newest(root, "controller")?;
    let minimum = istio_router::controller::MINIMUM_SUPPORTED.to_string();
    let mut versions = vec![newest.clone()];
    if minimum != newest {
        versions.push(tools::select(root, "controller", &minimum)?.remove(0));
    }
    Ok(versions)
}
