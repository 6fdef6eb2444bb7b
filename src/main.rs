//! The crius command line: `serve`, `config default|check`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crius::config::{self, Config};

use crius::server::{self, Daemon};

#[derive(Debug, Parser)]
#[command(
    name = "crius",
    version,
    about = "A Kubernetes container runtime (CRI v1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the CRI daemon.
    Serve {
        /// Config file (TOML). Default /etc/crius/config.toml; if that is
        /// missing, built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides log.level (e.g. debug, or "crius=trace,info").
        #[arg(long)]
        log_level: Option<String>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version.
    Version,
    /// Internal: the pod namespace helper (request JSON on stdin).
    #[command(hide = true)]
    Pinns,
    /// Internal: pid 1 of a pod's PID namespace (started by pinns).
    #[command(hide = true)]
    Infra,
    /// Internal: a container's monitor (started by the daemon).
    #[command(hide = true)]
    Monitor { bundle: PathBuf },
    /// Internal: forks monitors for the daemon (fd 0 is its socket).
    #[command(hide = true)]
    MonitorZygote,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the default configuration, with comments.
    Default,
    /// Check a configuration file and print it with defaults filled in.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    Ok(Config::load(&path, explicit)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, log_level } => serve(config, log_level),
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", config::default_toml());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => load(config).and_then(|c| {
            print!("{}", toml::to_string(&c).context("printing config")?);
            Ok(())
        }),
        Command::Version => {
            println!("crius {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // No runtime or thread exists yet: the helper unshares namespaces.
        Command::Pinns => return crius::sys::namespace::pinns_main(),
        Command::Infra => return crius::sys::infra::infra_main(),
        Command::Monitor { bundle } => return crius::monitor::main(&bundle),
        Command::MonitorZygote => return crius::monitor::zygote::main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Option<PathBuf>, log_level: Option<String>) -> anyhow::Result<()> {
    let config = Arc::new(load(config)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("crius")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let _telemetry =
            crius::telemetry::init(&config.log, &config.tracing, log_level.as_deref())?;
        let cfg = config.clone();
        let daemon = tokio::task::spawn_blocking(move || Daemon::open(cfg))
            .await
            .context("start-up task")??;
        let listener = daemon.bind().await?;
        daemon.serve(listener, server::shutdown_signal()).await?;
        Ok(())
    })
}
