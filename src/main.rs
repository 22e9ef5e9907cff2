use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use istio_router::simulate::{self, Output, Scenario};

/// Argo Rollouts traffic-router plugin for Istio.
///
/// The Argo Rollouts controller starts this binary itself (listed under
/// trafficRouterPlugins in the argo-rollouts-config ConfigMap). By hand, use
/// `simulate` to see what it would do to your VirtualServices and
/// DestinationRules.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
        Some(Command::Simulate {
            rollout,
            objects,
            plugin_name,
            output,
        }) => match run_simulate(rollout, &objects, plugin_name.as_deref(), output) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            eprintln!(
                "This binary is an Argo Rollouts traffic-router plugin for Istio. \
                 The Argo Rollouts controller starts it; it is not meant to be run by hand.\n\
                 Try `{} simulate` to see what it does, or --help.",
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
) -> Result<String> {
    let scenario = match rollout {
        Some(path) => Scenario::load(&path, objects, plugin_name)?,
        None => Scenario::embedded(plugin_name)?,
    };
    let output = match output {
        OutputArg::Steps => Output::Steps,
        OutputArg::Yaml => Output::Yaml,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(simulate::run(&scenario, output))?)
}
