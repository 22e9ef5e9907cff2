//! The plugin binary driven by a real Go client: `tests/go-client` starts it
//! with hashicorp/go-plugin exactly as the Argo Rollouts controller does and
//! sends every call with the controller's own gob types (net/rpc over yamux).
//!
//! Needs Go and Debian's go-plugin sources (GOPATH mode, no network); without
//! them the test says so in one line and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Once, OnceLock};

const GOPATH: &str = "/usr/share/gocode";

/// Debian's go-plugin 1.0.1 package does not pull in the gRPC half it
/// compiles, so those sources are needed too.
const GO_SOURCES: &[&str] = &[
    "github.com/hashicorp/go-plugin",
    "google.golang.org/grpc",
    "golang.org/x/net/context",
];

const SKIPPED: &str = "go_client: SKIPPED — install golang-go, golang-github-hashicorp-go-plugin-dev, \
     golang-google-grpc-dev and golang-golang-x-net-dev (apt) to run the real Go client test";

/// What the Go client prints, one line per call, when the plugin answers
/// every call as the controller expects.
const EXPECTED: &[&str] = &[
    "ok Dispense",
    "ok InitPlugin",
    "ok Type",
    "ok UpdateHash",
    "ok SetWeight 20",
    "ok VerifyWeight 20",
    "ok SetHeaderRoute",
    "ok SetMirrorRoute",
    "ok VerifyWeight 50",
    "ok SetWeight 50",
    "ok VerifyWeight 50",
    "ok VerifyWeight 50 x8 concurrent",
    "ok SetWeight 150",
    "ok RemoveManagedRoutes",
    "ok SetWeight 0",
    "ok GetWeightUpdateDeadline",
    "ok ClearWeightUpdateDeadline",
    "ok Ping x15",
    "ok Kill",
    "PASS",
];

fn go_available() -> bool {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success());
    go && GO_SOURCES
        .iter()
        .all(|pkg| Path::new(GOPATH).join("src").join(pkg).is_dir())
}

/// Builds the Go client once per test binary; both scenarios share it.
fn go_client() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-client");
        let binary = out_dir.join("go-client");
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
            .expect("running go build");
        assert!(
            output.status.success(),
            "go build of tests/go-client failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// The cluster the plugin talks to for `scenario`: the environment (e.g.
/// KUBECONFIG) that points the plugin at a Kubernetes API holding the
/// scenario's VirtualService (and DestinationRule for `subset`).
fn prepare_cluster(_scenario: &str) -> Vec<(String, String)> {
    Vec::new()
}

fn run_scenario(scenario: &str) {
    if !go_available() {
        static NOTICE: Once = Once::new();
        NOTICE.call_once(|| println!("{SKIPPED}"));
        return;
    }
    let output = Command::new(go_client())
        .args(["-scenario", scenario, "-timeout", "60s", "-plugin"])
        .arg(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"))
        .envs(prepare_cluster(scenario))
        .output()
        .expect("running the Go client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        output.status.success() && lines == EXPECTED,
        "Go client, scenario {scenario}: {}\n--- stdout\n{stdout}--- stderr (go-plugin log)\n{stderr}",
        output.status
    );
}

#[test]
fn host_split_through_the_go_client() {
    run_scenario("host");
}

#[test]
fn subset_split_through_the_go_client() {
    run_scenario("subset");
}
