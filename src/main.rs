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
    /// Report what belongs to no recorded pod, container or image (mounts,
    /// pinned namespaces, cgroups, monitors, bundles, layer dirs, blobs);
    /// exits 1 when something was found. Refuses while the daemon runs.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Remove what was found (unmount, kill unrecorded monitors and
        /// their cgroups' processes, delete).
        #[arg(long)]
        repair: bool,
    },
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
    /// Check a configuration file and print it with defaults filled in;
    /// CNI problems (no usable conflist, invalid ones, missing plugins)
    /// are reported on stderr.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a default bridge network (10-crius-bridge.conflist: cni0,
    /// 10.88.0.0/16, portmap) into the CNI conf dir, only if it has no config.
    CniDefault {
        /// The conf dir (default: cni.conf_dir of the config).
        #[arg(long)]
        conf_dir: Option<PathBuf>,
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
            // Stdout stays the config; problems go to stderr without failing,
            // since a node may get its CNI config after crius is configured.
            for p in crius::network::default_conf::check(&c.cni.conf_dir, &c.cni.bin_dirs) {
                eprintln!("crius config check: problem: {p}");
            }
            Ok(())
        }),
        Command::Config {
            command: ConfigCommand::CniDefault { conf_dir, config },
        } => cni_default(conf_dir, config),
        Command::Version => {
            println!("crius {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Check { config, repair } => match check(config, repair) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
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

/// `crius check`: one line per leak; with `--repair`, each one's outcome.
/// Exit 0 when clean (or all repaired), 1 otherwise.
fn check(config: Option<PathBuf>, repair: bool) -> anyhow::Result<ExitCode> {
    let config = load(config)?;
    let found = crius::check::Check::run(&config)?;
    if found.leaks.is_empty() {
        println!("crius check: no leaks");
        return Ok(ExitCode::SUCCESS);
    }
    if !repair {
        for l in &found.leaks {
            println!("{l}");
        }
        println!(
            "crius check: {} leak(s); `crius check --repair` removes them",
            found.leaks.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = 0;
    for (l, outcome) in found.repair() {
        match outcome {
            Ok(()) => println!("removed {l}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {l}: {e}");
            }
        }
    }
    println!(
        "crius check: {} leak(s), {} removed, {failed} failed",
        found.leaks.len(),
        found.leaks.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `crius config cni-default`: says what it did, or why it did nothing.
fn cni_default(conf_dir: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<()> {
    use crius::network::default_conf::{Outcome, write_default};
    let c = load(config)?;
    let dir = conf_dir.unwrap_or(c.cni.conf_dir);
    match write_default(&dir, &c.cni.bin_dirs)? {
        Outcome::Written(path) => println!("wrote {}", path.display()),
        Outcome::Kept(existing) => {
            let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
            println!(
                "left {} alone: it already has a network config ({})",
                dir.display(),
                names.join(", ")
            );
        }
    }
    Ok(())
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
