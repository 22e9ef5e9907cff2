//! The hot path of a steady-state SetWeight, through the library's public
//! entry points: the request bytes the real controller sent (decode), the
//! router's call against a cluster that already holds the desired weights
//! (core), the response bytes (reply). This is the one file of the guard
//! that uses library APIs: when they change, only this file changes.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use istio_router::cluster::InMemoryCluster;
use istio_router::istio::IstioRouter;
use istio_router::router::dispatch;
use istio_router::transport::netrpc::calls::decode_call;
use istio_router::transport::netrpc::gob::RequestStream;
use istio_router::transport::netrpc::plugin::{Reply, encode_response};
use test_support::fixtures::{fixtures, gob_messages};

/// The recorded controller session used: the host scenario, whose call 10
/// is `SetWeight 50` with two additional destinations (the ~23 KB Rollout
/// with pod template and status; no gob type definitions, sent after the
/// calls that defined them).
const SCENARIO: &str = "host";
const WARM_UP_CALLS: &[&str] = &[
    "01-InitPlugin",
    "02-InitPlugin",
    "03-Type",
    "04-UpdateHash",
    "05-SetWeight",
    "06-VerifyWeight",
    "07-SetHeaderRoute",
    "08-SetMirrorRoute",
    "09-VerifyWeight",
];
const MEASURED_CALL: &str = "10-SetWeight";

fn wire(dir: &Path, stem: &str) -> Result<Vec<Vec<u8>>, String> {
    let path = dir.join(format!("{stem}.wire.bin"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let messages = gob_messages(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(messages.into_iter().map(<[u8]>::to_vec).collect())
}

/// One connection's state, warmed up: the decoder has the controller's type
/// table, the encoder has sent its type definitions, the VirtualService
/// already carries the weights of the measured call.
pub struct HotPath {
    stream: RequestStream,
    encoder: gobwire::Encoder,
    router: IstioRouter<Arc<InMemoryCluster>>,
    cluster: Arc<InMemoryCluster>,
    request: Vec<Vec<u8>>,
    runtime: tokio::runtime::Runtime,
}

impl HotPath {
    pub fn prepare() -> Result<HotPath, String> {
        let dir = fixtures().join(SCENARIO);
        let cluster = Arc::new(InMemoryCluster::new());
        cluster
            .apply(
                [json!({
                    "apiVersion": "networking.istio.io/v1alpha3",
                    "kind": "VirtualService",
                    "metadata": {"name": "rollout-vsvc", "namespace": "demo"},
                    "spec": {
                        "hosts": ["rollouts-demo.example.com"],
                        "http": [{
                            "name": "primary",
                            "route": [
                                {"destination": {"host": "rollouts-demo-stable"}, "weight": 100},
                                {"destination": {"host": "rollouts-demo-canary"}, "weight": 0},
                            ],
                        }],
                    },
                })],
                "demo",
            )
            .map_err(|e| e.to_string())?;
        let router = IstioRouter::new(cluster.clone(), "argoproj-labs/istio");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let mut stream = RequestStream::new();
        for stem in WARM_UP_CALLS {
            for msg in wire(&dir, stem)? {
                stream.push(&msg).map_err(|e| format!("{stem}: {e}"))?;
            }
        }
        let mut path = HotPath {
            stream,
            encoder: gobwire::Encoder::new(),
            router,
            cluster,
            request: wire(&dir, MEASURED_CALL)?,
            runtime,
        };
        // The first SetWeight 50 writes the weights; from then on every call
        // finds nothing to change.
        path.call()?;
        let writes = path.cluster.writes();
        path.call()?;
        if path.cluster.writes() != writes {
            return Err("the second SetWeight 50 wrote: not a steady state".into());
        }
        Ok(path)
    }

    /// One call: decode the request, run it, encode the reply. Returns the
    /// reply's size; an error reply is an error.
    pub fn call(&mut self) -> Result<usize, String> {
        let mut raw = None;
        for msg in &self.request {
            raw = self.stream.push(msg).map_err(|e| format!("header: {e}"))?;
        }
        let raw = raw.ok_or("the request did not complete")?;
        let body = raw.body.map_err(|e| format!("body: {e}"))?;
        let call = decode_call(&mut self.stream.values, &raw.header.service_method, &body)
            .map_err(|e| format!("call: {e}"))?;
        let reply = Reply::from(self.runtime.block_on(dispatch(&self.router, call)));
        if let Reply::Error(e) = &reply
            && !e.error_string.is_empty()
        {
            return Err(format!("SetWeight failed: {}", e.error_string));
        }
        let bytes = encode_response(
            &mut self.encoder,
            &raw.header.service_method,
            raw.header.seq,
            &Ok(reply),
        )
        .map_err(|e| format!("encoding the reply: {e}"))?;
        Ok(bytes.len())
    }
}
