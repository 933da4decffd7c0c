#![forbid(unsafe_code)]
//! `vakt-agent`: the command line over the vakt_agent library.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vakt_agent::{config::AgentConfig, enroll, state};

#[derive(Parser)]
#[command(
    name = "vakt-agent",
    version,
    about = "Vakt agent: reports this machine's health and inventory to a Vakt collector",
    long_about = "Vakt agent: reports this machine's health and inventory to a Vakt collector.\n\n\
        First enroll once with a token from `vaktctl register`, then run the agent \
        (normally as the vakt-agent systemd service):\n\n  \
        vaktctl register --serial SN123 > token\n  \
        vakt-agent enroll --collector https://collector.example:7443 --ca ca.pem --token-file token\n  \
        vakt-agent run\n\n\
        Reports that the collector has not acknowledged stay in the spool under the state \
        directory and are delivered in order when it is reachable again.\n\n\
        Logging goes to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trade a one-time token for this device's certificate (once per device).
    ///
    /// The private key is generated here and never leaves the machine. The token
    /// is read from a file (or stdin with `-`), never from the command line, where
    /// other users could see it in the process list.
    Enroll {
        /// Collector address, e.g. https://collector.example:7443
        #[arg(long, value_name = "URL")]
        collector: String,
        /// CA certificate (PEM) that signed the collector's certificate.
        #[arg(long = "ca", value_name = "FILE")]
        ca: PathBuf,
        /// File holding the enrollment token; `-` reads it from stdin.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        #[arg(long, value_name = "DIR", default_value = state::DEFAULT_STATE_DIR, env = "VAKT_AGENT_STATE_DIR")]
        state_dir: PathBuf,
        /// Replace an existing enrollment (the old device certificate stops working here).
        #[arg(long)]
        force: bool,
        /// Agent config; only its [paths] are used, to read the hardware identity.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the agent until SIGTERM or Ctrl-C.
    ///
    /// Without --config, /etc/vakt/agent.toml is used if it exists, else defaults.
    /// The collector address and CA come from the enrollment unless the config
    /// names them.
    Run {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "DIR", default_value = state::DEFAULT_STATE_DIR, env = "VAKT_AGENT_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Print the report the agent would send (health samples and full inventory).
    ///
    /// Nothing is sent or spooled; no enrollment is needed.
    Collect {
        /// Collect one report and exit (otherwise: one report per interval until Ctrl-C).
        #[arg(long)]
        once: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Json)]
        output: Output,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run every [[gateway.source]] once and print what the agent makes of its
    /// output (children, invalid lines with the reason); exit 1 if a source
    /// failed or printed an invalid line. Nothing is sent.
    GatewayCheck {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show the enrollment, certificate expiry and spool of this agent.
    Status {
        #[arg(long, value_name = "DIR", default_value = state::DEFAULT_STATE_DIR, env = "VAKT_AGENT_STATE_DIR")]
        state_dir: PathBuf,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    // Err only means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_logging();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// RUST_LOG with per-target levels (`debug`, `vakt_agent=debug,h2=warn`), read
/// by `Targets` rather than `EnvFilter`: the same syntax without span and field
/// filters, and without the regex engine those need, which would be most of
/// the agent's code pages. An unreadable RUST_LOG falls back to `info`.
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread is plenty for one stream and a timer, and keeps the agent light.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Enroll {
            collector,
            ca,
            token_file,
            state_dir,
            force,
            config,
        } => {
            let paths = match &config {
                Some(path) => AgentConfig::load(path)?.paths,
                None => Default::default(),
            };
            let token = read_token(&token_file)?;
            let opts = enroll::EnrollOptions {
                collector,
                ca_file: ca,
                token,
                state_dir,
            };
            let enrolled = runtime()?.block_on(enroll::enroll_with(&opts, force, &paths))?;
            println!("enrolled as device {}", enrolled.device_id);
            println!(
                "certificate valid until {}",
                vakt_agent::status::format_ms(enrolled.certificate_not_after_unix_ms)
            );
            println!("state directory: {}", opts.state_dir.display());
            Ok(())
        }
        Command::Run { config, state_dir } => {
            let config = AgentConfig::load_or_default(config.as_deref())?;
            runtime()?.block_on(vakt_agent::run(config, state_dir, shutdown_signal()))
        }
        Command::Collect {
            once,
            output,
            config,
        } => {
            let config = match &config {
                Some(path) => AgentConfig::load(path)?,
                None => AgentConfig::default(),
            };
            loop {
                let batch = vakt_agent::collect_once(&config)?;
                match output {
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&vakt_agent::batch::to_json(&batch))
                            .context("cannot encode the report as JSON")?
                    ),
                    Output::Text => print!("{}", vakt_agent::batch::to_text(&batch)),
                }
                if once {
                    return Ok(());
                }
                std::thread::sleep(
                    config
                        .interval
                        .unwrap_or(vakt_agent::config::DEFAULT_INTERVAL),
                );
            }
        }
        Command::GatewayCheck { config } => {
            let config = AgentConfig::load_or_default(config.as_deref())?;
            anyhow::ensure!(
                !config.gateway.is_empty(),
                "the config has no [[gateway.source]]"
            );
            let (report, clean) =
                runtime()?.block_on(vakt_agent::gateway::check_sources(&config.gateway));
            println!(
                "{}",
                serde_json::to_string_pretty(&report).context("cannot encode the result")?
            );
            anyhow::ensure!(clean, "a gateway source failed or printed invalid lines");
            Ok(())
        }
        Command::Status { state_dir, output } => {
            let status = vakt_agent::status::read(&state_dir)?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&status).context("cannot encode status")?
                ),
                Output::Text => print!("{}", vakt_agent::status::to_text(&status)),
            }
            Ok(())
        }
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let mut token = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut token)
            .context("cannot read the token from stdin")?;
    } else {
        token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
    }
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "the token file {} is empty",
        path.display()
    );
    Ok(token)
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stopping only on Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
