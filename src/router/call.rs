//! The call list, once: every call the controller makes as a [`Call`]
//! (decoded, model types only), what it answered as an [`Outcome`], and
//! [`dispatch`], which runs one on a [`TrafficRouter`].
//!
//! Transports only turn bytes into a `Call` and an `Outcome` into bytes;
//! `simulate` and the tests build `Call`s. Adding a call means one variant
//! here, one arm in [`dispatch`], one method on [`TrafficRouter`], and one
//! decoder/encoder arm per wire.

use std::time::{Instant, SystemTime};

use tracing::Instrument;

use super::{TrafficRouter, Verification};
use crate::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};

/// One decoded call of `RpcTrafficRoutingReconciler` (plus InitPlugin and Type).
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    InitPlugin,
    Type,
    UpdateHash {
        rollout: Rollout,
        canary_hash: String,
        stable_hash: String,
        additional: Vec<WeightDestination>,
    },
    SetWeight {
        rollout: Rollout,
        desired_weight: i32,
        additional: Vec<WeightDestination>,
    },
    VerifyWeight {
        rollout: Rollout,
        desired_weight: i32,
        additional: Vec<WeightDestination>,
    },
    SetHeaderRoute {
        rollout: Rollout,
        route: SetHeaderRoute,
    },
    SetMirrorRoute {
        rollout: Rollout,
        route: SetMirrorRoute,
    },
    RemoveManagedRoutes {
        rollout: Rollout,
    },
    GetWeightUpdateDeadline {
        rollout: Rollout,
    },
    ClearWeightUpdateDeadline {
        rollout: Rollout,
    },
}

impl Call {
    /// Every call's name, as the controller spells the method.
    pub const NAMES: [&'static str; 10] = [
        "InitPlugin",
        "Type",
        "UpdateHash",
        "SetWeight",
        "VerifyWeight",
        "SetHeaderRoute",
        "SetMirrorRoute",
        "RemoveManagedRoutes",
        "GetWeightUpdateDeadline",
        "ClearWeightUpdateDeadline",
    ];

    /// The method name (one of [`Call::NAMES`]).
    pub fn name(&self) -> &'static str {
        let index = match self {
            Call::InitPlugin => 0,
            Call::Type => 1,
            Call::UpdateHash { .. } => 2,
            Call::SetWeight { .. } => 3,
            Call::VerifyWeight { .. } => 4,
            Call::SetHeaderRoute { .. } => 5,
            Call::SetMirrorRoute { .. } => 6,
            Call::RemoveManagedRoutes { .. } => 7,
            Call::GetWeightUpdateDeadline { .. } => 8,
            Call::ClearWeightUpdateDeadline { .. } => 9,
        };
        Self::NAMES[index]
    }

    /// The Rollout the call is about; InitPlugin and Type have none.
    pub fn rollout(&self) -> Option<&Rollout> {
        match self {
            Call::InitPlugin | Call::Type => None,
            Call::UpdateHash { rollout, .. }
            | Call::SetWeight { rollout, .. }
            | Call::VerifyWeight { rollout, .. }
            | Call::SetHeaderRoute { rollout, .. }
            | Call::SetMirrorRoute { rollout, .. }
            | Call::RemoveManagedRoutes { rollout }
            | Call::GetWeightUpdateDeadline { rollout }
            | Call::ClearWeightUpdateDeadline { rollout } => Some(rollout),
        }
    }
}

/// What a call answered, shaped as the controller's reply types. An error is
/// the text the controller shows the user (`RpcError.ErrorString`); business
/// errors travel in the reply, never as a transport failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A call whose reply is only an `RpcError`.
    Done(Result<(), String>),
    /// `Type`.
    Type(String),
    /// `VerifyWeight`.
    Verified(Result<Verification, String>),
    /// `GetWeightUpdateDeadline`: `None` asks for no delay.
    Deadline(Result<Option<SystemTime>, String>),
}

impl Outcome {
    /// The error text; empty on success, as `RpcError.ErrorString` is.
    pub fn error(&self) -> &str {
        let error = match self {
            Outcome::Done(result) => result.as_ref().err(),
            Outcome::Type(_) => None,
            Outcome::Verified(result) => result.as_ref().err(),
            Outcome::Deadline(result) => result.as_ref().err(),
        };
        error.map_or("", String::as_str)
    }

    /// VerifyWeight's answer; NotVerified for a failure.
    pub fn verification(&self) -> Verification {
        match self {
            Outcome::Verified(Ok(verification)) => *verification,
            _ => Verification::NotVerified,
        }
    }

    /// GetWeightUpdateDeadline's answer, if it gave one.
    pub fn deadline(&self) -> Option<SystemTime> {
        match self {
            Outcome::Deadline(Ok(deadline)) => *deadline,
            _ => None,
        }
    }
}

/// Runs one call in a span naming the call and its rollout, logs a failure
/// and the time taken, and maps errors to the reply's error text.
pub async fn dispatch<R: TrafficRouter>(router: &R, call: Call) -> Outcome {
    let (namespace, name) = call
        .rollout()
        .map(|r| (r.metadata.namespace.as_str(), r.metadata.name.as_str()))
        .unwrap_or_default();
    let span = tracing::info_span!(
        "call",
        call = call.name(),
        rollout_namespace = namespace,
        rollout_name = name,
    );
    async move {
        let started = Instant::now();
        let outcome = run(router, call).await;
        let error = outcome.error();
        if !error.is_empty() {
            tracing::warn!(error, "call failed");
        }
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "call done"
        );
        outcome
    }
    .instrument(span)
    .await
}

fn reply<T, E: std::error::Error>(result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

async fn run<R: TrafficRouter>(router: &R, call: Call) -> Outcome {
    match call {
        Call::InitPlugin => Outcome::Done(reply(router.init_plugin().await)),
        Call::Type => Outcome::Type(router.router_type().to_string()),
        Call::UpdateHash {
            rollout,
            canary_hash,
            stable_hash,
            additional,
        } => Outcome::Done(reply(
            router
                .update_hash(&rollout, &canary_hash, &stable_hash, &additional)
                .await,
        )),
        Call::SetWeight {
            rollout,
            desired_weight,
            additional,
        } => Outcome::Done(reply(
            router
                .set_weight(&rollout, desired_weight, &additional)
                .await,
        )),
        Call::VerifyWeight {
            rollout,
            desired_weight,
            additional,
        } => Outcome::Verified(reply(
            router
                .verify_weight(&rollout, desired_weight, &additional)
                .await,
        )),
        Call::SetHeaderRoute { rollout, route } => {
            Outcome::Done(reply(router.set_header_route(&rollout, &route).await))
        }
        Call::SetMirrorRoute { rollout, route } => {
            Outcome::Done(reply(router.set_mirror_route(&rollout, &route).await))
        }
        Call::RemoveManagedRoutes { rollout } => {
            Outcome::Done(reply(router.remove_managed_routes(&rollout).await))
        }
        Call::GetWeightUpdateDeadline { rollout } => {
            Outcome::Deadline(reply(router.get_weight_update_deadline(&rollout).await))
        }
        Call::ClearWeightUpdateDeadline { rollout } => {
            Outcome::Done(reply(router.clear_weight_update_deadline(&rollout).await))
        }
    }
}
