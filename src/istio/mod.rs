//! Istio: the plugin's configuration, the pure core that edits
//! VirtualServices and DestinationRules, and the router that reads them
//! through the cluster port, runs the core and writes back what changed.
//! The rules are described in `docs/behaviour.md`.

pub mod config;
pub mod core;
mod edit;
mod report;
mod router;

pub use config::DEFAULT_PLUGIN_NAME;
pub use edit::RetryPolicy;
pub use router::IstioRouter;

use self::core::CoreError;
use crate::cluster::{ClusterError, Resource};
use config::ConfigError;

/// The API group of VirtualServices and DestinationRules.
pub const GROUP: &str = "networking.istio.io";
/// The `networking.istio.io` versions the plugin can read and write.
pub const API_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];
/// The version used unless configured otherwise.
pub const DEFAULT_API_VERSION: &str = API_VERSIONS[0];

const fn resource(version: &'static str, kind: &'static str, plural: &'static str) -> Resource {
    Resource {
        group: GROUP,
        version,
        kind,
        plural,
    }
}

static VIRTUAL_SERVICES: [Resource; 3] = [
    resource(API_VERSIONS[0], "VirtualService", "virtualservices"),
    resource(API_VERSIONS[1], "VirtualService", "virtualservices"),
    resource(API_VERSIONS[2], "VirtualService", "virtualservices"),
];

static DESTINATION_RULES: [Resource; 3] = [
    resource(API_VERSIONS[0], "DestinationRule", "destinationrules"),
    resource(API_VERSIONS[1], "DestinationRule", "destinationrules"),
    resource(API_VERSIONS[2], "DestinationRule", "destinationrules"),
];

/// A version that is not one of [`API_VERSIONS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown networking.istio.io version {0:?}; known: v1alpha3, v1beta1, v1")]
pub struct UnknownApiVersion(pub String);

fn version_index(version: &str) -> Result<usize, UnknownApiVersion> {
    API_VERSIONS
        .iter()
        .position(|v| *v == version)
        .ok_or_else(|| UnknownApiVersion(version.to_string()))
}

/// VirtualServices in `version`.
pub fn virtual_service(version: &str) -> Result<&'static Resource, UnknownApiVersion> {
    Ok(&VIRTUAL_SERVICES[version_index(version)?])
}

/// DestinationRules in `version`.
pub fn destination_rule(version: &str) -> Result<&'static Resource, UnknownApiVersion> {
    Ok(&DESTINATION_RULES[version_index(version)?])
}

/// Why an Istio router call failed; its `Display` is the text the
/// controller shows the user.
#[derive(Debug, thiserror::Error)]
pub enum IstioError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A cluster request failed; `context` says what the router was doing.
    #[error("{context}: {error}")]
    Cluster {
        context: String,
        error: ClusterError,
    },
    #[error("cannot connect to Kubernetes: {0}")]
    Init(ClusterError),
}
