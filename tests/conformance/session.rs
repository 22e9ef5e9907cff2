//! What a transport gives the runner: a cluster it can arrange and inspect,
//! and a plugin it can call. Each transport (in-process, the binary over
//! net/rpc, the binary over gRPC) implements [`Transport`]; the two process
//! transports share one cluster side, the API stand-in.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::case::{Case, Fault, Step};
use istio_router::router::Call;
pub use test_support::mock_controller::CallReply;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster the plugin edits, as the case arranges and inspects it.
pub trait ClusterSide: Send {
    /// Creates or replaces objects as someone other than the plugin would.
    fn apply<'a>(
        &'a mut self,
        objects: &'a [Value],
        default_namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    fn delete<'a>(
        &'a mut self,
        kind: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Faults for the next call only.
    fn inject(&mut self, faults: &[Fault]);
    fn clear_faults(&mut self);
    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value>;
    /// Write requests the cluster has received so far.
    fn writes(&self) -> u64;
}

/// The plugin, called the way the transport carries calls.
pub trait PluginSide: Send {
    fn call(&mut self, call: Call) -> BoxFuture<'_, CallReply>;

    /// A call of the case, with the case's own step (for a transport that
    /// sends the case's JSON rather than model values, `genuine`). `Err`:
    /// the transport itself failed, whatever the case expects of the call.
    fn call_step<'a>(
        &'a mut self,
        step: &'a Step,
        call: Call,
    ) -> BoxFuture<'a, Result<CallReply, String>> {
        let _ = step;
        Box::pin(async move { Ok(self.call(call).await) })
    }
}

pub struct Session {
    pub cluster: Box<dyn ClusterSide>,
    pub plugin: Box<dyn PluginSide>,
}

pub trait Transport {
    fn name(&self) -> &'static str;
    /// Why this transport cannot run `case`, if it cannot.
    fn cannot_run(&self, case: &Case) -> Option<String>;
    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Session, String>>;
}
