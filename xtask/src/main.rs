//! `cargo xtask dist` / `cargo xtask release vX.Y.Z`: the release build.
//!
//! * `dist [--base-url URL]` builds static (musl) binaries for linux/amd64
//!   and linux/arm64, stripped, into `target/dist/` with a `.sha256` each,
//!   generates `target/dist/plugin-manifest.yaml` (plus `plugin-entry.yaml`
//!   and `helm-values.yaml`, the entry alone and as chart values) from their
//!   names and digests, and writes a multi-arch OCI image layout to
//!   `target/dist/oci/`. Its version is `X.Y.Z-dev+<commit>`: not a release.
//! * `release vX.Y.Z [--base-url URL]`: when Cargo.toml is not at X.Y.Z yet,
//!   sets it (Cargo.toml and Cargo.lock) for you to commit; on a clean
//!   checkout at X.Y.Z, builds as `dist` does with the version `X.Y.Z` and
//!   writes the committed `plugin-manifest.yaml`, leaving a tree to commit
//!   and tag. A version already recorded for another commit is refused.
//! * `release-check` builds HEAD twice (here and from `git archive`
//!   elsewhere) and the next commit (`git commit-tree`, nothing checked
//!   out): the same commit gives the same version and bytes, the next one
//!   another version.
//! * `reproduce [COMMIT]` builds COMMIT (default: the one the committed
//!   `plugin-manifest.yaml` records) again from `git archive`, in another
//!   directory with another target dir, and compares the bytes with the
//!   committed manifest's digests and with `target/dist/` when that was
//!   built from the same commit.
//! * `start-time [N]` measures exec to handshake line of each binary in
//!   `target/dist/` (arm64 under qemu-user), N runs, and prints the spread.
//! * `update-manifest` copies `target/dist/plugin-manifest.yaml` over the
//!   committed one when target/dist holds a release (`release` does it
//!   itself; this is for a release built elsewhere).

mod e2e_matrix;
mod manifest;
mod oci;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use sha2::{Digest as _, Sha256};

use manifest::{Artifact, BIN_NAME, Release};

mod version;

/// Release targets: (Go/OCI arch name, Rust target).
const TARGETS: &[(&str, &str)] = &[
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
];

/// Set by this build for `build.rs`, which embeds it for `--version`.
const COMMIT_ENV: &str = "ROLLOUTS_PLUGIN_COMMIT";

/// The source path recorded in the binary instead of the checkout's.
const REMAP_SRC: &str = "/build/rollouts-plugin-trafficrouter-istio";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dist"] => dist(&workspace_root(), &BuildOptions::default()).map(|_| ()),
        ["dist", "--base-url", url] => dist(
            &workspace_root(),
            &BuildOptions {
                base_url: Some(url.to_string()),
                ..BuildOptions::default()
            },
        )
        .map(|_| ()),
        ["release", tag] => release(tag, None),
        ["release", tag, "--base-url", url] => release(tag, Some(url)),
        ["release-check"] => release_check(),
        ["reproduce"] => reproduce(None),
        ["reproduce", commit] => reproduce(Some(commit)),
        ["update-manifest"] => update_manifest(),
        ["e2e-matrix"] => e2e_matrix::run(&workspace_root()),
        ["start-time"] => start_time(20),
        ["start-time", n] => n.parse().map_err(anyhow::Error::from).and_then(start_time),
        _ => {
            eprintln!(
                "usage: cargo xtask dist [--base-url URL] | release vX.Y.Z [--base-url URL] | release-check\n\
                 \x20      | reproduce [COMMIT] | update-manifest | start-time [N] | e2e-matrix\n\
                 \n  dist             binaries (version X.Y.Z-dev+<commit>), checksums, plugin-manifest.yaml,\
                 \n                   plugin-entry.yaml, helm-values.yaml and OCI image in target/dist/\
                 \n  release          set the version, build it as X.Y.Z, write plugin-manifest.yaml: tag-ready\
                 \n  --base-url       where the entry downloads the binary from (default: the release page)\
                 \n  release-check    HEAD twice gives the same bytes, the next commit another version\
                 \n  reproduce        rebuild a commit from `git archive` elsewhere and compare the bytes\
                 \n  update-manifest  copy target/dist/plugin-manifest.yaml over the committed one\
                 \n  start-time       exec to handshake line of target/dist's binaries, N runs each (arm64 under qemu)\
                 \n  e2e-matrix       the e2e tier on every Kubernetes x argo-rollouts release; writes docs/controller-compat.md"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits in the workspace")
        .to_path_buf()
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    output(Command::new("git").arg("-C").arg(root).args(args))
}

/// The commit and its time, from git; outside a checkout from the
/// environment (`ROLLOUTS_PLUGIN_COMMIT`, `SOURCE_DATE_EPOCH`), as
/// `reproduce` sets them.
fn source_identity(root: &Path) -> Result<(String, u64)> {
    if root.join(".git").exists() {
        let commit = git(root, &["rev-parse", "HEAD"])?;
        let epoch = git(root, &["log", "-1", "--format=%ct", "HEAD"])?.parse()?;
        let modified = !git(root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
        let commit = if modified {
            eprintln!("warning: the checkout has uncommitted changes; the binaries say so");
            format!("{commit}-modified")
        } else {
            commit
        };
        return Ok((commit, epoch));
    }
    let commit = std::env::var(COMMIT_ENV).ok();
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    match (commit, epoch) {
        (Some(c), Some(e)) => Ok((c, e.parse().context("SOURCE_DATE_EPOCH")?)),
        _ => bail!(
            "{} is not a git checkout: set {COMMIT_ENV} and SOURCE_DATE_EPOCH to say what it was built from",
            root.display()
        ),
    }
}

fn crate_version(root: &Path) -> Result<String> {
    let toml = std::fs::read_to_string(root.join("Cargo.toml"))?;
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .context("no version in Cargo.toml")
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Everything a release build needs, checked up front with what to install.
fn preflight() -> Result<()> {
    let mut missing = Vec::new();
    for (tool, package) in [
        ("musl-gcc", "musl-tools"),
        ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    ] {
        if which(tool).is_none() {
            missing.push(format!("{tool} (apt-get install {package})"));
        }
    }
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    for (_, target) in TARGETS {
        if !installed.lines().any(|l| l == *target) {
            missing.push(format!(
                "the {target} standard library (rustup target add {target})"
            ));
        }
    }
    ensure!(
        missing.is_empty(),
        "the release build needs: {}",
        missing.join(", ")
    );
    Ok(())
}

/// The paths a binary would otherwise carry (panic locations, generated
/// code), mapped to fixed ones so that where the build ran leaves no trace.
fn rustflags(src: &Path, target_dir: &Path) -> OsString {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    let mut flags = vec![OsString::from("-Ctarget-feature=+crt-static")];
    // rustc applies the last matching prefix: the target dir may sit inside
    // the source dir, so it comes after it.
    for (from, to) in [
        (cargo_home.as_path(), "/cargo"),
        (src, REMAP_SRC),
        (target_dir, "/build/target"),
    ] {
        let mut f = OsString::from("--remap-path-prefix=");
        f.push(from);
        f.push("=");
        f.push(to);
        flags.push(f);
    }
    flags.join(&OsString::from("\x1f"))
}

struct Built {
    release: Release,
    epoch: u64,
    dist: PathBuf,
}

/// What kind of build: a release (`Some("vX.Y.Z")`) or not, and where the
/// entry downloads the files from (default: the release page).
#[derive(Debug, Clone, Default)]
struct BuildOptions {
    release: Option<String>,
    base_url: Option<String>,
}

/// Builds the source tree at `src` into `target_dir`, writing the release
/// files to `target_dir/dist`.
/// Where cargo builds: `CARGO_TARGET_DIR` when set (CI keeps it outside
/// the clone so a second run reuses it), else `<root>/target`. The release
/// files always land in `<root>/target/dist`.
fn build_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn build_release(
    src: &Path,
    target_dir: &Path,
    dist: &Path,
    options: &BuildOptions,
) -> Result<Built> {
    preflight()?;
    let (commit, epoch) = source_identity(src)?;
    let version = version::version(&crate_version(src)?, &commit, options.release.as_deref())
        .map_err(anyhow::Error::msg)?;
    let rustc = output(Command::new("rustc").arg("--version"))?;
    let dist = dist.to_path_buf();
    std::fs::create_dir_all(&dist)?;
    let mut artifacts = Vec::new();
    for (arch, target) in TARGETS {
        let started = Instant::now();
        eprintln!("== building {target}");
        let env_target = target.to_uppercase().replace('-', "_");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(src)
            .args(["build", "--locked", "--profile", "dist", "--target", target])
            .args(["--bin", BIN_NAME, "--target-dir"])
            .arg(target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env("CARGO_ENCODED_RUSTFLAGS", rustflags(src, target_dir))
            .env(COMMIT_ENV, &commit)
            .env(
                version::RELEASE_ENV,
                options.release.as_deref().unwrap_or(""),
            )
            // For the C compiler (ring): a fixed date for __DATE__/__TIME__.
            // Fixed rather than the commit's time, which would rebuild every
            // cc-built crate after each commit (cc reruns when it changes);
            // the commit time stamps the OCI image instead.
            .env("SOURCE_DATE_EPOCH", "0");
        if *arch == "arm64" {
            // ring's C and assembly: any aarch64 gcc will do (it uses no
            // libc headers); musl comes from Rust's self-contained target.
            cmd.env("CC_aarch64_unknown_linux_musl", "aarch64-linux-gnu-gcc")
                .env("AR_aarch64_unknown_linux_musl", "aarch64-linux-gnu-ar")
                .env(
                    format!("CARGO_TARGET_{env_target}_LINKER"),
                    "aarch64-linux-gnu-gcc",
                );
        }
        let status = cmd.status().context("running cargo build")?;
        ensure!(status.success(), "cargo build --target {target} failed");
        let built = target_dir.join(target).join("dist").join(BIN_NAME);
        let file = manifest::file_name(arch);
        let out = dist.join(&file);
        std::fs::copy(&built, &out)
            .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
        let sha256 = sha256_file(&out)?;
        check_version_printed(arch, &out, &version, &commit)?;
        std::fs::write(
            dist.join(format!("{file}.sha256")),
            format!("{sha256}  {file}\n"),
        )?;
        eprintln!(
            "   {file}: {} bytes, sha256 {sha256} ({:.0?})",
            std::fs::metadata(&out)?.len(),
            started.elapsed()
        );
        artifacts.push(Artifact {
            arch: arch.to_string(),
            file,
            sha256,
        });
    }
    let base_url = options
        .base_url
        .clone()
        .unwrap_or_else(|| manifest::default_base_url(&version));
    let release = Release {
        version,
        commit,
        rustc,
        base_url,
        artifacts,
    };
    for (file, text) in [
        ("plugin-manifest.yaml", manifest::render(&release)),
        ("plugin-entry.yaml", manifest::render_entry(&release)),
        ("helm-values.yaml", manifest::render_helm_values(&release)),
    ] {
        std::fs::write(dist.join(file), text.map_err(anyhow::Error::msg)?)?;
    }
    let paths: Vec<PathBuf> = release
        .artifacts
        .iter()
        .map(|a| dist.join(&a.file))
        .collect();
    let images: Vec<oci::ImageInput<'_>> = release
        .artifacts
        .iter()
        .zip(&paths)
        .map(|(a, p)| oci::ImageInput {
            arch: &a.arch,
            binary: p,
        })
        .collect();
    let index = oci::write_layout(
        &dist.join("oci"),
        &images,
        &oci::Labels {
            version: &release.version,
            commit: &release.commit,
            source: "https://github.com/rollouts-plugin-trafficrouter-istio/rollouts-plugin-trafficrouter-istio",
            epoch,
        },
    )?;
    eprintln!("   oci/: image index {index}");
    Ok(Built {
        release,
        epoch,
        dist,
    })
}

/// The amd64 binary, run where it can run (an x86_64 Linux host), must
/// print the version and commit the manifest records.
fn check_version_printed(arch: &str, binary: &Path, version: &str, commit: &str) -> Result<()> {
    if arch != "amd64" || !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Ok(());
    }
    let printed = output(Command::new(binary).arg("--version"))?;
    let expected = format!("{BIN_NAME} {version} (commit {commit})");
    ensure!(
        printed == expected,
        "{} --version prints {printed:?}, not {expected:?}",
        binary.display()
    );
    Ok(())
}

fn dist(root: &Path, options: &BuildOptions) -> Result<Built> {
    let started = Instant::now();
    let built = build_release(root, &build_dir(root), &root.join("target/dist"), options)?;
    println!(
        "{} v{} (commit {}, SOURCE_DATE_EPOCH {}) in {:.0?}:",
        built.dist.display(),
        built.release.version,
        built.release.commit,
        built.epoch,
        started.elapsed()
    );
    for a in &built.release.artifacts {
        println!("  {}  {}", a.sha256, a.file);
    }
    println!(
        "  plugin-manifest.yaml, plugin-entry.yaml, helm-values.yaml, oci/ (linux/amd64, linux/arm64)"
    );
    Ok(built)
}

/// Cargo.toml's and Cargo.lock's version of the plugin crate set to
/// `version`.
fn set_version(root: &Path, version: &str) -> Result<()> {
    let toml_path = root.join("Cargo.toml");
    let toml = std::fs::read_to_string(&toml_path)?;
    let old = crate_version(root)?;
    let from = format!("version = \"{old}\"");
    ensure!(toml.contains(&from), "no `{from}` in Cargo.toml");
    std::fs::write(
        &toml_path,
        toml.replacen(&from, &format!("version = \"{version}\""), 1),
    )?;
    // The workspace's lock file, and the fuzz crate's (its own workspace).
    for (lock, required) in [("Cargo.lock", true), ("fuzz/Cargo.lock", false)] {
        let lock_path = root.join(lock);
        if !required && !lock_path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&lock_path)?;
        let from = format!("name = \"{BIN_NAME}\"\nversion = \"{old}\"");
        ensure!(text.contains(&from), "no {BIN_NAME} {old} in {lock}");
        std::fs::write(
            &lock_path,
            text.replacen(
                &from,
                &format!("name = \"{BIN_NAME}\"\nversion = \"{version}\""),
                1,
            ),
        )?;
    }
    Ok(())
}

/// Why `tag` cannot be built from `commit`: a version names one binary,
/// so a version the committed manifest records for another commit, or a
/// tag that exists already, is refused.
fn release_refusal(
    tag: &str,
    commit: &str,
    recorded: Option<&Release>,
    tagged: bool,
) -> Option<String> {
    if let Some(recorded) = recorded
        && format!("v{}", recorded.version) == tag
        && recorded.commit != commit
    {
        return Some(format!(
            "{tag} is already the build of commit {} (plugin-manifest.yaml records it; \
             `cargo xtask reproduce` rebuilds it): a new build needs a new version",
            recorded.commit
        ));
    }
    if tagged && recorded.is_none_or(|r| format!("v{}", r.version) != tag) {
        return Some(format!(
            "the tag {tag} exists but plugin-manifest.yaml does not record {tag}: \
             a released version is not built again"
        ));
    }
    None
}

fn release(tag: &str, base_url: Option<&str>) -> Result<()> {
    let root = workspace_root();
    let wanted = version::parse_tag(tag).map_err(anyhow::Error::msg)?;
    let current = crate_version(&root)?;
    if current != wanted {
        set_version(&root, &wanted)?;
        println!(
            "Cargo.toml and the Cargo.lock files now say {wanted} (were {current}). Commit them:\n\
             \x20 git commit -m \"Release {tag}\" Cargo.toml Cargo.lock fuzz/Cargo.lock\n\
             then run `cargo xtask release {tag}` again to build it."
        );
        return Ok(());
    }
    let (commit, _) = source_identity(&root)?;
    ensure!(
        !commit.ends_with("-modified"),
        "the checkout has uncommitted changes: a release is built from a commit"
    );
    let recorded = committed_manifest(&root).ok();
    let tagged = git(&root, &["tag", "--list", tag]).is_ok_and(|t| !t.is_empty());
    if let Some(refusal) = release_refusal(tag, &commit, recorded.as_ref(), tagged) {
        bail!("{refusal}");
    }
    let built = dist(
        &root,
        &BuildOptions {
            release: Some(tag.to_string()),
            base_url: base_url.map(str::to_string),
        },
    )?;
    std::fs::copy(
        built.dist.join("plugin-manifest.yaml"),
        root.join("plugin-manifest.yaml"),
    )?;
    println!(
        "{tag} built from {commit}; plugin-manifest.yaml records it. Tag-ready:\n\
         \x20 git commit -m \"plugin-manifest.yaml for {tag}\" plugin-manifest.yaml && git tag {tag}\n\
         then publish target/dist/* at {}, and set Cargo.toml to the next version \
         (builds until then say {wanted}-dev+<commit>).",
        built.release.base_url
    );
    Ok(())
}

/// Extracts `commit` with `git archive` into `<build dir>/<name>/src` (a
/// different path, no .git) and builds it into `<build dir>/<name>/target`.
fn build_commit(root: &Path, commit: &str, name: &str, options: &BuildOptions) -> Result<Built> {
    let epoch = git(root, &["log", "-1", "--format=%ct", commit])
        .with_context(|| format!("commit {commit} is not in this repository"))?;
    let work = build_dir(root).join(name);
    let src = work.join("src");
    if src.exists() {
        std::fs::remove_dir_all(&src)?;
    }
    std::fs::create_dir_all(&src)?;
    let archive = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(archive.stdout.context("git archive stdout")?)
        .status()?;
    ensure!(status.success(), "unpacking git archive {commit}");
    // The rebuild is told what git would have said.
    // SAFETY: single-threaded here; the child processes read these.
    unsafe {
        std::env::set_var(COMMIT_ENV, commit);
        std::env::set_var("SOURCE_DATE_EPOCH", &epoch);
    }
    let started = Instant::now();
    let built = build_release(&src, &work.join("target"), &work.join("dist"), options)?;
    println!(
        "built {commit} in {} in {:.0?}: v{}",
        src.display(),
        started.elapsed(),
        built.release.version
    );
    Ok(built)
}

/// The done-test of a version naming one binary: HEAD built here and again
/// from `git archive` elsewhere gives the same version and the same bytes;
/// the next commit (same tree, made with `git commit-tree`, nothing checked
/// out or moved) gives another version and other bytes.
fn release_check() -> Result<()> {
    let root = workspace_root();
    let head = git(&root, &["rev-parse", "HEAD"])?;
    ensure!(
        git(&root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty(),
        "release-check builds HEAD: commit or stash the changes first"
    );
    let options = BuildOptions::default();
    let here = dist(&root, &options)?;
    let again = build_commit(&root, &head, "release-check", &options)?;
    ensure!(
        here.release.version == again.release.version,
        "the same commit, two versions: {} and {}",
        here.release.version,
        again.release.version
    );
    ensure!(
        here.release.artifacts == again.release.artifacts,
        "the same commit and version, other bytes: {:?} vs {:?}",
        here.release.artifacts,
        again.release.artifacts
    );
    let index = |dist: &Path| std::fs::read(dist.join("oci/index.json")).ok();
    ensure!(
        index(&here.dist).is_some() && index(&here.dist) == index(&again.dist),
        "the same commit, another OCI image index"
    );
    println!(
        "same commit {head}: v{} both times, identical binaries and image",
        here.release.version
    );
    let next = git(
        &root,
        &[
            "commit-tree",
            "HEAD^{tree}",
            "-p",
            "HEAD",
            "-m",
            "release-check: the commit after HEAD (same tree)",
        ],
    )?;
    let after = build_commit(&root, &next, "release-check", &options)?;
    ensure!(
        after.release.version != here.release.version,
        "the next commit {next} calls itself v{} too",
        after.release.version
    );
    for (a, b) in here.release.artifacts.iter().zip(&after.release.artifacts) {
        ensure!(
            a.sha256 != b.sha256,
            "{}: commits {head} and {next} built the same bytes",
            a.file
        );
    }
    println!(
        "next commit {next}: v{} (not v{}), other binaries",
        after.release.version, here.release.version
    );
    Ok(())
}

fn committed_manifest(root: &Path) -> Result<Release> {
    let path = root.join("plugin-manifest.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    manifest::parse_header(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Rebuilds `commit` from `git archive` in `<build dir>/reproduce/src` (a
/// different path, no .git) into `<build dir>/reproduce/target` and
/// compares (the build dir: `CARGO_TARGET_DIR`, else `target/`).
fn reproduce(commit: Option<&str>) -> Result<()> {
    let root = workspace_root();
    // Without a commit, the committed manifest says which one; with one, a
    // manifest that cannot be read just leaves target/dist to compare with.
    let (commit, recorded) = match commit {
        None => {
            let recorded = committed_manifest(&root)?;
            (recorded.commit.clone(), Some(recorded))
        }
        Some(c) => (
            git(&root, &["rev-parse", &format!("{c}^{{commit}}")])?,
            committed_manifest(&root).ok(),
        ),
    };
    // A release is rebuilt as a release; the files' URL as recorded.
    let options = BuildOptions {
        release: recorded
            .as_ref()
            .filter(|r| r.commit == commit && !r.version.contains("-dev"))
            .map(|r| format!("v{}", r.version)),
        base_url: recorded
            .as_ref()
            .filter(|r| r.commit == commit)
            .map(|r| r.base_url.clone()),
    };
    let again = build_commit(&root, &commit, "reproduce", &options)?;
    let mut compared = 0;
    let mut differ = Vec::new();
    let mut compare = |what: &str, theirs: &Release| {
        for a in &again.release.artifacts {
            if let Some(b) = theirs.artifacts.iter().find(|b| b.file == a.file) {
                compared += 1;
                let same = a.sha256 == b.sha256;
                println!(
                    "  {}: {} {what}",
                    a.file,
                    if same { "identical to" } else { "DIFFERS from" }
                );
                if !same {
                    differ.push(format!("{} ({what}: {} vs {})", a.file, b.sha256, a.sha256));
                }
            }
        }
    };
    if let Some(recorded) = recorded.as_ref().filter(|r| r.commit == commit) {
        if recorded.rustc != again.release.rustc {
            bail!(
                "the committed plugin-manifest.yaml was built with {}, this is {}: \
                 the bytes cannot be compared",
                recorded.rustc,
                again.release.rustc
            );
        }
        compare("the committed plugin-manifest.yaml", recorded);
    }
    let dist_manifest = root.join("target/dist/plugin-manifest.yaml");
    if let Ok(text) = std::fs::read_to_string(&dist_manifest) {
        let in_dist = manifest::parse_header(&text).map_err(anyhow::Error::msg)?;
        if in_dist.commit == commit {
            compare("target/dist (built in the checkout)", &in_dist);
            // index.json names the image index by digest, which covers every
            // manifest, config and layer below it.
            let index = |dist: &Path| std::fs::read(dist.join("oci/index.json")).ok();
            let same = index(&again.dist).is_some()
                && index(&again.dist) == index(&root.join("target/dist"));
            compared += 1;
            println!(
                "  oci/ image: {} target/dist (built in the checkout)",
                if same { "identical to" } else { "DIFFERS from" }
            );
            if !same {
                differ.push("oci/index.json".to_string());
            }
        }
    }
    ensure!(
        compared > 0,
        "nothing to compare with: neither the committed plugin-manifest.yaml nor target/dist \
         was built from {commit} (run `cargo xtask dist` at that commit first)"
    );
    ensure!(differ.is_empty(), "not reproducible: {}", differ.join("; "));
    println!("reproducible: {compared} comparison(s), all identical");
    Ok(())
}

fn update_manifest() -> Result<()> {
    let root = workspace_root();
    let from = root.join("target/dist/plugin-manifest.yaml");
    let text = std::fs::read_to_string(&from)
        .with_context(|| format!("reading {} (run `cargo xtask dist` first)", from.display()))?;
    let release = manifest::parse_header(&text).map_err(anyhow::Error::msg)?;
    ensure!(
        !release.commit.ends_with("-modified"),
        "target/dist was built from a modified checkout ({}); commit first and rerun `cargo xtask dist`",
        release.commit
    );
    ensure!(
        !release.version.contains("-dev"),
        "target/dist holds v{}, not a release: the committed plugin-manifest.yaml records \
         releases only (`cargo xtask release vX.Y.Z` writes it)",
        release.version
    );
    std::fs::write(root.join("plugin-manifest.yaml"), &text)?;
    println!(
        "plugin-manifest.yaml now records v{} from commit {}",
        release.version, release.commit
    );
    Ok(())
}

/// Exec to handshake line, `runs` times per binary; arm64 runs under
/// qemu-aarch64(-static). Prints min / median / max.
fn start_time(runs: usize) -> Result<()> {
    use std::io::BufRead as _;
    ensure!(runs > 0, "start-time needs at least one run");
    let root = workspace_root();
    let dist = root.join("target/dist");
    let socket_dir = root.join("target/start-time");
    std::fs::create_dir_all(&socket_dir)?;
    for (arch, _) in TARGETS {
        let binary = dist.join(manifest::file_name(arch));
        ensure!(
            binary.is_file(),
            "{} is missing: run `cargo xtask dist`",
            binary.display()
        );
        let cmd_for = || -> Result<Command> {
            Ok(if *arch == "arm64" {
                let qemu = which("qemu-aarch64")
                    .or_else(|| which("qemu-aarch64-static"))
                    .context("qemu-aarch64 (apt-get install qemu-user-static)")?;
                let mut c = Command::new(qemu);
                c.arg(&binary);
                c
            } else {
                Command::new(&binary)
            })
        };
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let mut cmd = cmd_for()?;
            cmd.env("ARGO_ROLLOUTS_RPC_PLUGIN", "trafficrouter")
                .env("PLUGIN_PROTOCOL_VERSIONS", "1")
                .env("PLUGIN_UNIX_SOCKET_DIR", &socket_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let started = Instant::now();
            let mut child = cmd.spawn().context("starting the plugin")?;
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
            let elapsed = started.elapsed();
            // Our end of its stdout is closed: the plugin exits by itself.
            let status = child.wait()?;
            ensure!(
                line.starts_with("1|1|unix|"),
                "{arch}: handshake {line:?}, exit {status}"
            );
            times.push(elapsed);
        }
        times.sort();
        println!(
            "{}: exec to handshake over {runs} runs: min {:.1?}, median {:.1?}, max {:.1?}{}",
            manifest::file_name(arch),
            times[0],
            times[runs / 2],
            times[runs - 1],
            if *arch == "arm64" {
                " (under qemu-user)"
            } else {
                ""
            }
        );
    }
    let left: Vec<_> = std::fs::read_dir(&socket_dir)?.collect();
    ensure!(
        left.is_empty(),
        "{} socket directories left behind",
        left.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(version: &str, commit: &str) -> Release {
        Release {
            version: version.into(),
            commit: commit.into(),
            rustc: "rustc 1.95.0".into(),
            base_url: manifest::default_base_url(version),
            artifacts: Vec::new(),
        }
    }

    #[test]
    fn a_version_names_one_build() {
        let a = recorded("0.2.0", "aaaa");
        // Built once: the same commit may be built again (reproduce).
        assert_eq!(release_refusal("v0.2.0", "aaaa", Some(&a), true), None);
        // Another commit with that version: refused.
        let refusal = release_refusal("v0.2.0", "bbbb", Some(&a), true).unwrap();
        assert!(
            refusal.contains("already the build of commit aaaa"),
            "{refusal}"
        );
        // A new version from another commit: fine.
        assert_eq!(release_refusal("v0.3.0", "bbbb", Some(&a), false), None);
        // A tag made outside `release`: refused.
        let refusal = release_refusal("v0.3.0", "bbbb", Some(&a), true).unwrap();
        assert!(refusal.contains("tag v0.3.0 exists"), "{refusal}");
    }

    #[test]
    fn set_version_rewrites_cargo_toml_and_lock() {
        let dir = std::env::temp_dir().join(format!("xtask-set-version-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"x\"\nversion = \"0.2.0\"\n[dependencies]\ny = { version = \"0.2.0\" }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("Cargo.lock"),
            format!("[[package]]\nname = \"y\"\nversion = \"0.2.0\"\n\n[[package]]\nname = \"{BIN_NAME}\"\nversion = \"0.2.0\"\n"),
        )
        .unwrap();
        set_version(&dir, "0.3.0").unwrap();
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(toml.contains("version = \"0.3.0\"\n[dependencies]\ny = { version = \"0.2.0\" }"));
        let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
        assert!(lock.contains("name = \"y\"\nversion = \"0.2.0\""));
        assert!(lock.contains(&format!("name = \"{BIN_NAME}\"\nversion = \"0.3.0\"")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_base_url_is_a_flag_not_a_constant() {
        let mut release = recorded("0.2.0", "aaaa");
        release.artifacts.push(Artifact {
            arch: "amd64".into(),
            file: manifest::file_name("amd64"),
            sha256: "0".repeat(64),
        });
        release.base_url = "https://files.internal.example/istio-plugin/".into();
        let text = manifest::render(&release).unwrap();
        assert!(text.contains(
            "location: \"https://files.internal.example/istio-plugin/rollouts-plugin-trafficrouter-istio-linux-amd64\""
        ));
        assert_eq!(manifest::parse_header(&text).unwrap(), release);
    }
}
