//! Tablet gateway: runs the configured source programs (`[[gateway.source]]`),
//! each on its own interval, and turns their output — one JSON object per
//! line per tablet or phone — into `ChildDevice`s for the next report batch.
//!
//! A source is a plain executable (an MDM export converter, a wrapper around
//! `adb devices -l`), so it is treated as untrusted input: every line is size-
//! limited and validated with the collector's own rules, a bad line is logged
//! (once) and counted but never stops the others, and a run that overstays its
//! timeout is killed with its whole process group. The format is documented
//! in `docs/GATEWAY.md`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;
use vakt_proto::v1::ChildDevice;
use vakt_proto::validate::MAX_CHILDREN_PER_BATCH;

/// Longest accepted output line; a tablet's JSON object is a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Output lines read per run; the rest is ignored (and said so).
pub const MAX_LINES_PER_RUN: usize = 20_000;
/// Stderr lines logged per run, so a chatty script cannot flood the journal.
pub const MAX_STDERR_LINES_PER_RUN: usize = 50;
/// Children waiting for a batch. A source reporting more than this between two
/// batches keeps the newest state of the first ones by identifier.
pub const MAX_PENDING_CHILDREN: usize = 10 * MAX_CHILDREN_PER_BATCH;
/// Distinct bad-line messages remembered per source, to log each only once.
const MAX_REMEMBERED_ERRORS: usize = 1_000;
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(30);

/// `[gateway]` in the agent config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// `[[gateway.source]]` tables.
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
}

/// One `[[gateway.source]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Absolute path of the executable (run directly, not through a shell).
    pub exec: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Default: 30 s, or the interval if that is shorter.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Shown in logs and with each child. Default: the executable's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl GatewayConfig {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn check(&self) -> anyhow::Result<()> {
        let mut names = HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let at = format!("gateway.source[{i}]");
            anyhow::ensure!(
                source.exec.is_absolute(),
                "{at}.exec: {} must be an absolute path",
                source.exec.display()
            );
            anyhow::ensure!(
                source.interval >= Duration::from_secs(1)
                    && source.interval <= Duration::from_secs(24 * 3600),
                "{at}.interval: must be between 1s and 24h"
            );
            if let Some(t) = source.timeout {
                anyhow::ensure!(
                    t >= Duration::from_secs(1) && t <= source.interval,
                    "{at}.timeout: must be between 1s and the interval"
                );
            }
            let name = source.name();
            anyhow::ensure!(
                !name.is_empty()
                    && name.len() <= vakt_proto::validate::MAX_TEXT_BYTES
                    && !name.chars().any(char::is_control),
                "{at}.name: {name:?} is not a usable name"
            );
            anyhow::ensure!(
                names.insert(name.clone()),
                "{at}: two sources are named {name:?}; give one a `name`"
            );
        }
        Ok(())
    }
}

impl SourceConfig {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.exec
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
            .unwrap_or_else(|| DEFAULT_SOURCE_TIMEOUT.min(self.interval))
    }
}

/// What the sources found since the last batch.
#[derive(Debug, Default)]
struct Pending {
    children: BTreeMap<String, ChildDevice>,
    invalid_lines: u32,
}

/// The running sources. Dropping it stops them (and kills a running child).
pub struct Gateway {
    pending: Arc<Mutex<Pending>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Gateway {
    /// Starts one task per source (inside a tokio runtime); None without sources.
    pub fn start(config: &GatewayConfig) -> Option<Self> {
        if config.is_empty() {
            return None;
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let tasks = config
            .sources
            .iter()
            .map(|source| {
                tracing::info!(
                    source = %source.name(),
                    exec = %source.exec.display(),
                    interval = %humantime::format_duration(source.interval),
                    "gateway source configured"
                );
                tokio::spawn(source_loop(source.clone(), pending.clone()))
            })
            .collect();
        Some(Self { pending, tasks })
    }

    /// The children for the next batch (at most a batch's worth; the rest
    /// waits for the one after) and the count of invalid lines since the last.
    pub fn take(&self) -> (Vec<ChildDevice>, u32) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let invalid = std::mem::take(&mut pending.invalid_lines);
        let mut children = Vec::new();
        while children.len() < MAX_CHILDREN_PER_BATCH {
            let Some((_, child)) = pending.children.pop_first() else {
                break;
            };
            children.push(child);
        }
        (children, invalid)
    }
}

/// Runs one source forever, one run at a time: the next run starts only after
/// the previous one ended (or was killed), so runs never overlap.
async fn source_loop(source: SourceConfig, pending: Arc<Mutex<Pending>>) {
    let name = source.name();
    let mut ticker = tokio::time::interval(source.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen_errors = HashSet::new();
    let mut last_invalid = 0usize;
    loop {
        ticker.tick().await;
        let run = run_source(&source, &name).await;
        let (children, errors, lines) = match run {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(source = %name, "gateway source failed: {e:#}");
                continue;
            }
        };
        for error in &errors {
            if seen_errors.len() < MAX_REMEMBERED_ERRORS && seen_errors.insert(error.clone()) {
                tracing::warn!(source = %name, "invalid gateway source line: {error}");
            } else {
                tracing::debug!(source = %name, "invalid gateway source line: {error}");
            }
        }
        if errors.len() != last_invalid {
            tracing::info!(
                source = %name,
                lines,
                children = children.len(),
                invalid = errors.len(),
                "gateway source run"
            );
            last_invalid = errors.len();
        }
        let mut pending = pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.invalid_lines = pending
            .invalid_lines
            .saturating_add(u32::try_from(errors.len()).unwrap_or(u32::MAX));
        for child in children {
            let room = pending.children.len() < MAX_PENDING_CHILDREN;
            if room || pending.children.contains_key(&child.identifier) {
                pending.children.insert(child.identifier.clone(), child);
            }
        }
    }
}

/// One run: the valid children, one message per bad line, and the line count.
async fn run_source(
    source: &SourceConfig,
    name: &str,
) -> anyhow::Result<(Vec<ChildDevice>, Vec<String>, usize)> {
    use anyhow::Context;
    let mut child = tokio::process::Command::new(&source.exec)
        .args(&source.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {}", source.exec.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let outcome = tokio::time::timeout(source.timeout(), async {
        let (parsed, ()) = tokio::join!(
            parse_output(BufReader::new(stdout), name),
            log_stderr(BufReader::new(stderr), name)
        );
        (parsed, child.wait().await)
    })
    .await;
    kill_group(pid);
    match outcome {
        Err(_) => {
            let _ = child.kill().await;
            anyhow::bail!(
                "no result within {}; killed it (its output is ignored)",
                humantime::format_duration(source.timeout())
            )
        }
        Ok((parsed, status)) => {
            let (children, errors, lines) = parsed.context("cannot read its output")?;
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => {
                    tracing::warn!(source = %name, "gateway source exited with {s}; using the {} lines it printed", lines)
                }
                Err(e) => tracing::warn!(source = %name, "cannot wait for gateway source: {e}"),
            }
            Ok((children, errors, lines))
        }
    }
}

/// `vakt-agent gateway-check`: runs every source once, now, and reports what
/// the agent would make of its output. Returns the JSON and whether every
/// source ran cleanly (no failure, no invalid line).
pub async fn check_sources(config: &GatewayConfig) -> (serde_json::Value, bool) {
    let mut clean = true;
    let mut sources = Vec::new();
    for source in &config.sources {
        let name = source.name();
        let entry = match run_source(source, &name).await {
            Ok((children, errors, lines)) => {
                clean &= errors.is_empty();
                serde_json::json!({
                    "name": name,
                    "exec": source.exec,
                    "lines": lines,
                    "children": children.iter().map(child_json).collect::<Vec<_>>(),
                    "invalid_lines": errors,
                    "error": null,
                })
            }
            Err(e) => {
                clean = false;
                serde_json::json!({
                    "name": name,
                    "exec": source.exec,
                    "error": format!("{e:#}"),
                })
            }
        };
        sources.push(entry);
    }
    (serde_json::json!({ "sources": sources }), clean)
}

/// A child as the JSON line format spells it (docs/GATEWAY.md).
pub fn child_json(c: &ChildDevice) -> serde_json::Value {
    serde_json::json!({
        "identifier": c.identifier,
        "serial": c.serial,
        "model": c.model,
        "os": c.os_name,
        "os_version": c.os_version,
        "battery_percent": c.battery_percent,
        "battery_health_percent": c.battery_health_percent,
        "storage_total_bytes": c.storage_total_bytes,
        "storage_free_bytes": c.storage_free_bytes,
        "last_sync": (c.last_sync_unix_ms != 0).then_some(c.last_sync_unix_ms),
    })
}

/// Kills whatever is left in the source's process group (background children
/// of a script). The group is gone already in the common case.
fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

async fn log_stderr(mut reader: impl AsyncBufRead + Unpin, name: &str) {
    let mut logged = 0;
    let _ = read_lines(&mut reader, |_, line| {
        let text = match line {
            Ok(bytes) => String::from_utf8_lossy(bytes).trim_end().to_string(),
            Err(len) => format!("({len} bytes, too long to show)"),
        };
        if text.is_empty() {
            return;
        }
        logged += 1;
        if logged <= MAX_STDERR_LINES_PER_RUN {
            tracing::warn!(source = %name, "gateway source stderr: {text}");
        } else if logged == MAX_STDERR_LINES_PER_RUN + 1 {
            tracing::warn!(source = %name, "gateway source stderr: more lines not shown");
        }
    })
    .await;
}

/// Parses a source's stdout: valid children (the last line wins for an
/// identifier), one message per bad line, and the number of lines read.
pub async fn parse_output(
    mut reader: impl AsyncBufRead + Unpin,
    source: &str,
) -> std::io::Result<(Vec<ChildDevice>, Vec<String>, usize)> {
    let now = vakt_proto::now_unix_ms();
    let mut children: BTreeMap<String, ChildDevice> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut lines = 0;
    read_lines(&mut reader, |number, line| {
        lines = number;
        if number > MAX_LINES_PER_RUN {
            if number == MAX_LINES_PER_RUN + 1 {
                errors.push(format!(
                    "line {number}: more than {MAX_LINES_PER_RUN} lines; the rest is ignored"
                ));
            }
            return;
        }
        let result = match line {
            Err(len) => Err(format!("{len} bytes, at most {MAX_LINE_BYTES} allowed")),
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => return,
            Ok(bytes) => parse_line(bytes, source, now),
        };
        match result {
            Ok(child) => {
                children.insert(child.identifier.clone(), child);
            }
            Err(e) => errors.push(format!("line {number}: {e}")),
        }
    })
    .await?;
    Ok((children.into_values().collect(), errors, lines))
}

/// Calls `each(line_number, Ok(line) | Err(length))` for every line; lines
/// longer than `MAX_LINE_BYTES` are not kept in memory, only measured.
async fn read_lines(
    reader: &mut (impl AsyncBufRead + Unpin),
    mut each: impl FnMut(usize, Result<&[u8], usize>),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut length = 0usize;
    let mut number = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if length > 0 {
                number += 1;
                each(
                    number,
                    if length > MAX_LINE_BYTES {
                        Err(length)
                    } else {
                        Ok(&line)
                    },
                );
            }
            return Ok(());
        }
        let (chunk, ends_line) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (&buf[..at], true),
            None => (buf, false),
        };
        length += chunk.len();
        if length <= MAX_LINE_BYTES {
            line.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(ends_line);
        reader.consume(used);
        if ends_line {
            number += 1;
            each(
                number,
                if length > MAX_LINE_BYTES {
                    Err(length)
                } else {
                    Ok(&line)
                },
            );
            line.clear();
            length = 0;
        }
    }
}

/// The JSON line format (docs/GATEWAY.md). Unknown fields are refused, so a
/// typo (`batery_percent`) is reported instead of silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    identifier: String,
    serial: Option<String>,
    model: Option<String>,
    os: Option<String>,
    os_version: Option<String>,
    battery_percent: Option<f64>,
    battery_health_percent: Option<f64>,
    storage_total_bytes: Option<u64>,
    storage_free_bytes: Option<u64>,
    last_sync: Option<LastSync>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LastSync {
    UnixMs(i64),
    Rfc3339(String),
}

/// One line to a validated child, or why not.
pub fn parse_line(bytes: &[u8], source: &str, now_ms: i64) -> Result<ChildDevice, String> {
    // An object, not serde's other spelling of a struct (an array of fields).
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let line: Line =
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| e.to_string())?;
    let last_sync_unix_ms = match line.last_sync {
        None => 0,
        Some(LastSync::UnixMs(ms)) => ms,
        Some(LastSync::Rfc3339(text)) => {
            let at =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| format!("last_sync: {text:?} is not RFC 3339 ({e})"))?;
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| format!("last_sync: {text:?} is out of range"))?
        }
    };
    let child = ChildDevice {
        identifier: line.identifier,
        serial: line.serial.unwrap_or_default(),
        model: line.model.unwrap_or_default(),
        os_name: line.os.unwrap_or_default(),
        os_version: line.os_version.unwrap_or_default(),
        battery_percent: line.battery_percent,
        battery_health_percent: line.battery_health_percent,
        storage_total_bytes: line.storage_total_bytes,
        storage_free_bytes: line.storage_free_bytes,
        last_sync_unix_ms,
        source: source.to_owned(),
    };
    vakt_proto::validate::child_device("", &child, now_ms).map_err(|e| {
        // Name the field as the line spells it.
        let field = e.field.trim_start_matches('.');
        let field = if field == "os_name" { "os" } else { field };
        let field = if field == "last_sync_unix_ms" {
            "last_sync"
        } else {
            field
        };
        format!("{field}: {}", e.reason)
    })?;
    Ok(child)
}

mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

mod opt_duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
