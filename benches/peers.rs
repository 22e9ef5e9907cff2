//! This plugin side by side with its Go peers, in one run on one machine:
//! each plugin is started and driven by `tests/go-client -peers` (the Argo
//! Rollouts controller's own plugin client, argo-rollouts v1.10.2 and
//! go-plugin v1.7.0, with real `v1alpha1.Rollout` values), interleaved
//! over repeats, against the real kube-apiserver of the end-to-end tier
//! (etcd, kube-apiserver, kube-controller-manager from `tests/e2e/etcd` and
//! `tests/e2e/kubernetes`,
//! Istio's CRDs from `istio.io/api`).
//!
//! Columns: `ours` (the release binary, doing its real work on
//! VirtualServices and DestinationRules), `go_floor` (`tests/go-client/
//! cmd/floor`: argo-rollouts' own `plugin/rpc` server whose methods succeed
//! at once, the cost every Go plugin pays before any work), `gatewayapi`
//! (argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi: not built, the
//! Go module proxy answers 403 for the module).
//!
//! Prints one row per measure (median over the repeats, min–max) with the
//! ratio ours/peer, and writes `target/bench/peers.json`:
//! `{"rows": {ROW: {"ours": n, "go_floor": n, "gatewayapi": null}}}`.
//!
//! `cargo bench --bench peers` (`PEERS_REPEATS=n`, default 3; `PEERS_OURS=path`
//! puts another build of this plugin in the `ours` column).
//! Needs Go with the module proxy and openssl (as the end-to-end tier).

#[allow(dead_code)]
#[path = "../tests/e2e/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/e2e/kube_objects.rs"]
mod kube_objects;
#[allow(dead_code)]
#[path = "../tests/e2e/tools.rs"]
mod tools;

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::cluster::{CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, Cluster, write_kubeconfig};
use crate::kube_objects::Objects;
use test_support::go_build::{Unavailable, go_client, go_floor};
use test_support::plugin_binary;

/// The rollouts' namespace.
const NAMESPACE: &str = "team";
/// The distinct rollouts' namespace: a namespace of its own, so the
/// steady-state rows (memory above all: the plugin caches the namespaces it
/// reads) measure the 16 rollouts' objects only.
const DISTINCT_NAMESPACE: &str = "team-bulk";
/// Rollouts the steady-state calls go round (`app-<i>`).
const ROLLOUTS: usize = 16;
/// Distinct rollouts reconciled once each over one connection (`bulk-<i>`).
const DISTINCT: usize = 1000;
/// The plugin's name in the controller's ConfigMap and in the Rollouts.
const PLUGIN_NAME: &str = "argoproj-labs/istio";
const OUR_USER_AGENT: &str = "rollouts-plugin-trafficrouter-istio/";
const GATEWAYAPI_MISSING: &str = "not built: module not served by the proxy (403)";
const STDERR_TAIL: usize = 40;

/// The rows, in the names, with how each is printed.
const ROWS: &[(&str, &str, Better)] = &[
    (
        "start_to_ping_ms",
        "start -> handshake -> Dispense -> InitPlugin -> first Ping (ms)",
        Better::Lower,
    ),
    (
        "first_call_us",
        "first call of a connection, SetWeight (µs)",
        Better::Lower,
    ),
    ("setweight_p50_us", "SetWeight p50 (µs)", Better::Lower),
    ("setweight_p99_us", "SetWeight p99 (µs)", Better::Lower),
    (
        "verifyweight_p50_us",
        "VerifyWeight p50 (µs)",
        Better::Lower,
    ),
    ("updatehash_p50_us", "UpdateHash p50 (µs)", Better::Lower),
    (
        "setheaderroute_p50_us",
        "SetHeaderRoute p50 (µs)",
        Better::Lower,
    ),
    (
        "calls_per_s_16",
        "SetWeight calls/s, 16 concurrent callers",
        Better::Higher,
    ),
    (
        "cpu_us_per_call",
        "plugin CPU µs per call, 16 callers",
        Better::Lower,
    ),
    ("rss_kb_5000", "RSS after 5 000 calls (kB)", Better::Lower),
    (
        "api_requests_steady",
        "Kubernetes API requests per reconcile, steady state",
        Better::Lower,
    ),
];

#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Ours,
    GoFloor,
}

impl Peer {
    fn key(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::GoFloor => "go_floor",
        }
    }
}

fn main() -> ExitCode {
    // The cluster's work directory and the plugins' sockets go below this
    // build's target/bench/tmp: nothing else that cleans /tmp touches them
    // mid-run. Set before any thread starts.
    let tmp = bench_dir().join("tmp");
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        eprintln!("peers bench failed: creating {}: {e}", tmp.display());
        return ExitCode::FAILURE;
    }
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("TMPDIR", &tmp) };
    let client = match go_client().and_then(|c| go_floor().map(|f| (c, f))) {
        Ok(built) => built,
        Err(Unavailable::Skip(why)) => {
            println!("peers: SKIPPED: {why}");
            return ExitCode::SUCCESS;
        }
        Err(Unavailable::Fail(why)) => {
            eprintln!("peers bench failed: {why}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("peers bench failed: a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&client.0, &client.1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unreadable ({e})"))
}

async fn run(go_client: &Path, go_floor: &Path) -> anyhow::Result<()> {
    let repeats: usize = match std::env::var("PEERS_REPEATS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| anyhow!("PEERS_REPEATS={v:?}: want a whole number ≥ 1"))?,
        Err(_) => 3,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let built = tools::build_all(root, &tools::newest(root, "kubernetes")?, &[])?;
    let cluster = Cluster::start(&built, root).await?;
    let outcome = measure(&cluster, &built.kubernetes, go_client, go_floor, repeats).await;
    cluster.finish(outcome.is_ok());
    outcome?;
    println!("peers: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn measure(
    cluster: &Cluster,
    kubernetes: &str,
    go_client: &Path,
    go_floor: &Path,
    repeats: usize,
) -> anyhow::Result<()> {
    let objects = Objects::new(cluster.admin_client());
    let kubeconfig = install(cluster, &objects).await?;

    println!(
        "peers: {repeats} interleaved repeats through argo-rollouts v1.10.2's plugin client, \
         {ROLLOUTS} rollouts (+{DISTINCT} distinct), against a real kube-apiserver \
         (k8s.io/kubernetes {kubernetes}, the end-to-end tier's cluster); load average at start {}",
        loadavg()
    );
    // PEERS_OURS: another build of this plugin in the `ours` column (a
    // before/after comparison); default the one cargo built for the bench.
    let ours_override = std::env::var_os("PEERS_OURS").map(PathBuf::from);
    let ours = ours_override.as_deref().unwrap_or(plugin_binary!());
    println!("peers: ours = {}", ours.display());
    let audit = AuditLog::new(&cluster.audit_log);
    // Warm-up, not counted: page cache, and every object brought to the
    // state the steady state asks for.
    for peer in [Peer::Ours, Peer::GoFloor] {
        drive(go_client, peer, ours, go_floor, &kubeconfig, &audit, 0, 0)?;
    }
    let mut results: Vec<(Peer, Value)> = Vec::new();
    for repeat in 0..repeats {
        let order = if repeat % 2 == 0 {
            [Peer::Ours, Peer::GoFloor]
        } else {
            [Peer::GoFloor, Peer::Ours]
        };
        for peer in order {
            // A new weight each repeat: every distinct rollout changes.
            let weight = 30 + repeat;
            let result = drive(
                go_client,
                peer,
                ours,
                go_floor,
                &kubeconfig,
                &audit,
                DISTINCT,
                weight,
            )?;
            results.push((peer, result));
        }
    }
    let check = check_landed(&objects, 30 + repeats - 1).await;
    report(&results, repeats)?;
    check
}

/// The objects of rollout `name`: its VirtualService (host `name`, route
/// "primary" split by subsets, all traffic on stable) and DestinationRule.
fn rollout_objects(name: &str, namespace: &str) -> [Value; 2] {
    [
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": format!("{name}-vsvc"), "namespace": namespace},
            "spec": {
                "hosts": [name],
                "http": [{
                    "name": "primary",
                    "route": [
                        {"destination": {"host": name, "subset": "stable"}, "weight": 100},
                        {"destination": {"host": name, "subset": "canary"}, "weight": 0},
                    ],
                }],
            },
        }),
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": format!("{name}-destrule"), "namespace": namespace},
            "spec": {
                "host": name,
                "subsets": [
                    {"name": "canary", "labels": {"app": name}},
                    {"name": "stable", "labels": {"app": name}},
                ],
            },
        }),
    ]
}

/// Installs what the plugin needs: the rollouts' Services, VirtualServices
/// and DestinationRules, the controller's ServiceAccount with the RBAC of
/// plugin-manifest.yaml, and a kubeconfig with that ServiceAccount's token
/// (whose requests the audit log records). Returns the kubeconfig.
async fn install(cluster: &Cluster, objects: &Objects) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    objects.ensure_namespace(NAMESPACE).await?;
    objects.ensure_namespace(CONTROLLER_NAMESPACE).await?;
    let mut documents = Vec::new();
    for i in 0..ROLLOUTS {
        let name = format!("app-{i}");
        for role in ["canary", "stable"] {
            documents.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": format!("{name}-{role}"), "namespace": NAMESPACE},
                "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }));
        }
        documents.extend(rollout_objects(&name, NAMESPACE));
    }
    objects.ensure_namespace(DISTINCT_NAMESPACE).await?;
    for i in 0..DISTINCT {
        documents.extend(rollout_objects(&format!("bulk-{i}"), DISTINCT_NAMESPACE));
    }
    let count = documents.len();
    let mut applied = futures_util::stream::iter(documents.into_iter().map(|document| {
        let objects = objects.clone();
        async move { objects.apply(document, None, "peers-bench").await }
    }))
    .buffer_unordered(16);
    while let Some(result) = applied.next().await {
        result?;
    }

    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin-manifest.yaml"))
            .context("reading plugin-manifest.yaml")?;
    for document in kube_objects::yaml_documents(&manifest)? {
        let (kind, _) = kube_objects::kind_and_name(&document)?;
        if kind != "ConfigMap" {
            objects.apply(document, None, "peers-bench").await?;
        }
    }
    objects
        .apply(
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": CONTROLLER_SERVICE_ACCOUNT, "namespace": CONTROLLER_NAMESPACE},
            }),
            None,
            "peers-bench",
        )
        .await?;
    let token = objects
        .service_account_token(CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT)
        .await?;
    let kubeconfig = cluster.work_dir().join("plugin.kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &cluster.server,
        &cluster.ca_file,
        CONTROLLER_SERVICE_ACCOUNT,
        &token,
    )?;
    println!(
        "peers: cluster up, {count} objects applied in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(kubeconfig)
}

/// The API server's audit log: every request of the controller's
/// ServiceAccount, which only the plugin under test uses here.
struct AuditLog {
    path: PathBuf,
}

/// Requests in the audit log: all, and those with our User-Agent.
#[derive(Default)]
struct Requests {
    ids: HashSet<String>,
    ours: usize,
}

impl AuditLog {
    fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_path_buf(),
        }
    }

    /// The requests recorded so far (an event per stage; counted once per
    /// audit id).
    fn requests(&self) -> anyhow::Result<Requests> {
        // The API server creates the file with its first event.
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the audit log {}", self.path.display()));
            }
        };
        let mut requests = Requests::default();
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).context("an audit log line")?;
            let id = event["auditID"].as_str().unwrap_or_default().to_string();
            if requests.ids.insert(id)
                && event["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with(OUR_USER_AGENT))
            {
                requests.ours += 1;
            }
        }
        Ok(requests)
    }
}

/// One run of the driver against one plugin; returns its result object with
/// `api_requests_steady` added.
#[allow(clippy::too_many_arguments)]
fn drive(
    go_client: &Path,
    peer: Peer,
    ours: &Path,
    go_floor: &Path,
    kubeconfig: &Path,
    audit: &AuditLog,
    distinct: usize,
    weight: usize,
) -> anyhow::Result<Value> {
    let plugin = match peer {
        Peer::Ours => ours,
        Peer::GoFloor => go_floor,
    };
    let mut command = Command::new(go_client);
    command
        .args(["-peers", "-timeout", "600s", "-plugin-name", PLUGIN_NAME])
        .arg(format!("-namespace={NAMESPACE}"))
        .arg(format!("-distinct-namespace={DISTINCT_NAMESPACE}"))
        .arg(format!("-rollouts={ROLLOUTS}"))
        .arg(format!("-distinct={distinct}"))
        .arg(format!("-distinct-weight={weight}"))
        .arg("-plugin")
        .arg(plugin)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", CONTROLLER_NAMESPACE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if peer == Peer::Ours {
        // The arguments plugin-manifest.yaml gives it.
        command.args([
            "--",
            "--plugin-name=argoproj-labs/istio",
            "--log-level=info",
        ]);
    }
    let mut child = command.spawn().context("starting the Go client")?;

    // go-plugin logs every plugin line at Trace: keep only the tail.
    let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let tail = stderr_tail.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    let mut go_ahead = child.stdin.take().context("no stdin pipe")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut before: Option<Requests> = None;
    let mut steady: Option<(usize, usize)> = None;
    let mut result: Option<Value> = None;
    let mut other = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the Go client's output")?;
        match line.as_str() {
            "steady-state begin" => {
                // The warm-up's writes come back to the plugin as watch
                // events; let them land so the steady state starts settled.
                std::thread::sleep(Duration::from_secs(1));
                before = Some(audit.requests()?);
            }
            "steady-state end" => {
                let before = before.take().context("steady-state end without a begin")?;
                let after = audit.requests()?;
                steady = Some((
                    after.ids.difference(&before.ids).count(),
                    after.ours - before.ours,
                ));
            }
            _ => {
                if let Some(json) = line.strip_prefix("result ") {
                    result = Some(serde_json::from_str(json).context("the driver's result line")?);
                } else {
                    other.push(line);
                }
                continue;
            }
        }
        if writeln!(go_ahead, "go").is_err() {
            break;
        }
    }
    let status = child.wait().context("waiting for the Go client")?;
    let _ = stderr_reader.join();
    let tail = Vec::from(
        stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
    .join("\n");
    if !status.success() {
        bail!(
            "{}: the Go client exited with {status}:\n{}\nlast lines of its stderr:\n{tail}",
            peer.key(),
            other.join("\n")
        );
    }
    let mut result = result.with_context(|| format!("{}: no result line", peer.key()))?;
    let (requests, ours_requests) = steady.context("no steady-state markers")?;
    let calls = result["steady_calls"].as_f64().unwrap_or(0.0);
    if calls <= 0.0 {
        bail!("{}: no steady-state calls in {result}", peer.key());
    }
    result["api_requests_steady"] = json!(requests as f64 / calls);
    result["api_requests_steady_total"] = json!(requests);
    result["api_requests_steady_ours"] = json!(ours_requests);
    if let Some(errors) = result["distinct_errors"].as_u64().filter(|n| *n > 0) {
        bail!(
            "{}: {errors} of {distinct} distinct rollouts failed; first: {}",
            peer.key(),
            result["distinct_first_error"]
        );
    }
    Ok(result)
}

/// The distinct rollouts' last SetWeight landed on the API server.
async fn check_landed(objects: &Objects, weight: usize) -> anyhow::Result<()> {
    for i in [0, DISTINCT / 2, DISTINCT - 1] {
        let name = format!("bulk-{i}-vsvc");
        let vs = objects
            .get(
                "VirtualService.networking.istio.io",
                DISTINCT_NAMESPACE,
                &name,
            )
            .await?
            .with_context(|| format!("VirtualService {name} is gone"))?;
        let canary = vs["spec"]["http"][0]["route"][1]["weight"].as_u64();
        if canary != Some(weight as u64) {
            bail!("VirtualService {name}: canary weight {canary:?}, want {weight}: {vs}");
        }
    }
    Ok(())
}

/// Median, min and max.
fn stats(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn values(results: &[(Peer, Value)], peer: Peer, key: &str) -> anyhow::Result<Vec<f64>> {
    results
        .iter()
        .filter(|(p, _)| *p == peer)
        .map(|(_, r)| {
            r[key]
                .as_f64()
                .with_context(|| format!("{}: no {key} in {r}", peer.key()))
        })
        .collect()
}

fn report(results: &[(Peer, Value)], repeats: usize) -> anyhow::Result<()> {
    println!();
    println!(
        "{:<58} | {:>22} | {:>22} | {:<20} | {:>14}",
        "measure (median [min–max])", "ours", "go_floor", "gatewayapi", "ours/go_floor"
    );
    println!("{}", "-".repeat(150));
    let mut rows = serde_json::Map::new();
    for (key, label, better) in ROWS {
        let (ours, ours_min, ours_max) = stats(&mut values(results, Peer::Ours, key)?);
        let (floor, floor_min, floor_max) = stats(&mut values(results, Peer::GoFloor, key)?);
        let ratio = if floor == 0.0 {
            if ours == 0.0 {
                "= (both 0)".to_string()
            } else {
                "∞".to_string()
            }
        } else {
            format!("{:.2}", ours / floor)
        };
        let note = match better {
            Better::Lower => "",
            Better::Higher => " (higher is better)",
        };
        println!(
            "{:<58} | {:>22} | {:>22} | {:<20} | {:>14}",
            format!("{label}{note}"),
            format!(
                "{} [{}–{}]",
                fmt_num(ours),
                fmt_num(ours_min),
                fmt_num(ours_max)
            ),
            format!(
                "{} [{}–{}]",
                fmt_num(floor),
                fmt_num(floor_min),
                fmt_num(floor_max)
            ),
            "not built",
            ratio
        );
        rows.insert(
            key.to_string(),
            json!({"ours": ours, "go_floor": floor, "gatewayapi": null}),
        );
    }
    println!("gatewayapi: {GATEWAYAPI_MISSING}");
    for peer in [Peer::Ours, Peer::GoFloor] {
        let (set50, _, _) = stats(&mut values(results, peer, "distinct_setweight_p50_us")?);
        let (set99, set99_min, set99_max) =
            stats(&mut values(results, peer, "distinct_setweight_p99_us")?);
        let (ver99, ver99_min, ver99_max) =
            stats(&mut values(results, peer, "distinct_verifyweight_p99_us")?);
        let steady_ours: u64 = results
            .iter()
            .filter(|(p, _)| *p == peer)
            .filter_map(|(_, r)| r["api_requests_steady_total"].as_u64())
            .sum();
        println!(
            "{}: {DISTINCT} distinct rollouts over one connection, 0 errors: SetWeight (a write each) p50 {} µs, p99 {} µs [{}–{}]; then VerifyWeight p99 {} µs [{}–{}]; steady-state API requests over all repeats: {steady_ours}",
            peer.key(),
            fmt_num(set50),
            fmt_num(set99),
            fmt_num(set99_min),
            fmt_num(set99_max),
            fmt_num(ver99),
            fmt_num(ver99_min),
            fmt_num(ver99_max),
        );
    }
    println!("repeats: {repeats}; load average at end {}", loadavg());

    let dir = bench_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("peers.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json!({"rows": rows}))?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("peers: wrote {}", path.display());
    Ok(())
}

/// `target/bench` of this build (`CARGO_TARGET_DIR` when set).
fn bench_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench")
}
