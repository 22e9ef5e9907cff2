//! What a transport gives the runner: a cluster it can arrange and inspect,
//! and a plugin it can call. Each transport (in-process, the binary over
//! net/rpc, the binary over gRPC, the binary under the controller's own Go
//! client) implements [`Transport`]; the process transports share one
//! cluster side, the API stand-in.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::case::{Call, Case, Fault};
use istio_router::model::Rollout;
use istio_router::router::Verification;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a call returned, in the controller's terms.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `RpcError.ErrorString`; empty on success.
    pub error: String,
    pub verified: Option<Verification>,
    pub type_name: Option<String>,
    /// RFC 3339, when GetWeightUpdateDeadline returned one.
    pub deadline: Option<String>,
    /// The transport itself failed (not the plugin): the case fails with
    /// this, whatever it expects of the call.
    pub broken: Option<String>,
}

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
    fn call<'a>(&'a mut self, call: &'a Call, rollout: &'a Rollout) -> BoxFuture<'a, Outcome>;
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
