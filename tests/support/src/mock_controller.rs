//! A stand-in for the Argo Rollouts controller's side of a net/rpc plugin:
//! it launches the binary with the cookie, connects, dispenses
//! `RpcTrafficRouterPlugin`, calls `Plugin.InitPlugin`, and then, like the
//! controller on every reconcile, pings the plugin before each call and
//! kills and relaunches it when the ping fails or the process is gone.
//! Arguments are the project's model types, sent as the controller sends
//! them: gob with Go field names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gobwire::{GoTime, Interface};
use serde_json::Value;

use crate::go_args as go;
use crate::host::{Host, PluginConn, Reply, ReplyBody};
use crate::launch::PluginProcess;
use istio_router::model::{self, Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};
use istio_router::router::{Call, Outcome, Verification};

/// How long the controller waits for a ping answer before declaring the
/// plugin dead.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds every call, so a test never hangs on a plugin that stopped
/// answering (the plugin's own Kubernetes timeout is far shorter).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// go-plugin `Kill()`: the grace between `Control.Quit` and SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// The `any` argument of `call` as argo's rpc client passes it.
pub fn argument(call: &Call) -> Result<Option<Interface>, String> {
    let destinations = |d: &[WeightDestination]| d.iter().map(weight_destination).collect();
    let interface = |name: &str, value: &dyn gobwire::Encode| {
        Interface::new(name, value)
            .map(Some)
            .map_err(|e| format!("encoding {name}: {e}"))
    };
    match call {
        Call::InitPlugin | Call::Type => Ok(None),
        Call::UpdateHash {
            rollout,
            canary_hash,
            stable_hash,
            additional,
        } => interface(
            "UpdateHashArgs",
            &go::UpdateHashArgs {
                rollout: go_rollout(rollout)?,
                canary_hash: canary_hash.clone(),
                stable_hash: stable_hash.clone(),
                additional_destinations: destinations(additional),
            },
        ),
        Call::SetWeight {
            rollout,
            desired_weight,
            additional,
        }
        | Call::VerifyWeight {
            rollout,
            desired_weight,
            additional,
        } => interface(
            "SetWeightAndVerifyWeightArgs",
            &go::SetWeightAndVerifyWeightArgs {
                rollout: go_rollout(rollout)?,
                desired_weight: *desired_weight,
                additional_destinations: destinations(additional),
            },
        ),
        Call::SetHeaderRoute { rollout, route } => interface(
            "SetHeaderArgs",
            &go::SetHeaderArgs {
                rollout: go_rollout(rollout)?,
                set_header_route: header_route(route),
            },
        ),
        Call::SetMirrorRoute { rollout, route } => interface(
            "SetMirrorArgs",
            &go::SetMirrorArgs {
                rollout: go_rollout(rollout)?,
                set_mirror_route: mirror_route(route),
            },
        ),
        Call::RemoveManagedRoutes { rollout }
        | Call::GetWeightUpdateDeadline { rollout }
        | Call::ClearWeightUpdateDeadline { rollout } => interface(
            &format!("{}Args", call.name()),
            &go::RemoveManagedRoutesArgs {
                rollout: go_rollout(rollout)?,
            },
        ),
    }
}

/// What a call returned, as the controller's rpc client hands it on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CallReply {
    /// `RpcError.ErrorString`; a net/rpc or connection failure is
    /// `"<Method> rpc call error: …"`, as argo's client reports it.
    pub error: String,
    /// VerifyWeight only.
    pub verified: Option<Verification>,
    /// Type only.
    pub type_name: Option<String>,
    /// GetWeightUpdateDeadline only, when the plugin returned one.
    pub deadline: Option<SystemTime>,
}

/// What the router answered, as the controller would see it.
impl From<Outcome> for CallReply {
    fn from(outcome: Outcome) -> Self {
        CallReply {
            error: outcome.error().to_string(),
            verified: matches!(outcome, Outcome::Verified(_)).then(|| outcome.verification()),
            deadline: outcome.deadline(),
            type_name: match outcome {
                Outcome::Type(name) => Some(name),
                _ => None,
            },
        }
    }
}

/// The connection to one plugin process.
struct Running {
    // Field order is drop order: the streams go before the process dies.
    conn: PluginConn,
    host: Host,
    process: PluginProcess,
    seq: u64,
}

pub struct MockController {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    running: Option<Running>,
    restarts: u32,
    pings: u32,
}

impl MockController {
    /// Starts `binary` (see [`crate::plugin_binary`]) as the controller
    /// does; fails like the controller when the handshake, the dispense or
    /// InitPlugin fails.
    pub async fn launch(
        binary: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Self, String> {
        let mut controller = MockController {
            binary: binary.to_path_buf(),
            args: args.to_vec(),
            env: env.to_vec(),
            running: None,
            restarts: 0,
            pings: 0,
        };
        controller.start().await?;
        Ok(controller)
    }

    /// How often a dead plugin was relaunched.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Pings the plugin answered.
    pub fn pings(&self) -> u32 {
        self.pings
    }

    /// The running plugin's process id.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.process.child.id())
    }

    /// Pings (relaunching a dead plugin), then makes the call.
    pub async fn call(&mut self, call: &Call) -> CallReply {
        let failed = |why: String| CallReply {
            error: format!("{} rpc call error: {why}", call.name()),
            ..CallReply::default()
        };
        if !self.alive().await {
            if let Some(dead) = self.running.take() {
                kill(dead).await;
            }
            if let Err(e) = self.start().await {
                return failed(format!("relaunching the plugin: {e}"));
            }
            self.restarts += 1;
        }
        let argument = match argument(call) {
            Ok(argument) => argument,
            Err(e) => return failed(e),
        };
        let Some(running) = self.running.as_mut() else {
            return failed("no plugin running".into());
        };
        match running.invoke(call.name(), argument).await {
            Ok(reply) => decode(call.name(), reply),
            Err(e) => failed(e),
        }
    }

    /// Kills the plugin as `Kill()` does (Quit, grace, SIGKILL).
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            kill(running).await;
        }
    }

    /// argo's startup sequence: spawn, handshake, connect, dispense, dial,
    /// InitPlugin, ping.
    async fn start(&mut self) -> Result<(), String> {
        let process = PluginProcess::launch(
            self.binary.clone(),
            self.args.clone(),
            self.env.clone(),
            "netrpc",
        )
        .await?;
        let host = Host::try_connect(&process.socket).await?;
        let stream = host.try_plugin_stream().await?;
        let mut running = Running {
            conn: PluginConn::new(stream),
            host,
            process,
            seq: 0,
        };
        let init = running.invoke("InitPlugin", None).await?;
        let init = decode("InitPlugin", init);
        if !init.error.is_empty() {
            return Err(format!("InitPlugin failed: {}", init.error));
        }
        ping(&running.host).await?;
        self.pings += 1;
        self.running = Some(running);
        Ok(())
    }

    /// The reconcile's health check: the process runs and answers a ping.
    async fn alive(&mut self) -> bool {
        let Some(running) = self.running.as_mut() else {
            return false;
        };
        if !matches!(running.process.child.try_wait(), Ok(None)) {
            return false;
        }
        let answered = ping(&running.host).await.is_ok();
        if answered {
            self.pings += 1;
        }
        answered
    }
}

impl Running {
    /// One net/rpc round trip on the `Plugin` stream; `Err` when the
    /// connection failed.
    async fn invoke(&mut self, method: &str, argument: Option<Interface>) -> Result<Reply, String> {
        let seq = self.seq;
        self.seq += 1;
        let service_method = format!("Plugin.{method}");
        self.conn.try_call(&service_method, seq, argument).await?;
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply = self.conn.next_reply(left).await?;
            // A late answer to an earlier call that timed out is dropped,
            // as net/rpc does for a seq it no longer waits for.
            if reply.seq == seq {
                return Ok(reply);
            }
        }
    }
}

async fn ping(host: &Host) -> Result<(), String> {
    match tokio::time::timeout(PING_TIMEOUT, host.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("Control.Ping: {e}")),
        Err(_) => Err(format!("Control.Ping: no answer within {PING_TIMEOUT:?}")),
    }
}

/// go-plugin `Kill()`: `Control.Quit`, up to two seconds for the process
/// to exit, then SIGKILL (at once when Quit fails).
async fn kill(running: Running) {
    let Running {
        conn,
        host,
        mut process,
        ..
    } = running;
    let quit = tokio::time::timeout(PING_TIMEOUT, host.quit()).await;
    drop(conn);
    drop(host);
    let _ = tokio::task::spawn_blocking(move || {
        if matches!(quit, Ok(Ok(()))) {
            process.wait_exit(QUIT_GRACE);
        }
        // Dropping kills and reaps whatever is left.
        drop(process);
    })
    .await;
}

/// A reply as argo's rpc client returns it.
fn decode(method: &str, reply: Reply) -> CallReply {
    if !reply.error.is_empty() {
        return CallReply {
            error: format!("{method} rpc call error: {}", reply.error),
            ..CallReply::default()
        };
    }
    match reply.body {
        ReplyBody::Empty => CallReply {
            error: format!("{method} rpc call error: an empty reply"),
            ..CallReply::default()
        },
        ReplyBody::Str(type_name) => CallReply {
            type_name: Some(type_name),
            ..CallReply::default()
        },
        ReplyBody::Error(e) => CallReply {
            error: e.error_string,
            ..CallReply::default()
        },
        ReplyBody::Verify(v) => CallReply {
            error: v.err.error_string,
            verified: Some(Verification::from_rpc(i64::from(v.verified))),
            ..CallReply::default()
        },
        ReplyBody::Deadline(d) => CallReply {
            error: d.err.error_string,
            deadline: d.deadline.map(system_time),
            ..CallReply::default()
        },
    }
}

fn system_time(t: GoTime) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(t.nsec).unwrap_or(0));
    match u64::try_from(t.unix()) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs) + nanos,
        Err(_) => UNIX_EPOCH - Duration::from_secs(t.unix().unsigned_abs()) + nanos,
    }
}

// ---------------------------------------------------------------------------
// The model as argo's Go types (Kubernetes JSON names → Go field names).

/// Every field of the model; `Err` names a step field whose JSON does not
/// fit its Go type.
fn go_rollout(r: &Rollout) -> Result<go::Rollout, String> {
    Ok(go::Rollout {
        type_meta: go::TypeMeta {
            kind: r.kind.clone().unwrap_or_default(),
            api_version: r.api_version.clone().unwrap_or_default(),
        },
        object_meta: go::ObjectMeta {
            name: r.metadata.name.clone(),
            namespace: r.metadata.namespace.clone(),
            uid: r.metadata.uid.clone(),
            labels: r.metadata.labels.clone(),
            annotations: r.metadata.annotations.clone(),
        },
        spec: go::RolloutSpec {
            replicas: r.spec.replicas,
            strategy: go::RolloutStrategy {
                canary: r.spec.strategy.canary.as_ref().map(canary).transpose()?,
            },
        },
        status: status(&r.status),
    })
}

fn canary(c: &model::CanaryStrategy) -> Result<go::CanaryStrategy, String> {
    Ok(go::CanaryStrategy {
        canary_service: c.canary_service.clone(),
        stable_service: c.stable_service.clone(),
        steps: c
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| step(s).map_err(|e| format!("spec.strategy.canary.steps[{i}].{e}")))
            .collect::<Result<_, _>>()?,
        traffic_routing: c.traffic_routing.as_ref().map(traffic_routing),
        dynamic_stable_scale: c.dynamic_stable_scale,
        ping_pong: c.ping_pong.as_ref().map(|p| go::PingPongSpec {
            ping_service: p.ping_service.clone(),
            pong_service: p.pong_service.clone(),
        }),
    })
}

fn traffic_routing(t: &model::TrafficRouting) -> go::RolloutTrafficRouting {
    go::RolloutTrafficRouting {
        plugins: t
            .plugins
            .iter()
            .map(|(name, config)| (name.clone(), config.to_string().into_bytes()))
            .collect(),
        managed_routes: t
            .managed_routes
            .iter()
            .flatten()
            .map(|m| go::ManagedRoute {
                name: m.name.clone(),
            })
            .collect(),
        max_traffic_weight: t.max_traffic_weight,
    }
}

fn step(s: &model::CanaryStep) -> Result<go::CanaryStep, String> {
    Ok(go::CanaryStep {
        set_weight: s.set_weight,
        pause: s.pause.as_ref().map(pause).transpose()?,
        set_canary_scale: s.set_canary_scale.as_ref().map(canary_scale).transpose()?,
        set_header_route: s.set_header_route.as_ref().map(header_route),
        set_mirror_route: s.set_mirror_route.as_ref().map(mirror_route),
    })
}

/// `pause: {duration: 10 | "10s"}`.
fn pause(p: &Value) -> Result<go::RolloutPause, String> {
    let duration = match p.get("duration") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(go::IntOrString {
            ty: 1,
            str_val: s.clone(),
            ..go::IntOrString::default()
        }),
        Some(Value::Number(n)) => Some(go::IntOrString {
            int_val: n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("pause.duration: {n} is not an int32"))?,
            ..go::IntOrString::default()
        }),
        Some(other) => return Err(format!("pause.duration: {other} is not a number or string")),
    };
    Ok(go::RolloutPause { duration })
}

/// `setCanaryScale: {weight, replicas, matchTrafficWeight}`.
fn canary_scale(s: &Value) -> Result<go::SetCanaryScale, String> {
    let int = |key: &str| -> Result<Option<i32>, String> {
        match s.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("setCanaryScale.{key}: {v} is not an int32")),
        }
    };
    let match_traffic_weight = match s.get("matchTrafficWeight") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "setCanaryScale.matchTrafficWeight: {other} is not a bool"
            ));
        }
    };
    Ok(go::SetCanaryScale {
        weight: int("weight")?,
        replicas: int("replicas")?,
        match_traffic_weight,
    })
}

fn string_match(m: &model::StringMatch) -> go::StringMatch {
    go::StringMatch {
        exact: m.exact.clone(),
        prefix: m.prefix.clone(),
        regex: m.regex.clone(),
    }
}

fn header_route(r: &SetHeaderRoute) -> go::SetHeaderRoute {
    go::SetHeaderRoute {
        name: r.name.clone(),
        matches: r
            .matches
            .iter()
            .map(|m| go::HeaderRoutingMatch {
                header_name: m.header_name.clone(),
                header_value: m.header_value.as_ref().map(string_match),
            })
            .collect(),
    }
}

fn mirror_route(r: &SetMirrorRoute) -> go::SetMirrorRoute {
    go::SetMirrorRoute {
        name: r.name.clone(),
        matches: r
            .matches
            .iter()
            .map(|m| go::RouteMatch {
                method: m.method.as_ref().map(string_match),
                path: m.path.as_ref().map(string_match),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect(),
        percentage: r.percentage,
    }
}

fn weight_destination(d: &WeightDestination) -> go::WeightDestination {
    go::WeightDestination {
        weight: d.weight,
        service_name: d.service_name.clone(),
        pod_template_hash: d.pod_template_hash.clone(),
    }
}

fn status(s: &model::RolloutStatus) -> go::RolloutStatus {
    let canary = s.canary.clone().unwrap_or_default();
    go::RolloutStatus {
        abort: s.abort,
        current_pod_hash: s.current_pod_hash.clone(),
        current_step_index: s.current_step_index,
        canary: go::CanaryStatus {
            weights: canary.weights.as_ref().map(|w| go::TrafficWeights {
                canary: weight_destination(&w.canary),
                stable: weight_destination(&w.stable),
                additional: w.additional.iter().map(weight_destination).collect(),
                verified: w.verified,
            }),
            stable_ping_pong: canary.stable_ping_pong,
        },
        stable_rs: s.stable_rs.clone(),
        promote_full: s.promote_full,
    }
}
