//! The `netrpc` transport: the plugin binary driven over go-plugin net/rpc
//! by the mock controller (gob with Go field names, a ping before every
//! call), editing the API stand-in.

use serde_json::Value;

use super::case::{Call, CallName, Case, Fault};
use super::session::{BoxFuture, Outcome, Session, Transport};
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

    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Box<dyn Session>, String>> {
        Box::pin(async move {
            let cluster = StandIn::start().await?;
            let controller =
                MockController::launch(&plugin_args(case, "netrpc"), &cluster.env()).await?;
            Ok(Box::new(NetRpcSession {
                cluster,
                controller,
            }) as Box<dyn Session>)
        })
    }
}

struct NetRpcSession {
    cluster: StandIn,
    controller: MockController,
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

impl Session for NetRpcSession {
    fn apply(
        &mut self,
        objects: &[Value],
        default_namespace: &str,
    ) -> BoxFuture<'_, Result<(), String>> {
        let objects = objects.to_vec();
        let namespace = default_namespace.to_string();
        Box::pin(async move { self.cluster.apply(&objects, &namespace).await })
    }

    fn delete(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<(), String>> {
        let (kind, namespace, name) = (kind.to_string(), namespace.to_string(), name.to_string());
        Box::pin(async move { self.cluster.delete(&kind, &namespace, &name).await })
    }

    fn inject(&mut self, faults: &[Fault]) {
        self.cluster.inject(faults);
    }

    fn clear_faults(&mut self) {
        self.cluster.clear_faults();
    }

    fn object(&mut self, kind: &str, namespace: &str, name: &str) -> BoxFuture<'_, Option<Value>> {
        let object = self.cluster.object(kind, namespace, name);
        Box::pin(async move { object })
    }

    fn writes(&mut self) -> u64 {
        self.cluster.writes()
    }

    fn call<'a>(&'a mut self, call: &'a Call, rollout: &'a Rollout) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let CallReply {
                error,
                verified,
                type_name,
                deadline,
            } = self.controller.call(plugin_call(call, rollout)).await;
            Outcome {
                error,
                verified,
                type_name,
                deadline: deadline.map(super::expect::rfc3339),
            }
        })
    }
}
