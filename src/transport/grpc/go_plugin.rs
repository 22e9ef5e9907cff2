//! go-plugin's own services: the controller (Shutdown), stdio mirroring and
//! the connection broker. Each open stream ends when the server stops, so
//! that a graceful shutdown is not held up by the host's long-lived streams.

use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::proto::plugin::conn_info::Knock;
use super::proto::plugin::grpc_broker_server::{GrpcBroker, GrpcBrokerServer};
use super::proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use super::proto::plugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use super::proto::plugin::{ConnInfo, Empty, StdioData};

/// `plugin.GRPCController`: Shutdown answers, then stops the server.
pub(super) struct Controller {
    stop: CancellationToken,
}

impl Controller {
    pub(super) fn service(stop: CancellationToken) -> GrpcControllerServer<Self> {
        GrpcControllerServer::new(Controller { stop })
    }
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::info!("host requested shutdown");
        // Graceful: this call is in flight, so its answer is still sent.
        self.stop.cancel();
        Ok(Response::new(Empty {}))
    }
}

/// `plugin.GRPCStdio`: logs go to the real stderr, which the host reads
/// directly, so the stream carries nothing; like a Go plugin's, it stays
/// open until the server stops.
pub(super) struct Stdio {
    stop: CancellationToken,
}

impl Stdio {
    pub(super) fn service(stop: CancellationToken) -> GrpcStdioServer<Self> {
        GrpcStdioServer::new(Stdio { stop })
    }
}

type StdioStream = Pin<Box<dyn Stream<Item = Result<StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let open_until_stop = stream::pending().take_until(self.stop.clone().cancelled_owned());
        Ok(Response::new(Box::pin(open_until_stop)))
    }
}

/// `plugin.GRPCBroker`: the host opens one StartStream and keeps it open.
/// This plugin brokers no services of its own, so it only has to refuse
/// knocks (multiplexed dials) rather than leave the host waiting for an ack.
pub(super) struct Broker {
    stop: CancellationToken,
}

impl Broker {
    pub(super) fn service(stop: CancellationToken) -> GrpcBrokerServer<Self> {
        GrpcBrokerServer::new(Broker { stop })
    }
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    type StartStreamStream = ReceiverStream<Result<ConnInfo, Status>>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (replies, outbound) = mpsc::channel(8);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => break,
                    message = inbound.message() => message,
                };
                match message {
                    Ok(Some(info)) => {
                        let Some(reply) = answer_knock(&info) else {
                            tracing::debug!(
                                service_id = info.service_id,
                                "ignoring broker message: this plugin dials no brokered services"
                            );
                            continue;
                        };
                        if replies.send(Ok(reply)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "broker stream ended");
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(outbound)))
    }
}

/// The acknowledgement of a knock, refusing it: no service is served under
/// any broker id. `None` for messages that are not knocks.
fn answer_knock(info: &ConnInfo) -> Option<ConnInfo> {
    let knock = info.knock.as_ref()?;
    if !knock.knock || knock.ack {
        return None;
    }
    Some(ConnInfo {
        service_id: info.service_id,
        knock: Some(Knock {
            knock: true,
            ack: true,
            error: format!(
                "no brokered service with id {}: this plugin serves none",
                info.service_id
            ),
        }),
        ..ConnInfo::default()
    })
}
