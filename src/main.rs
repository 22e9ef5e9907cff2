use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use istio_router::cluster::{KubeCluster, KubeClusterOptions};
use istio_router::istio::{self, DEFAULT_PLUGIN_NAME, IstioRouter};
use istio_router::router::TrafficRouter as _;
use istio_router::simulate::{self, Output, Scenario};
use istio_router::transport::{grpc, netrpc};
use istio_router::{controller, logging, process, validate};

/// `--version`: the version (`X.Y.Z` for a release build, else
/// `X.Y.Z-dev+<commit>`) and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("ROLLOUTS_PLUGIN_VERSION"),
    " (commit ",
    env!("ROLLOUTS_PLUGIN_COMMIT"),
    ")"
);

/// Argo Rollouts traffic-router plugin for Istio.
///
/// The Argo Rollouts controller starts this binary itself (listed under
/// trafficRouterPlugins in the argo-rollouts-config ConfigMap). By hand, use
/// `simulate` to see what it would do to your VirtualServices and
/// DestinationRules.
#[derive(Parser)]
#[command(version = VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// How the plugin serves when the controller starts it.
#[derive(Args)]
struct ServeArgs {
    /// The key under trafficRouting.plugins holding this plugin's configuration.
    #[arg(long, default_value = DEFAULT_PLUGIN_NAME)]
    plugin_name: String,
    /// The Istio networking API version to read and write.
    #[arg(long, default_value = istio::DEFAULT_API_VERSION, value_parser = istio::API_VERSIONS)]
    istio_api_version: String,
    /// trace, debug, info, warn or error (hclog JSON lines on stderr).
    #[arg(long, default_value = "info", value_parser = ["trace", "debug", "info", "warn", "error"])]
    log_level: String,
    /// The go-plugin protocol to serve.
    #[arg(long, value_enum, default_value_t = Protocol::Netrpc)]
    protocol: Protocol,
    /// Kubernetes client queries per second.
    #[arg(long, default_value_t = 50.0)]
    kube_qps: f32,
    /// Kubernetes client burst above --kube-qps.
    #[arg(long, default_value_t = 100)]
    kube_burst: u32,
    /// Timeout of one Kubernetes API request, in seconds.
    #[arg(long, default_value_t = 30)]
    kube_timeout: u64,
    /// The field manager of every write: the owner of the fields the plugin
    /// sets, as `managedFields` show it (see docs/argocd.md).
    #[arg(long, default_value = istio_router::cluster::kube::DEFAULT_FIELD_MANAGER, value_parser = field_manager)]
    field_manager: String,
}

/// What the API server accepts as a field manager: 1 to 128 printable
/// ASCII characters.
fn field_manager(name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.len() > 128
        || !name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
    {
        return Err(format!(
            "{name:?} is not a field manager the API server accepts (1 to 128 printable ASCII characters)"
        ));
    }
    Ok(name.to_string())
}

/// The Argo Rollouts controller speaks net/rpc; gRPC is for hosts that
/// speak go-plugin's gRPC protocol.
#[derive(Clone, Copy, ValueEnum)]
enum Protocol {
    Netrpc,
    Grpc,
}

impl Protocol {
    /// The name go-plugin's handshake line uses.
    fn handshake_name(self) -> &'static str {
        match self {
            Protocol::Netrpc => "netrpc",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Copy this binary into DIR (for an init container; the image has no
    /// shell) and print the path the plugin entry's file:// location names.
    Install {
        /// A directory shared with the controller container.
        dir: PathBuf,
    },
    /// Play a Rollout's canary from start to promotion against an in-memory
    /// cluster and print every call and every change.
    Simulate {
        /// The Rollout manifest (it may also hold the VirtualServices and
        /// DestinationRules). Default: an embedded host-split example.
        #[arg(long)]
        rollout: Option<PathBuf>,
        /// More manifests to load into the in-memory cluster: files,
        /// directories or `-`. Only the objects the Rollout names are kept.
        #[arg(long, num_args = 1..)]
        objects: Vec<PathBuf>,
        /// The key under trafficRouting.plugins holding this plugin's
        /// configuration, matched exactly. Default: argoproj-labs/istio.
        #[arg(long)]
        plugin_name: Option<String>,
        /// `steps` (calls and diffs per step) or `yaml` (final objects).
        #[arg(long, value_enum, default_value_t = OutputArg::Steps)]
        output: OutputArg,
        /// The Argo Rollouts release whose validation the Rollout must pass
        /// (what it refuses never reaches the plugin).
        #[arg(long, default_value_t = controller::LATEST_CHECKED)]
        argo_rollouts_version: controller::Version,
    },
    /// Check Rollouts with their VirtualServices and DestinationRules before
    /// they are deployed, offline; print every problem (file, line of the
    /// field, object, field). Rollouts that do not use this plugin are
    /// skipped and counted. Exit 0 when clean, 1 on errors (or on warnings
    /// with --strict), 2 when validate cannot run (an unreadable path).
    Validate {
        /// Manifests holding the Rollouts to check (and maybe their
        /// objects): files, directories or `-` for standard input.
        #[arg(long, required = true, num_args = 1..)]
        rollout: Vec<PathBuf>,
        /// More manifests (VirtualServices, DestinationRules, ReplicaSets):
        /// files, directories or `-`.
        #[arg(long, num_args = 1..)]
        objects: Vec<PathBuf>,
        /// The name this plugin is registered under in trafficRouterPlugins;
        /// Rollouts are checked when their trafficRouting.plugins key is
        /// exactly this. Default: argoproj-labs/istio.
        #[arg(long)]
        plugin_name: Option<String>,
        /// The Argo Rollouts release whose validation the Rollout must pass.
        #[arg(long, default_value_t = controller::LATEST_CHECKED)]
        argo_rollouts_version: controller::Version,
        /// Warnings fail too (exit 1).
        #[arg(long)]
        strict: bool,
        /// `text` (one line per problem) or `json`.
        #[arg(short = 'o', long, value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Steps,
    Yaml,
}

/// `validate -o`.
#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Install { dir }) => match process::install(&dir) {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {:#}", anyhow::Error::from(e));
                ExitCode::FAILURE
            }
        },
        Some(Command::Simulate {
            rollout,
            objects,
            plugin_name,
            output,
            argo_rollouts_version,
        }) => match run_simulate(
            rollout,
            &objects,
            plugin_name.as_deref(),
            output,
            argo_rollouts_version,
        ) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Validate {
            rollout,
            objects,
            plugin_name,
            argo_rollouts_version,
            strict,
            output,
        }) => {
            let options = validate::Options {
                plugin_name,
                controller: argo_rollouts_version,
            };
            match run_validate(&rollout, &objects, &options) {
                Ok(report) => {
                    print!(
                        "{}",
                        match output {
                            ReportFormat::Text => validate::render_text(&report),
                            ReportFormat::Json => validate::render_json(&report),
                        }
                    );
                    let (errors, warnings) = validate::counts(&report.problems);
                    if errors > 0 || (strict && warnings > 0) {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        None if process::launched_by_host() => match serve(cli.serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Once logging is up, stderr carries hclog JSON lines only.
                if tracing::dispatcher::has_been_set() {
                    tracing::error!(error = format!("{e:#}"), "plugin failed");
                } else {
                    eprintln!("error: {e:#}");
                }
                ExitCode::FAILURE
            }
        },
        None => {
            eprintln!(
                "This binary is an Argo Rollouts traffic-router plugin for Istio. \
                 The Argo Rollouts controller starts it (with {}={} set) and talks to it \
                 over go-plugin net/rpc; it is not meant to be run by hand.\n\
                 Try `{} simulate` to see what it does, or --help.",
                process::MAGIC_COOKIE_KEY,
                process::MAGIC_COOKIE_VALUE,
                env!("CARGO_BIN_NAME")
            );
            ExitCode::FAILURE
        }
    }
}

/// An input that cannot be read (a missing path, a directory without
/// manifests, standard input given twice) stops `validate` before any
/// check: exit 2, as docs/validate.md says.
fn run_validate(
    rollouts: &[PathBuf],
    objects: &[PathBuf],
    options: &validate::Options,
) -> Result<validate::Report> {
    let (manifests, unreadable) = validate::Manifests::read(rollouts, objects);
    if !unreadable.is_empty() {
        let lines: Vec<String> = unreadable
            .iter()
            .map(|p| format!("{}: {}", p.location(), p.what()))
            .collect();
        anyhow::bail!("{}", lines.join("\nerror: "));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(validate::check(&manifests, options)))
}

/// Runs `validate`'s checks first: errors refuse the simulation (all of
/// them listed), warnings are shown on stderr and the simulation goes on.
fn run_simulate(
    rollout: Option<PathBuf>,
    objects: &[PathBuf],
    plugin_name: Option<&str>,
    output: OutputArg,
    controller: controller::Version,
) -> Result<String> {
    let (manifests, problems) = match &rollout {
        Some(path) => validate::Manifests::read(std::slice::from_ref(path), objects),
        None => {
            let (file, text) = simulate::EMBEDDED_EXAMPLE;
            let input = validate::Input {
                name: file.to_string(),
                text: text.to_string(),
                holds_rollouts: true,
            };
            (validate::Manifests::index(vec![input]), Vec::new())
        }
    };
    refuse_on_errors(&problems)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = validate::Options {
        plugin_name: plugin_name.map(str::to_string),
        controller,
    };
    let mut problems = manifests.problems().to_vec();
    let rollouts = manifests.rollouts();
    let mut scenario = None;
    if let [rollout] = rollouts[..] {
        let checked = runtime.block_on(validate::check_rollout(&manifests, rollout, &options));
        problems.extend(checked.problems);
        scenario = checked.scenario;
    }
    refuse_on_errors(&problems)?;
    let scenario = match scenario {
        Some(scenario) => scenario,
        // No Rollout, or several: say so as `simulate` always has.
        None => Scenario::from_manifests(&manifests, plugin_name)?,
    };
    for warning in &problems {
        eprintln!("{warning}");
    }
    let output = match output {
        OutputArg::Steps => Output::Steps,
        OutputArg::Yaml => {
            eprintln!("{} (final objects on stdout)", simulate::banner(&scenario));
            Output::Yaml
        }
    };
    Ok(runtime.block_on(simulate::run(&scenario, output))?)
}

/// One error: that line; several: a count, then one line each.
fn refuse_on_errors(problems: &[validate::Problem]) -> Result<()> {
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == validate::Severity::Error)
        // `main` prints "error: " before it, so the severity is not repeated.
        .map(|p| format!("{}: {}", p.location(), p.what()))
        .collect();
    match errors.len() {
        0 => Ok(()),
        1 => anyhow::bail!("{}", errors[0]),
        n => anyhow::bail!(
            "{n} errors, nothing simulated (`validate` lists them too):\n  {}",
            errors.join("\n  ")
        ),
    }
}

/// Serves the controller until it quits or goes away, then removes the socket.
fn serve(args: ServeArgs) -> Result<()> {
    logging::init(&args.log_level)?;
    // One thread: a call goes from the socket through yamux, the decoder,
    // the router and back without waking another thread (with worker
    // threads every call cost several futex wake-ups under concurrent
    // callers). The controller runs on the same few cores; the plugin's
    // work per call is small next to its share of one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut socket = process::announce(args.protocol.handshake_name())?;
        let listener = socket
            .take_listener()
            .context("the plugin socket has no listener")?;
        tracing::info!(
            plugin_name = %args.plugin_name,
            protocol = args.protocol.handshake_name(),
            istio_api_version = %args.istio_api_version,
            kube_qps = args.kube_qps,
            kube_burst = args.kube_burst,
            kube_timeout_s = args.kube_timeout,
            socket = %socket.path().display(),
            "serving"
        );
        // The Kubernetes client is built at InitPlugin, off the handshake path.
        let cluster = KubeCluster::new(KubeClusterOptions {
            qps: args.kube_qps,
            burst: args.kube_burst,
            request_timeout: Duration::from_secs(args.kube_timeout),
            kubeconfig: None,
            field_manager: args.field_manager,
        });
        let router = Arc::new(
            IstioRouter::new(cluster, args.plugin_name)
                .with_api_version(&args.istio_api_version)?,
        );
        // Build the Kubernetes client now, alongside the handshake and
        // Dispense, so InitPlugin finds it ready (or joins the build under
        // way) instead of starting it. A failure here is not reported:
        // InitPlugin builds again and answers with the error.
        let warm = router.clone();
        tokio::spawn(async move {
            let _ = warm.init_plugin().await;
        });
        match args.protocol {
            Protocol::Netrpc => {
                let ended = tokio::select! {
                    ended = netrpc::serve(listener, router) => Some(ended?),
                    () = process::stdout_closed() => None,
                };
                match ended {
                    Some(ended) => tracing::info!(?ended, "host connection ended, exiting"),
                    None => tracing::info!("host closed our stdout, exiting"),
                }
            }
            Protocol::Grpc => {
                grpc::serve(listener, router, process::stdout_closed()).await?;
                tracing::info!("gRPC host shut us down or went away, exiting");
            }
        }
        socket.remove();
        Ok(())
    })
}
