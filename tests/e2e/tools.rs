//! Builds the Go programs from the pinned modules under `tests/e2e/` into a
//! cache outside the checkout. `go build -o` relinks nothing that is up to
//! date, so a second run costs seconds; the first builds everything once.
//!
//! The modules, one directory each:
//! - `etcd/`: etcd's own server (`etcdmain`);
//! - `kubernetes/<version>/`: kube-apiserver and kube-controller-manager of
//!   one Kubernetes release;
//! - `istio/`: `istio.io/api`, whose CRDs the tier installs;
//! - `controller/<version>/`: one argo-rollouts release (controller, CRDs,
//!   stock RBAC);
//! - `argocd/`: Argo CD's diff normalization.
//!
//! `kubectl argo-rollouts` is built once, from the newest controller module:
//! users run one kubectl plugin against whatever controller they have.

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
    pub etcd: PathBuf,
    pub kubernetes: String,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    /// Per controller version: `rollouts-controller` and its module.
    pub controllers: HashMap<String, ControllerTools>,
    /// `kubectl-argo-rollouts` of the newest controller module.
    pub kubectl_plugin: PathBuf,
    /// The module directories holding files the tier installs from.
    pub istio_api_dir: PathBuf,
    /// Argo CD's managedFieldsManagers normalization (`argocd/`).
    pub argocd_normalize: PathBuf,
}

pub struct ControllerTools {
    pub controller: PathBuf,
    /// The argo-rollouts module itself (CRDs and the stock ClusterRole).
    pub module_dir: PathBuf,
}

/// A release `vMAJOR.MINOR.PATCH`, ordered numerically.
pub fn release_key(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.strip_prefix('v')?.split('.').map(str::parse);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

/// The releases that have a module under `tests/e2e/<kind>/`, oldest first.
pub fn available(root: &Path, kind: &str) -> anyhow::Result<Vec<String>> {
    let dir = root.join("tests/e2e").join(kind);
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if release_key(&name).is_some() && entry.path().join("go.mod").is_file() {
            versions.push(name);
        }
    }
    versions.sort_by_key(|v| release_key(v));
    Ok(versions)
}

/// The newest release with a module under `tests/e2e/<kind>/`.
pub fn newest(root: &Path, kind: &str) -> anyhow::Result<String> {
    available(root, kind)?
        .pop()
        .with_context(|| format!("no module under tests/e2e/{kind}"))
}

/// `list` (comma-separated, or `all`) checked against the modules present.
pub fn select(root: &Path, kind: &str, list: &str) -> anyhow::Result<Vec<String>> {
    let known = available(root, kind)?;
    if list == "all" {
        return Ok(known);
    }
    let mut chosen = Vec::new();
    for version in list.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        if !known.iter().any(|k| k == version) {
            bail!(
                "no module for {kind} {version} under tests/e2e/{kind} (have: {})",
                known.join(", ")
            );
        }
        chosen.push(version.to_string());
    }
    Ok(chosen)
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

pub fn build_all(root: &Path, kubernetes: &str, versions: &[String]) -> anyhow::Result<Built> {
    let go = find_go()?;
    let e2e = root.join("tests/e2e");
    let bin = cache_dir()?.join("bin");

    go_build(&go, &e2e.join("etcd"), &bin.join("etcd"), &["."])?;
    let kubernetes_module = e2e.join("kubernetes").join(kubernetes);
    let kubernetes_bin = bin.join("kubernetes").join(kubernetes);
    go_build(
        &go,
        &kubernetes_module,
        &kubernetes_bin,
        &[
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ],
    )?;
    let istio_api_dir = module_dir(&go, &e2e.join("istio"), "istio.io/api")?;
    go_build(&go, &e2e.join("argocd"), &bin.join("argocd"), &["."])?;

    // The kubectl plugin of the newest release present, for every controller.
    let newest = newest(root, "controller")?;
    let kubectl_bin = bin.join("controller").join(&newest);
    go_build(
        &go,
        &e2e.join("controller").join(&newest),
        &kubectl_bin,
        &["github.com/argoproj/argo-rollouts/cmd/kubectl-argo-rollouts"],
    )?;

    let mut controllers = HashMap::new();
    for version in versions {
        let module = e2e.join("controller").join(version);
        let out = bin.join("controller").join(version);
        go_build(
            &go,
            &module,
            &out,
            &["github.com/argoproj/argo-rollouts/cmd/rollouts-controller"],
        )?;
        controllers.insert(
            version.clone(),
            ControllerTools {
                controller: out.join("rollouts-controller"),
                module_dir: module_dir(&go, &module, "github.com/argoproj/argo-rollouts")?,
            },
        );
    }
    Ok(Built {
        etcd: bin.join("etcd/etcd"),
        kubernetes: kubernetes.to_string(),
        kube_apiserver: kubernetes_bin.join("kube-apiserver"),
        kube_controller_manager: kubernetes_bin.join("kube-controller-manager"),
        controllers,
        kubectl_plugin: kubectl_bin.join("kubectl-argo-rollouts"),
        istio_api_dir,
        argocd_normalize: bin.join("argocd/argocd"),
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
    // No DWARF: the tier never debugs these programs, and the linker's
    // time on kube-apiserver's symbol tables is the largest part of a relink.
    go_run(
        go,
        module,
        &[
            &[
                "build",
                "-ldflags=-s -w",
                "-o",
                &format!("{}/", out.display()),
            ],
            packages,
        ]
        .concat(),
    )?;
    let name = module
        .strip_prefix(module.ancestors().nth(2).unwrap_or(module))
        .unwrap_or(module);
    eprintln!(
        "e2e: built {} in {:.1}s",
        name.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where the go command keeps a module the given module requires.
/// Downloads it first: nothing may be built from a module the tier only
/// reads files from.
fn module_dir(go: &Path, module: &Path, path: &str) -> anyhow::Result<PathBuf> {
    go_run(go, module, &["mod", "download", path])?;
    let output = go_run(go, module, &["list", "-m", "-f", "{{.Dir}}", path])?;
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    anyhow::ensure!(
        !dir.is_empty(),
        "go list -m {path} in {} named no directory",
        module.display()
    );
    Ok(PathBuf::from(dir))
}

/// Runs the go command in `module`; its stderr is the error when it fails.
fn go_run(go: &Path, module: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let output = go_command(go, module)
        .args(args)
        .output()
        .with_context(|| format!("running go {} in {}", args.join(" "), module.display()))?;
    if !output.status.success() {
        bail!(
            "go {} in {} failed:\n{}",
            args.join(" "),
            module.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}
