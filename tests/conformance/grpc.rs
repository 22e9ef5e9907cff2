//! The `grpc` transport: the plugin binary started with `--protocol grpc`,
//! called through the service in `proto/`, editing the API stand-in.

use super::case::{Call, CallName, Case};
use super::session::{BoxFuture, Outcome, PluginSide, Session, Transport};
use super::standin::{StandIn, plugin_args};
use crate::support::netrpc_host::PluginProcess;
use istio_router::model::{self, Rollout};
use istio_router::router::Verification;
use istio_router::transport::grpc::{self, proto::trafficrouter as pb};

type Client =
    pb::traffic_router_plugin_client::TrafficRouterPluginClient<tonic::transport::Channel>;

pub struct Grpc;

impl Transport for Grpc {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn cannot_run(&self, _case: &Case) -> Option<String> {
        None
    }

    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Session, String>> {
        Box::pin(async move {
            let cluster = StandIn::start().await?;
            let plugin =
                PluginProcess::launch(plugin_args(case, "grpc"), cluster.env(), "grpc").await?;
            let channel = grpc::connect(&plugin.socket)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Session {
                cluster: Box::new(cluster),
                plugin: Box::new(GrpcPlugin {
                    client: Client::new(channel),
                    _process: plugin,
                }),
            })
        })
    }
}

/// The plugin process and a client of its service.
struct GrpcPlugin {
    client: Client,
    _process: PluginProcess,
}

fn destinations(call: &Call) -> Vec<pb::WeightDestination> {
    call.additional_destinations
        .iter()
        .map(|d| pb::WeightDestination {
            weight: d.weight,
            service_name: d.service_name.clone(),
            pod_template_hash: d.pod_template_hash.clone(),
        })
        .collect()
}

fn string_match(m: &model::StringMatch) -> pb::StringMatch {
    pb::StringMatch {
        exact: m.exact.clone(),
        prefix: m.prefix.clone(),
        regex: m.regex.clone(),
    }
}

fn header_route(route: &model::SetHeaderRoute) -> pb::SetHeaderRoute {
    pb::SetHeaderRoute {
        name: route.name.clone(),
        r#match: route
            .matches
            .iter()
            .map(|m| pb::HeaderRoutingMatch {
                header_name: m.header_name.clone(),
                header_value: m.header_value.as_ref().map(string_match),
            })
            .collect(),
    }
}

fn mirror_route(route: &model::SetMirrorRoute) -> pb::SetMirrorRoute {
    pb::SetMirrorRoute {
        name: route.name.clone(),
        r#match: route
            .matches
            .iter()
            .map(|m| pb::RouteMatch {
                method: m.method.as_ref().map(string_match),
                path: m.path.as_ref().map(string_match),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
            })
            .collect(),
        percentage: route.percentage,
    }
}

/// `Err` carries a transport failure, reported as the call's error.
async fn send(
    client: &mut Client,
    call: &Call,
    rollout_json: Vec<u8>,
) -> Result<Outcome, tonic::Status> {
    let mut outcome = Outcome::default();
    let error = |e: pb::RpcError| e.error_string;
    let weight_request = || pb::SetWeightRequest {
        rollout_json: rollout_json.clone(),
        desired_weight: call.weight,
        additional_destinations: destinations(call),
    };
    let rollout_request = || pb::RolloutRequest {
        rollout_json: rollout_json.clone(),
    };
    outcome.error = match call.call {
        CallName::InitPlugin => error(
            client
                .init_plugin(pb::InitPluginRequest {})
                .await?
                .into_inner(),
        ),
        CallName::Type => {
            outcome.type_name = Some(client.r#type(pb::TypeRequest {}).await?.into_inner().r#type);
            String::new()
        }
        CallName::UpdateHash => error(
            client
                .update_hash(pb::UpdateHashRequest {
                    rollout_json: rollout_json.clone(),
                    canary_hash: call.canary_hash.clone(),
                    stable_hash: call.stable_hash.clone(),
                    additional_destinations: destinations(call),
                })
                .await?
                .into_inner(),
        ),
        CallName::SetWeight => error(client.set_weight(weight_request()).await?.into_inner()),
        CallName::SetHeaderRoute => error(
            client
                .set_header_route(pb::SetHeaderRouteRequest {
                    rollout_json: rollout_json.clone(),
                    set_header_route: Some(header_route(
                        &call.set_header_route.clone().unwrap_or_default(),
                    )),
                })
                .await?
                .into_inner(),
        ),
        CallName::SetMirrorRoute => error(
            client
                .set_mirror_route(pb::SetMirrorRouteRequest {
                    rollout_json: rollout_json.clone(),
                    set_mirror_route: Some(mirror_route(
                        &call.set_mirror_route.clone().unwrap_or_default(),
                    )),
                })
                .await?
                .into_inner(),
        ),
        CallName::VerifyWeight => {
            let reply = client.verify_weight(weight_request()).await?.into_inner();
            outcome.verified = Some(Verification::from_rpc(i64::from(reply.verified)));
            reply.error.map(error).unwrap_or_default()
        }
        CallName::RemoveManagedRoutes => error(
            client
                .remove_managed_routes(rollout_request())
                .await?
                .into_inner(),
        ),
        CallName::GetWeightUpdateDeadline => {
            let reply = client
                .get_weight_update_deadline(rollout_request())
                .await?
                .into_inner();
            outcome.deadline = reply
                .deadline
                .and_then(|t| std::time::SystemTime::try_from(t).ok())
                .map(super::expect::rfc3339);
            reply.error.map(error).unwrap_or_default()
        }
        CallName::ClearWeightUpdateDeadline => error(
            client
                .clear_weight_update_deadline(rollout_request())
                .await?
                .into_inner(),
        ),
    };
    Ok(outcome)
}

impl PluginSide for GrpcPlugin {
    fn call<'a>(&'a mut self, call: &'a Call, rollout: &'a Rollout) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let rollout_json = match serde_json::to_vec(rollout) {
                Ok(json) => json,
                Err(e) => {
                    return Outcome {
                        error: format!("cannot encode the Rollout: {e}"),
                        ..Outcome::default()
                    };
                }
            };
            send(&mut self.client, call, rollout_json)
                .await
                .unwrap_or_else(|status| Outcome {
                    error: format!("gRPC transport failed: {status}"),
                    ..Outcome::default()
                })
        })
    }
}
