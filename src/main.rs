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
use istio_router::{controller, logging, process};

/// `--version`: the crate version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
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
        /// More manifests to load into the in-memory cluster.
        #[arg(long)]
        objects: Vec<PathBuf>,
        /// The key under trafficRouting.plugins holding this plugin's
        /// configuration. Default: the only key there, else argoproj-labs/istio.
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
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Steps,
    Yaml,
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

fn run_simulate(
    rollout: Option<PathBuf>,
    objects: &[PathBuf],
    plugin_name: Option<&str>,
    output: OutputArg,
    controller: controller::Version,
) -> Result<String> {
    let mut scenario = match rollout {
        Some(path) => Scenario::load(&path, objects, plugin_name)?,
        None => Scenario::embedded(plugin_name)?,
    };
    scenario.controller = controller;
    let output = match output {
        OutputArg::Steps => Output::Steps,
        OutputArg::Yaml => Output::Yaml,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(simulate::run(&scenario, output))?)
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
