//! `argoproj.rollouts.trafficrouter.v1.TrafficRouterPlugin`: decodes each
//! call, runs it on a [`TrafficRouter`] and answers as net/rpc does, with
//! failures in the `RpcError` field rather than as a gRPC status.

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::MAX_MESSAGE_SIZE;
use super::proto::trafficrouter as pb;
use super::proto::trafficrouter::traffic_router_plugin_server::{
    TrafficRouterPlugin, TrafficRouterPluginServer,
};
use crate::model::{self, ModelError, Rollout};
use crate::router::{RouterError, TrafficRouter, Verification};

pub(super) struct RouterService<R> {
    router: Arc<R>,
}

impl<R: TrafficRouter + 'static> RouterService<R> {
    pub(super) fn service(router: Arc<R>) -> TrafficRouterPluginServer<Self> {
        TrafficRouterPluginServer::new(RouterService { router })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

/// Why a call failed; its `Display` is the `error_string` sent back.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("rollout_json is empty")]
    EmptyRollout,
    #[error("rollout_json is not valid JSON: {0}")]
    RolloutJson(#[source] serde_json::Error),
    #[error(transparent)]
    Rollout(#[from] ModelError),
    #[error(transparent)]
    Router(#[from] RouterError),
}

fn decode_rollout(json: &[u8]) -> Result<Rollout, CallError> {
    if json.is_empty() {
        return Err(CallError::EmptyRollout);
    }
    let value = serde_json::from_slice(json).map_err(CallError::RolloutJson)?;
    Ok(Rollout::from_json(value)?)
}

/// Runs `call` in a span named after the call, logging a failure.
async fn traced<T>(
    span: tracing::Span,
    call: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    async move {
        let result = call.await;
        if let Err(error) = &result {
            tracing::warn!(%error, "call failed");
        }
        result
    }
    .instrument(span)
    .await
}

/// Decodes the Rollout and runs `call` on it, in a span naming the call and
/// the rollout (`namespace/name`).
async fn with_rollout<T, Fut>(
    rpc: &'static str,
    rollout_json: &[u8],
    call: impl FnOnce(Rollout) -> Fut,
) -> Result<T, CallError>
where
    Fut: Future<Output = Result<T, RouterError>>,
{
    let span = tracing::info_span!("grpc_call", rpc, rollout = tracing::field::Empty);
    traced(span.clone(), async move {
        let rollout = decode_rollout(rollout_json)?;
        span.record("rollout", rollout.key());
        Ok(call(rollout).await?)
    })
    .await
}

fn rpc_error(result: Result<(), CallError>) -> pb::RpcError {
    pb::RpcError {
        error_string: result.err().map(|e| e.to_string()).unwrap_or_default(),
    }
}

fn destinations(additional: Vec<pb::WeightDestination>) -> Vec<model::WeightDestination> {
    additional.into_iter().map(Into::into).collect()
}

#[tonic::async_trait]
impl<R: TrafficRouter + 'static> TrafficRouterPlugin for RouterService<R> {
    async fn init_plugin(
        &self,
        _request: Request<pb::InitPluginRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let span = tracing::info_span!("grpc_call", rpc = "InitPlugin");
        let result = traced(span, async { Ok(self.router.init_plugin().await?) }).await;
        Ok(Response::new(rpc_error(result)))
    }

    async fn r#type(
        &self,
        _request: Request<pb::TypeRequest>,
    ) -> Result<Response<pb::TypeResponse>, Status> {
        let _span = tracing::info_span!("grpc_call", rpc = "Type").entered();
        Ok(Response::new(pb::TypeResponse {
            r#type: self.router.router_type().to_string(),
        }))
    }

    async fn update_hash(
        &self,
        request: Request<pb::UpdateHashRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let pb::UpdateHashRequest {
            rollout_json,
            canary_hash,
            stable_hash,
            additional_destinations,
        } = request.into_inner();
        let additional = destinations(additional_destinations);
        let result = with_rollout("UpdateHash", &rollout_json, |rollout| async move {
            self.router
                .update_hash(&rollout, &canary_hash, &stable_hash, &additional)
                .await
        })
        .await;
        Ok(Response::new(rpc_error(result)))
    }

    async fn set_weight(
        &self,
        request: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let pb::SetWeightRequest {
            rollout_json,
            desired_weight,
            additional_destinations,
        } = request.into_inner();
        let additional = destinations(additional_destinations);
        let result = with_rollout("SetWeight", &rollout_json, |rollout| async move {
            self.router
                .set_weight(&rollout, desired_weight, &additional)
                .await
        })
        .await;
        Ok(Response::new(rpc_error(result)))
    }

    async fn set_header_route(
        &self,
        request: Request<pb::SetHeaderRouteRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let pb::SetHeaderRouteRequest {
            rollout_json,
            set_header_route,
        } = request.into_inner();
        // Absent means the zero value, as a Go struct argument would be.
        let route = model::SetHeaderRoute::from(set_header_route.unwrap_or_default());
        let result = with_rollout("SetHeaderRoute", &rollout_json, |rollout| async move {
            self.router.set_header_route(&rollout, &route).await
        })
        .await;
        Ok(Response::new(rpc_error(result)))
    }

    async fn set_mirror_route(
        &self,
        request: Request<pb::SetMirrorRouteRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let pb::SetMirrorRouteRequest {
            rollout_json,
            set_mirror_route,
        } = request.into_inner();
        let route = model::SetMirrorRoute::from(set_mirror_route.unwrap_or_default());
        let result = with_rollout("SetMirrorRoute", &rollout_json, |rollout| async move {
            self.router.set_mirror_route(&rollout, &route).await
        })
        .await;
        Ok(Response::new(rpc_error(result)))
    }

    async fn verify_weight(
        &self,
        request: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::VerifyWeightResponse>, Status> {
        let pb::SetWeightRequest {
            rollout_json,
            desired_weight,
            additional_destinations,
        } = request.into_inner();
        let additional = destinations(additional_destinations);
        let result = with_rollout("VerifyWeight", &rollout_json, |rollout| async move {
            self.router
                .verify_weight(&rollout, desired_weight, &additional)
                .await
        })
        .await;
        let response = match result {
            Ok(verification) => pb::VerifyWeightResponse {
                verified: pb::Verified::from(verification).into(),
                error: Some(pb::RpcError::default()),
            },
            Err(error) => pb::VerifyWeightResponse {
                verified: pb::Verified::NotVerified.into(),
                error: Some(rpc_error(Err(error))),
            },
        };
        Ok(Response::new(response))
    }

    async fn remove_managed_routes(
        &self,
        request: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let rollout_json = request.into_inner().rollout_json;
        let result = with_rollout("RemoveManagedRoutes", &rollout_json, |rollout| async move {
            self.router.remove_managed_routes(&rollout).await
        })
        .await;
        Ok(Response::new(rpc_error(result)))
    }

    async fn get_weight_update_deadline(
        &self,
        request: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::GetWeightUpdateDeadlineResponse>, Status> {
        let rollout_json = request.into_inner().rollout_json;
        let result = with_rollout(
            "GetWeightUpdateDeadline",
            &rollout_json,
            |rollout| async move { self.router.get_weight_update_deadline(&rollout).await },
        )
        .await;
        let response = match result {
            Ok(deadline) => pb::GetWeightUpdateDeadlineResponse {
                deadline: deadline.map(Into::into),
                error: Some(pb::RpcError::default()),
            },
            Err(error) => pb::GetWeightUpdateDeadlineResponse {
                deadline: None,
                error: Some(rpc_error(Err(error))),
            },
        };
        Ok(Response::new(response))
    }

    async fn clear_weight_update_deadline(
        &self,
        request: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let rollout_json = request.into_inner().rollout_json;
        let result = with_rollout(
            "ClearWeightUpdateDeadline",
            &rollout_json,
            |rollout| async move { self.router.clear_weight_update_deadline(&rollout).await },
        )
        .await;
        Ok(Response::new(rpc_error(result)))
    }
}

impl From<Verification> for pb::Verified {
    fn from(verification: Verification) -> Self {
        match verification {
            Verification::NotVerified => pb::Verified::NotVerified,
            Verification::Verified => pb::Verified::Verified,
            Verification::NotImplemented => pb::Verified::NotImplemented,
        }
    }
}

impl From<pb::WeightDestination> for model::WeightDestination {
    fn from(d: pb::WeightDestination) -> Self {
        model::WeightDestination {
            weight: d.weight,
            service_name: d.service_name,
            pod_template_hash: d.pod_template_hash,
        }
    }
}

impl From<pb::StringMatch> for model::StringMatch {
    fn from(m: pb::StringMatch) -> Self {
        model::StringMatch {
            exact: m.exact,
            prefix: m.prefix,
            regex: m.regex,
        }
    }
}

impl From<pb::HeaderRoutingMatch> for model::HeaderRoutingMatch {
    fn from(m: pb::HeaderRoutingMatch) -> Self {
        model::HeaderRoutingMatch {
            header_name: m.header_name,
            header_value: m.header_value.map(Into::into),
        }
    }
}

impl From<pb::SetHeaderRoute> for model::SetHeaderRoute {
    fn from(route: pb::SetHeaderRoute) -> Self {
        model::SetHeaderRoute {
            name: route.name,
            matches: route.r#match.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::RouteMatch> for model::RouteMatch {
    fn from(m: pb::RouteMatch) -> Self {
        model::RouteMatch {
            method: m.method.map(Into::into),
            path: m.path.map(Into::into),
            headers: m
                .headers
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .collect(),
        }
    }
}

impl From<pb::SetMirrorRoute> for model::SetMirrorRoute {
    fn from(route: pb::SetMirrorRoute) -> Self {
        model::SetMirrorRoute {
            name: route.name,
            matches: route.r#match.into_iter().map(Into::into).collect(),
            percentage: route.percentage,
        }
    }
}
