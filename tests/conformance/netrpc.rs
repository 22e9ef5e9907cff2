//! The `netrpc` transport: the plugin binary driven over go-plugin net/rpc
//! by the mock controller (gob with Go field names, a ping before every
//! call), editing the API stand-in.

use super::case::{Call, CallName, Case};
use super::session::{BoxFuture, Outcome, PluginSide, Session, Transport};
use super::standin::{StandIn, plugin_args};
use crate::support::mock_controller::{CallReply, MockController, PluginCall};
use istio_router::model::Rollout;

pub struct NetRpc;

impl Transport for NetRpc {
    fn name(&self) -> &'static str {
        "netrpc"
    }

    fn cannot_run(&self, _case: &Case) -> Option<String> {
        None
    }

    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Session, String>> {
        Box::pin(async move {
            let cluster = StandIn::start().await?;
            let controller =
                MockController::launch(&plugin_args(case, "netrpc"), &cluster.env()).await?;
            Ok(Session {
                cluster: Box::new(cluster),
                plugin: Box::new(controller),
            })
        })
    }
}

fn plugin_call<'a>(call: &'a Call, rollout: &'a Rollout) -> PluginCall<'a> {
    let additional = &call.additional_destinations;
    match call.call {
        CallName::InitPlugin => PluginCall::InitPlugin,
        CallName::Type => PluginCall::Type,
        CallName::UpdateHash => PluginCall::UpdateHash {
            rollout,
            canary_hash: &call.canary_hash,
            stable_hash: &call.stable_hash,
            additional,
        },
        CallName::SetWeight => PluginCall::SetWeight {
            rollout,
            desired_weight: call.weight,
            additional,
        },
        CallName::VerifyWeight => PluginCall::VerifyWeight {
            rollout,
            desired_weight: call.weight,
            additional,
        },
        CallName::SetHeaderRoute => PluginCall::SetHeaderRoute {
            rollout,
            route: call
                .set_header_route
                .as_ref()
                .unwrap_or(&EMPTY_HEADER_ROUTE),
        },
        CallName::SetMirrorRoute => PluginCall::SetMirrorRoute {
            rollout,
            route: call
                .set_mirror_route
                .as_ref()
                .unwrap_or(&EMPTY_MIRROR_ROUTE),
        },
        CallName::RemoveManagedRoutes => PluginCall::RemoveManagedRoutes { rollout },
        CallName::GetWeightUpdateDeadline => PluginCall::GetWeightUpdateDeadline { rollout },
        CallName::ClearWeightUpdateDeadline => PluginCall::ClearWeightUpdateDeadline { rollout },
    }
}

/// A case without the step argument sends Go's zero value.
static EMPTY_HEADER_ROUTE: istio_router::model::SetHeaderRoute =
    istio_router::model::SetHeaderRoute {
        name: String::new(),
        matches: Vec::new(),
    };
static EMPTY_MIRROR_ROUTE: istio_router::model::SetMirrorRoute =
    istio_router::model::SetMirrorRoute {
        name: String::new(),
        matches: Vec::new(),
        percentage: None,
    };

impl PluginSide for MockController {
    fn call<'a>(&'a mut self, call: &'a Call, rollout: &'a Rollout) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let CallReply {
                error,
                verified,
                type_name,
                deadline,
            } = MockController::call(self, plugin_call(call, rollout)).await;
            Outcome {
                error,
                verified,
                type_name,
                deadline: deadline.map(super::expect::rfc3339),
                broken: None,
            }
        })
    }
}
