//! go-plugin's net/rpc protocol, as the Argo Rollouts controller speaks it:
//! a yamux session per connection (control, stdout, stderr, then brokered
//! streams), `Control`/`Dispenser` on the control stream, and the `Plugin`
//! service on the stream the controller dials through the MuxBroker.
//!
//! The yamux session and MuxBroker come from the `goplugin` crate, the
//! control stream's net/rpc from `go-netrpc` (three tiny calls). The `Plugin`
//! stream has its own server: its requests carry whole Rollouts, decoded
//! by [`gob`] straight into the model.

pub mod broker;
pub mod calls;
pub mod gob;
pub mod plugin;

use std::sync::Arc;
use std::time::Duration;

use go_netrpc::ServiceError;
use goplugin::rpc::Empty;
use goplugin::yamux::{Config, Session};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::router::TrafficRouter;

pub use plugin::{PluginStream, ServeStreamError};

/// The name the controller dispenses (`RpcTrafficRouterPlugin`).
pub const PLUGIN_NAME: &str = "RpcTrafficRouterPlugin";

/// How a served connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The host sent `Control.Quit`.
    Quit,
    /// The host closed the connection (or it broke).
    Disconnected,
}

#[derive(Debug, thiserror::Error)]
pub enum NetRpcError {
    #[error("accepting the host's connection: {0}")]
    Accept(std::io::Error),
    #[error("yamux: {0}")]
    Yamux(goplugin::yamux::Error),
}

impl From<goplugin::yamux::Error> for NetRpcError {
    fn from(error: goplugin::yamux::Error) -> Self {
        NetRpcError::Yamux(error)
    }
}

/// Serves the host's connection on `listener` until it quits or goes away.
/// The controller makes exactly one connection per plugin process.
pub async fn serve<R: TrafficRouter + 'static>(
    listener: UnixListener,
    router: Arc<R>,
) -> Result<Ended, NetRpcError> {
    let (conn, _) = listener.accept().await.map_err(NetRpcError::Accept)?;
    tracing::debug!("host connected");
    // yamux writes a frame as its 12-byte header, then its body, and
    // flushes once its queue is empty: buffered, a reply (and whatever
    // else was queued with it) leaves in one write(2) instead of two per
    // frame. Reads pass straight through (yamux buffers them itself).
    serve_connection(tokio::io::BufWriter::new(conn), router).await
}

/// rpc_server.go `ServeConn`: streams by accept order, control first.
pub async fn serve_connection<R, T>(io: T, router: Arc<R>) -> Result<Ended, NetRpcError>
where
    R: TrafficRouter + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let session = Session::server(io, Config::default())?;
    let control = session.accept().await?;
    // Accepting ACKs them; they stay open and idle (dropping them would FIN).
    let _stdout = session.accept().await?;
    let _stderr = session.accept().await?;
    let broker = broker::Broker::new(broker::IDENTIFY_TIMEOUT);
    tokio::spawn(broker.clone().run(session.clone()));

    let (quit_tx, mut quit_rx) = watch::channel(false);
    let server = control_server(broker, router, quit_tx);
    let serving = Arc::new(server).serve(control);
    tokio::pin!(serving);
    let ended = tokio::select! {
        result = &mut serving => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "control stream ended");
            }
            Ended::Disconnected
        }
        _ = quit_rx.wait_for(|q| *q) => Ended::Quit,
        e = session.closed() => {
            tracing::debug!(error = %e, "session closed");
            Ended::Disconnected
        }
    };
    if ended == Ended::Quit {
        // Keep serving so the Quit reply goes out; the host then closes its
        // streams and the session. Bounded well inside the host's 2 s.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            tokio::select! {
                _ = &mut serving => {}
                _ = session.closed() => {}
            }
        })
        .await;
    }
    session.close();
    Ok(ended)
}

fn control_server<R: TrafficRouter + 'static>(
    broker: broker::Broker,
    router: Arc<R>,
    quit: watch::Sender<bool>,
) -> go_netrpc::Server {
    let mut server = go_netrpc::Server::new();
    server.register("Control.Ping", |_: bool| async {
        Ok::<_, ServiceError>(Empty {})
    });
    server.register("Control.Quit", move |_: bool| {
        let quit = quit.clone();
        async move {
            tracing::debug!("host asked the plugin to quit");
            quit.send_replace(true);
            Ok::<_, ServiceError>(Empty {})
        }
    });
    server.register("Dispenser.Dispense", move |name: String| {
        let broker = broker.clone();
        let router = router.clone();
        async move {
            if name != PLUGIN_NAME {
                return Err(ServiceError(format!("unknown plugin type: {name}")));
            }
            let (id, pending) = broker.expect().map_err(|e| ServiceError(e.to_string()))?;
            tokio::spawn(async move {
                match pending.accept().await {
                    Ok(stream) => {
                        if let Err(e) = PluginStream::new(router).serve(stream).await {
                            tracing::warn!(error = %e, "plugin stream ended");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "broker stream for the plugin never came")
                    }
                }
            });
            Ok(id)
        }
    });
    server
}
