//! What a transport gives the runner: a cluster it can arrange and inspect,
//! and a plugin it can call. Each transport (in-process, the binary over
//! net/rpc, the binary over gRPC) implements [`Transport`].

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
}

pub trait Session: Send {
    /// Creates or replaces objects as someone other than the plugin would.
    fn apply(
        &mut self,
        objects: &[Value],
        default_namespace: &str,
    ) -> BoxFuture<'_, Result<(), String>>;
    fn delete(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<(), String>>;
    /// Faults for the next call only.
    fn inject(&mut self, faults: &[Fault]);
    fn clear_faults(&mut self);
    fn object(&mut self, kind: &str, namespace: &str, name: &str) -> BoxFuture<'_, Option<Value>>;
    /// Write requests the cluster has received so far.
    fn writes(&mut self) -> u64;
    fn call<'a>(&'a mut self, call: &'a Call, rollout: &'a Rollout) -> BoxFuture<'a, Outcome>;
}

pub trait Transport {
    fn name(&self) -> &'static str;
    /// Why this transport cannot run `case`, if it cannot.
    fn cannot_run(&self, case: &Case) -> Option<String>;
    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Box<dyn Session>, String>>;
}
