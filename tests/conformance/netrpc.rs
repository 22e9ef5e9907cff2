//! The `netrpc` transport: the plugin binary driven over go-plugin net/rpc
//! by the mock controller (gob with Go field names, a ping before every
//! call), editing the API stand-in.

use super::case::Case;
use super::session::{BoxFuture, CallReply, PluginSide, Session, Transport};
use super::standin::{StandIn, plugin_args};
use istio_router::router::Call;
use test_support::mock_controller::MockController;
use test_support::plugin_binary;

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
            let controller = MockController::launch(
                plugin_binary!(),
                &plugin_args(case, "netrpc"),
                &cluster.env(),
            )
            .await?;
            Ok(Session {
                cluster: Box::new(cluster),
                plugin: Box::new(controller),
            })
        })
    }
}

impl PluginSide for MockController {
    fn call(&mut self, call: Call) -> BoxFuture<'_, CallReply> {
        Box::pin(async move { MockController::call(self, &call).await })
    }
}
