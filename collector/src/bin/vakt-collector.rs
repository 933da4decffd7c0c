//! `vakt-collector`: the daemon (`serve`), its one-time setup (`init`) and
//! the one-command demo (`quickstart`).
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vakt_collector::{config, init, quickstart, server};

/// mimalloc instead of glibc malloc: under saturated ingest glibc's
/// `_int_malloc`/`malloc_consolidate`/`unlink_chunk` were 20-25 % of the
/// collector's CPU (the request path allocates per message: h2 frames, prost
/// decoding, log records). Figures in docs/BENCHMARKS.md, "Ingest ceiling ratio".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vakt-collector",
    version,
    about = "Vakt collector: authenticates devices, stores their reports durably, serves vaktctl",
    long_about = "Vakt collector: authenticates every device by its client certificate, stores \
                  health and inventory in sled (acknowledging a report only once it is on disk), \
                  and answers vaktctl.\n\nFirst time: `vakt-collector init --data-dir /var/lib/vakt \
                  --name collector.example.org`, then `vakt-collector serve --config \
                  /var/lib/vakt/collector.toml`. To try everything on this machine: \
                  `vakt-collector quickstart`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA, the collector's server certificate, an admin credential and configs.
    ///
    /// Writes ca.pem/ca-key.pem, server.pem/server-key.pem, admin.pem/admin-key.pem,
    /// collector.toml and vaktctl.toml into DIR. Refuses to overwrite an existing CA.
    Init {
        /// Directory for credentials, configs and the database.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// DNS name or IP address agents use to reach the collector (repeatable; the
        /// first one goes into vaktctl.toml).
        #[arg(long = "name", value_name = "HOST", required = true)]
        names: Vec<String>,
        /// gRPC listen address written to collector.toml.
        #[arg(long, default_value = config::DEFAULT_GRPC_LISTEN)]
        grpc_listen: SocketAddr,
        /// HTTP (/metrics, /healthz, /readyz) listen address written to collector.toml.
        #[arg(long, default_value = config::DEFAULT_HTTP_LISTEN)]
        http_listen: SocketAddr,
        /// Name in the first admin credential (shown in logs and the audit trail).
        #[arg(long, default_value = "admin")]
        admin_name: String,
    },
    /// Run the collector.
    Serve {
        /// The collector.toml written by `init`.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Override grpc_listen from the config.
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// Override http_listen from the config.
        #[arg(long)]
        http_listen: Option<SocketAddr>,
    },
    /// Everything on this machine: CA, collector, this machine registered and its agent
    /// enrolled with a one-time token, printing the fleet as it fills in. Ctrl-C stops it;
    /// running it again reuses the data.
    Quickstart {
        /// Where to keep credentials, configs, data and the agent's state.
        #[arg(long, default_value = "vakt-quickstart")]
        dir: PathBuf,
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// How often the local agent reports.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        agent_interval: Duration,
    },
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            data_dir,
            names,
            grpc_listen,
            http_listen,
            admin_name,
        } => {
            init::init(&init::InitOptions {
                data_dir: &data_dir,
                names,
                grpc_listen,
                http_listen,
                admin_name,
            })?;
            println!("Initialized {}.", data_dir.display());
            println!(
                "Start the collector:  vakt-collector serve --config {}",
                data_dir.join(init::CONFIG_FILE).display()
            );
            println!(
                "Talk to it:           vaktctl --config {} devices",
                data_dir.join(init::VAKTCTL_FILE).display()
            );
            println!("Keep ca-key.pem and admin-key.pem private: they are the keys to the fleet.");
            Ok(())
        }
        Command::Serve {
            config,
            grpc_listen,
            http_listen,
        } => {
            let mut cfg = config::CollectorConfig::load(&config)?;
            if let Some(a) = grpc_listen {
                cfg.grpc_listen = a;
            }
            if let Some(a) = http_listen {
                cfg.http_listen = a;
            }
            runtime()?.block_on(server::serve(
                cfg,
                vakt_collector::shutdown_signal(),
                |bound| {
                    println!(
                        "vakt-collector serving gRPC on {} and HTTP on {}",
                        bound.grpc, bound.http
                    );
                },
            ))
        }
        Command::Quickstart {
            dir,
            grpc_listen,
            http_listen,
            agent_interval,
        } => runtime()?.block_on(quickstart::run(quickstart::QuickstartOptions {
            dir,
            grpc_listen,
            http_listen,
            agent_interval,
        })),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")
}
