//! The router served over hashicorp go-plugin's gRPC protocol: one HTTP/2
//! server on the plugin's unix socket carrying go-plugin's own services
//! (health, controller, stdio, broker) and the traffic-router service.
//!
//! The process launch (magic cookie, socket, handshake line) is not here:
//! the caller binds the listener and hands it to [`serve`].

pub mod budget;
mod go_plugin;
mod router_service;

pub use router_service::decode_request;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;

use crate::router::TrafficRouter;

use go_plugin::{Broker, Controller, Stdio};
use router_service::RouterService;

/// The generated protobuf messages, servers and clients.
pub mod proto {
    /// `argoproj.rollouts.trafficrouter.v1`: the traffic-router calls.
    pub mod trafficrouter {
        tonic::include_proto!("argoproj.rollouts.trafficrouter.v1");
    }

    /// `plugin`: go-plugin's controller, stdio and broker services.
    pub mod plugin {
        tonic::include_proto!("plugin");
    }

    /// `grpc.health.v1`, which go-plugin's client pings.
    pub use tonic_health::pb as health;
}

/// The health service name go-plugin's client checks (`Ping`).
pub const HEALTH_SERVICE: &str = "plugin";

/// The largest message decoded or encoded: go-plugin's client allows up to
/// `math.MaxInt32` bytes, but a Rollout is tens of KB, so the plugin holds
/// to [`super::MAX_REQUEST_BYTES`] (still far above tonic's 4 MiB default).
pub const MAX_MESSAGE_SIZE: usize = super::MAX_REQUEST_BYTES;

/// How long in-flight calls may run on after a shutdown request. The host
/// kills the plugin 2 s after `Shutdown` returns, so stop before that.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    // tonic's transport errors say little in their own text: the detail is
    // in their source chain, so they stay sources rather than text.
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
    #[error("cannot connect to the plugin socket {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Serves `router` and go-plugin's services on `listener` until the host
/// calls `plugin.GRPCController/Shutdown` or `shutdown` completes, then lets
/// in-flight calls finish (for at most [`DRAIN_TIMEOUT`]) and returns.
///
/// A call still running after that is abandoned, not cancelled: its
/// connection task lives until the process exits, which the caller is
/// expected to do once this returns.
pub async fn serve<R, F>(
    listener: UnixListener,
    router: Arc<R>,
    shutdown: F,
) -> Result<(), GrpcError>
where
    R: TrafficRouter + 'static,
    F: Future<Output = ()> + Send,
{
    let stop = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(HEALTH_SERVICE, ServingStatus::Serving)
        .await;

    let server = Server::builder()
        .add_service(health_service)
        .add_service(Controller::service(stop.clone()))
        .add_service(Stdio::service(stop.clone()))
        .add_service(Broker::service(stop.clone()))
        .add_service(RouterService::service(router))
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        );
    tokio::pin!(server);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut server => return result.map_err(GrpcError::Serve),
        () = &mut shutdown => {
            tracing::info!("shutting down the gRPC server");
            stop.cancel();
        }
        () = stop.cancelled() => {}
    }
    health
        .set_service_status(HEALTH_SERVICE, ServingStatus::NotServing)
        .await;
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(result) => result.map_err(GrpcError::Serve),
        Err(_) => {
            tracing::warn!(
                timeout = ?DRAIN_TIMEOUT,
                "gRPC calls still running at shutdown were abandoned"
            );
            Ok(())
        }
    }
}

/// A gRPC channel to a plugin listening on the unix socket `path`, dialled
/// as go-plugin's client does (plain HTTP/2, no TLS). Wrap it in the
/// generated clients of [`proto`].
pub async fn connect(path: &Path) -> Result<Channel, GrpcError> {
    let socket = path.to_path_buf();
    // The URI is required by the API but unused: the connector below
    // ignores it and dials the socket.
    Endpoint::from_static("http://plugin.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| GrpcError::Connect {
            path: path.to_path_buf(),
            source,
        })
}
