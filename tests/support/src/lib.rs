//! Test support for the plugin's integration tests and benches, one concern
//! per module. Tests and benches name what they use from here
//! (`use test_support::launch::PluginProcess;`); nothing is compiled into a
//! test crate as a module of its own.
//!
//! - [`launch`]: starting the plugin binary as the controller does (cookie,
//!   socket directory, handshake line, stderr collected).
//! - [`frames`]: raw yamux frames, one frame at a time.
//! - [`host`]: a go-plugin host on tokio and the `Plugin` stream (raw bytes
//!   or encoded requests out, replies decoded as the controller does).
//! - [`go_args`]: argo-rollouts' argument types as the controller sends them.
//! - [`fixtures`]: a host-split Rollout and VirtualService, ready-made call
//!   arguments, and the recorded controller bytes.
//! - [`apiserver`]: an HTTP stand-in for the Kubernetes API server.
//! - [`mock_controller`]: the controller's plugin lifecycle over net/rpc.
//! - [`go_build`]: building `tests/go-client`, the controller's own client.

use std::path::{Path, PathBuf};

pub mod apiserver;
pub mod fixtures;
pub mod frames;
pub mod go_args;
pub mod go_build;
pub mod heap;
pub mod host;
pub mod launch;
pub mod mock_controller;
pub mod plugin_entry;

/// The plugin binary cargo built for the calling test or bench, as a
/// `&'static Path`. A macro because cargo sets
/// `CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio` only while compiling
/// the plugin crate's own tests and benches, so `env!` has to expand there.
#[macro_export]
macro_rules! plugin_binary {
    () => {
        ::std::path::Path::new(::std::env!(
            "CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"
        ))
    };
}

/// The plugin crate's checkout (this crate lives in its `tests/support`).
/// The plugin's repository root (what its tests see as `CARGO_MANIFEST_DIR`).
pub fn repo_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(plugin_crate_dir)
}

/// A file of the repository as text; panics naming the file when it cannot
/// be read.
pub fn read_repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn plugin_crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support sits two levels below the plugin crate")
        .to_path_buf()
}
