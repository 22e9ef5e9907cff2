//! Builds `tests/go-client`, a real Go go-plugin client, with Debian's Go
//! and go-plugin sources in GOPATH mode (no network).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

const GOPATH: &str = "/usr/share/gocode";

/// Debian's go-plugin 1.0.1 package does not pull in the gRPC half it
/// compiles, so those sources are needed too.
const GO_SOURCES: &[&str] = &[
    "github.com/hashicorp/go-plugin",
    "google.golang.org/grpc",
    "golang.org/x/net/context",
];

/// What to install when [`go_available`] is false.
pub const GO_PACKAGES: &str = "golang-go, golang-github-hashicorp-go-plugin-dev, \
     golang-google-grpc-dev and golang-golang-x-net-dev (apt)";

pub fn go_available() -> bool {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success());
    go && GO_SOURCES
        .iter()
        .all(|pkg| Path::new(GOPATH).join("src").join(pkg).is_dir())
}

/// Builds the client as `out_dir/name`, with its build cache in `out_dir`.
pub fn build_go_client(out_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let binary = out_dir.join(name);
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-client"))
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", out_dir.join("cache"))
        .env_remove("GOFLAGS")
        .output()
        .map_err(|e| format!("running go build: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "go build of tests/go-client failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(binary)
}
