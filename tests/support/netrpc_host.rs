//! The controller's side of the net/rpc plugin protocol, for driving the
//! built binary: launch with the magic cookie, read the handshake, connect
//! with a go-plugin host (yamux client, control stream, MuxBroker dial), and
//! talk to the `Plugin` stream with raw bytes or encoded arguments.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gobwire::{Decoder, Encoder, Gob, Interface, Progress};
use goplugin::MuxBroker;
use goplugin::yamux::{Config, Session, Stream};
use istio_router::transport::netrpc::plugin::{
    RpcError, VerifyWeightResponse, WeightUpdateDeadlineResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio");

/// A launched plugin process.
pub struct PluginProcess {
    pub child: Child,
    pub handshake: String,
    pub socket: PathBuf,
    pub socket_dir: PathBuf,
    /// Our end of the plugin's stdout after the handshake line, until
    /// [`PluginProcess::close_stdout`].
    stdout: Option<BufReader<ChildStdout>>,
    pub stderr_lines: Arc<Mutex<Vec<String>>>,
    close_stderr: Option<std::sync::mpsc::Sender<()>>,
    base_dir: PathBuf,
}

impl PluginProcess {
    /// Starts the binary as the controller does and reads the handshake.
    pub fn spawn(args: &[&str]) -> PluginProcess {
        PluginProcess::spawn_with_env(args, &[])
    }

    /// Starts the binary off the async runtime (spawning blocks on the
    /// handshake) and checks that it announces `protocol`.
    pub async fn launch(
        args: Vec<String>,
        env: Vec<(String, String)>,
        protocol: &str,
    ) -> Result<PluginProcess, String> {
        let process = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            PluginProcess::spawn_with_env(&args, &env)
        })
        .await
        .map_err(|e| format!("starting the plugin: {e}"))?;
        if !process
            .handshake
            .trim_end()
            .ends_with(&format!("|{protocol}|"))
        {
            return Err(format!(
                "handshake {:?} does not announce {protocol}",
                process.handshake
            ));
        }
        Ok(process)
    }

    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> PluginProcess {
        let base_dir = std::env::temp_dir().join(format!(
            "netrpc-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&base_dir).unwrap();
        let mut child = Command::new(BIN)
            .args(args)
            .env("ARGO_ROLLOUTS_RPC_PLUGIN", "trafficrouter")
            .env("PLUGIN_PROTOCOL_VERSIONS", "1")
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_UNIX_SOCKET_DIR", &base_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the plugin binary");
        let stderr = child.stderr.take().unwrap();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr_lines.clone();
        let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            loop {
                if close_rx.try_recv().is_ok() {
                    // Dropping the reader closes our end of the pipe.
                    return;
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => lines.lock().unwrap().push(line.trim_end().to_string()),
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send((line, reader));
        });
        let (handshake, reader) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("handshake line within 10 s");
        let fields: Vec<&str> = handshake.trim_end().split('|').collect();
        assert_eq!(fields.len(), 6, "handshake {handshake:?}");
        let socket = PathBuf::from(fields[3]);
        let socket_dir = socket.parent().unwrap().to_path_buf();
        PluginProcess {
            child,
            handshake,
            socket,
            socket_dir,
            stdout: Some(reader),
            stderr_lines,
            close_stderr: Some(close_tx),
            base_dir,
        }
    }

    /// Closes our end of the plugin's stderr (after the next line it writes).
    pub fn close_stderr(&mut self) {
        if let Some(tx) = self.close_stderr.take() {
            let _ = tx.send(());
        }
    }

    /// Closes our end of the plugin's stdout, as a host that died would.
    pub fn close_stdout(&mut self) {
        self.stdout = None;
    }

    /// Everything the plugin wrote to stdout after the handshake, once it
    /// has exited (EOF).
    pub fn rest_of_stdout(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        if let Some(mut reader) = self.stdout.take() {
            let _ = reader.read_to_end(&mut rest);
        }
        rest
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr_lines.lock().unwrap().clone()
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.base_dir);
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

// ---------------------------------------------------------------------------
// Raw yamux frames (for checking ACKs, pings and FINs one frame at a time).

pub const TYPE_DATA: u8 = 0;
pub const TYPE_WINDOW_UPDATE: u8 = 1;
pub const TYPE_PING: u8 = 2;
pub const FLAG_SYN: u16 = 1;
pub const FLAG_ACK: u16 = 2;
pub const FLAG_FIN: u16 = 4;
pub const FLAG_RST: u16 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ty: u8,
    pub flags: u16,
    pub stream: u32,
    pub length: u32,
    pub body: Vec<u8>,
}

/// A blocking yamux connection driven frame by frame.
pub struct RawConn(pub StdUnixStream);

impl RawConn {
    pub fn connect(path: &Path) -> RawConn {
        let s = StdUnixStream::connect(path).unwrap();
        RawConn(s)
    }

    pub fn send(&mut self, ty: u8, flags: u16, stream: u32, length: u32, body: &[u8]) {
        let mut frame = vec![0, ty];
        frame.extend_from_slice(&flags.to_be_bytes());
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(body);
        self.0.write_all(&frame).unwrap();
    }

    pub fn data(&mut self, stream: u32, body: &[u8]) {
        self.send(TYPE_DATA, 0, stream, body.len() as u32, body);
    }

    /// The next frame, or `None` if none arrives within `limit`.
    pub fn next(&mut self, limit: Duration) -> Option<Frame> {
        self.0.set_read_timeout(Some(limit)).unwrap();
        let mut header = [0u8; 12];
        self.0.read_exact(&mut header).ok()?;
        self.0
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let ty = header[1];
        let flags = u16::from_be_bytes([header[2], header[3]]);
        let stream = u32::from_be_bytes(header[4..8].try_into().unwrap());
        let length = u32::from_be_bytes(header[8..12].try_into().unwrap());
        let mut body = Vec::new();
        if ty == TYPE_DATA {
            body = vec![0; length as usize];
            self.0.read_exact(&mut body).unwrap();
        }
        Some(Frame {
            ty,
            flags,
            stream,
            length,
            body,
        })
    }
}

// ---------------------------------------------------------------------------
// A go-plugin host on tokio.

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

    pub async fn try_connect_io<T>(io: T) -> Result<Host, String>
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

// ---------------------------------------------------------------------------
// The `Plugin` stream.

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

    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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

// ---------------------------------------------------------------------------
// argo-rollouts' argument types (Go field and type names, as in
// `host/gob-type-table.txt`; gob matches fields by name). Only the fields a
// traffic router reads; a Go pointer is an `Option`, which gob flattens.

#[derive(Gob, Debug, Default, Clone)]
pub struct TypeMeta {
    #[gob(name = "Kind")]
    pub kind: String,
    #[gob(name = "APIVersion")]
    pub api_version: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct ObjectMeta {
    #[gob(name = "Name")]
    pub name: String,
    #[gob(name = "Namespace")]
    pub namespace: String,
    #[gob(name = "UID")]
    pub uid: String,
    #[gob(name = "Labels")]
    pub labels: BTreeMap<String, String>,
    #[gob(name = "Annotations")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct StringMatch {
    #[gob(name = "Exact")]
    pub exact: String,
    #[gob(name = "Prefix")]
    pub prefix: String,
    #[gob(name = "Regex")]
    pub regex: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct HeaderRoutingMatch {
    #[gob(name = "HeaderName")]
    pub header_name: String,
    #[gob(name = "HeaderValue")]
    pub header_value: Option<StringMatch>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetHeaderRoute {
    #[gob(name = "Name")]
    pub name: String,
    #[gob(name = "Match")]
    pub matches: Vec<HeaderRoutingMatch>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RouteMatch {
    #[gob(name = "Method")]
    pub method: Option<StringMatch>,
    #[gob(name = "Path")]
    pub path: Option<StringMatch>,
    #[gob(name = "Headers")]
    pub headers: BTreeMap<String, StringMatch>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetMirrorRoute {
    #[gob(name = "Name")]
    pub name: String,
    #[gob(name = "Match")]
    pub matches: Vec<RouteMatch>,
    #[gob(name = "Percentage")]
    pub percentage: Option<i32>,
}

/// `intstr.IntOrString`: `Type` 0 is an int, 1 a string.
#[derive(Gob, Debug, Default, Clone)]
pub struct IntOrString {
    #[gob(name = "Type")]
    pub ty: i64,
    #[gob(name = "IntVal")]
    pub int_val: i32,
    #[gob(name = "StrVal")]
    pub str_val: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutPause {
    #[gob(name = "Duration")]
    pub duration: Option<IntOrString>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetCanaryScale {
    #[gob(name = "Weight")]
    pub weight: Option<i32>,
    #[gob(name = "Replicas")]
    pub replicas: Option<i32>,
    #[gob(name = "MatchTrafficWeight")]
    pub match_traffic_weight: bool,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct CanaryStep {
    #[gob(name = "SetWeight")]
    pub set_weight: Option<i32>,
    #[gob(name = "Pause")]
    pub pause: Option<RolloutPause>,
    #[gob(name = "SetCanaryScale")]
    pub set_canary_scale: Option<SetCanaryScale>,
    #[gob(name = "SetHeaderRoute")]
    pub set_header_route: Option<SetHeaderRoute>,
    #[gob(name = "SetMirrorRoute")]
    pub set_mirror_route: Option<SetMirrorRoute>,
}

/// Go spells the type `MangedRoutes`.
#[derive(Gob, Debug, Default, Clone)]
#[gob(name = "MangedRoutes")]
pub struct ManagedRoute {
    #[gob(name = "Name")]
    pub name: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutTrafficRouting {
    /// `map[string]json.RawMessage`: the JSON as bytes.
    #[gob(name = "Plugins")]
    pub plugins: BTreeMap<String, Vec<u8>>,
    #[gob(name = "ManagedRoutes")]
    pub managed_routes: Vec<ManagedRoute>,
    #[gob(name = "MaxTrafficWeight")]
    pub max_traffic_weight: Option<i32>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct PingPongSpec {
    #[gob(name = "PingService")]
    pub ping_service: String,
    #[gob(name = "PongService")]
    pub pong_service: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct CanaryStrategy {
    #[gob(name = "CanaryService")]
    pub canary_service: String,
    #[gob(name = "StableService")]
    pub stable_service: String,
    #[gob(name = "Steps")]
    pub steps: Vec<CanaryStep>,
    #[gob(name = "TrafficRouting")]
    pub traffic_routing: Option<RolloutTrafficRouting>,
    #[gob(name = "DynamicStableScale")]
    pub dynamic_stable_scale: bool,
    #[gob(name = "PingPong")]
    pub ping_pong: Option<PingPongSpec>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutStrategy {
    #[gob(name = "Canary")]
    pub canary: Option<CanaryStrategy>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutSpec {
    #[gob(name = "Replicas")]
    pub replicas: Option<i32>,
    #[gob(name = "Strategy")]
    pub strategy: RolloutStrategy,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct WeightDestination {
    #[gob(name = "Weight")]
    pub weight: i32,
    #[gob(name = "ServiceName")]
    pub service_name: String,
    #[gob(name = "PodTemplateHash")]
    pub pod_template_hash: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct TrafficWeights {
    #[gob(name = "Canary")]
    pub canary: WeightDestination,
    #[gob(name = "Stable")]
    pub stable: WeightDestination,
    #[gob(name = "Additional")]
    pub additional: Vec<WeightDestination>,
    #[gob(name = "Verified")]
    pub verified: Option<bool>,
}

/// A value, not a pointer, in `RolloutStatus`: always on the wire.
#[derive(Gob, Debug, Default, Clone)]
pub struct CanaryStatus {
    #[gob(name = "Weights")]
    pub weights: Option<TrafficWeights>,
    #[gob(name = "StablePingPong")]
    pub stable_ping_pong: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutStatus {
    #[gob(name = "Abort")]
    pub abort: bool,
    #[gob(name = "CurrentPodHash")]
    pub current_pod_hash: String,
    #[gob(name = "CurrentStepIndex")]
    pub current_step_index: Option<i32>,
    #[gob(name = "Canary")]
    pub canary: CanaryStatus,
    #[gob(name = "StableRS")]
    pub stable_rs: String,
    #[gob(name = "PromoteFull")]
    pub promote_full: bool,
}

/// `TypeMeta` and `ObjectMeta` are embedded: fields named after their types.
#[derive(Gob, Debug, Default, Clone)]
pub struct Rollout {
    #[gob(name = "TypeMeta")]
    pub type_meta: TypeMeta,
    #[gob(name = "ObjectMeta")]
    pub object_meta: ObjectMeta,
    #[gob(name = "Spec")]
    pub spec: RolloutSpec,
    #[gob(name = "Status")]
    pub status: RolloutStatus,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct UpdateHashArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "CanaryHash")]
    pub canary_hash: String,
    #[gob(name = "StableHash")]
    pub stable_hash: String,
    #[gob(name = "AdditionalDestinations")]
    pub additional_destinations: Vec<WeightDestination>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetWeightAndVerifyWeightArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "DesiredWeight")]
    pub desired_weight: i32,
    #[gob(name = "AdditionalDestinations")]
    pub additional_destinations: Vec<WeightDestination>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetHeaderArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "SetHeaderRoute")]
    pub set_header_route: SetHeaderRoute,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetMirrorArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "SetMirrorRoute")]
    pub set_mirror_route: SetMirrorRoute,
}

/// The argument of RemoveManagedRoutes, GetWeightUpdateDeadline and
/// ClearWeightUpdateDeadline (registered under three names).
#[derive(Gob, Debug, Default, Clone)]
pub struct RemoveManagedRoutesArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
}

/// A host-split Rollout `ns/name` using VirtualService `<name>-vsvc`.
pub fn rollout(namespace: &str, name: &str) -> Rollout {
    let config = format!(r#"{{"virtualService":{{"name":"{name}-vsvc","routes":["primary"]}}}}"#);
    Rollout {
        type_meta: TypeMeta {
            kind: "Rollout".into(),
            api_version: "argoproj.io/v1alpha1".into(),
        },
        object_meta: ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..ObjectMeta::default()
        },
        spec: RolloutSpec {
            strategy: RolloutStrategy {
                canary: Some(CanaryStrategy {
                    canary_service: format!("{name}-canary"),
                    stable_service: format!("{name}-stable"),
                    traffic_routing: Some(RolloutTrafficRouting {
                        plugins: BTreeMap::from([(
                            "argoproj-labs/istio".to_string(),
                            config.into_bytes(),
                        )]),
                        ..RolloutTrafficRouting::default()
                    }),
                    ..CanaryStrategy::default()
                }),
            },
            ..RolloutSpec::default()
        },
        ..Rollout::default()
    }
}

/// The VirtualService [`rollout`] points at, all traffic on stable.
pub fn virtual_service(namespace: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": format!("{name}-vsvc"), "namespace": namespace},
        "spec": {
            "hosts": [format!("{name}.example.com")],
            "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": format!("{name}-stable")}, "weight": 100},
                    {"destination": {"host": format!("{name}-canary")}, "weight": 0}
                ]
            }]
        }
    })
}

pub fn set_weight_args(namespace: &str, name: &str, weight: i32) -> Option<Interface> {
    Some(
        Interface::new(
            "SetWeightAndVerifyWeightArgs",
            &SetWeightAndVerifyWeightArgs {
                rollout: rollout(namespace, name),
                desired_weight: weight,
                additional_destinations: Vec::new(),
            },
        )
        .unwrap(),
    )
}

pub fn remove_managed_routes_args(namespace: &str, name: &str) -> Option<Interface> {
    Some(
        Interface::new(
            "RemoveManagedRoutesArgs",
            &RemoveManagedRoutesArgs {
                rollout: rollout(namespace, name),
            },
        )
        .unwrap(),
    )
}

/// `../shared/fixtures/real-controller` next to the crate or an ancestor.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/fixtures/real-controller"))
        .find(|dir| dir.is_dir())
        .expect("shared/fixtures/real-controller next to the crate")
}
