//! Compiles the gRPC protos with protox, a pure-Rust protobuf compiler, so a
//! build needs no system `protoc`; and records the commit and the version
//! for `--version`: `X.Y.Z` only for a release build (`cargo xtask release
//! vX.Y.Z`), else `X.Y.Z-dev+<commit>`, so that a version names one binary.

use std::process::Command;

const PROTOS: &[&str] = &[
    "proto/istio_router.proto",
    "proto/plugin/grpc_broker.proto",
    "proto/plugin/grpc_controller.proto",
    "proto/plugin/grpc_stdio.proto",
];

/// Set by `cargo xtask dist` (which also marks a modified checkout); else
/// asked of git; else the build says it was not built from a checkout.
const COMMIT_ENV: &str = "ROLLOUTS_PLUGIN_COMMIT";

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn commit() -> String {
    println!("cargo:rerun-if-env-changed={COMMIT_ENV}");
    if let Some(commit) = std::env::var(COMMIT_ENV).ok().filter(|c| !c.is_empty()) {
        return commit;
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return "unknown, not built from a git checkout".to_string();
    };
    // Build again when HEAD moves: HEAD itself, the branch it names, packed refs.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for file in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    commit
}

#[allow(dead_code)]
#[path = "xtask/src/version.rs"]
mod version;

/// The version `--version` prints (xtask/src/version.rs).
fn version(commit: &str) -> Result<String, String> {
    println!("cargo:rerun-if-env-changed={}", version::RELEASE_ENV);
    println!("cargo:rerun-if-changed=xtask/src/version.rs");
    let crate_version = std::env::var("CARGO_PKG_VERSION").map_err(|e| e.to_string())?;
    let release = std::env::var(version::RELEASE_ENV).ok();
    version::version(&crate_version, commit, release.as_deref())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let commit = commit();
    println!("cargo:rustc-env={COMMIT_ENV}={commit}");
    println!(
        "cargo:rustc-env=ROLLOUTS_PLUGIN_VERSION={}",
        version(&commit)?
    );
    #[cfg(feature = "runtime")]
    {
        let descriptors = protox::compile(PROTOS, ["proto"])?;
        // prost's codec behind the per-request memory budget
        // (src/transport/grpc/budget.rs).
        tonic_prost_build::configure()
            .codec_path("crate::transport::grpc::budget::BudgetCodec")
            .compile_fds(descriptors)?;
    }
    Ok(())
}
