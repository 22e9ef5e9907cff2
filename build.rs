//! Compiles the gRPC protos with protox, a pure-Rust protobuf compiler, so a
//! build needs no system `protoc`; and records the commit for `--version`.

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rustc-env={COMMIT_ENV}={}", commit());
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
