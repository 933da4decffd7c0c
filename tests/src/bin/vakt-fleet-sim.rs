//! `vakt-fleet-sim`: a simulated fleet against a real collector, for load
//! tests and capacity planning. See `--help` and docs/BENCHMARKS.md.

#[path = "../sim/backoff.rs"]
mod backoff;
#[path = "../sim/progress.rs"]
mod progress;
#[path = "../sim/stats.rs"]
mod stats;
#[path = "../sim/workload.rs"]
mod workload;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use progress::Progress;
use serde_json::json;
use stats::{Latency, Stats};
use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vakt_collector::ctl::connect::{self as ctl, ConnFlags};
use vakt_proto::v1;
use workload::Device;

const ABOUT: &str = "Simulate a fleet of Vakt agents against a collector and measure it";

const LONG_ABOUT: &str = "\
Simulate a fleet of Vakt agents against a collector and measure it.

Each simulated device is registered through the Admin API (an unbound registration: \
three laptops for every server, spread over eight departments), enrolls with its own \
one-time token, a locally generated P-256 key and a CSR, and then keeps one mTLS \
connection and one Telemetry.Report stream open, exactly like vakt-agent. Devices send \
a batch every --interval, spread evenly over the interval, with realistic values: CPU \
that follows the working day, memory that follows CPU, disks that fill slowly \
(system.filesystem.utilization{mountpoint}), growing network and disk counters.

Every 10 s and at the end it prints the acknowledged reports/s, the acknowledgement \
latency (batch sent -> ack received, which includes the collector's fsync) p50/p99/max, \
errors by gRPC code, and with --collector-pid the collector's resident memory.

Capacity planning: run the fleet you expect (devices, interval, samples per report) \
for 10 minutes or more against a collector on the hardware you plan to use. The fleet \
fits if reports/s matches devices/interval, p99 ack latency stays well below the \
interval, there are no errors and RSS levels off (-o json keeps every progress window: \
ack latency, collector RSS and the machine's load average, so a slow collector can be told \
from a starved machine). Memory: count about 40 KiB of collector RSS per connected agent \
(tests/bench/conn_memory.sh measures it on your build) on top of sled's cache and the data. \
Descriptors: each agent is one TCP connection, so one collector process holds at most its \
open-file limit (ulimit -n) minus a few dozen agents; the same holds for this simulator, \
so for a fleet larger than one process's limit run several simulators, each with its own \
--credentials-cache.

Enrolling many devices: the collector rate-limits Enroll (enroll_rate_per_address, \
default 2/s, and enroll_rate_global in collector.toml). For a big simulated fleet raise \
enroll_rate_per_address, enroll_burst_per_address, enroll_rate_global and \
enroll_burst_global, or use --credentials-cache so that devices are enrolled once and \
reused by later runs. Each device holds one TCP connection: the simulator and the \
collector need an open-file limit above the device count (ulimit -n).

--saturate measures the ingest ceiling instead: --streams devices each keep --in-flight \
batches unacknowledged at all times, for --duration after a --warmup. \
tests/bench/ingest_ratio.sh compares that rate against vakt-noop-collector.";

const AFTER_HELP: &str = "\
Examples:
  # 2,000 devices reporting every 10 s for 2 minutes, with the collector's memory:
  vakt-fleet-sim --vaktctl-config /srv/vakt/vaktctl.toml --devices 2000 --interval 10s \\
      --duration 2m --collector-pid $(pidof vakt-collector) --data-dir /srv/vakt/data

  # The ingest ceiling: 64 streams with 8 batches in flight each, 20 s, as JSON:
  vakt-fleet-sim --vaktctl-config vaktctl.toml --saturate --streams 64 --in-flight 8 \\
      --duration 20s --credentials-cache ./sim-creds -o json";

#[derive(Parser)]
#[command(name = "vakt-fleet-sim", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Args {
    /// Collector URL, e.g. https://collector.example:7443 (overrides the config file)
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// CA certificate (PEM) the collector's certificate is signed by
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Admin certificate (PEM) with a role allowed to register devices (provisioner or admin)
    #[arg(long, value_name = "FILE")]
    admin_cert: Option<PathBuf>,
    /// Private key of the admin certificate (PEM)
    #[arg(long, value_name = "FILE")]
    admin_key: Option<PathBuf>,
    /// A vaktctl.toml (collector, ca, cert, key; paths relative to the file)
    #[arg(long, value_name = "FILE")]
    vaktctl_config: Option<PathBuf>,
    /// TLS name to verify the collector's certificate against [default: the URL's host]
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,

    /// Number of simulated devices (ignored with --saturate, which uses --streams)
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Report interval of every device
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long to report (after all streams are open; after the warm-up with --saturate)
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Samples in each report (an agent sends about 30)
    #[arg(long, default_value_t = 30)]
    samples_per_report: usize,
    /// How many registrations, enrollments and connections to have in progress at once
    #[arg(long, value_name = "K", default_value_t = 32)]
    concurrency_open: usize,

    /// Measure the ingest ceiling: keep --in-flight batches outstanding on each of --streams streams
    #[arg(long)]
    saturate: bool,
    /// Streams (devices) for --saturate
    #[arg(long, value_name = "K", default_value_t = 64)]
    streams: usize,
    /// Unacknowledged batches each stream keeps outstanding with --saturate
    #[arg(long, value_name = "M", default_value_t = 8)]
    in_flight: usize,
    /// Warm-up before measuring with --saturate (not counted)
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,

    /// The collector's process id: report its resident memory (Linux /proc)
    #[arg(long, value_name = "PID")]
    collector_pid: Option<u32>,
    /// The collector's sled directory: report bytes on disk per sample acknowledged in this run
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep device credentials here and reuse them in later runs (skips registration)
    #[arg(long, value_name = "DIR")]
    credentials_cache: Option<PathBuf>,
    /// Register and enroll the devices (into --credentials-cache), then exit
    #[arg(long, requires = "credentials_cache")]
    enroll_only: bool,
    /// How often to print progress
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    progress: Duration,
    /// Format of the final summary (progress lines go to stderr with json)
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone)]
struct Creds {
    device_id: String,
    cert_pem: String,
    key_pem: String,
}

/// Where and how to reach the collector.
struct Target {
    url: String,
    server_name: Option<String>,
    ca_pem: String,
    admin: Option<ctl::Settings>,
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if args.samples_per_report == 0 || args.samples_per_report > 10_000 {
        bail!("--samples-per-report must be between 1 and 10000");
    }
    if args.interval.is_zero() || args.concurrency_open == 0 || args.in_flight == 0 {
        bail!("--interval, --concurrency-open and --in-flight must be above zero");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(run(args))
}

fn target(args: &Args) -> Result<Target> {
    let flags = ConnFlags {
        collector: args.collector.clone(),
        ca: args.ca.clone(),
        cert: args.admin_cert.clone(),
        key: args.admin_key.clone(),
        config: args.vaktctl_config.clone(),
    };
    // No environment and no per-user default: only what was given here counts.
    let env = ctl::Env::new();
    let (url, ca, admin) = match ctl::resolve(&flags, &env) {
        Ok(settings) => (
            settings.collector.clone(),
            settings.ca.clone(),
            Some(settings),
        ),
        Err(e) => match (&args.collector, &args.ca) {
            (Some(url), Some(ca)) => (ctl::normalize_url(url)?, ca.clone(), None),
            _ => return Err(e.context("give --collector and --ca, or --vaktctl-config")),
        },
    };
    let ca_pem =
        std::fs::read_to_string(&ca).with_context(|| format!("read CA {}", ca.display()))?;
    Ok(Target {
        url,
        server_name: args.tls_server_name.clone(),
        ca_pem,
        admin,
    })
}

fn endpoint(target: &Target, identity: Option<&Creds>) -> Result<Endpoint> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&target.ca_pem));
    if let Some(name) = &target.server_name {
        tls = tls.domain_name(name.clone());
    }
    if let Some(creds) = identity {
        tls = tls.identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem));
    }
    Ok(Endpoint::from_shared(target.url.clone())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30)))
}

async fn run(args: Args) -> Result<()> {
    let target = Arc::new(target(&args)?);
    let count = if args.saturate {
        args.streams
    } else {
        args.devices
    };
    let devices: Vec<Arc<Device>> = (0..count)
        .map(|i| Arc::new(Device::new(i, args.samples_per_report)))
        .collect();
    let creds = credentials(&args, &target, &devices).await?;
    if args.enroll_only {
        eprintln!(
            "{} devices enrolled; credentials in {}",
            creds.len(),
            args.credentials_cache
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        );
        return Ok(());
    }
    let stats = Arc::new(Stats::default());
    let summary = simulate(&args, &target, &devices, &creds, &stats).await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Format::Text => print_summary(&summary),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Registration and enrollment
// ---------------------------------------------------------------------------

async fn credentials(
    args: &Args,
    target: &Arc<Target>,
    devices: &[Arc<Device>],
) -> Result<Vec<Creds>> {
    let cache_file = args
        .credentials_cache
        .as_ref()
        .map(|d| d.join("devices.jsonl"));
    let mut have = match &cache_file {
        Some(file) if file.exists() => load_cache(file)?,
        _ => Vec::new(),
    };
    have.truncate(devices.len());
    if have.len() == devices.len() {
        return Ok(have);
    }
    let missing = &devices[have.len()..];
    let settings = target.admin.as_ref().ok_or_else(|| {
        anyhow!(
            "{} devices need registering: give an admin credential (--admin-cert/--admin-key or --vaktctl-config)",
            missing.len()
        )
    })?;
    if missing.len() > 30 {
        eprintln!(
            "enrolling {} devices. By default the collector allows Enroll at \
             enroll_rate_per_address = 2/s (burst 30) and enroll_rate_global = 50/s (burst 300): \
             unless they are raised in collector.toml, this takes a while.",
            missing.len()
        );
    }
    let admin = ctl::connect(settings).await?.client;
    let enroll_channel = endpoint(target, None)?
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connect to {}", target.url))?;
    let enroll = v1::enrollment_client::EnrollmentClient::new(enroll_channel);
    let mut writer = match &cache_file {
        Some(file) => {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .with_context(|| format!("open {}", file.display()))?,
            )
        }
        None => None,
    };
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(args.concurrency_open));
    let warned = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for device in missing {
        let (admin, enroll, limit, device, warned) = (
            admin.clone(),
            enroll.clone(),
            limit.clone(),
            device.clone(),
            warned.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let creds = enroll_one(admin, enroll, &device, &warned).await?;
            Ok::<_, anyhow::Error>((device.index, creds))
        });
    }
    let mut fresh = Vec::with_capacity(missing.len());
    while let Some(joined) = tasks.join_next().await {
        let (index, creds) = joined??;
        if let Some(w) = writer.as_mut() {
            let line = json!({"index": index, "device_id": creds.device_id, "cert_pem": creds.cert_pem, "key_pem": creds.key_pem});
            writeln!(w, "{line}")?;
        }
        fresh.push((index, creds));
        if fresh.len() % 1000 == 0 {
            eprintln!(
                "  {} enrolled ({:.0}/s)",
                fresh.len(),
                fresh.len() as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(w) = writer.as_mut() {
        w.sync_all()?;
    }
    fresh.sort_by_key(|(i, _)| *i);
    eprintln!(
        "registered and enrolled {} devices in {:.1} s",
        fresh.len(),
        started.elapsed().as_secs_f64()
    );
    have.extend(fresh.into_iter().map(|(_, c)| c));
    Ok(have)
}

fn load_cache(file: &Path) -> Result<Vec<Creds>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let mut rows: Vec<(u64, Creds)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("parse {}", file.display()))?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{}: a line lacks {k}", file.display()))
        };
        rows.push((
            v["index"].as_u64().unwrap_or(u64::MAX),
            Creds {
                device_id: field("device_id")?,
                cert_pem: field("cert_pem")?,
                key_pem: field("key_pem")?,
            },
        ));
    }
    rows.sort_by_key(|(i, _)| *i);
    Ok(rows.into_iter().map(|(_, c)| c).collect())
}

/// Retries what a busy or rate-limiting collector refuses for now.
fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::ResourceExhausted | tonic::Code::Unavailable
    )
}

async fn enroll_one(
    mut admin: v1::admin_client::AdminClient<Channel>,
    mut enroll: v1::enrollment_client::EnrollmentClient<Channel>,
    device: &Device,
    warned: &AtomicBool,
) -> Result<Creds> {
    let register = v1::RegisterDeviceRequest {
        unbound: true,
        model: match device.class {
            workload::Class::Laptop => "SimBook 14".into(),
            workload::Class::Server => "SimServer R2".into(),
        },
        class: device.class.proto() as i32,
        department: workload::department(device.index).into(),
        owner: format!("sim-user-{}", device.index),
        labels: vec![v1::Attribute {
            key: "simulated".into(),
            value: "vakt-fleet-sim".into(),
        }],
        ..Default::default()
    };
    let mut backoff = Duration::from_millis(200);
    let registration = loop {
        match admin.register_device(register.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if retryable(&s) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(s) => bail!("RegisterDevice: {:?}: {}", s.code(), s.message()),
        }
    };
    let key = rcgen::KeyPair::generate()?;
    // No subject alternative names: the collector names the certificate itself
    // (and refuses CSRs that ask for names).
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device.hostname());
    let csr_pem = params.serialize_request(&key)?.pem()?;
    let request = v1::EnrollRequest {
        token: registration.token,
        csr_pem,
        hardware: Some(v1::HardwareFacts {
            hostname: device.hostname(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "13".into(),
            agent_version: concat!("vakt-fleet-sim/", env!("CARGO_PKG_VERSION")).into(),
            ..Default::default()
        }),
    };
    let mut backoff = Duration::from_millis(200);
    let response = loop {
        match enroll.enroll(request.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if retryable(&s) => {
                if s.code() == tonic::Code::ResourceExhausted
                    && !warned.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "the collector is rate-limiting enrollment ({}); retrying. Raise \
                         enroll_rate_per_address / enroll_burst_per_address / enroll_rate_global / \
                         enroll_burst_global in collector.toml for big simulated fleets.",
                        s.message()
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(s) => bail!("Enroll: {:?}: {}", s.code(), s.message()),
        }
    };
    Ok(Creds {
        device_id: response.device_id,
        cert_pem: response.certificate_pem,
        key_pem: key.serialize_pem(),
    })
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

struct Plan {
    saturate: bool,
    interval: Duration,
    in_flight: usize,
    samples: u64,
    /// First sequence number: above anything an earlier run of this tool sent.
    base_sequence: u64,
}

async fn simulate(
    args: &Args,
    target: &Arc<Target>,
    devices: &[Arc<Device>],
    creds: &[Creds],
    stats: &Arc<Stats>,
) -> Result<serde_json::Value> {
    let plan = Arc::new(Plan {
        saturate: args.saturate,
        interval: args.interval,
        in_flight: args.in_flight,
        samples: args.samples_per_report as u64,
        base_sequence: u64::try_from(vakt_proto::now_unix_ms())? * 1000,
    });
    let (go_tx, go_rx) = watch::channel::<Option<Instant>>(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let limit = Arc::new(Semaphore::new(args.concurrency_open));
    let n = devices.len();
    let open_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (device, creds)) in devices.iter().zip(creds).enumerate() {
        let phase = args.interval.mul_f64(i as f64 / n as f64);
        let ctx = DeviceCtx {
            device: device.clone(),
            creds: creds.clone(),
            target: target.clone(),
            plan: plan.clone(),
            stats: stats.clone(),
            phase,
            index: i,
        };
        let (go, stop, limit, opened, failed) = (
            go_rx.clone(),
            stop_rx.clone(),
            limit.clone(),
            opened.clone(),
            failed.clone(),
        );
        tasks.spawn(async move {
            let stream = {
                let _permit = limit.acquire_owned().await;
                ctx.open().await
            };
            match stream {
                Ok(stream) => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    ctx.run(stream, go, stop).await;
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    ctx.stats.error("connect");
                    if failed.load(Ordering::Relaxed) <= 3 {
                        eprintln!("device {}: {e:#}", ctx.creds.device_id);
                    }
                }
            }
        });
    }
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened_n = opened.load(Ordering::Relaxed);
    eprintln!(
        "opened {opened_n} of {n} mTLS connections and report streams in {:.1} s{}",
        open_started.elapsed().as_secs_f64(),
        if opened_n < n { " (see errors)" } else { "" }
    );
    if opened_n == 0 {
        bail!("no device could connect to {}", target.url);
    }
    let start = Instant::now();
    let _ = go_tx.send(Some(start));

    let load_before = progress::load_average();
    let mut progress = Progress::new(args.progress, args.collector_pid, stats.clone());
    let measured_from = if args.saturate {
        progress.run_until(start + args.warmup, false).await;
        stats.reset();
        Instant::now()
    } else {
        start
    };
    let measured_until = measured_from + args.duration;
    progress.last = Instant::now();
    progress.last_acked = 0;
    progress.run_until(measured_until, true).await;
    let measured = measured_from.elapsed();
    let acked = stats.acked.load(Ordering::Relaxed);
    let sent = stats.sent.load(Ordering::Relaxed);
    let samples = stats.samples_acked.load(Ordering::Relaxed);
    // Stop sending; let outstanding acknowledgements arrive (counted in latency, not in the rate).
    let _ = stop_tx.send(true);
    let drain = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drain.is_err() {
        stats.error("unacked-at-end");
        tasks.abort_all();
    }
    let latency = Latency::of(&stats.all_sorted());
    let secs = measured.as_secs_f64();
    let rss = args.collector_pid.and_then(stats::rss);
    let disk = match &args.data_dir {
        Some(dir) => {
            Some(stats::dir_bytes(dir).with_context(|| format!("size of {}", dir.display()))?)
        }
        None => None,
    };
    Ok(json!({
        "mode": if args.saturate { "saturate" } else { "fleet" },
        "collector": target.url,
        "devices": n,
        "connected": opened_n,
        "interval_s": if args.saturate { None } else { Some(args.interval.as_secs_f64()) },
        "in_flight": if args.saturate { Some(args.in_flight) } else { None },
        "samples_per_report": args.samples_per_report,
        "measured_s": secs,
        "sent": sent,
        "acked": acked,
        "expected_reports_per_s": if args.saturate { None } else { Some(n as f64 / args.interval.as_secs_f64()) },
        "reports_per_s": acked as f64 / secs,
        "samples_per_s": samples as f64 / secs,
        "ack_latency_ms": {"p50": latency.p50, "p99": latency.p99, "max": latency.max, "count": latency.count},
        "errors": stats.errors(),
        "collector_rss_bytes": rss.map(|r| r.0),
        "collector_peak_rss_bytes": rss.map(|r| r.1),
        "data_dir_bytes": disk,
        "data_dir_bytes_per_sample_acked": disk.map(|d| if samples == 0 { 0.0 } else { d as f64 / samples as f64 }),
        "load_1m_at_start": load_before,
        "load_1m_at_end": progress::load_average(),
        "windows": progress.windows,
    }))
}

struct DeviceCtx {
    device: Arc<Device>,
    creds: Creds,
    target: Arc<Target>,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    phase: Duration,
    /// The device's position in the fleet (seeds its backoff jitter).
    index: usize,
}

struct ReportStream {
    channel: Channel,
    tx: mpsc::Sender<v1::ReportBatch>,
    acks: tonic::Streaming<v1::ReportAck>,
}

impl DeviceCtx {
    async fn open(&self) -> Result<ReportStream> {
        let channel = endpoint(&self.target, Some(&self.creds))?
            .connect()
            .await
            .with_context(|| format!("connect to {}", self.target.url))?;
        self.stream(channel).await
    }

    async fn stream(&self, channel: Channel) -> Result<ReportStream> {
        let (tx, rx) = mpsc::channel(self.plan.in_flight.max(4));
        let acks = v1::telemetry_client::TelemetryClient::new(channel.clone())
            .report(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow!("Report: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        Ok(ReportStream { channel, tx, acks })
    }

    async fn run(
        &self,
        mut stream: ReportStream,
        mut go: watch::Receiver<Option<Instant>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Ok(start) = go
            .wait_for(Option::is_some)
            .await
            .map(|s| s.unwrap_or_else(Instant::now))
        else {
            return;
        };
        let plan = &self.plan;
        let mut tick = tokio::time::interval_at((start + self.phase).into(), plan.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sequence = plan.base_sequence;
        let mut last_ms = 0i64;
        let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut stopping = *stop.borrow();
        let mut backoff = backoff::Backoff::for_device(self.index);
        loop {
            if stopping && pending.is_empty() {
                return;
            }
            if plan.saturate && !stopping {
                while pending.len() < plan.in_flight {
                    let batch = self.next_batch(&mut sequence, &mut last_ms);
                    pending.push_back((batch.sequence, Instant::now()));
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    if stream.tx.send(batch).await.is_err() {
                        break;
                    }
                }
            }
            let failure = tokio::select! {
                _ = tick.tick(), if !plan.saturate && !stopping => {
                    let batch = self.next_batch(&mut sequence, &mut last_ms);
                    pending.push_back((batch.sequence, Instant::now()));
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    match stream.tx.try_send(batch) {
                        Ok(()) => None,
                        // The stream is backed up (HTTP/2 flow control): the collector is behind.
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            pending.pop_back();
                            self.stats.error("client-backlog");
                            None
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Some("stream-closed".to_owned()),
                    }
                }
                changed = stop.changed(), if !stopping => {
                    stopping = changed.is_err() || *stop.borrow();
                    None
                }
                ack = stream.acks.message() => match ack {
                    Ok(Some(ack)) => {
                        backoff.reset();
                        let now = Instant::now();
                        while pending.front().is_some_and(|(s, _)| *s <= ack.acked_sequence) {
                            if let Some((_, sent)) = pending.pop_front() {
                                self.stats.ack(now.duration_since(sent), plan.samples);
                            }
                        }
                        None
                    }
                    Ok(None) => Some("stream-ended".to_owned()),
                    Err(status) => Some(format!("{:?}", status.code())),
                },
            };
            if let Some(code) = failure {
                self.stats.error(&code);
                pending.clear();
                if stopping {
                    return;
                }
                // Reconnect like vakt-agent: exponential backoff, full jitter.
                let wait = tokio::time::sleep(backoff.next_delay());
                tokio::select! {
                    () = wait => {}
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            return;
                        }
                    }
                }
                match self.stream(stream.channel.clone()).await {
                    Ok(s) => stream = s,
                    Err(_) => {
                        self.stats.error("reconnect");
                    }
                }
            }
        }
    }

    fn next_batch(&self, sequence: &mut u64, last_ms: &mut i64) -> v1::ReportBatch {
        *sequence += 1;
        // Strictly increasing timestamps, even at thousands of batches per second.
        let now = vakt_proto::now_unix_ms().max(*last_ms + 1);
        *last_ms = now;
        self.device.batch(*sequence, now)
    }
}

fn print_summary(s: &serde_json::Value) {
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |v| format!("{v:.1}"));
    let mib = |v: &serde_json::Value| {
        v.as_u64().map_or("-".to_owned(), |v| {
            format!("{:.0} MiB", v as f64 / 1048576.0)
        })
    };
    println!("mode                {}", s["mode"].as_str().unwrap_or("?"));
    println!(
        "collector           {}",
        s["collector"].as_str().unwrap_or("?")
    );
    println!(
        "devices             {} ({} connected)",
        s["devices"], s["connected"]
    );
    println!("samples per report  {}", s["samples_per_report"]);
    println!(
        "measured            {:.1} s",
        s["measured_s"].as_f64().unwrap_or(0.0)
    );
    println!("reports sent/acked  {} / {}", s["sent"], s["acked"]);
    if let Some(expected) = s["expected_reports_per_s"].as_f64() {
        println!(
            "reports/s           {:.1} (expected {expected:.1})",
            s["reports_per_s"].as_f64().unwrap_or(0.0)
        );
    } else {
        println!(
            "reports/s           {:.1}",
            s["reports_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "samples/s           {:.0}",
        s["samples_per_s"].as_f64().unwrap_or(0.0)
    );
    let l = &s["ack_latency_ms"];
    println!(
        "ack latency ms      p50 {}  p99 {}  max {}",
        ms(&l["p50"]),
        ms(&l["p99"]),
        ms(&l["max"])
    );
    println!("errors              {}", s["errors"]);
    if !s["collector_rss_bytes"].is_null() {
        println!(
            "collector RSS       {} (peak {})",
            mib(&s["collector_rss_bytes"]),
            mib(&s["collector_peak_rss_bytes"])
        );
    }
    if !s["data_dir_bytes"].is_null() {
        println!(
            "data dir            {} bytes, {:.1} bytes per sample acked in this run",
            s["data_dir_bytes"],
            s["data_dir_bytes_per_sample_acked"].as_f64().unwrap_or(0.0)
        );
    }
}
