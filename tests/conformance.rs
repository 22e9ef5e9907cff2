//! Conformance runner: every case under `tests/conformance/cases/` and,
//! when `CONFORMANCE_CASES_DIR` is set, every `*.yaml` below it, through
//! every transport. One line per case and transport; the last line is
//! `conformance: N passed, M failed` (and `, K skipped`), preceded by the
//! counts per transport. Exits non-zero when any case fails.
//!
//! `genuine` is the plugin binary over net/rpc like `netrpc`, but driven by
//! the Argo Rollouts controller's own client code (tests/go-client): a case
//! that runs over `netrpc` (its `transports` lists `netrpc`, or it has no
//! `transports`) runs over `genuine` too.

#[path = "conformance/case.rs"]
mod case;
#[path = "conformance/expect.rs"]
mod expect;
#[path = "conformance/genuine.rs"]
mod genuine;
#[path = "conformance/grpc.rs"]
mod grpc;
#[path = "conformance/inprocess.rs"]
mod inprocess;
#[path = "conformance/netrpc.rs"]
mod netrpc;
#[path = "conformance/session.rs"]
mod session;
#[path = "conformance/standin.rs"]
mod standin;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use case::Case;
use istio_router::model::Rollout;
use istio_router::router::Call;
use session::Transport;

fn transports() -> Vec<Box<dyn Transport>> {
    vec![
        Box::new(inprocess::InProcess),
        Box::new(netrpc::NetRpc),
        Box::new(grpc::Grpc),
        Box::new(genuine::Genuine),
    ]
}

/// The transports a case may name; those this build lacks are reported.
const KNOWN_TRANSPORTS: [&str; 4] = ["inprocess", "netrpc", "grpc", "genuine"];

/// The transports a case runs on: those it names, with `genuine` wherever
/// `netrpc` is (the same wire, the controller's own client), or all.
fn wanted_transports(case: &Case) -> Vec<String> {
    match &case.transports {
        None => KNOWN_TRANSPORTS.iter().map(|t| t.to_string()).collect(),
        Some(named) => {
            let mut wanted = named.clone();
            if named.iter().any(|t| t == "netrpc") && !named.iter().any(|t| t == "genuine") {
                wanted.push("genuine".into());
            }
            wanted
        }
    }
}

/// Passed, failed and skipped cases of one transport.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
}

enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

fn main() -> ExitCode {
    let own: Vec<(PathBuf, bool)> =
        case::case_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases"))
            .into_iter()
            .map(|file| (file, false))
            .collect();
    let mut files = own;
    if let Some(dir) = std::env::var_os("CONFORMANCE_CASES_DIR") {
        files.extend(
            case::case_files(&PathBuf::from(dir))
                .into_iter()
                .map(|file| (file, true)),
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let transports = transports();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut per_transport: std::collections::BTreeMap<String, Tally> = Default::default();
    for (file, foreign) in &files {
        let case = match case::load_checked(file) {
            Ok(mut case) => {
                if *foreign && case::built_in_header_route_shape(&mut case) {
                    eprintln!(
                        "note: {}: written for the built-in's header/mirror route shape, run with inheritPrimaryRoute: false (docs/behaviour.md)",
                        case.name
                    );
                }
                case
            }
            Err(e) => {
                println!("FAIL {} [load]: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        // The transports of one case run at once: each session has its own
        // cluster and plugin process, and most of a case is waiting on them.
        let names = wanted_transports(&case);
        let runs = names.iter().map(|name| {
            let (case, transports) = (&case, &transports);
            async move {
                match transports.iter().find(|t| t.name() == name) {
                    None if KNOWN_TRANSPORTS.contains(&name.as_str()) => {
                        Verdict::Skip(format!("transport {name} is not built into this runner"))
                    }
                    None => Verdict::Fail(format!("unknown transport {name:?}")),
                    Some(transport) => match transport.cannot_run(case) {
                        Some(reason) => Verdict::Skip(reason),
                        None => run_case(case, transport.as_ref()).await,
                    },
                }
            }
        });
        let verdicts = runtime.block_on(futures_util::future::join_all(runs));
        for (name, verdict) in names.iter().zip(verdicts) {
            let tally = per_transport.entry(name.clone()).or_default();
            match verdict {
                Verdict::Pass => {
                    tally.passed += 1;
                    passed += 1;
                    println!("PASS {} [{name}]", case.name);
                }
                Verdict::Fail(why) => {
                    tally.failed += 1;
                    failed += 1;
                    println!("FAIL {} [{name}]: {why}", case.name);
                }
                Verdict::Skip(why) => {
                    tally.skipped += 1;
                    skipped += 1;
                    println!("SKIP {} [{name}]: {why}", case.name);
                }
            }
        }
    }
    for (name, tally) in &per_transport {
        println!(
            "transport {name}: {} passed, {} failed, {} skipped",
            tally.passed, tally.failed, tally.skipped
        );
    }
    if skipped > 0 {
        println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("conformance: {passed} passed, {failed} failed");
    }
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_rollout(value: &serde_json::Value) -> Result<Rollout, String> {
    let mut rollout = Rollout::from_json(value.clone()).map_err(|e| e.to_string())?;
    if rollout.metadata.namespace.is_empty() {
        rollout.metadata.namespace = "default".into();
    }
    Ok(rollout)
}

async fn run_case(case: &Case, transport: &dyn Transport) -> Verdict {
    match try_run_case(case, transport).await {
        Ok(()) => Verdict::Pass,
        Err(why) => Verdict::Fail(why),
    }
}

async fn try_run_case(case: &Case, transport: &dyn Transport) -> Result<(), String> {
    let mut rollout = parse_rollout(&case.rollout).map_err(|e| format!("rollout: {e}"))?;
    let mut session = transport.start(case).await?;
    session
        .cluster
        .apply(&case.objects, &rollout.metadata.namespace)
        .await
        .map_err(|e| format!("objects: {e}"))?;
    let reply = session.plugin.call(Call::InitPlugin).await;
    if !reply.error.is_empty() {
        return Err(format!("InitPlugin failed: {}", reply.error));
    }
    for (index, step) in case.calls.iter().enumerate() {
        let at = format!("call {} ({:?})", index + 1, step.call);
        if let Some(value) = &step.rollout {
            rollout = parse_rollout(value).map_err(|e| format!("{at}: rollout: {e}"))?;
        }
        let namespace = rollout.metadata.namespace.clone();
        session
            .cluster
            .apply(&step.apply, &namespace)
            .await
            .map_err(|e| format!("{at}: apply: {e}"))?;
        for gone in &step.delete {
            let ns = gone.namespace.as_deref().unwrap_or(&namespace);
            session
                .cluster
                .delete(&gone.kind, ns, &gone.name)
                .await
                .map_err(|e| format!("{at}: delete: {e}"))?;
        }
        session.cluster.inject(&step.faults);
        let writes_before = session.cluster.writes();
        let call = step.to_call(&rollout).map_err(|e| format!("{at}: {e}"))?;
        let reply = session
            .plugin
            .call_step(step, call)
            .await
            .map_err(|why| format!("{at}: {why}"))?;
        session.cluster.clear_faults();
        let writes = session.cluster.writes() - writes_before;
        let problems = expect::check(
            &step.expect,
            &reply,
            writes,
            session.cluster.as_ref(),
            &namespace,
        );
        if !problems.is_empty() {
            return Err(format!("{at}: {}", problems.join("; ")));
        }
    }
    Ok(())
}
