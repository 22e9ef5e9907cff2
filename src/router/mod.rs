//! The router interface: every call the controller makes, independent of
//! the wire that carries it. Transports (net/rpc, gRPC) decode their bytes
//! into a [`Call`], [`dispatch`] it to a [`TrafficRouter`] and encode the
//! [`Outcome`].

mod call;
mod edit;
mod istio;

use std::future::Future;
use std::time::SystemTime;

pub use call::{Call, Outcome, dispatch};
pub use edit::RetryPolicy;
pub use istio::IstioRouter;

use crate::cluster::ClusterError;
use crate::config::ConfigError;
use crate::core::CoreError;
use crate::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};

/// The answer to VerifyWeight, with the wire values of `RpcVerified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    NotVerified = 0,
    Verified = 1,
    NotImplemented = 2,
}

impl Verification {
    pub fn from_rpc(value: i64) -> Self {
        match value {
            1 => Verification::Verified,
            2 => Verification::NotImplemented,
            _ => Verification::NotVerified,
        }
    }
}

/// Why a call failed; its `Display` is the `RpcError.ErrorString` the
/// controller shows to the user.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{context}: {source}")]
    Cluster {
        context: String,
        #[source]
        source: ClusterError,
    },
    #[error("{0}")]
    Init(String),
}

/// Every call of `RpcTrafficRoutingReconciler`, plus InitPlugin.
pub trait TrafficRouter: Send + Sync {
    fn init_plugin(&self) -> impl Future<Output = Result<(), RouterError>> + Send;

    /// The router type the controller logs (`Type()`).
    fn router_type(&self) -> &'static str;

    fn update_hash(
        &self,
        rollout: &Rollout,
        canary_hash: &str,
        stable_hash: &str,
        additional: &[WeightDestination],
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    fn set_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    fn set_header_route(
        &self,
        rollout: &Rollout,
        route: &SetHeaderRoute,
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    fn set_mirror_route(
        &self,
        rollout: &Rollout,
        route: &SetMirrorRoute,
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    fn verify_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> impl Future<Output = Result<Verification, RouterError>> + Send;

    fn remove_managed_routes(
        &self,
        rollout: &Rollout,
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    /// Newer controllers delay weight changes after a hash change; this
    /// router never asks for a delay (D8).
    fn get_weight_update_deadline(
        &self,
        rollout: &Rollout,
    ) -> impl Future<Output = Result<Option<SystemTime>, RouterError>> + Send;

    fn clear_weight_update_deadline(
        &self,
        rollout: &Rollout,
    ) -> impl Future<Output = Result<(), RouterError>> + Send;
}
