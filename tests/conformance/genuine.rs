//! The `genuine` transport: the plugin binary driven by the Argo Rollouts
//! controller's own client code (`tests/go-client -serve`: argo-rollouts
//! v1.10.2's `plugin/client` starts the plugin from the controller's
//! ConfigMap and pings it before every call, its `plugin/rpc` client sends
//! the call with `v1alpha1` values), editing the API stand-in.
//!
//! The runner hands each call to the Go client as one JSON line (the call
//! name, the case's Rollout JSON and the call's arguments in their Rollout
//! step shape); the client decodes them into `v1alpha1` values, calls the
//! plugin and answers one JSON line. Being net/rpc like `netrpc`, it runs
//! every case `netrpc` runs.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::case::{Case, Step};
use super::session::{BoxFuture, CallReply, PluginSide, Session, Transport};
use super::standin::{StandIn, plugin_args};
use istio_router::router::{Call, Verification};
use test_support::go_build::{Unavailable, go_client};
use test_support::plugin_binary;

/// Longest wait for one answer: a `timeout` fault costs the plugin its
/// Kubernetes timeout (3 s) per attempt.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the client's stderr (go-plugin's log with the plugin's lines in
/// it) kept for failure messages.
const STDERR_TAIL: usize = 30;

pub struct Genuine;

/// Calls argo-rollouts v1.10.2's `rpc.TrafficRouterPlugin` does not have:
/// they exist only in an unmerged upstream proposal, so no released
/// controller sends them (the `netrpc` transport sends them in the
/// proposal's wire shape).
const NOT_IN_RELEASE: [&str; 2] = ["GetWeightUpdateDeadline", "ClearWeightUpdateDeadline"];

impl Transport for Genuine {
    fn name(&self) -> &'static str {
        "genuine"
    }

    fn cannot_run(&self, case: &Case) -> Option<String> {
        if let Some(call) = case
            .calls
            .iter()
            .find(|c| NOT_IN_RELEASE.contains(&c.call.as_str()))
        {
            return Some(format!(
                "calls {:?}, which argo-rollouts v1.10.2's rpc client does not have (an unreleased \
                 upstream proposal; the netrpc transport covers it)",
                call.call
            ));
        }
        if !controller_accepts(&case.plugin_name) {
            return Some(format!(
                "pluginName {:?} is not a name argo-rollouts v1.10.2 accepts (<namespace>/<name>, \
                 the namespace of letters, digits and '-'): the controller rejects such a \
                 ConfigMap, so it never starts this plugin",
                case.plugin_name
            ));
        }
        match go_client() {
            Err(Unavailable::Skip(why)) => {
                Some(format!("the genuine Go client is not available: {why}"))
            }
            // A failure is reported by start, as the case's failure.
            Ok(_) | Err(Unavailable::Fail(_)) => None,
        }
    }

    fn start<'a>(&'a self, case: &'a Case) -> BoxFuture<'a, Result<Session, String>> {
        Box::pin(async move {
            let client = go_client().map_err(|e| e.to_string())?;
            let cluster = StandIn::start().await?;
            let mut child = Command::new(&client)
                .args(["-serve", "-plugin-name", &case.plugin_name, "-plugin"])
                .arg(plugin_binary!())
                .arg("--")
                .args(plugin_args(case, "netrpc"))
                .envs(cluster.env())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting {}: {e}", client.display()))?;
            let stdin = child.stdin.take().ok_or("no stdin pipe")?;
            let stdout = child.stdout.take().ok_or("no stdout pipe")?;
            let stderr = child.stderr.take().ok_or("no stderr pipe")?;
            let (lines_tx, replies) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
            Ok(Session {
                cluster: Box::new(cluster),
                plugin: Box::new(GenuineClient {
                    child,
                    stdin: Some(stdin),
                    replies,
                    stderr_tail,
                    rollout: with_namespace(case.rollout.clone()),
                }),
            })
        })
    }
}

/// argo-rollouts' plugin name check (utils/config):
/// `^([a-zA-Z0-9\-]+)\/{1}([a-zA-Z0-9_\-.]+)$`.
fn controller_accepts(name: &str) -> bool {
    let Some((namespace, plugin)) = name.split_once('/') else {
        return false;
    };
    !namespace.is_empty()
        && !plugin.is_empty()
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && plugin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The runner's default namespace, as it applies it to the parsed Rollout.
fn with_namespace(mut rollout: Value) -> Value {
    if let Some(metadata) = rollout.get_mut("metadata").and_then(Value::as_object_mut) {
        let empty = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if empty {
            metadata.insert("namespace".into(), json!("default"));
        }
    }
    rollout
}

/// The Go client process and the case's current Rollout JSON.
struct GenuineClient {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<std::io::Result<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    rollout: Value,
}

/// One answer line of `go-client -serve`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    error: String,
    verified: Option<i64>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    broken: Option<String>,
}

impl GenuineClient {
    fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        Vec::from(tail.clone()).join("\n")
    }

    /// Sends one request line and reads the answer; `Err` is a failure of
    /// the client, not an answer of the plugin.
    fn exchange(&mut self, request: &Value) -> Result<Reply, String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or("the Go client's stdin is closed")?;
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the Go client: {e}"))?;
        let line = match self.replies.recv_timeout(CALL_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(format!("reading the Go client: {e}")),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no answer within {CALL_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                return Err(format!(
                    "the Go client exited ({})",
                    status.map_or("still running".into(), |s| s.to_string())
                ));
            }
        };
        let reply: Reply =
            serde_json::from_str(&line).map_err(|e| format!("unreadable answer {line:?}: {e}"))?;
        match reply.broken {
            Some(why) => Err(why),
            None => Ok(reply),
        }
    }
}

impl GenuineClient {
    /// One call as the case states it: its name, the Rollout (the case's
    /// JSON, replaced by a step that carries one) and its arguments in their
    /// Rollout step shape.
    fn send(&mut self, step: &Step) -> Result<CallReply, String> {
        if let Some(rollout) = &step.rollout {
            self.rollout = with_namespace(rollout.clone());
        }
        let request = json!({
            "call": step.call,
            "rollout": self.rollout,
            "weight": step.weight,
            "additionalDestinations": step.additional_destinations,
            "canaryHash": step.canary_hash,
            "stableHash": step.stable_hash,
            "setHeaderRoute": step.set_header_route,
            "setMirrorRoute": step.set_mirror_route,
        });
        match self.exchange(&request) {
            Ok(reply) => Ok(CallReply {
                error: reply.error,
                verified: reply.verified.map(Verification::from_rpc),
                type_name: reply.type_name,
                deadline: None,
            }),
            Err(why) => Err(format!(
                "genuine client: {why}\n--- go-client stderr (last lines)\n{}",
                self.stderr_tail()
            )),
        }
    }
}

impl PluginSide for GenuineClient {
    /// Only InitPlugin comes this way (the runner's first call); every call
    /// of the case comes through [`PluginSide::call_step`].
    fn call(&mut self, call: Call) -> BoxFuture<'_, CallReply> {
        Box::pin(async move {
            let step: Step = match call {
                Call::InitPlugin => {
                    serde_json::from_value(json!({"call": "InitPlugin"})).expect("a static step")
                }
                other => {
                    return CallReply {
                        error: format!("genuine: {} must come with its case step", other.name()),
                        ..CallReply::default()
                    };
                }
            };
            self.send(&step).unwrap_or_else(|why| CallReply {
                error: why,
                ..CallReply::default()
            })
        })
    }

    fn call_step<'a>(
        &'a mut self,
        step: &'a Step,
        _call: Call,
    ) -> BoxFuture<'a, Result<CallReply, String>> {
        Box::pin(async move { self.send(step) })
    }
}

impl Drop for GenuineClient {
    /// EOF on its stdin makes the client stop the plugin as the controller
    /// does (Control.Quit, a kill after 2 s) and exit; it is killed if it
    /// has not within 5 s.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
