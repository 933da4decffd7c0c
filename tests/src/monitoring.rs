//! Harness for the notification and monitoring tests: a real Alertmanager and
//! a real Prometheus on ephemeral loopback ports (temporary config and
//! storage, stopped on drop), an in-test webhook receiver that checks the
//! HMAC signature, and a way to queue notifications in a stopped
//! collector's outbox (until the alert engine raises them itself).

use crate::{ChildGuard, Collector, TestDir, block_on, free_port, wait_until};
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vakt_collector::alerts::notification::{Notification, NotificationStatus};
use vakt_collector::alerts::notify::http::{HttpClient, Target};

pub const ALERTMANAGER: &str = "prometheus-alertmanager";
pub const PROMETHEUS: &str = "prometheus";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP request from the test: (status, body).
pub fn http(method: &str, url: &str, body: &[u8]) -> Result<(u16, String)> {
    let target = Target::parse(url)?;
    let client = HttpClient::new(&target, None, Duration::from_secs(10))?;
    let method = method.parse().context("method")?;
    let headers = [("content-type", "application/json".to_owned())];
    let response = block_on(client.request(method, &target, &headers, body.to_vec()))?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// GET `url` and parse its JSON (any non-200 is an error).
pub fn get_json(url: &str) -> Result<Value> {
    let (status, body) = http("GET", url, b"")?;
    anyhow::ensure!(status == 200, "GET {url}: HTTP {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
}

fn wait_ready(child: &mut ChildGuard, url: &str, what: &str) {
    wait_until(START_TIMEOUT, what, || {
        if let Some(status) = child.try_status() {
            panic!("{what}: exited with {status}\n{}", child.logs());
        }
        match http("GET", url, b"") {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
            Err(e) => Err(format!("{e:#}")),
        }
    });
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`).
pub struct Alertmanager {
    pub port: u16,
    _child: ChildGuard,
    _dir: TestDir,
}

impl Alertmanager {
    pub fn start() -> Self {
        let dir = TestDir::new("alertmanager");
        let port = free_port();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n\
             receivers:\n  - name: blackhole\n",
        )
        .expect("write alertmanager.yml");
        let mut cmd = Command::new(ALERTMANAGER);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: it would bind a fixed port and wait for peers.
            .arg("--cluster.listen-address=");
        let mut child = ChildGuard::spawn(cmd, "alertmanager", dir.path());
        let url = format!("http://127.0.0.1:{port}/-/ready");
        wait_ready(&mut child, &url, "Alertmanager ready");
        Self {
            port,
            _child: child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /api/v2/alerts` (active, silenced and inhibited alerts).
    pub fn alerts(&self) -> Vec<Value> {
        match get_json(&format!("{}/api/v2/alerts", self.url())) {
            Ok(Value::Array(alerts)) => alerts,
            Ok(other) => panic!("Alertmanager answered no array: {other}"),
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The alerts whose label `name` is `value`.
    pub fn alerts_with(&self, name: &str, value: &str) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["labels"][name] == value)
            .collect()
    }
}

/// A real Prometheus scraping one collector's `/metrics` every second.
pub struct Prometheus {
    pub port: u16,
    child: ChildGuard,
    _dir: TestDir,
}

impl Prometheus {
    pub fn start(scrape_port: u16) -> Self {
        let dir = TestDir::new("prometheus");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: vakt-collector\n    static_configs:\n\
                 \x20     - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let mut cmd = Command::new(PROMETHEUS);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut child = ChildGuard::spawn(cmd, "prometheus", dir.path());
        let url = format!("http://127.0.0.1:{port}/-/ready");
        wait_ready(&mut child, &url, "Prometheus ready");
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// An instant query; returns `data.result`.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={encoded}",
            self.port
        );
        let json = get_json(&url)?;
        anyhow::ensure!(json["status"] == "success", "query {promql}: {json}");
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub fn logs(&self) -> String {
        self.child.logs()
    }
}

/// What the in-test webhook receiver saw of one request.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub idempotency_key: String,
    pub signature_ok: bool,
    pub body: Value,
}

pub type DeliveryLog = Arc<Mutex<Vec<Delivery>>>;

/// An HTTP server that takes webhook POSTs, checks `X-Vakt-Signature` over
/// `"<X-Vakt-Timestamp>.<body>"` with `secret`, logs every request and
/// answers 200 (401 if the signature is wrong). Stops on drop.
pub struct WebhookReceiver {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookReceiver {
    pub fn start(port: u16, secret: &[u8], log: DeliveryLog) -> Self {
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the webhook port");
        listener.set_nonblocking(true).expect("nonblocking");
        let secret = secret.to_vec();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                            let secret = secret.clone();
                            let log = log.clone();
                            async move { receive(&secret, &log, &headers, &body) }
                        },
                    ),
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

fn receive(
    secret: &[u8],
    log: &DeliveryLog,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header("x-vakt-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (t - crate::now_ms() / 1000).abs() < 300);
    let signature_ok = fresh && header("x-vakt-signature") == expected;
    log.lock().expect("log").push(Delivery {
        idempotency_key: header("idempotency-key"),
        signature_ok,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
    if signature_ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNAUTHORIZED
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A notification as the alert engine would write it.
pub fn notification(
    id: &str,
    device: &str,
    status: NotificationStatus,
    starts_at_unix_ms: i64,
) -> Notification {
    let labels: BTreeMap<String, String> = [
        ("alertname", "DeviceOffline"),
        ("device", device),
        ("hostname", device),
        ("department", "it"),
        ("class", "server"),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Notification {
        id: id.to_owned(),
        fingerprint: format!("fp-{device}"),
        status,
        labels,
        annotations: [
            ("summary".to_owned(), format!("{device} is offline")),
            (
                "description".to_owned(),
                "missed 3 report intervals".to_owned(),
            ),
        ]
        .into(),
        starts_at_unix_ms,
        ends_at_unix_ms: (status == NotificationStatus::Resolved).then(crate::now_ms),
        generator_url: format!("vaktctl alerts --device {device}"),
    }
}

/// Queues notifications in the outbox of a collector that is not running
/// (sled allows one process at a time), durably.
pub fn enqueue(collector: &Collector, notifications: &[Notification]) {
    let config = vakt_collector::config::CollectorConfig::load(&collector.config_path())
        .expect("load collector.toml");
    block_on(async {
        let store = vakt_collector::store::Store::open(&config.data, 1 << 20)
            .expect("open the stopped collector's store");
        let outbox = store.outbox().expect("outbox");
        for n in notifications {
            outbox.enqueue(n).expect("enqueue");
        }
        store.close().await.expect("close the store");
    });
}

/// Appends `text` (TOML tables such as `[[notify.webhook]]`) to collector.toml.
pub fn append_config(collector: &Collector, text: &str) {
    let path = collector.config_path();
    let mut config = std::fs::read_to_string(&path).expect("read collector.toml");
    config.push('\n');
    config.push_str(text);
    std::fs::write(&path, config).expect("write collector.toml");
}

/// A Prometheus-text sample of the collector's `/metrics`, e.g.
/// `metric(c, "vakt_collector_notifications_sent_total", "receiver=\"hook\"")`.
pub fn metric(collector: &Collector, name: &str, labels: &str) -> Option<f64> {
    let (_, text) = collector.http_get("/metrics").ok()?;
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}
