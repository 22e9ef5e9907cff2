//! The `grpc` transport: the plugin binary started with `--protocol grpc`,
//! called through the service in `proto/`, editing the API stand-in.

use super::case::Case;
use super::session::{BoxFuture, CallReply, PluginSide, Session, Transport};
use super::standin::{StandIn, plugin_args};
use istio_router::model;
use istio_router::router::{Call, Verification};
use istio_router::transport::grpc::{self, proto::trafficrouter as pb};
use test_support::launch::PluginProcess;
use test_support::plugin_binary;

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
            let plugin = PluginProcess::launch(
                plugin_binary!().to_path_buf(),
                plugin_args(case, "grpc"),
                cluster.env(),
                "grpc",
            )
            .await?;
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

fn destinations(additional: &[model::WeightDestination]) -> Vec<pb::WeightDestination> {
    additional.iter().map(Into::into).collect()
}

/// Sends `call` as the gRPC request of its method, its Rollout as
/// `rollout_json`; `Err` is a transport failure.
async fn send(
    client: &mut Client,
    call: &Call,
    rollout_json: Vec<u8>,
) -> Result<CallReply, tonic::Status> {
    let error = |e: Option<pb::RpcError>| e.map(|e| e.error_string).unwrap_or_default();
    let done = |e: pb::RpcError| CallReply {
        error: e.error_string,
        ..CallReply::default()
    };
    let weight_request =
        |desired_weight, additional: &[model::WeightDestination]| pb::SetWeightRequest {
            rollout_json: rollout_json.clone(),
            desired_weight,
            additional_destinations: destinations(additional),
        };
    let rollout_request = || pb::RolloutRequest {
        rollout_json: rollout_json.clone(),
    };
    Ok(match call {
        Call::InitPlugin => done(
            client
                .init_plugin(pb::InitPluginRequest {})
                .await?
                .into_inner(),
        ),
        Call::Type => CallReply {
            type_name: Some(client.r#type(pb::TypeRequest {}).await?.into_inner().r#type),
            ..CallReply::default()
        },
        Call::UpdateHash {
            canary_hash,
            stable_hash,
            additional,
            ..
        } => {
            let request = pb::UpdateHashRequest {
                rollout_json: rollout_json.clone(),
                canary_hash: canary_hash.clone(),
                stable_hash: stable_hash.clone(),
                additional_destinations: destinations(additional),
            };
            done(client.update_hash(request).await?.into_inner())
        }
        Call::SetWeight {
            desired_weight,
            additional,
            ..
        } => {
            let request = weight_request(*desired_weight, additional);
            done(client.set_weight(request).await?.into_inner())
        }
        Call::VerifyWeight {
            desired_weight,
            additional,
            ..
        } => {
            let request = weight_request(*desired_weight, additional);
            let reply = client.verify_weight(request).await?.into_inner();
            CallReply {
                verified: Some(Verification::from_rpc(i64::from(reply.verified))),
                error: error(reply.error),
                ..CallReply::default()
            }
        }
        Call::SetHeaderRoute { route, .. } => {
            let request = pb::SetHeaderRouteRequest {
                rollout_json: rollout_json.clone(),
                set_header_route: Some(route.into()),
            };
            done(client.set_header_route(request).await?.into_inner())
        }
        Call::SetMirrorRoute { route, .. } => {
            let request = pb::SetMirrorRouteRequest {
                rollout_json: rollout_json.clone(),
                set_mirror_route: Some(route.into()),
            };
            done(client.set_mirror_route(request).await?.into_inner())
        }
        Call::RemoveManagedRoutes { .. } => done(
            client
                .remove_managed_routes(rollout_request())
                .await?
                .into_inner(),
        ),
        Call::GetWeightUpdateDeadline { .. } => {
            let reply = client
                .get_weight_update_deadline(rollout_request())
                .await?
                .into_inner();
            CallReply {
                deadline: reply
                    .deadline
                    .and_then(|t| std::time::SystemTime::try_from(t).ok()),
                error: error(reply.error),
                ..CallReply::default()
            }
        }
        Call::ClearWeightUpdateDeadline { .. } => done(
            client
                .clear_weight_update_deadline(rollout_request())
                .await?
                .into_inner(),
        ),
    })
}

impl PluginSide for GrpcPlugin {
    fn call(&mut self, call: Call) -> BoxFuture<'_, CallReply> {
        Box::pin(async move {
            let failed = |error: String| CallReply {
                error,
                ..CallReply::default()
            };
            let rollout_json = match call.rollout().map(serde_json::to_vec).transpose() {
                Ok(json) => json.unwrap_or_default(),
                Err(e) => return failed(format!("cannot encode the Rollout: {e}")),
            };
            send(&mut self.client, &call, rollout_json)
                .await
                .unwrap_or_else(|status| failed(format!("gRPC transport failed: {status}")))
        })
    }
}
