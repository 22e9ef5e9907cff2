//! net/rpc service `Plugin` on one brokered stream: requests are decoded in
//! arrival order, served concurrently, and answered by `Seq`, each response
//! written whole under the stream's lock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use go_netrpc::{InvalidRequest, Response};
use gobwire::{Encode, Encoder, GoTime, Gob, Zone};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::calls::decode_call;
use super::gob::{GobError, RawRequest, RequestStream, split_message};
use crate::router::{Outcome, TrafficRouter, Verification, dispatch};

/// `types.RpcError`: an empty string is success.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct RpcError {
    #[gob(name = "ErrorString")]
    pub error_string: String,
}

/// `VerifyWeightResponse{Verified RpcVerified (int32), Err RpcError}`.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyWeightResponse {
    #[gob(name = "Verified")]
    pub verified: i32,
    #[gob(name = "Err")]
    pub err: RpcError,
}

/// `WeightUpdateDeadlineResponse{Deadline *time.Time, Err RpcError}`.
#[derive(Gob, Debug, Default, Clone, PartialEq)]
pub struct WeightUpdateDeadlineResponse {
    #[gob(name = "Deadline")]
    pub deadline: Option<GoTime>,
    #[gob(name = "Err")]
    pub err: RpcError,
}

/// A reply body of the gob kind the controller decodes into.
pub enum Reply {
    Error(RpcError),
    Type(String),
    Verify(VerifyWeightResponse),
    Deadline(WeightUpdateDeadlineResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeStreamError {
    #[error("reading the plugin stream: {0}")]
    Read(std::io::Error),
    #[error("unreadable message framing, cannot resynchronise: {0}")]
    Framing(GobError),
}

type Writer<S> = Arc<Mutex<(WriteHalf<S>, Encoder)>>;

/// Serves one `Plugin` stream with `router`.
pub struct PluginStream<R> {
    router: Arc<R>,
}

impl<R: TrafficRouter + 'static> PluginStream<R> {
    pub fn new(router: Arc<R>) -> Self {
        PluginStream { router }
    }

    /// Until the host closes the stream.
    pub async fn serve<S>(self, stream: S) -> Result<(), ServeStreamError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut read, write) = tokio::io::split(stream);
        let writer: Writer<S> = Arc::new(Mutex::new((write, Encoder::new())));
        let mut requests = RequestStream::new();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        // Bytes of a refused, oversized message still to be read and dropped.
        let mut discard: u64 = 0;
        loop {
            let n = read
                .read(&mut chunk)
                .await
                .map_err(ServeStreamError::Read)?;
            if n == 0 {
                return Ok(());
            }
            let mut fresh = &chunk[..n];
            if discard > 0 {
                let dropped = usize::try_from(discard)
                    .unwrap_or(usize::MAX)
                    .min(fresh.len());
                fresh = &fresh[dropped..];
                discard -= dropped as u64;
            }
            buf.extend_from_slice(fresh);
            let mut pos = 0;
            loop {
                let (start, len) = match split_message(&buf[pos..]) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(GobError::TooLarge { header, len }) => {
                        // Answer now, then drop the message as it arrives
                        // instead of buffering it.
                        let request = requests.refuse_message();
                        let error = GobError::TooLarge { header, len };
                        tracing::warn!(call = %request.service_method, seq = request.seq, error = %error, "request refused");
                        respond(&writer, request, Err(format!("rpc: {error}"))).await;
                        let buffered = (buf.len() - pos - header) as u64;
                        let dropped = buffered.min(len);
                        pos += header + dropped as usize;
                        discard = len - dropped;
                        continue;
                    }
                    Err(e) => return Err(ServeStreamError::Framing(e)),
                };
                let msg = &buf[pos + start..pos + start + len];
                pos += start + len;
                match requests.push(msg) {
                    Ok(None) => {}
                    Ok(Some(raw)) => self.dispatch(&mut requests, raw, &writer).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable request header");
                        let header = super::gob::Header::default();
                        respond(&writer, header, Err(format!("rpc: {e}"))).await;
                    }
                }
            }
            buf.drain(..pos);
        }
    }

    async fn dispatch<S>(&self, requests: &mut RequestStream, raw: RawRequest, writer: &Writer<S>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let header = raw.header;
        let call = raw
            .body
            .map_err(|e| format!("{}: reading body: {e}", header.service_method))
            .and_then(|body| {
                decode_call(&mut requests.values, &header.service_method, &body)
                    .map_err(|e| e.to_string())
            });
        let call = match call {
            Ok(call) => call,
            Err(msg) => {
                tracing::warn!(call = %header.service_method, seq = header.seq, error = %msg, "bad request");
                respond(writer, header, Err(msg)).await;
                return;
            }
        };
        let span = tracing::debug_span!("netrpc", seq = header.seq);
        let router = self.router.clone();
        let writer = writer.clone();
        tokio::spawn(
            async move {
                let outcome = dispatch(&*router, call).await;
                respond(&writer, header, Ok(Reply::from(outcome))).await;
            }
            .instrument(span),
        );
    }
}

impl From<Outcome> for Reply {
    fn from(outcome: Outcome) -> Self {
        let rpc_error = |error: Option<String>| RpcError {
            error_string: error.unwrap_or_default(),
        };
        match outcome {
            Outcome::Done(result) => Reply::Error(rpc_error(result.err())),
            Outcome::Type(name) => Reply::Type(name),
            Outcome::Verified(result) => Reply::Verify(match result {
                Ok(verification) => VerifyWeightResponse {
                    verified: verification as i32,
                    err: RpcError::default(),
                },
                Err(e) => VerifyWeightResponse {
                    verified: Verification::NotVerified as i32,
                    err: rpc_error(Some(e)),
                },
            }),
            Outcome::Deadline(result) => Reply::Deadline(match result {
                Ok(deadline) => WeightUpdateDeadlineResponse {
                    deadline: deadline.map(go_time),
                    err: RpcError::default(),
                },
                Err(e) => WeightUpdateDeadlineResponse {
                    deadline: None,
                    err: rpc_error(Some(e)),
                },
            }),
        }
    }
}

fn go_time(t: SystemTime) -> GoTime {
    let (secs, nsec) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i32),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos() as i32);
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    };
    GoTime::from_unix(secs, nsec, Zone::Utc)
}

/// The bytes of one response: header, then the reply or `struct{}` when
/// the call failed at the net/rpc level (server.go, `sendResponse`).
pub fn encode_response(
    enc: &mut Encoder,
    service_method: &str,
    seq: u64,
    reply: &Result<Reply, String>,
) -> Result<Vec<u8>, gobwire::Error> {
    let mut out = Vec::new();
    let header = Response {
        service_method: service_method.to_string(),
        seq,
        error: reply.as_ref().err().cloned().unwrap_or_default(),
    };
    enc.encode_into(&header, &mut out)?;
    let body: &dyn Encode = match reply {
        Err(_) => &InvalidRequest {},
        Ok(Reply::Error(e)) => e,
        Ok(Reply::Type(s)) => s,
        Ok(Reply::Verify(v)) => v,
        Ok(Reply::Deadline(d)) => d,
    };
    enc.encode_into(body, &mut out)?;
    Ok(out)
}

async fn respond<S>(writer: &Writer<S>, header: super::gob::Header, reply: Result<Reply, String>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut w = writer.lock().await;
    let (io, enc) = &mut *w;
    let bytes = match encode_response(enc, &header.service_method, header.seq, &reply) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "encoding a response");
            return;
        }
    };
    if let Err(e) = io.write_all(&bytes).await {
        tracing::debug!(error = %e, "writing a response");
    }
}
