//! Builds `tests/go-client`, the Argo Rollouts controller's own plugin
//! client (argo-rollouts v1.10.2, go-plugin v1.7.0, pinned in its
//! go.mod/go.sum), and the module's other programs (`cmd/floor`, the peers
//! benchmark's Go floor plugin) and kustomize (`tests/install`), once per
//! source version: each binary is kept in the user's
//! cache directory, outside the clone, under a key hashed from the module's
//! files and the Go toolchain, so later runs (and `cargo clean`) reuse it.
//!
//! Go modules come from the Go module proxy; argo-rollouts v1.10.2 needs a
//! newer Go than the one installed, so every go command runs with
//! `GOTOOLCHAIN=go1.27.3` (fetched from the proxy by the installed `go`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The Go toolchain argo-rollouts v1.10.2's `go 1.26.10` line needs.
const GOTOOLCHAIN: &str = "go1.27.3";

/// How to get the client when it cannot be built.
const HOW_TO_ENABLE: &str = "install Go (go1.21 or newer, on PATH or in /usr/local/go) with \
     access to the Go module proxy, which serves GOTOOLCHAIN=go1.27.3 and the modules pinned in \
     tests/go-client/go.sum and tests/install/go.sum";

/// Why the client is not there.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// No usable Go toolchain, outside CI: the caller skips and says how to
    /// enable the test.
    Skip(String),
    /// Under CI (`CI=true`) a missing toolchain, or anywhere a failed build:
    /// the caller fails.
    Fail(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Skip(why) | Unavailable::Fail(why) => f.write_str(why),
        }
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A Go module of the repository, e.g. `tests/go-client`.
fn source_dir(module: &str) -> PathBuf {
    crate::plugin_crate_dir().join(module)
}

/// `go` on PATH, else the official distribution's place.
fn go_binary() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let on_path = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("go").is_file()));
        let fallback = Path::new("/usr/local/go/bin/go");
        if !on_path && fallback.is_file() {
            fallback.to_path_buf()
        } else {
            PathBuf::from("go")
        }
    })
}

/// The go command with the environment every invocation uses.
fn go(module: &str) -> Command {
    let mut cmd = Command::new(go_binary());
    cmd.env("GOTOOLCHAIN", GOTOOLCHAIN)
        .env("GO111MODULE", "on")
        .env_remove("GOFLAGS")
        .env_remove("GOPATH")
        .current_dir(source_dir(module));
    cmd
}

/// The client binary, built on first use in this process (and reused from
/// the cache directory when the sources have not changed).
pub fn go_client() -> Result<PathBuf, Unavailable> {
    static BUILT: OnceLock<Result<PathBuf, Unavailable>> = OnceLock::new();
    BUILT
        .get_or_init(|| build("tests/go-client", "go-client", "."))
        .clone()
}

/// `cmd/floor`: a traffic-router plugin on argo-rollouts' own `plugin/rpc`
/// server side whose methods succeed at once (built and cached like
/// [`go_client`]).
pub fn go_floor() -> Result<PathBuf, Unavailable> {
    static BUILT: OnceLock<Result<PathBuf, Unavailable>> = OnceLock::new();
    BUILT
        .get_or_init(|| build("tests/go-client", "go-floor", "./cmd/floor"))
        .clone()
}

/// kustomize (`sigs.k8s.io/kustomize/kustomize/v5`, pinned in
/// `tests/install/go.mod`), as Argo CD and `kubectl kustomize` run it.
pub fn kustomize() -> Result<PathBuf, Unavailable> {
    static BUILT: OnceLock<Result<PathBuf, Unavailable>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build(
                "tests/install",
                "kustomize",
                "sigs.k8s.io/kustomize/kustomize/v5",
            )
        })
        .clone()
}

/// Builds `package` of the module as `name` in the cache.
fn build(module: &str, name: &str, package: &str) -> Result<PathBuf, Unavailable> {
    let version = go(module).arg("version").output();
    let missing = match &version {
        Err(e) => Some(format!("no go command ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "`GOTOOLCHAIN={GOTOOLCHAIN} go version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    };
    if let Some(missing) = missing {
        let why = format!("{missing}; {HOW_TO_ENABLE}");
        return Err(if in_ci() {
            Unavailable::Fail(format!(
                "CI=true and {name} ({module}) cannot be built: {why}"
            ))
        } else {
            Unavailable::Skip(why)
        });
    }
    let key = source_key(module).map_err(Unavailable::Fail)?;
    let dir = cache_root()
        .map_err(Unavailable::Fail)?
        .join(format!("{key:016x}"));
    let binary = dir.join(name);
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Unavailable::Fail(format!("creating {}: {e}", dir.display())))?;
    // Built under a name of its own, then renamed: concurrent builds (two
    // test binaries) never see a half-written file.
    let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
    let started = Instant::now();
    let output = go(module)
        .args(["build", "-mod=readonly", "-buildvcs=false", "-o"])
        .arg(&partial)
        .arg(package)
        .output()
        .map_err(|e| Unavailable::Fail(format!("running go build: {e}")))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(Unavailable::Fail(format!(
            "go build of {package} in {module} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    std::fs::rename(&partial, &binary)
        .map_err(|e| Unavailable::Fail(format!("moving {name} into place: {e}")))?;
    eprintln!(
        "{name}: built {} in {:.1} s",
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(binary)
}

/// `$XDG_CACHE_HOME` or `~/.cache`, then the project's directory.
fn cache_root() -> Result<PathBuf, String> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".cache"))
            .ok_or(
                "neither XDG_CACHE_HOME nor HOME is set: no cache directory for the Go client",
            )?,
    };
    Ok(base.join("rollouts-plugin-trafficrouter-istio/go-client"))
}

/// The module's files (go.mod, go.sum, *.go, also in `cmd/<program>/`),
/// relative to its directory.
fn module_files(dir: &Path) -> Result<Vec<String>, String> {
    let listed = |sub: &str| -> Result<Vec<String>, String> {
        let at = dir.join(sub);
        Ok(std::fs::read_dir(&at)
            .map_err(|e| format!("reading {}: {e}", at.display()))?
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .map(|name| {
                if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                }
            })
            .collect())
    };
    let mut names: Vec<String> = listed("")?
        .into_iter()
        .filter(|name| name == "go.mod" || name == "go.sum" || name.ends_with(".go"))
        .collect();
    if dir.join("cmd").is_dir() {
        for program in listed("cmd")? {
            if dir.join(&program).is_dir() {
                names.extend(listed(&program)?.into_iter().filter(|n| n.ends_with(".go")));
            }
        }
    }
    names.sort();
    Ok(names)
}

/// FNV-1a over the toolchain name and every file of the module (see
/// [`module_files`]), by name and content, in name order.
fn source_key(module: &str) -> Result<u64, String> {
    let dir = source_dir(module);
    let names = module_files(&dir)?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so "ab"+"c" and "a"+"bc" differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    feed(GOTOOLCHAIN.as_bytes());
    for name in &names {
        let content = std::fs::read(dir.join(name))
            .map_err(|e| format!("reading {}/{name}: {e}", dir.display()))?;
        feed(name.as_bytes());
        feed(&content);
    }
    Ok(hash)
}
