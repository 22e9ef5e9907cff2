//! `argoproj.rollouts.trafficrouter.v1.TrafficRouterPlugin`: decodes each
//! request into a [`Call`], dispatches it and encodes the [`Outcome`] as
//! net/rpc does, with failures in the `RpcError` field rather than as a
//! gRPC status.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::MAX_MESSAGE_SIZE;
use super::proto::trafficrouter as pb;
use super::proto::trafficrouter::traffic_router_plugin_server::{
    TrafficRouterPlugin, TrafficRouterPluginServer,
};
use crate::model::{self, ModelError, Rollout};
use crate::router::{Call, Outcome, TrafficRouter, Verification, dispatch};
use crate::transport::netrpc::calls::check_rollout_json;
use crate::transport::netrpc::gob::JsonCheckError;
use crate::transport::{MODEL_BASE, MODEL_PER_BYTE};

pub(super) struct RouterService<R> {
    router: Arc<R>,
}

impl<R: TrafficRouter + 'static> RouterService<R> {
    pub(super) fn service(router: Arc<R>) -> TrafficRouterPluginServer<Self> {
        TrafficRouterPluginServer::new(RouterService { router })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Dispatches a decoded call, or answers a request that did not decode
    /// with its error; either way in the reply type `T`.
    async fn serve<T: From<Outcome>>(
        &self,
        name: &'static str,
        call: Result<Call, RequestError>,
    ) -> Result<Response<T>, Status> {
        let outcome = match call {
            Ok(call) => dispatch(&*self.router, call).await,
            Err(error @ RequestError::OverBudget { .. }) => {
                tracing::warn!(call = name, %error, "request refused");
                return Err(Status::resource_exhausted(format!("{name}: {error}")));
            }
            Err(error) => {
                tracing::warn!(call = name, %error, "bad request");
                Outcome::Done(Err(error.to_string()))
            }
        };
        Ok(Response::new(T::from(outcome)))
    }
}

/// Why a request cannot become a [`Call`]; its `Display` is the
/// `error_string` sent back.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("rollout_json is empty")]
    EmptyRollout,
    #[error("rollout_json is not valid JSON: {0}")]
    RolloutJson(serde_json::Error),
    #[error(transparent)]
    Rollout(#[from] ModelError),
    /// Answered with a `ResourceExhausted` status, not a reply.
    #[error(
        "rollout_json of {size} bytes decodes to more than {limit} bytes ({MODEL_PER_BYTE} per byte + {MODEL_BASE})"
    )]
    OverBudget { size: usize, limit: usize },
}

/// The Rollout of a request, then the call built from it.
fn with_rollout(json: &[u8], call: impl FnOnce(Rollout) -> Call) -> Result<Call, RequestError> {
    if json.is_empty() {
        return Err(RequestError::EmptyRollout);
    }
    // Syntax and the model's size first (nothing kept), then the model
    // straight from the text: no JSON tree of the whole Rollout, whose pod
    // template is skipped.
    check_rollout_json(json).map_err(|e| match e {
        JsonCheckError::Syntax(e) => RequestError::RolloutJson(e),
        JsonCheckError::OverBudget { size, limit } => RequestError::OverBudget { size, limit },
    })?;
    let mut de = serde_json::Deserializer::from_slice(json);
    let rollout = model::from_deserializer(&mut de, "Rollout").map_err(without_position)?;
    Ok(call(rollout))
}

/// A model error as the JSON tree reported it: the field path names the
/// place, not a line and column of the one-line text.
fn without_position(mut error: ModelError) -> ModelError {
    if let Some(at) = error.message.rfind(" at line ")
        && error.message[at + " at line ".len()..]
            .split(" column ")
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        error.message.truncate(at);
    }
    error
}

fn update_hash(r: pb::UpdateHashRequest) -> Result<Call, RequestError> {
    with_rollout(&r.rollout_json, |rollout| Call::UpdateHash {
        rollout,
        canary_hash: r.canary_hash,
        stable_hash: r.stable_hash,
        additional: destinations(r.additional_destinations),
    })
}

fn set_weight(r: pb::SetWeightRequest) -> Result<Call, RequestError> {
    with_rollout(&r.rollout_json, |rollout| Call::SetWeight {
        rollout,
        desired_weight: r.desired_weight,
        additional: destinations(r.additional_destinations),
    })
}

fn verify_weight(r: pb::SetWeightRequest) -> Result<Call, RequestError> {
    with_rollout(&r.rollout_json, |rollout| Call::VerifyWeight {
        rollout,
        desired_weight: r.desired_weight,
        additional: destinations(r.additional_destinations),
    })
}

fn set_header_route(r: pb::SetHeaderRouteRequest) -> Result<Call, RequestError> {
    with_rollout(&r.rollout_json, |rollout| Call::SetHeaderRoute {
        rollout,
        // Absent means the zero value, as a Go struct argument would be.
        route: r.set_header_route.unwrap_or_default().into(),
    })
}

fn set_mirror_route(r: pb::SetMirrorRouteRequest) -> Result<Call, RequestError> {
    with_rollout(&r.rollout_json, |rollout| Call::SetMirrorRoute {
        rollout,
        route: r.set_mirror_route.unwrap_or_default().into(),
    })
}

/// Decodes the protobuf `body` of a request to `method` (`SetWeight`, …)
/// into its [`Call`] as the service does, from the message bytes to the
/// model: for measuring what a request costs. A request the service
/// refuses with a status comes back as that status; one it answers with an
/// `error_string` comes back as `InvalidArgument` with that text.
pub fn decode_request(method: &str, body: &[u8]) -> Result<Call, Status> {
    use prost::Message;
    super::budget::check(body)?;
    let bad = |e: prost::DecodeError| Status::internal(e.to_string());
    let call = match method {
        "UpdateHash" => update_hash(pb::UpdateHashRequest::decode(body).map_err(bad)?),
        "SetWeight" => set_weight(pb::SetWeightRequest::decode(body).map_err(bad)?),
        "VerifyWeight" => verify_weight(pb::SetWeightRequest::decode(body).map_err(bad)?),
        "SetHeaderRoute" => set_header_route(pb::SetHeaderRouteRequest::decode(body).map_err(bad)?),
        "SetMirrorRoute" => set_mirror_route(pb::SetMirrorRouteRequest::decode(body).map_err(bad)?),
        "RemoveManagedRoutes" | "GetWeightUpdateDeadline" | "ClearWeightUpdateDeadline" => {
            let r = pb::RolloutRequest::decode(body).map_err(bad)?;
            with_rollout(&r.rollout_json, |rollout| match method {
                "RemoveManagedRoutes" => Call::RemoveManagedRoutes { rollout },
                "GetWeightUpdateDeadline" => Call::GetWeightUpdateDeadline { rollout },
                _ => Call::ClearWeightUpdateDeadline { rollout },
            })
        }
        _ => return Err(Status::unimplemented(format!("no method {method}"))),
    };
    call.map_err(|error| match error {
        RequestError::OverBudget { .. } => Status::resource_exhausted(format!("{method}: {error}")),
        error => Status::invalid_argument(error.to_string()),
    })
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
        self.serve("InitPlugin", Ok(Call::InitPlugin)).await
    }

    async fn r#type(
        &self,
        _request: Request<pb::TypeRequest>,
    ) -> Result<Response<pb::TypeResponse>, Status> {
        self.serve("Type", Ok(Call::Type)).await
    }

    async fn update_hash(
        &self,
        request: Request<pb::UpdateHashRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        self.serve("UpdateHash", update_hash(request.into_inner()))
            .await
    }

    async fn set_weight(
        &self,
        request: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        self.serve("SetWeight", set_weight(request.into_inner()))
            .await
    }

    async fn set_header_route(
        &self,
        request: Request<pb::SetHeaderRouteRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        self.serve("SetHeaderRoute", set_header_route(request.into_inner()))
            .await
    }

    async fn set_mirror_route(
        &self,
        request: Request<pb::SetMirrorRouteRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        self.serve("SetMirrorRoute", set_mirror_route(request.into_inner()))
            .await
    }

    async fn verify_weight(
        &self,
        request: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::VerifyWeightResponse>, Status> {
        self.serve("VerifyWeight", verify_weight(request.into_inner()))
            .await
    }

    async fn remove_managed_routes(
        &self,
        request: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let call = with_rollout(&request.into_inner().rollout_json, |rollout| {
            Call::RemoveManagedRoutes { rollout }
        });
        self.serve("RemoveManagedRoutes", call).await
    }

    async fn get_weight_update_deadline(
        &self,
        request: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::GetWeightUpdateDeadlineResponse>, Status> {
        let call = with_rollout(&request.into_inner().rollout_json, |rollout| {
            Call::GetWeightUpdateDeadline { rollout }
        });
        self.serve("GetWeightUpdateDeadline", call).await
    }

    async fn clear_weight_update_deadline(
        &self,
        request: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RpcError>, Status> {
        let call = with_rollout(&request.into_inner().rollout_json, |rollout| {
            Call::ClearWeightUpdateDeadline { rollout }
        });
        self.serve("ClearWeightUpdateDeadline", call).await
    }
}

fn rpc_error(outcome: &Outcome) -> pb::RpcError {
    pb::RpcError {
        error_string: outcome.error().to_string(),
    }
}

impl From<Outcome> for pb::RpcError {
    fn from(outcome: Outcome) -> Self {
        rpc_error(&outcome)
    }
}

impl From<Outcome> for pb::TypeResponse {
    fn from(outcome: Outcome) -> Self {
        pb::TypeResponse {
            r#type: match outcome {
                Outcome::Type(name) => name,
                _ => String::new(),
            },
        }
    }
}

impl From<Outcome> for pb::VerifyWeightResponse {
    fn from(outcome: Outcome) -> Self {
        pb::VerifyWeightResponse {
            verified: pb::Verified::from(outcome.verification()).into(),
            error: Some(rpc_error(&outcome)),
        }
    }
}

impl From<Outcome> for pb::GetWeightUpdateDeadlineResponse {
    fn from(outcome: Outcome) -> Self {
        pb::GetWeightUpdateDeadlineResponse {
            deadline: outcome.deadline().map(Into::into),
            error: Some(rpc_error(&outcome)),
        }
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

// The model as the gRPC messages carry it, for clients of the service.

impl From<&model::WeightDestination> for pb::WeightDestination {
    fn from(d: &model::WeightDestination) -> Self {
        pb::WeightDestination {
            weight: d.weight,
            service_name: d.service_name.clone(),
            pod_template_hash: d.pod_template_hash.clone(),
        }
    }
}

impl From<&model::StringMatch> for pb::StringMatch {
    fn from(m: &model::StringMatch) -> Self {
        pb::StringMatch {
            exact: m.exact.clone(),
            prefix: m.prefix.clone(),
            regex: m.regex.clone(),
        }
    }
}

impl From<&model::SetHeaderRoute> for pb::SetHeaderRoute {
    fn from(route: &model::SetHeaderRoute) -> Self {
        pb::SetHeaderRoute {
            name: route.name.clone(),
            r#match: route
                .matches
                .iter()
                .map(|m| pb::HeaderRoutingMatch {
                    header_name: m.header_name.clone(),
                    header_value: m.header_value.as_ref().map(Into::into),
                })
                .collect(),
        }
    }
}

impl From<&model::SetMirrorRoute> for pb::SetMirrorRoute {
    fn from(route: &model::SetMirrorRoute) -> Self {
        pb::SetMirrorRoute {
            name: route.name.clone(),
            r#match: route
                .matches
                .iter()
                .map(|m| pb::RouteMatch {
                    method: m.method.as_ref().map(Into::into),
                    path: m.path.as_ref().map(Into::into),
                    headers: m
                        .headers
                        .iter()
                        .map(|(name, value)| (name.clone(), value.into()))
                        .collect(),
                })
                .collect(),
            percentage: route.percentage,
        }
    }
}
