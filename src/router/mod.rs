//! The router interface: every call the controller makes, independent of
//! the wire that carries it. Transports (net/rpc, gRPC) decode their bytes
//! into a [`Call`], [`dispatch`] it to a [`TrafficRouter`] and encode the
//! [`Outcome`].

mod call;

use std::future::Future;
use std::time::SystemTime;

pub use call::{Call, Outcome, dispatch};

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

/// Every call of `RpcTrafficRoutingReconciler`, plus InitPlugin.
pub trait TrafficRouter: Send + Sync {
    /// Why a call failed; its `Display` is the text the controller shows
    /// the user (`RpcError.ErrorString`).
    type Error: std::error::Error + Send + Sync + 'static;

    fn init_plugin(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The router type the controller logs (`Type()`).
    fn router_type(&self) -> &'static str;

    fn update_hash(
        &self,
        rollout: &Rollout,
        canary_hash: &str,
        stable_hash: &str,
        additional: &[WeightDestination],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn set_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn set_header_route(
        &self,
        rollout: &Rollout,
        route: &SetHeaderRoute,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn set_mirror_route(
        &self,
        rollout: &Rollout,
        route: &SetMirrorRoute,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn verify_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> impl Future<Output = Result<Verification, Self::Error>> + Send;

    fn remove_managed_routes(
        &self,
        rollout: &Rollout,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Newer controllers delay weight changes after a hash change; `None`
    /// asks for no delay.
    fn get_weight_update_deadline(
        &self,
        rollout: &Rollout,
    ) -> impl Future<Output = Result<Option<SystemTime>, Self::Error>> + Send;

    fn clear_weight_update_deadline(
        &self,
        rollout: &Rollout,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
