//! `vakt-collector quickstart`: a whole Vakt on this machine in one command.
//!
//! Everything goes through the real paths: `init` writes a CA and
//! credentials, the collector serves over mTLS, this machine is registered
//! through the Admin API with the admin credential, and a real agent enrolls
//! with the one-time token (generating its key in its own state directory)
//! and reports over its own certificate. Running it again reuses it all.

use crate::config::CollectorConfig;
use crate::init::{self, InitOptions};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use vakt_proto::v1::admin_client::AdminClient;
use vakt_proto::v1::{self, DeviceClass, DeviceStatus};

pub struct QuickstartOptions {
    pub dir: PathBuf,
    pub grpc_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    /// How often the local agent reports (short, so the fleet fills in fast).
    pub agent_interval: Duration,
}

pub async fn run(opts: QuickstartOptions) -> Result<()> {
    let dir = &opts.dir;
    let config_path = dir.join(init::CONFIG_FILE);
    if !dir.join("ca.pem").exists() {
        println!(
            "Creating {} (CA, collector and admin credentials, configs) …",
            dir.display()
        );
        init::init(&InitOptions {
            data_dir: dir,
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            grpc_listen: opts
                .grpc_listen
                .unwrap_or(crate::config::DEFAULT_GRPC_LISTEN.parse()?),
            http_listen: opts
                .http_listen
                .unwrap_or(crate::config::DEFAULT_HTTP_LISTEN.parse()?),
            admin_name: "quickstart-admin".into(),
        })?;
    } else {
        println!("Reusing {} …", dir.display());
    }
    let mut config = CollectorConfig::load(&config_path)?;
    if let Some(addr) = opts.grpc_listen {
        config.grpc_listen = addr;
    }
    if let Some(addr) = opts.http_listen {
        config.http_listen = addr;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let mut collector = tokio::spawn(crate::server::serve(
        config,
        wait_stop(stop_rx.clone()),
        move |bound| {
            let _ = bound_tx.send(bound);
        },
    ));
    let bound = tokio::select! {
        bound = bound_rx => bound.context("the collector did not start")?,
        failed = &mut collector => {
            failed.context("collector task")??;
            anyhow::bail!("the collector stopped before it was ready");
        }
    };
    let url = init::collector_url("127.0.0.1", bound.grpc.port());
    init::write_vaktctl_config(dir, &url)?;
    let vaktctl_config = dir.join(init::VAKTCTL_FILE);

    let mut admin = admin_client(&url, dir).await?;
    let agent_dir = dir.join("agent");
    let agent_config = dir.join("agent.toml");
    if !agent_dir.join("enrollment.json").exists() {
        let token = register_this_machine(&mut admin).await?;
        println!("Registered this machine; enrolling the local agent with its one-time token …");
        std::fs::create_dir_all(&agent_dir)
            .with_context(|| format!("create {}", agent_dir.display()))?;
        let enrolled = vakt_agent::enroll::enroll(&vakt_agent::enroll::EnrollOptions {
            collector: url.clone(),
            ca_file: dir.join("ca.pem"),
            token,
            state_dir: agent_dir.clone(),
        })
        .await
        .context("enroll the local agent")?;
        println!("Enrolled as device {}.", enrolled.device_id);
    }
    init::write_file(
        &agent_config,
        &format!(
            "collectors = [{url:?}]\ninterval = \"{}\"\n",
            humantime::format_duration(opts.agent_interval)
        ),
        0o644,
    )?;
    let agent_settings = vakt_agent::config::AgentConfig::load(&agent_config)?;
    let mut agent = tokio::spawn(vakt_agent::run(
        agent_settings,
        agent_dir,
        wait_stop(stop_rx.clone()),
    ));

    println!();
    println!(
        "Vakt is running: collector on {url} (metrics on http://{}/metrics).",
        bound.http
    );
    println!("In a second terminal:");
    println!(
        "  cargo run --release --bin vaktctl -- --config {} devices",
        vaktctl_config.display()
    );
    println!("Press Ctrl-C to stop.");
    println!();

    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let outcome = loop {
        tokio::select! {
            _ = crate::shutdown_signal() => break Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = print_fleet(&mut admin).await {
                    println!("(fleet not readable yet: {e:#})");
                }
            }
            finished = &mut agent => {
                break Err(match finished {
                    Ok(Ok(())) => anyhow::anyhow!("the local agent stopped"),
                    Ok(Err(e)) => e.context("the local agent failed"),
                    Err(e) => anyhow::anyhow!("the local agent task failed: {e}"),
                });
            }
            finished = &mut collector => {
                break Err(match finished {
                    Ok(Ok(())) => anyhow::anyhow!("the collector stopped"),
                    Ok(Err(e)) => e.context("the collector failed"),
                    Err(e) => anyhow::anyhow!("the collector task failed: {e}"),
                });
            }
        }
    };
    println!("Stopping …");
    let _ = stop_tx.send(true);
    if !agent.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut agent).await;
    }
    if !collector.is_finished() {
        match tokio::time::timeout(Duration::from_secs(15), &mut collector).await {
            Ok(Ok(Err(e))) => return Err(e),
            Err(_) => anyhow::bail!("the collector did not stop within 15 s"),
            _ => {}
        }
    }
    outcome
}

async fn admin_client(url: &str, dir: &Path) -> Result<AdminClient<Channel>> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| format!("read {}", dir.join(name).display()))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")?))
        .identity(Identity::from_pem(
            read("admin.pem")?,
            read("admin-key.pem")?,
        ));
    let channel = Channel::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect to the collector at {url}"))?;
    Ok(AdminClient::new(channel))
}

/// Registers this machine bound to the strongest identifier it can read, the
/// same way the agent reads it at enrollment.
async fn register_this_machine(admin: &mut AdminClient<Channel>) -> Result<String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let mut request = v1::RegisterDeviceRequest {
        class: DeviceClass::Server as i32,
        department: "IT".into(),
        owner: "quickstart".into(),
        ..Default::default()
    };
    if let Some(serial) = read("/sys/class/dmi/id/product_serial") {
        request.serial = serial;
    } else if let Some(machine_id) = read("/etc/machine-id") {
        request.machine_id = machine_id;
    } else {
        request.unbound = true;
    }
    let response = admin
        .register_device(request)
        .await
        .map_err(|s| anyhow::anyhow!("register this machine: {}", s.message()))?;
    Ok(response.into_inner().token)
}

async fn print_fleet(admin: &mut AdminClient<Channel>) -> Result<()> {
    let devices = admin
        .list_devices(v1::ListDevicesRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .devices;
    let now = vakt_proto::now_unix_ms();
    println!(
        "{:<20} {:<20} {:<8} {:<11} {:>9} {:>8}  OS",
        "DEVICE", "HOSTNAME", "CLASS", "STATUS", "LAST SEEN", "REPORTS"
    );
    for d in devices {
        let status = DeviceStatus::try_from(d.status).unwrap_or(DeviceStatus::Unspecified);
        let class = DeviceClass::try_from(d.class).unwrap_or(DeviceClass::Unspecified);
        let seen = if d.last_seen_at_unix_ms == 0 {
            "never".to_owned()
        } else {
            format!("{}s ago", (now - d.last_seen_at_unix_ms).max(0) / 1000)
        };
        let os = d
            .inventory
            .as_ref()
            .map(|i| format!("{} {}", i.os_name, i.os_version))
            .unwrap_or_default();
        println!(
            "{:<20} {:<20} {:<8} {:<11} {:>9} {:>8}  {}",
            d.device_id,
            d.hostname,
            class.short_name(),
            status.short_name(),
            seen,
            d.last_sequence,
            os
        );
    }
    println!();
    Ok(())
}
