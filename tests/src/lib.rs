//! Harness for Vakt's integration tests: builds the real binaries once per test
//! process, runs them on ephemeral loopback ports in temporary directories, and
//! cleans their processes up even when a test panics (printing their logs then).
//!
//! Blocking helpers (processes, `vaktctl`) may be called from async tests that
//! use the multi-threaded runtime; helpers that need gRPC from sync code run it
//! on a private runtime on another thread ([`block_on`]).
#![forbid(unsafe_code)]
// Test harness code: a broken expectation must abort the test with a message,
// which is exactly what `expect`/`unwrap` do here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;
use std::fmt::Write as _;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vakt_proto::v1;

pub use serde_json;
pub use tonic;
pub use vakt_proto;

pub mod alerts;
pub mod fleet_queries;
pub mod identity;
pub mod monitoring;

/// How long a collector gets to answer health `SERVING` after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for a one-shot command (`vaktctl`, `vakt-agent enroll`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The server name tests verify the collector's certificate against.
pub const SERVER_NAME: &str = "localhost";

// ---------------------------------------------------------------------------
// Building and locating the binaries
// ---------------------------------------------------------------------------

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/<profile>`: the test executable lives in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

/// Builds `vakt-agent`, `vakt-collector` and `vaktctl` (once per test process)
/// with the profile and target dir of this test binary, and returns the
/// directory that holds them.
pub fn bin_dir() -> &'static Path {
    let built = BUILT.get_or_init(|| {
        let dir = profile_dir();
        if std::env::var_os("VAKT_TESTS_SKIP_BUILD").is_some() {
            // For iterating on the tests alone: use the binaries as they are.
            return Ok(dir);
        }
        let cargo = std::env::var("CARGO")
            .ok()
            .or_else(|| option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".to_owned());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace_root()).args([
            "build",
            "--bins",
            "-p",
            "vakt-agent",
            "-p",
            "vakt-collector",
        ]);
        // cargo test sets CARGO_MANIFEST_DIR for the test binary; ring's build
        // script reruns when it changes, so inheriting it would rebuild ring
        // and everything above it on every alternation with `cargo test`.
        cmd.env_remove("CARGO_MANIFEST_DIR");
        if let Some(target_dir) = dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let started = Instant::now();
        eprintln!("vakt-tests: building the binaries ({cmd:?})");
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run {cargo}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`cargo build` of the binaries failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprintln!(
            "vakt-tests: binaries built in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(dir)
    });
    match built {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// The path of one of the workspace's binaries, built if needed.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} does not exist after cargo build",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// True when running in CI (`CI=true`), where missing programs are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether an external program the test needs is on `PATH`. In CI a missing
/// program fails the test; elsewhere it prints why the test is skipped and
/// returns false, and the test should return early.
pub fn require_program(program: &str, why: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    require(found, &format!("{program} is not installed ({why})"))
}

/// Whether a real component the test needs is available: `available` true
/// passes; false fails the test in CI (where .ci/run must install it), and
/// elsewhere prints `what` and returns false so the test can return early.
pub fn require(available: bool, what: &str) -> bool {
    if !available {
        assert!(!in_ci(), "{what}; CI must provide it (.ci/run installs it)");
        eprintln!("SKIPPED: {what} (with CI=true this fails)");
    }
    available
}

/// Polls `probe` every 150 ms until it returns `Ok`, or panics after `timeout`
/// with `what` and the last `Err` it returned.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> std::result::Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!(
                        "timed out after {timeout:?} waiting for {what}; last observation: {last}"
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Async version of [`wait_until`].
pub async fn wait_until_async<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!(
                        "timed out after {timeout:?} waiting for {what}; last observation: {last}"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Runs a future to completion on a private current-thread runtime on another
/// thread, so that sync helpers can use gRPC from sync and async tests alike.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build tokio runtime")
                    .block_on(fut)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// This machine's hostname, as the kernel reports it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .expect("read hostname")
        .trim()
        .to_owned()
}

/// Contents of /etc/machine-id, if this machine has one.
pub fn machine_id() -> Option<String> {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Writes `contents` to `path` with mode 0600 (tokens, keys).
pub fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    vakt_proto::now_unix_ms()
}

/// A temporary directory that is kept (and its path printed) when the test
/// fails, so its logs and data can be inspected.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vakt-{prefix}-"))
            .tempdir()
            .expect("create temp dir");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("VAKT_TESTS_KEEP_FAILED").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept test directory {}", self.dir.path().display());
        }
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

static SPAWNED: AtomicU32 = AtomicU32::new(0);

/// A child process that is SIGKILLed and reaped when dropped. Its stdout and
/// stderr go to files, which are printed when the test is panicking.
pub struct ChildGuard {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and output captured in `log_dir`.
    pub fn spawn(mut cmd: Command, name: &str, log_dir: &Path) -> Self {
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let stdout = log_dir.join(format!("{name}-{n}.stdout.log"));
        let stderr = log_dir.join(format!("{name}-{n}.stderr.log"));
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create stdout log"))
            .stderr(std::fs::File::create(&stderr).expect("create stderr log"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            exited: None,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// Sends `signal` (no-op if the process was already reaped).
    pub fn signal(&self, signal: Signal) {
        if self.exited.is_none() {
            let _ = nix::sys::signal::kill(self.pid(), signal);
        }
    }

    /// The exit status, if the process has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed child");
        self.exited = Some(status);
        status
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The tail of both logs, for failure messages.
    pub fn logs(&self) -> String {
        fn tail(text: &str) -> &str {
            const MAX: usize = 8000;
            if text.len() <= MAX {
                return text;
            }
            let mut start = text.len() - MAX;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            &text[start..]
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "----- {} stdout ({}) -----",
            self.name,
            self.stdout.display()
        );
        out.push_str(tail(&self.stdout()));
        let _ = writeln!(
            out,
            "\n----- {} stderr ({}) -----",
            self.name,
            self.stderr.display()
        );
        out.push_str(tail(&self.stderr()));
        let _ = writeln!(out, "\n----- end of {} -----", self.name);
        out
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let status = self.kill9();
        if std::thread::panicking() {
            eprintln!("{} exited with {status}\n{}", self.name, self.logs());
        }
    }
}

/// What a finished one-shot command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub command: String,
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// stdout parsed as JSON (panics with the output if it does not parse).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion (stdin closed), killing it after `timeout`.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Output {
    let command = format!("{cmd:?}");
    let mut stdout = tempfile::tempfile().expect("temp file");
    let mut stderr = tempfile::tempfile().expect("temp file");
    cmd.stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("clone fd"))
        .stderr(stderr.try_clone().expect("clone fd"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let read = |file: &mut std::fs::File| {
        use std::io::{Read, Seek};
        let mut text = String::new();
        file.rewind().expect("rewind");
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).expect("read output");
        text.push_str(&String::from_utf8_lossy(&bytes));
        text
    };
    Output {
        command,
        code: status.code(),
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

// ---------------------------------------------------------------------------
// gRPC clients
// ---------------------------------------------------------------------------

/// A TLS channel to `127.0.0.1:port`, verifying the server against `ca_pem`
/// under the name `localhost`, presenting `identity` (cert PEM, key PEM) if given.
pub async fn connect(port: u16, ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .domain_name(SERVER_NAME)
        .ca_certificate(Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect()
        .await?;
    Ok(channel)
}

/// Asks the standard `grpc.health.v1.Health` service for the overall status.
pub async fn health_status(port: u16, ca_pem: &str) -> Result<i32> {
    let channel = connect(port, ca_pem, None).await?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = tokio::time::timeout(
        Duration::from_secs(3),
        client.check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .context("health check timed out")??;
    Ok(response.into_inner().status)
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

/// A client certificate and key (PEM), and the CA the collector uses.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub device_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl Credentials {
    /// The credentials `vakt-agent enroll` left in a state directory.
    pub fn from_state_dir(state_dir: &Path) -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(state_dir.join(name))
                .unwrap_or_else(|e| panic!("read {}: {e}", state_dir.join(name).display()))
        };
        let enrollment: Value =
            serde_json::from_str(&read("enrollment.json")).expect("enrollment.json is JSON");
        Self {
            device_id: enrollment["device_id"]
                .as_str()
                .expect("enrollment.json has device_id")
                .to_owned(),
            cert_pem: read("cert.pem"),
            key_pem: read("key.pem"),
            ca_pem: read("ca.pem"),
        }
    }
}

/// Enrolls directly over gRPC with a fresh key pair and CSR made here (what
/// the agent does), for tests that speak the wire protocol themselves.
pub async fn enroll_direct(
    port: u16,
    ca_pem: &str,
    token: &str,
    hardware: v1::HardwareFacts,
) -> std::result::Result<Credentials, tonic::Status> {
    let key = rcgen::KeyPair::generate().expect("generate key pair");
    // No subject alternative names: the collector names the certificate itself.
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vakt-test-device");
    let csr_pem = params
        .serialize_request(&key)
        .expect("serialize CSR")
        .pem()
        .expect("CSR PEM");
    let channel = connect(port, ca_pem, None)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:#}")))?;
    let response = v1::enrollment_client::EnrollmentClient::new(channel)
        .enroll(v1::EnrollRequest {
            token: token.to_owned(),
            csr_pem,
            hardware: Some(hardware),
        })
        .await?
        .into_inner();
    Ok(Credentials {
        device_id: response.device_id,
        cert_pem: response.certificate_pem,
        key_pem: key.serialize_pem(),
        ca_pem: ca_pem.to_owned(),
    })
}

/// Hardware facts of a made-up device, for direct enrollment with unbound tokens.
pub fn test_hardware(hostname: &str) -> v1::HardwareFacts {
    v1::HardwareFacts {
        hostname: hostname.to_owned(),
        os_name: "Debian GNU/Linux".to_owned(),
        os_version: "13".to_owned(),
        agent_version: "vakt-tests".to_owned(),
        ..Default::default()
    }
}

/// One batch with one `system.cpu.utilization` sample at `timestamp_ms`.
pub fn cpu_batch(sequence: u64, timestamp_ms: i64, value: f64) -> v1::ReportBatch {
    v1::ReportBatch {
        sequence,
        collected_at_unix_ms: now_ms(),
        samples: vec![v1::Sample {
            metric: "system.cpu.utilization".to_owned(),
            attributes: vec![],
            value,
            timestamp_unix_ms: timestamp_ms,
        }],
        ..Default::default()
    }
}

/// Opens a Report stream, sends `batches` and reads acknowledgements until one
/// reaches `until_ack` (or the stream ends). Returns every acked sequence seen,
/// or the status the call failed with.
pub async fn report(
    channel: Channel,
    batches: Vec<v1::ReportBatch>,
    until_ack: u64,
) -> std::result::Result<Vec<u64>, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(batches.len().max(1));
    for batch in batches {
        tx.send(batch).await.expect("queue batch");
    }
    let mut client = v1::telemetry_client::TelemetryClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024);
    let call = async {
        let mut acks = client
            .report(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut seen = Vec::new();
        while let Some(ack) = acks.message().await? {
            seen.push(ack.acked_sequence);
            if ack.acked_sequence >= until_ack {
                break;
            }
        }
        Ok(seen)
    };
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "no ack within 20 s (test)",
            ))
        });
    drop(tx);
    result
}

// ---------------------------------------------------------------------------
// The collector
// ---------------------------------------------------------------------------

/// A registration made with `vaktctl register`.
#[derive(Clone, Debug)]
pub struct Registration {
    pub device_id: String,
    pub token: String,
    pub json: Value,
}

/// A collector data directory (`vakt-collector init`) and, once served, its process.
pub struct Collector {
    child: Option<ChildGuard>,
    /// The data directory given to `init` (holds ca.pem, collector.toml, ...).
    pub dir: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    tmp: TestDir,
}

impl Collector {
    /// `vakt-collector init` in a fresh temporary directory (not served yet).
    pub fn init() -> Self {
        let tmp = TestDir::new("collector");
        let dir = tmp.path().join("collector");
        let grpc_port = free_port();
        let http_port = free_port();
        let mut cmd = Command::new(bin("vakt-collector"));
        cmd.arg("init")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--name", "localhost", "--name", "127.0.0.1"])
            .arg("--grpc-listen")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http_port}"));
        run_command(cmd, COMMAND_TIMEOUT).assert_success();
        for file in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "admin.pem",
            "admin-key.pem",
            "collector.toml",
            "vaktctl.toml",
        ] {
            assert!(
                dir.join(file).is_file(),
                "vakt-collector init did not create {file} in {}",
                dir.display()
            );
        }
        Self {
            child: None,
            dir,
            grpc_port,
            http_port,
            tmp,
        }
    }

    /// `init`, then `serve`, then wait until health answers SERVING.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Collector::start`], with `collector.toml` keys set first
    /// (values are TOML, e.g. `("report_interval", "\"1s\"")`).
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let mut collector = Self::init();
        for (key, value) in settings {
            collector.set_config(key, value);
        }
        collector.serve();
        collector
    }

    /// The test's temporary directory (parent of `dir`), for agents, tokens, logs.
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("collector.toml")
    }

    pub fn vaktctl_config(&self) -> PathBuf {
        self.dir.join("vaktctl.toml")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.pem")).expect("read ca.pem")
    }

    /// The admin certificate and key made by `init`.
    pub fn admin_identity(&self) -> (String, String) {
        (
            std::fs::read_to_string(self.dir.join("admin.pem")).expect("read admin.pem"),
            std::fs::read_to_string(self.dir.join("admin-key.pem")).expect("read admin-key.pem"),
        )
    }

    /// Sets a top-level key of `collector.toml` (replacing an existing line).
    pub fn set_config(&self, key: &str, value: &str) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).expect("read collector.toml");
        let line = format!("{key} = {value}");
        let mut replaced = false;
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| {
                let is_key = l
                    .split_once('=')
                    .is_some_and(|(k, _)| k.trim() == key && !l.trim_start().starts_with('#'));
                if is_key && !replaced {
                    replaced = true;
                    line.clone()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if !replaced {
            // Top of the file: before any [table], so it stays a top-level key.
            lines.insert(0, line);
        }
        std::fs::write(&path, lines.join("\n") + "\n").expect("write collector.toml");
    }

    /// Starts `vakt-collector serve` and waits until it is ready.
    pub fn serve(&mut self) {
        self.spawn_serve();
        self.wait_ready();
    }

    /// Starts `vakt-collector serve` without waiting.
    pub fn spawn_serve(&mut self) {
        assert!(self.child.is_none(), "collector already running");
        let mut cmd = Command::new(bin("vakt-collector"));
        cmd.arg("serve").arg("--config").arg(self.config_path());
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        self.child = Some(ChildGuard::spawn(cmd, "vakt-collector", self.tmp.path()));
    }

    /// Polls the gRPC health service (TLS, CA only) until it answers SERVING;
    /// fails early if the process exits.
    pub fn wait_ready(&mut self) {
        let ca = self.ca_pem();
        let port = self.grpc_port;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_status()
            {
                panic!(
                    "vakt-collector serve exited with {status} before it was ready\n{}",
                    child.logs()
                );
            }
            let last = match block_on(health_status(port, &ca)) {
                Ok(SERVING) => return,
                Ok(other) => format!("health status {other}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "collector on 127.0.0.1:{port} not SERVING within {READY_TIMEOUT:?}: {last}"
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The running process (panics if not running).
    pub fn process(&mut self) -> &mut ChildGuard {
        self.child.as_mut().expect("collector is running")
    }

    /// Takes the process out of this helper (e.g. to check how it exits).
    pub fn take_process(&mut self) -> Option<ChildGuard> {
        self.child.take()
    }

    /// SIGKILL the collector and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9();
        }
    }

    /// SIGKILL (if running), then serve again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.serve();
    }

    /// `vaktctl --config DIR/vaktctl.toml ARGS…`
    pub fn vaktctl(&self, args: &[&str]) -> Output {
        vaktctl_with_config(&self.vaktctl_config(), args)
    }

    /// `vaktctl … ARGS…`, asserting exit 0 and parsing stdout as JSON.
    pub fn vaktctl_json(&self, args: &[&str]) -> Value {
        self.vaktctl(args).assert_success().json()
    }

    /// `vaktctl register ARGS… -o json`.
    pub fn register(&self, args: &[&str]) -> Registration {
        let mut all = vec!["register"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let json = self.vaktctl_json(&all);
        let field = |name: &str| {
            json[name]
                .as_str()
                .unwrap_or_else(|| panic!("register output lacks {name:?}: {json}"))
                .to_owned()
        };
        Registration {
            device_id: field("device_id"),
            token: field("token"),
            json,
        }
    }

    /// `vaktctl register --unbound -o json`.
    pub fn register_unbound(&self) -> Registration {
        self.register(&["--unbound"])
    }

    /// `vaktctl devices -o json`.
    pub fn devices(&self) -> Vec<Value> {
        match self.vaktctl_json(&["devices", "-o", "json"]) {
            Value::Array(devices) => devices,
            other => panic!("vaktctl devices -o json printed no array: {other}"),
        }
    }

    /// `vaktctl device show ID -o json`.
    pub fn device(&self, id: &str) -> Value {
        self.vaktctl_json(&["device", "show", id, "-o", "json"])
    }

    /// `vaktctl metrics DEVICE METRIC --since SINCE -o json`, flattened to
    /// `(timestamp_unix_ms, value)` over all series.
    pub fn metric_points(&self, device: &str, metric: &str, since: &str) -> Vec<(i64, f64)> {
        let json = self.vaktctl_json(&["metrics", device, metric, "--since", since, "-o", "json"]);
        metric_points_of(&json)
    }

    /// A TLS channel presenting the admin certificate.
    pub async fn admin_channel(&self) -> Result<Channel> {
        let (cert, key) = self.admin_identity();
        connect(self.grpc_port, &self.ca_pem(), Some((&cert, &key))).await
    }

    /// A TLS channel presenting a device's certificate.
    pub async fn device_channel(&self, creds: &Credentials) -> Result<Channel> {
        connect(
            self.grpc_port,
            &self.ca_pem(),
            Some((&creds.cert_pem, &creds.key_pem)),
        )
        .await
    }

    /// Registers an unbound device and enrolls it over gRPC from the test.
    pub async fn enroll_test_device(&self, hostname: &str) -> Credentials {
        let registration = self.register_unbound();
        let creds = enroll_direct(
            self.grpc_port,
            &self.ca_pem(),
            &registration.token,
            test_hardware(hostname),
        )
        .await
        .unwrap_or_else(|status| panic!("direct enrollment failed: {status:?}"));
        assert_eq!(creds.device_id, registration.device_id);
        creds
    }

    /// GET `path` from the HTTP listener; returns (status code, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// Where this collector's agents keep state: `tmp/NAME`.
    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// `vaktctl --config CONFIG ARGS…`
pub fn vaktctl_with_config(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("vaktctl"));
    cmd.arg("--config").arg(config).args(args);
    // Keep the user's own vaktctl config and VAKT_* settings out of the test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VAKT_") {
            cmd.env_remove(key);
        }
    }
    run_command(cmd, COMMAND_TIMEOUT)
}

/// `(timestamp_unix_ms, value)` of every point of a `vaktctl metrics -o json` answer.
pub fn metric_points_of(json: &Value) -> Vec<(i64, f64)> {
    let series = json["series"]
        .as_array()
        .unwrap_or_else(|| panic!("metrics output has no series array: {json}"));
    let mut points = Vec::new();
    for s in series {
        for p in s["points"]
            .as_array()
            .unwrap_or_else(|| panic!("series has no points array: {s}"))
        {
            let ts = p["timestamp_unix_ms"]
                .as_i64()
                .unwrap_or_else(|| panic!("point lacks timestamp_unix_ms: {p}"));
            let value = p["value"]
                .as_f64()
                .unwrap_or_else(|| panic!("point lacks a numeric value: {p}"));
            points.push((ts, value));
        }
    }
    points
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:port (no client crate needed).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connect 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status_line = text
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty response"))?;
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

// ---------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------

/// Writes `token` to `dir/token` (0600) and returns its path.
pub fn token_file(dir: &Path, token: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create token dir");
    let path = dir.join("token");
    write_private(&path, token);
    path
}

/// `vakt-agent enroll --collector URL --ca CA --token-file FILE --state-dir DIR`.
pub fn agent_enroll(collector: &Collector, token: &str, state_dir: &Path) -> Output {
    let token_dir = state_dir.with_extension("token");
    let token_path = token_file(&token_dir, token);
    let mut cmd = Command::new(bin("vakt-agent"));
    cmd.arg("enroll")
        .arg("--collector")
        .arg(collector.url())
        .arg("--ca")
        .arg(collector.dir.join("ca.pem"))
        .arg("--token-file")
        .arg(&token_path)
        .arg("--state-dir")
        .arg(state_dir);
    run_command(cmd, COMMAND_TIMEOUT)
}

/// An enrolled agent's state directory and, once running, its process.
pub struct Agent {
    child: Option<ChildGuard>,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    log_dir: PathBuf,
}

impl Agent {
    /// Enrolls with `vakt-agent enroll` into `collector.tmp()/NAME` (asserts success).
    pub fn enroll(collector: &Collector, token: &str, name: &str) -> Self {
        let state_dir = collector.agent_dir(name);
        agent_enroll(collector, token, &state_dir).assert_success();
        for file in ["key.pem", "cert.pem", "ca.pem", "enrollment.json"] {
            assert!(
                state_dir.join(file).is_file(),
                "vakt-agent enroll did not write {file} in {}",
                state_dir.display()
            );
        }
        let config = collector.tmp().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "interval = \"1s\"\ncollectors = [\"{}\"]\n",
                collector.url()
            ),
        )
        .expect("write agent config");
        Self {
            child: None,
            state_dir,
            config,
            log_dir: collector.tmp().to_path_buf(),
        }
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::from_state_dir(&self.state_dir)
    }

    pub fn device_id(&self) -> String {
        self.credentials().device_id
    }

    /// `vakt-agent run --config CFG --state-dir SD` in the background.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let mut cmd = Command::new(bin("vakt-agent"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state_dir);
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        self.child = Some(ChildGuard::spawn(cmd, "vakt-agent", &self.log_dir));
    }

    /// Panics with the agent's logs if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_status()
        {
            panic!("vakt-agent run exited with {status}\n{}", child.logs());
        }
    }

    pub fn process(&mut self) -> &mut ChildGuard {
        self.child.as_mut().expect("agent is running")
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9();
        }
    }
}

/// Returns the device with `device_id` from a `vaktctl devices` listing.
pub fn find_device<'a>(devices: &'a [Value], device_id: &str) -> Option<&'a Value> {
    devices.iter().find(|d| d["device_id"] == device_id)
}

/// Waits until `vaktctl device show ID` satisfies `check` (which explains
/// what is missing with `Err`), and returns that device.
pub fn wait_for_device(
    collector: &Collector,
    device_id: &str,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&Value) -> std::result::Result<(), String>,
) -> Value {
    wait_until(timeout, what, || {
        let out = collector.vaktctl(&["device", "show", device_id, "-o", "json"]);
        if !out.success() {
            return Err(out.to_string());
        }
        let device: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {out}"))?;
        check(&device).map_err(|e| format!("{e}; device: {device}"))?;
        Ok(device)
    })
}

/// Fails unless `status` has `code` (with the message in the panic).
pub fn assert_code(status: &tonic::Status, code: tonic::Code, what: &str) {
    assert_eq!(
        status.code(),
        code,
        "{what}: expected {code:?}, got {:?}: {}",
        status.code(),
        status.message()
    );
}

/// An error result as a `Status`, panicking on success.
pub fn expect_status<T: std::fmt::Debug>(
    result: std::result::Result<T, tonic::Status>,
    what: &str,
) -> tonic::Status {
    match result {
        Ok(value) => panic!("{what}: expected an error, got {value:?}"),
        Err(status) => status,
    }
}

/// Reads a field as `&str`, panicking with the object if absent.
pub fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field:?} is not a string in {value}"))
}

/// Fails with a clear message if `result` is an error (for `anyhow` results).
pub fn ok<T>(result: Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e:#}"))
}

/// Errors unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if !cond {
        bail!(msg());
    }
    Ok(())
}

/// A client certificate naming `uri` (e.g. `vakt://device/ID`) signed by a
/// throw-away CA that no collector trusts: (cert PEM, key PEM).
pub fn forge_client_cert(uri: &str) -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vakt CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca_params, &ca_key);

    let key = KeyPair::generate().expect("generate client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, "forged");
    params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("URI is an IA5 string"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .expect("sign forged certificate");
    (cert.pem(), key.serialize_pem())
}
