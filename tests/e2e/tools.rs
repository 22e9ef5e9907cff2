//! Builds the Go programs from the pinned modules under `tests/e2e/` into a
//! cache outside the checkout. `go build -o` relinks nothing that is up to
//! date, so a second run costs seconds; the first builds everything once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Every module needs a Go newer than the machine's 1.26.8
/// (argo-rollouts' go.mod asks for 1.26.10); this is the approved one,
/// fetched by the go command from the module proxy.
pub const GO_TOOLCHAIN: &str = "go1.27.3";

pub struct Built {
    pub cache_dir: PathBuf,
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    /// Per controller version: `rollouts-controller` and `kubectl-argo-rollouts`.
    pub controllers: HashMap<String, ControllerTools>,
    /// The module directories holding files the tier installs from.
    pub istio_api_dir: PathBuf,
    /// Argo CD's managedFieldsManagers normalization (`argocd/`).
    pub argocd_normalize: PathBuf,
}

pub struct ControllerTools {
    pub controller: PathBuf,
    pub kubectl_plugin: PathBuf,
    /// The argo-rollouts module itself (CRDs and the stock ClusterRole).
    pub module_dir: PathBuf,
}

/// `$E2E_CACHE_DIR`, else `$XDG_CACHE_HOME/rollouts-plugin-trafficrouter-istio/e2e`,
/// else `~/.cache/…`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("E2E_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("rollouts-plugin-trafficrouter-istio/e2e"))
}

pub fn build_all(root: &Path, versions: &[String]) -> anyhow::Result<Built> {
    let go = find_go()?;
    let cache_dir = cache_dir()?;
    let e2e = root.join("tests/e2e");

    let cluster_module = e2e.join("cluster");
    let cluster_bin = cache_dir.join("bin/cluster");
    go_build(
        &go,
        &cluster_module,
        &cluster_bin,
        &[
            "./etcd",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ],
    )?;
    let istio_api_dir = module_dir(&go, &cluster_module, "istio.io/api")?;
    let argocd_bin = cache_dir.join("bin/argocd");
    go_build(&go, &e2e.join("argocd"), &argocd_bin, &["."])?;

    let mut controllers = HashMap::new();
    for version in versions {
        let module = e2e.join("controller").join(version);
        if !module.join("go.mod").is_file() {
            let known: Vec<String> = std::fs::read_dir(e2e.join("controller"))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            bail!(
                "no module for argo-rollouts {version} under tests/e2e/controller (have: {})",
                known.join(", ")
            );
        }
        let bin = cache_dir.join("bin").join(version);
        go_build(
            &go,
            &module,
            &bin,
            &[
                "github.com/argoproj/argo-rollouts/cmd/rollouts-controller",
                "github.com/argoproj/argo-rollouts/cmd/kubectl-argo-rollouts",
            ],
        )?;
        controllers.insert(
            version.clone(),
            ControllerTools {
                controller: bin.join("rollouts-controller"),
                kubectl_plugin: bin.join("kubectl-argo-rollouts"),
                module_dir: module_dir(&go, &module, "github.com/argoproj/argo-rollouts")?,
            },
        );
    }
    Ok(Built {
        etcd: cluster_bin.join("etcd"),
        kube_apiserver: cluster_bin.join("kube-apiserver"),
        kube_controller_manager: cluster_bin.join("kube-controller-manager"),
        cache_dir,
        controllers,
        istio_api_dir,
        argocd_normalize: argocd_bin.join("argocd"),
    })
}

/// The `go` command. Missing Go fails the tier: it cannot run without it.
fn find_go() -> anyhow::Result<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/local/go/bin")]);
    for dir in candidates {
        let go = dir.join("go");
        if go.is_file() {
            return Ok(go);
        }
    }
    bail!(
        "the end-to-end tier needs Go (1.26 or newer, with the Go module proxy): no `go` on PATH or in /usr/local/go/bin"
    )
}

fn go_command(go: &Path, module: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .current_dir(module)
        .env("GOTOOLCHAIN", GO_TOOLCHAIN)
        .env("GOFLAGS", "-mod=readonly -buildvcs=false");
    command
}

fn go_build(go: &Path, module: &Path, out: &Path, packages: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let output = go_command(go, module)
        .arg("build")
        .arg("-o")
        .arg(format!("{}/", out.display()))
        .args(packages)
        .output()
        .with_context(|| format!("running go build in {}", module.display()))?;
    if !output.status.success() {
        bail!(
            "go build in {} failed:\n{}",
            module.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!(
        "e2e: built {} in {:.1}s",
        module.file_name().unwrap_or_default().to_string_lossy(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where the go command keeps a module the given module requires.
fn module_dir(go: &Path, module: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let output = go_command(go, module)
        .args(["list", "-m", "-f", "{{.Dir}}", path])
        .output()
        .with_context(|| format!("running go list in {}", module.display()))?;
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || dir.is_empty() {
        bail!(
            "go list -m {path} in {} failed: {}",
            module.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(dir))
}
