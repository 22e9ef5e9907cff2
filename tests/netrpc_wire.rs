//! The built binary, driven the way the Argo Rollouts controller drives it
//! (go-plugin net/rpc over yamux over a unix socket).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gobwire::{Decoder, Encoder, Progress};
use istio_router::transport::netrpc::plugin::{RpcError, VerifyWeightResponse};
use serde_json::Value;
use test_support::apiserver::ApiServer;
use test_support::fixtures::*;
use test_support::frames::*;
use test_support::host::*;
use test_support::launch::PluginProcess;
use test_support::plugin_binary;

const TWO_SECONDS: Duration = Duration::from_secs(2);

/// A Kubernetes API stand-in holding `objects`, and the kubeconfig that
/// points the plugin at it (passed as KUBECONFIG, as in a cluster).
async fn cluster_with(objects: Vec<Value>) -> (ApiServer, tempfile::TempDir, String) {
    let server = ApiServer::start().await;
    server.apply(objects, "default");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig).expect("write kubeconfig");
    let path = kubeconfig.display().to_string();
    (server, dir, path)
}

fn assert_socket_gone(plugin: &PluginProcess) {
    assert!(!plugin.socket.exists(), "socket file left behind");
    assert!(!plugin.socket_dir.exists(), "socket directory left behind");
}

/// Every stderr line is an hclog JSON object the controller can parse.
fn assert_hclog_lines(lines: &[String]) {
    assert!(
        !lines.is_empty(),
        "the plugin logs something at debug level"
    );
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let level = v["@level"]
            .as_str()
            .unwrap_or_else(|| panic!("@level: {line}"));
        assert!(
            ["trace", "debug", "info", "warn", "error"].contains(&level),
            "{line}"
        );
        assert!(v["@message"].is_string(), "@message: {line}");
        let ts = v["@timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("@timestamp: {line}"));
        // 2006-01-02T15:04:05.000000Z
        let b = ts.as_bytes();
        assert_eq!(b.len(), 27, "{ts}");
        assert!(b[19] == b'.' && b[26] == b'Z', "{ts}");
        assert!(b[20..26].iter().all(u8::is_ascii_digit), "{ts}");
    }
}

#[test]
fn without_the_cookie_it_explains_what_it_is_and_fails() {
    let out = std::process::Command::new(plugin_binary!())
        .env_remove("ARGO_ROLLOUTS_RPC_PLUGIN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Argo Rollouts"), "{err}");
    assert!(err.contains("simulate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_calls_and_quit_as_the_controller_does_them() {
    let (_server, _dir, kubeconfig) = cluster_with(vec![]).await;
    let started = Instant::now();
    let mut plugin = PluginProcess::spawn_with_env(
        plugin_binary!(),
        &["--log-level", "debug"],
        &[("KUBECONFIG", &kubeconfig)],
    );
    let to_handshake = started.elapsed();
    assert_eq!(
        plugin.handshake,
        format!("1|1|unix|{}|netrpc|\n", plugin.socket.display())
    );
    assert!(
        plugin
            .socket
            .starts_with(plugin.socket_dir.parent().unwrap())
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&plugin.socket_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "private socket directory");

    let host = Host::connect(&plugin.socket).await;
    host.ping().await.unwrap();
    let first_ping = started.elapsed();
    let mut conn = PluginConn::new(host.plugin_stream().await);
    conn.call("Plugin.InitPlugin", 0, None).await;
    assert_eq!(
        conn.reply().await.body,
        ReplyBody::Error(RpcError::default())
    );
    conn.call("Plugin.Type", 1, None).await;
    let reply = conn.reply().await;
    assert_eq!((reply.seq, reply.body), (1, ReplyBody::Str("Istio".into())));
    host.ping().await.unwrap();
    eprintln!("handshake after {to_handshake:?}, first Ping answered after {first_ping:?}");

    let _: Empty = host.control.call("Control.Quit", &true).await.unwrap();
    let _ = host.control.close().await;
    host.session.close();
    let status = plugin
        .wait_exit(TWO_SECONDS)
        .expect("exit within 2 s of Quit");
    assert!(status.success(), "{status}");
    assert_socket_gone(&plugin);
    assert!(
        plugin.rest_of_stdout().is_empty(),
        "stdout after the handshake"
    );
    assert_hclog_lines(&plugin.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_alone_ends_the_process_within_two_seconds() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    let _: Empty = host.control.call("Control.Quit", &true).await.unwrap();
    // The host keeps its connection open: the plugin still leaves.
    let status = plugin
        .wait_exit(TWO_SECONDS)
        .expect("exit within 2 s of Quit");
    assert!(status.success(), "{status}");
    assert_socket_gone(&plugin);
    drop(host);
}

/// Streams are ACKed on arrival (yamux ≥ 0.1.0 drops the session after 75 s
/// otherwise), stdout/stderr stay open, and pings are echoed.
#[test]
fn every_stream_is_acked_at_once_and_pings_are_answered() {
    let plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let mut raw = RawConn::connect(&plugin.socket);
    for id in [1, 3, 5] {
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, id, 0, &[]);
    }
    let mut frames = Vec::new();
    let acked = |frames: &Vec<Frame>, id: u32| {
        frames
            .iter()
            .any(|f| f.stream == id && f.flags & FLAG_ACK != 0)
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    while ![1, 3, 5].iter().all(|id| acked(&frames, *id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = raw
            .next(left)
            .expect("ACKs for streams 1, 3 and 5 within 1 s");
        frames.push(frame);
    }

    raw.send(TYPE_PING, FLAG_SYN, 0, 7777, &[]);
    let pong = raw
        .next(Duration::from_secs(1))
        .expect("ping answered within 1 s");
    assert_eq!(
        (pong.ty, pong.flags, pong.length),
        (TYPE_PING, FLAG_ACK, 7777)
    );

    // Dispense on the control stream, then dial the broker stream.
    let mut enc = Encoder::new();
    let mut request = enc
        .encode(&go_netrpc::Request {
            service_method: "Dispenser.Dispense".into(),
            seq: 0,
        })
        .unwrap();
    enc.encode_into("RpcTrafficRouterPlugin", &mut request)
        .unwrap();
    raw.data(1, &request);
    let mut reply = Vec::new();
    let id = loop {
        let f = raw.next(Duration::from_secs(1)).expect("Dispense reply");
        frames.push(f.clone());
        if f.stream == 1 && f.ty == TYPE_DATA {
            reply.extend_from_slice(&f.body);
            if let Some(id) = dispensed_id(&reply) {
                break id;
            }
        }
    };
    raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 7, 0, &[]);
    let ack = raw
        .next(Duration::from_secs(1))
        .expect("broker stream ACKed within 1 s");
    assert_eq!((ack.stream, ack.flags & FLAG_ACK), (7, FLAG_ACK));
    raw.data(7, &id.to_le_bytes());
    let echo = raw.next(Duration::from_secs(1)).expect("broker id echoed");
    assert_eq!(
        (echo.stream, echo.body.as_slice()),
        (7, &id.to_le_bytes()[..])
    );

    // Idle for a moment: stdout and stderr must not be closed or reset.
    while let Some(f) = raw.next(Duration::from_millis(300)) {
        frames.push(f);
    }
    for f in &frames {
        assert!(
            !(f.stream == 3 || f.stream == 5) || f.flags & (FLAG_FIN | FLAG_RST) == 0,
            "stdout/stderr stream closed: {f:?}"
        );
    }
}

/// `Dispenser.Dispense`'s reply: header, then a gob uint.
fn dispensed_id(bytes: &[u8]) -> Option<u32> {
    let mut dec = Decoder::new();
    let mut rest = bytes;
    let mut header: Option<go_netrpc::Response> = None;
    while let Ok(Some((width, len))) = gobwire::parse_length_prefix(rest) {
        if rest.len() < width + len {
            return None;
        }
        if dec.push_message(&rest[width..width + len]).ok()? == Progress::Ready {
            if header.is_none() {
                header = Some(dec.decode().ok()?);
            } else {
                assert!(header.as_ref()?.error.is_empty());
                return dec.decode::<u32>().ok();
            }
        }
        rest = &rest[width + len..];
    }
    None
}

/// The controller's recorded stream, then far more than the 256 KiB
/// initial window on the same stream: the plugin grants window as it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_writing_past_the_initial_window_is_not_blocked() {
    let plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    let mut conn = PluginConn::new(host.plugin_stream().await);
    let dir = fixtures().join("host");
    let stream = std::fs::read(dir.join("wire/plugin-stream.c2s.gob")).unwrap();
    // A later call: every type it uses is already defined on the stream.
    let again = std::fs::read(dir.join("13-SetWeight.wire.bin")).unwrap();
    let repeats = (320 * 1024 - stream.len()) / again.len() + 1;
    let mut bytes = stream.clone();
    for _ in 0..repeats {
        bytes.extend_from_slice(&again);
    }
    assert!(bytes.len() > 300 * 1024);
    tokio::time::timeout(Duration::from_secs(10), conn.send_raw(&bytes))
        .await
        .expect("the write is not blocked for want of window");
    let mut set_weights = 0;
    for _ in 0..13 + repeats {
        let reply = conn.reply().await;
        assert!(reply.error.is_empty(), "{reply:?}");
        set_weights += usize::from(reply.method == "Plugin.SetWeight");
    }
    assert_eq!(set_weights, 4 + repeats);
    host.ping().await.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", plugin.child.id()));
    let rss = status
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .collect::<Vec<_>>();
    eprintln!(
        "plugin memory after {} bytes of requests: {rss:?}",
        bytes.len()
    );
}

/// 64 calls in flight at once on one stream, one per rollout, through the
/// binary against the API stand-in: each reply carries its own Seq, every
/// SetWeight lands in its own VirtualService, and VerifyWeight says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_calls_for_sixty_four_rollouts_succeed_and_land() {
    let names: Vec<String> = (0..64).map(|i| format!("app-{i}")).collect();
    let (server, _dir, kubeconfig) =
        cluster_with(names.iter().map(|n| virtual_service("team", n)).collect()).await;
    let plugin =
        PluginProcess::spawn_with_env(plugin_binary!(), &[], &[("KUBECONFIG", &kubeconfig)]);
    let host = Host::connect(&plugin.socket).await;
    let mut conn = PluginConn::new(host.plugin_stream().await);
    conn.call("Plugin.InitPlugin", 0, None).await;
    assert_eq!(
        conn.reply().await.body,
        ReplyBody::Error(RpcError::default())
    );
    for (i, name) in names.iter().enumerate() {
        conn.call(
            "Plugin.SetWeight",
            1 + i as u64,
            set_weight_args("team", name, 30),
        )
        .await;
    }
    let mut seen = BTreeMap::new();
    for _ in 0..64 {
        let reply = conn.reply().await;
        assert!(reply.error.is_empty(), "{reply:?}");
        assert_eq!(
            reply.body,
            ReplyBody::Error(RpcError::default()),
            "{reply:?}"
        );
        seen.insert(reply.seq, ());
    }
    assert_eq!(seen.len(), 64, "one reply per seq");
    for name in &names {
        let vs = server
            .get("VirtualService", "team", &format!("{name}-vsvc"))
            .expect("still there");
        let weights: Vec<i64> = vs["spec"]["http"][0]["route"]
            .as_array()
            .expect("route")
            .iter()
            .map(|d| d["weight"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(weights, [70, 30], "{name}");
    }
    assert_eq!(server.writes(), 64);
    for (i, name) in names.iter().enumerate() {
        conn.call(
            "Plugin.VerifyWeight",
            100 + i as u64,
            set_weight_args("team", name, 30),
        )
        .await;
    }
    for _ in 0..64 {
        let reply = conn.reply().await;
        assert_eq!(
            reply.body,
            ReplyBody::Verify(VerifyWeightResponse {
                verified: 1,
                err: RpcError::default()
            }),
            "{reply:?}"
        );
    }
}

/// Bad requests get an error response with a `struct{}` body, and the next
/// request on the stream is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_responses_and_serving_continues() {
    let plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    let mut conn = PluginConn::new(host.plugin_stream().await);
    let mut seq = 0;
    let next_is_served = async |conn: &mut PluginConn, seq: &mut u64| {
        *seq += 1;
        conn.call("Plugin.Type", *seq, None).await;
        let reply = conn.reply().await;
        assert_eq!(
            (reply.seq, reply.body),
            (*seq, ReplyBody::Str("Istio".into()))
        );
        *seq += 1;
    };

    // Unknown method (its nil-interface body is skipped correctly).
    conn.call("Plugin.Nope", seq, None).await;
    let reply = conn.reply().await;
    assert_eq!(
        reply.error,
        "rpc: can't find method Plugin.Nope (service Plugin has InitPlugin, Type, UpdateHash, \
         SetWeight, VerifyWeight, SetHeaderRoute, SetMirrorRoute, RemoveManagedRoutes, \
         GetWeightUpdateDeadline, ClearWeightUpdateDeadline)"
    );
    assert_eq!((reply.seq, reply.body), (seq, ReplyBody::Empty));
    next_is_served(&mut conn, &mut seq).await;

    // Malformed: an interface singleton with a non-zero delta.
    let mut bytes = conn.header("Plugin.SetWeight", seq);
    bytes.extend_from_slice(&[0x02, 0x10, 0x05]);
    conn.send_raw(&bytes).await;
    let reply = conn.reply().await;
    assert!(!reply.error.is_empty());
    assert_eq!((reply.seq, reply.body), (seq, ReplyBody::Empty));
    next_is_served(&mut conn, &mut seq).await;

    // Truncated: the value claims 50 bytes and holds 3.
    let mut bytes = conn.header("Plugin.SetWeight", seq);
    let name = b"SetWeightAndVerifyWeightArgs";
    let mut body = vec![0x10, 0x00, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[0x0c, 50, 1, 2, 3]);
    bytes.push(body.len() as u8);
    bytes.extend_from_slice(&body);
    conn.send_raw(&bytes).await;
    let reply = conn.reply().await;
    assert!(reply.error.contains("truncated"), "{}", reply.error);
    assert_eq!((reply.seq, reply.body), (seq, ReplyBody::Empty));
    next_is_served(&mut conn, &mut seq).await;

    // The wrong registered type for the method.
    conn.call(
        "Plugin.SetWeight",
        seq,
        remove_managed_routes_args("team", "app"),
    )
    .await;
    let reply = conn.reply().await;
    assert!(
        reply.error.contains("RemoveManagedRoutesArgs")
            && reply.error.contains("SetWeightAndVerifyWeightArgs"),
        "{}",
        reply.error
    );
    assert_eq!((reply.seq, reply.body), (seq, ReplyBody::Empty));
    next_is_served(&mut conn, &mut seq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_exits_when_the_host_drops_the_connection() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    let _conn = PluginConn::new(host.plugin_stream().await);
    host.ping().await.unwrap();
    host.session.close();
    drop(host);
    assert!(plugin.wait_exit(TWO_SECONDS).is_some(), "exit within 2 s");
    assert_socket_gone(&plugin);
}

#[test]
fn the_plugin_exits_when_its_stdout_is_closed_before_any_connection() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    plugin.close_stdout();
    assert!(plugin.wait_exit(TWO_SECONDS).is_some(), "exit within 2 s");
    assert_socket_gone(&plugin);
}

/// A SIGKILLed controller closes its end of our stdout and its connection;
/// the closed stdout alone is enough, even while the connection lingers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_exits_when_its_stdout_closes_while_connected() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    host.ping().await.unwrap();
    plugin.close_stdout();
    assert!(plugin.wait_exit(TWO_SECONDS).is_some(), "exit within 2 s");
    assert_socket_gone(&plugin);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_is_ignored() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &[]);
    let host = Host::connect(&plugin.socket).await;
    host.ping().await.unwrap();
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(plugin.child.id() as libc::pid_t, libc::SIGINT);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    host.ping().await.unwrap();
    assert!(plugin.wait_exit(Duration::ZERO).is_none());
}

#[test]
fn the_socket_is_shared_with_plugin_unix_socket_group() {
    // SAFETY: getgid has no preconditions.
    let gid = unsafe { libc::getgid() };
    let plugin = PluginProcess::spawn_with_env(
        plugin_binary!(),
        &[],
        &[("PLUGIN_UNIX_SOCKET_GROUP", &gid.to_string())],
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let socket = std::fs::metadata(&plugin.socket).unwrap();
    assert_eq!(socket.permissions().mode() & 0o777, 0o660);
    assert_eq!(socket.gid(), gid);
    let dir = std::fs::metadata(&plugin.socket_dir).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o750);
}

/// Rust ignores SIGPIPE: logging into a closed stderr must not kill or
/// stall the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_does_not_stop_the_plugin() {
    let mut plugin = PluginProcess::spawn(plugin_binary!(), &["--log-level", "trace"]);
    plugin.close_stderr();
    let host = Host::connect(&plugin.socket).await;
    let mut conn = PluginConn::new(host.plugin_stream().await);
    for seq in 0..20 {
        conn.call("Plugin.SetWeight", seq, set_weight_args("team", "app", 10))
            .await;
        assert_eq!(conn.reply().await.seq, seq);
    }
    host.ping().await.unwrap();
    assert!(plugin.wait_exit(Duration::ZERO).is_none());
}
