//! A go-plugin host on tokio (yamux client, control stream, MuxBroker
//! dial) and the `Plugin` stream: raw bytes or encoded requests out, replies
//! decoded as the controller decodes them.

use std::path::Path;
use std::time::Duration;

use gobwire::{Decoder, Encoder, Gob, Interface, Progress};
use goplugin::MuxBroker;
use goplugin::yamux::{Config, Session, Stream};
use istio_router::transport::netrpc::plugin::{
    RpcError, VerifyWeightResponse, WeightUpdateDeadlineResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

pub struct Host {
    pub session: Session,
    pub control: go_netrpc::Client,
    pub broker: MuxBroker,
    /// Held open and idle, as the controller does.
    _stdio: (Stream, Stream),
}

#[derive(Gob, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Empty {}

impl Host {
    /// rpc_client.go `NewRPCClient`: control, stdout, stderr, then the broker.
    pub async fn connect(path: &Path) -> Host {
        Host::try_connect(path).await.unwrap()
    }

    pub async fn try_connect(path: &Path) -> Result<Host, String> {
        let io = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
        Host::try_connect_io(io).await
    }

    pub async fn connect_io<T>(io: T) -> Host
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        Host::try_connect_io(io).await.unwrap()
    }

    async fn try_connect_io<T>(io: T) -> Result<Host, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let yamux = |e: goplugin::yamux::Error| format!("yamux: {e}");
        let session = Session::client(io, Config::default()).map_err(yamux)?;
        let control = session.open().await.map_err(yamux)?;
        let stdout = session.open().await.map_err(yamux)?;
        let stderr = session.open().await.map_err(yamux)?;
        let (broker, run) = MuxBroker::new(session.clone());
        tokio::spawn(run);
        Ok(Host {
            session,
            control: go_netrpc::Client::new(control),
            broker,
            _stdio: (stdout, stderr),
        })
    }

    pub async fn ping(&self) -> Result<(), go_netrpc::Error> {
        let _: Empty = self.control.call("Control.Ping", &true).await?;
        Ok(())
    }

    /// `Dispenser.Dispense("RpcTrafficRouterPlugin")`, then the broker dial.
    pub async fn plugin_stream(&self) -> Stream {
        self.try_plugin_stream().await.unwrap()
    }

    pub async fn try_plugin_stream(&self) -> Result<Stream, String> {
        let id: u32 = self
            .control
            .call("Dispenser.Dispense", "RpcTrafficRouterPlugin")
            .await
            .map_err(|e| format!("Dispenser.Dispense: {e}"))?;
        self.broker
            .dial(id)
            .await
            .map_err(|e| format!("dialing broker stream {id}: {e}"))
    }

    /// `Control.Quit`, as `Kill()` sends it.
    pub async fn quit(&self) -> Result<(), go_netrpc::Error> {
        let _: Empty = self.control.call("Control.Quit", &true).await?;
        Ok(())
    }
}

/// A reply as the controller decodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    /// `struct{}` after a net/rpc error.
    Empty,
    Str(String),
    Verify(VerifyWeightResponse),
    Deadline(WeightUpdateDeadlineResponse),
    Error(RpcError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub method: String,
    pub seq: u64,
    pub error: String,
    pub body: ReplyBody,
}

/// Writes requests (raw or encoded) and reads replies on a `Plugin` stream.
pub struct PluginConn {
    write: WriteHalf<Stream>,
    enc: Encoder,
    replies: mpsc::UnboundedReceiver<Result<Reply, String>>,
}

impl PluginConn {
    pub fn new(stream: Stream) -> PluginConn {
        let (read, write) = tokio::io::split(stream);
        let (tx, replies) = mpsc::unbounded_channel();
        tokio::spawn(read_replies(read, tx));
        PluginConn {
            write,
            enc: Encoder::new(),
            replies,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).await.unwrap();
    }

    async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// The bytes of a header (encoded with this stream's encoder).
    pub fn header(&mut self, method: &str, seq: u64) -> Vec<u8> {
        let header = go_netrpc::Request {
            service_method: method.into(),
            seq,
        };
        self.enc.encode(&header).unwrap()
    }

    /// A call as net/rpc writes it: header, then the `any` argument.
    pub async fn call(&mut self, method: &str, seq: u64, args: Option<Interface>) {
        self.try_call(method, seq, args).await.unwrap();
    }

    pub async fn try_call(
        &mut self,
        method: &str,
        seq: u64,
        args: Option<Interface>,
    ) -> Result<(), String> {
        let bytes = encode_request(&mut self.enc, method, seq, &args)
            .map_err(|e| format!("encoding the request: {e}"))?;
        self.try_send_raw(&bytes)
            .await
            .map_err(|e| format!("writing the request: {e}"))
    }

    pub async fn reply(&mut self) -> Reply {
        self.next_reply(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next reply, or why none came within `limit`.
    pub async fn next_reply(&mut self, limit: Duration) -> Result<Reply, String> {
        tokio::time::timeout(limit, self.replies.recv())
            .await
            .map_err(|_| format!("no reply within {limit:?}"))?
            .ok_or_else(|| "the plugin stream closed".to_string())?
            .map_err(|e| format!("undecodable reply: {e}"))
    }
}

/// A call as net/rpc's client writes it: the header, then the `any` argument.
pub fn encode_request(
    enc: &mut Encoder,
    method: &str,
    seq: u64,
    args: &Option<Interface>,
) -> Result<Vec<u8>, gobwire::Error> {
    let header = go_netrpc::Request {
        service_method: method.into(),
        seq,
    };
    let mut bytes = enc.encode(&header)?;
    enc.encode_into(args, &mut bytes)?;
    Ok(bytes)
}

async fn read_replies(
    mut read: ReadHalf<Stream>,
    tx: mpsc::UnboundedSender<Result<Reply, String>>,
) {
    let mut dec = Decoder::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut header: Option<go_netrpc::Response> = None;
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        while let Ok(Some((width, len))) = gobwire::parse_length_prefix(&buf[pos..]) {
            if buf.len() - pos - width < len {
                break;
            }
            let msg = buf[pos + width..pos + width + len].to_vec();
            pos += width + len;
            match dec.push_message(&msg) {
                Ok(Progress::Ready) => {}
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
            let decoded = match header.take() {
                None => dec.decode().map(|h| header = Some(h)).map(|()| None),
                Some(h) => {
                    let body = if !h.error.is_empty() {
                        dec.decode::<go_netrpc::InvalidRequest>()
                            .map(|_| ReplyBody::Empty)
                    } else {
                        match h.service_method.as_str() {
                            "Plugin.Type" => dec.decode().map(ReplyBody::Str),
                            "Plugin.VerifyWeight" => dec.decode().map(ReplyBody::Verify),
                            "Plugin.GetWeightUpdateDeadline" => {
                                dec.decode().map(ReplyBody::Deadline)
                            }
                            _ => dec.decode().map(ReplyBody::Error),
                        }
                    };
                    body.map(|body| {
                        Some(Reply {
                            method: h.service_method,
                            seq: h.seq,
                            error: h.error,
                            body,
                        })
                    })
                }
            };
            match decoded {
                Ok(Some(reply)) => {
                    let _ = tx.send(Ok(reply));
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
        buf.drain(..pos);
    }
}
