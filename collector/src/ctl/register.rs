//! `vaktctl register`: pre-register hardware and print its one-time
//! enrollment token (single device, or a batch from `--csv FILE`).
//!
//! The token is printed to stdout and nowhere else: it is shown once and only
//! its hash is stored, so provisioning scripts capture it from there.

use super::connect::Admin;
use super::output::{self, Format};
use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use vakt_proto::v1;

/// Shown after the options of `register --help`.
pub const REGISTER_HELP: &str = "\
The token is printed once (only its hash is stored): hand it to the device's \
`vakt-agent enroll --token-file FILE`. In the table format the token is alone \
on the last line. Registering the same serial again updates that device and \
issues a new token instead of creating a duplicate.

A CSV batch (--csv FILE) needs a header row naming any of: serial, \
product_uuid, machine_id, unbound, model, class, department, owner, labels \
(labels written k=v;k=v), via (the gateway a tablet is reported through). Every row gets a result with a status of created, \
updated or error; a bad row does not stop the others, and the exit code is 1 \
if any row failed. Fix the failed rows and run just those again.

Examples:
  vaktctl register --serial PF3K9XQ --class laptop --department Sales --owner ana
  vaktctl register --serial PF3K9XQ | tail -n1 > token
  vaktctl register --machine-id 4c1f0e2b9a7d4e6f8a1b2c3d4e5f6a7b --label site=hq
  vaktctl register --unbound --token-ttl 1d
  vaktctl register --serial R52N40ABC --class tablet --via gw-ward-3
  vaktctl register --csv new-laptops.csv -o csv > tokens.csv";

#[derive(Clone, Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("binding")
        .required(true)
        .multiple(true)
        .args(["serial", "product_uuid", "machine_id", "unbound", "csv"]),
))]
pub struct RegisterArgs {
    /// Bind the registration to this hardware serial number
    #[arg(long, value_name = "S")]
    pub serial: Option<String>,
    /// Bind the registration to this DMI product UUID
    #[arg(long, value_name = "U")]
    pub product_uuid: Option<String>,
    /// Bind the registration to this /etc/machine-id
    #[arg(long, value_name = "M")]
    pub machine_id: Option<String>,
    /// Let any hardware enroll with the token
    #[arg(long, conflicts_with_all = ["serial", "product_uuid", "machine_id"])]
    pub unbound: bool,
    /// Register every row of a CSV file, one result row each (header: serial,
    /// product_uuid,machine_id,unbound,model,class,department,owner,labels,via with labels as k=v;k=v)
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "serial", "product_uuid", "machine_id", "unbound", "model", "class", "department", "owner", "labels", "via",
    ])]
    pub csv: Option<PathBuf>,
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    #[arg(long, value_name = "C", value_parser = super::class_parser())]
    pub class: Option<i32>,
    #[arg(long, value_name = "D")]
    pub department: Option<String>,
    #[arg(long, value_name = "O")]
    pub owner: Option<String>,
    /// Label the device (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::parse_kv)]
    pub labels: Vec<(String, String)>,
    /// A tablet reported by this gateway (device id, hostname or serial of a
    /// device registered with --class gateway); only that gateway's reports
    /// of it are accepted
    #[arg(long, value_name = "GATEWAY")]
    pub via: Option<String>,
    /// How long the token stays valid [default: the collector's, 7 days]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub token_ttl: Option<Duration>,
}

pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 7d, 12h)"))?;
    if ttl.as_secs() == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(ttl)
}

impl RegisterArgs {
    pub fn request(&self) -> v1::RegisterDeviceRequest {
        v1::RegisterDeviceRequest {
            serial: self.serial.clone().unwrap_or_default(),
            product_uuid: self.product_uuid.clone().unwrap_or_default(),
            machine_id: self.machine_id.clone().unwrap_or_default(),
            unbound: self.unbound,
            model: self.model.clone().unwrap_or_default(),
            class: self.class.unwrap_or_default(),
            department: self.department.clone().unwrap_or_default(),
            owner: self.owner.clone().unwrap_or_default(),
            labels: super::attributes(&self.labels),
            token_ttl_seconds: self.token_ttl.map_or(0, |d| d.as_secs()),
            via_gateway: self.via.clone().unwrap_or_default(),
        }
    }
}

/// The text to print, and for a batch, the failure to report after printing
/// it (some rows failed; exit 1).
pub async fn run(
    admin: &mut Admin,
    args: &RegisterArgs,
    format: Format,
) -> Result<(String, Option<String>)> {
    if let Some(path) = &args.csv {
        return run_batch(admin, path, args.token_ttl, format).await;
    }
    let request = args.request();
    let response = admin
        .client
        .register_device(request)
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    let text = render_registration(&response, format, vakt_proto::now_unix_ms());
    Ok((text, None))
}

#[derive(Serialize)]
struct RegistrationJson<'a> {
    device_id: &'a str,
    token: &'a str,
    token_expires_at: Option<String>,
    created: bool,
}

impl<'a> From<&'a v1::RegisterDeviceResponse> for RegistrationJson<'a> {
    fn from(r: &'a v1::RegisterDeviceResponse) -> Self {
        RegistrationJson {
            device_id: &r.device_id,
            token: &r.token,
            token_expires_at: output::rfc3339(r.token_expires_at_unix_ms),
            created: r.created,
        }
    }
}

const CSV_HEADER: [&str; 4] = ["device_id", "token", "token_expires_at", "created"];

fn csv_cells(r: &v1::RegisterDeviceResponse) -> [String; 4] {
    [
        r.device_id.clone(),
        r.token.clone(),
        output::rfc3339_or_empty(r.token_expires_at_unix_ms),
        r.created.to_string(),
    ]
}

/// Table format: a few lines for people, the token alone on the last line
/// (`| tail -n1` gets it).
pub fn render_registration(r: &v1::RegisterDeviceResponse, format: Format, now_ms: i64) -> String {
    let id = output::terminal_safe(&r.device_id);
    let headline = if r.created {
        format!("Registered new device {id}.")
    } else {
        format!("Updated registration of {id}.")
    };
    render_token(r, format, now_ms, &headline)
}

/// Any one-time token (registration, re-enrollment) in any format; only the
/// table's first line differs between the commands that hand one out.
pub fn render_token(
    r: &v1::RegisterDeviceResponse,
    format: Format,
    now_ms: i64,
    headline: &str,
) -> String {
    match format {
        Format::Json => output::json(&RegistrationJson::from(r)),
        Format::Csv => output::csv_row(&CSV_HEADER) + &output::csv_row(&csv_cells(r)),
        Format::Table => {
            let expiry = match output::rfc3339(r.token_expires_at_unix_ms) {
                Some(t) => format!(
                    "expires {t}, {}",
                    output::relative(r.token_expires_at_unix_ms, now_ms)
                ),
                None => "no expiry reported".into(),
            };
            format!(
                "{headline}\nOne-time enrollment token ({expiry}; shown only now):\n{}\n",
                output::terminal_safe(&r.token)
            )
        }
    }
}

/// One line of a batch file with what became of it.
#[derive(Clone, Debug)]
pub struct BatchRow {
    pub line: usize,
    pub identifier: String,
    pub result: Result<v1::RegisterDeviceResponse, String>,
}

impl BatchRow {
    fn status(&self) -> &'static str {
        match &self.result {
            Ok(r) if r.created => "created",
            Ok(_) => "updated",
            Err(_) => "error",
        }
    }
}

/// Every key is present in every row (null where it does not apply), so a
/// script can read `status` first and then the fields it needs.
#[derive(Serialize)]
struct BatchRowJson<'a> {
    line: usize,
    identifier: &'a str,
    device_id: Option<&'a str>,
    token: Option<&'a str>,
    token_expires_at: Option<String>,
    status: &'static str,
    error: Option<&'a str>,
}

const BATCH_CSV_HEADER: [&str; 7] = [
    "line",
    "identifier",
    "device_id",
    "token",
    "token_expires_at",
    "status",
    "error",
];

/// One row per input line, failed ones included, in file order.
pub fn render_batch(rows: &[BatchRow], format: Format) -> String {
    match format {
        Format::Json => {
            let rows: Vec<_> = rows
                .iter()
                .map(|row| {
                    let ok = row.result.as_ref().ok();
                    BatchRowJson {
                        line: row.line,
                        identifier: &row.identifier,
                        device_id: ok.map(|r| r.device_id.as_str()),
                        token: ok.map(|r| r.token.as_str()),
                        token_expires_at: ok
                            .and_then(|r| output::rfc3339(r.token_expires_at_unix_ms)),
                        status: row.status(),
                        error: row.result.as_ref().err().map(String::as_str),
                    }
                })
                .collect();
            output::json(&rows)
        }
        Format::Csv => {
            let mut out = output::csv_row(&BATCH_CSV_HEADER);
            for row in rows {
                let (id, token, expires, error) = batch_cells(row);
                out.push_str(&output::csv_row(&[
                    row.line.to_string(),
                    row.identifier.clone(),
                    id,
                    token,
                    expires,
                    row.status().to_string(),
                    error,
                ]));
            }
            out
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    let (id, token, expires, error) = batch_cells(row);
                    vec![
                        row.line.to_string(),
                        row.identifier.clone(),
                        row.status().to_string(),
                        id,
                        expires,
                        token,
                        error,
                    ]
                })
                .collect();
            output::table(
                &[
                    "LINE",
                    "IDENTIFIER",
                    "STATUS",
                    "DEVICE",
                    "EXPIRES",
                    "TOKEN",
                    "ERROR",
                ],
                &rows,
            )
        }
    }
}

/// `(device_id, token, token_expires_at, error)`, empty where not applicable.
fn batch_cells(row: &BatchRow) -> (String, String, String, String) {
    match &row.result {
        Ok(r) => (
            r.device_id.clone(),
            r.token.clone(),
            output::rfc3339_or_empty(r.token_expires_at_unix_ms),
            String::new(),
        ),
        Err(e) => (String::new(), String::new(), String::new(), e.clone()),
    }
}

/// The one stderr line after a batch in which some rows failed.
pub fn batch_failure(rows: &[BatchRow]) -> Option<String> {
    let failed: Vec<usize> = rows
        .iter()
        .filter(|r| r.result.is_err())
        .map(|r| r.line)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let lines = failed
        .iter()
        .take(10)
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let more = if failed.len() > 10 { ", …" } else { "" };
    Some(format!(
        "{} of {} rows failed (line {lines}{more}; see the error column); \
         the other rows were registered",
        failed.len(),
        rows.len()
    ))
}

/// Failures that will fail every remaining row the same way (collector
/// gone, credential refused): the rest are not attempted, instead of waiting
/// out a timeout per row.
fn stops_the_batch(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::DeadlineExceeded
            | Code::Cancelled
    )
}

/// `register --csv FILE`: every valid row is sent, every row gets a result,
/// and the caller prints them all before reporting failure (tokens already
/// issued must never be lost to an error on a later row).
async fn run_batch(
    admin: &mut Admin,
    path: &std::path::Path,
    ttl: Option<Duration>,
    format: Format,
) -> Result<(String, Option<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read {}: {}",
            path.display(),
            super::connect::io_reason(&e)
        )
    })?;
    let rows =
        super::batch::parse_requests(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if rows.is_empty() {
        bail!(
            "{}: no devices (expected a header row and one row per device)",
            path.display()
        );
    }
    let mut progress = Progress::new(rows.len());
    let mut stopped: Option<String> = None;
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let result = match (row.request, &stopped) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(why)) => Err(format!("not attempted: {why}")),
            (Ok(mut request), None) => {
                request.token_ttl_seconds = ttl.map_or(0, |d| d.as_secs());
                match admin.client.register_device(request).await {
                    Ok(response) => Ok(response.into_inner()),
                    Err(status) => {
                        let stop = stops_the_batch(&status);
                        let message = admin.error(status).to_string();
                        if stop {
                            stopped = Some(message.clone());
                        }
                        Err(message)
                    }
                }
            }
        };
        progress.tick(result.is_err());
        results.push(BatchRow {
            line: row.line,
            identifier: row.identifier,
            result,
        });
    }
    progress.finish();
    Ok((render_batch(&results, format), batch_failure(&results)))
}

/// `registered 120/500` on stderr, rewritten in place, only when stderr is
/// a terminal: logs and pipes get nothing.
struct Progress {
    enabled: bool,
    total: usize,
    done: usize,
    failed: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        use std::io::IsTerminal as _;
        Progress {
            enabled: std::io::stderr().is_terminal(),
            total,
            done: 0,
            failed: 0,
        }
    }

    fn tick(&mut self, failed: bool) {
        self.done += 1;
        self.failed += usize::from(failed);
        if self.enabled {
            eprint!("\r{}", progress_line(self.done, self.total, self.failed));
        }
    }

    /// Clears the line so the table that follows starts at column 0.
    fn finish(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

pub fn progress_line(done: usize, total: usize, failed: usize) -> String {
    match failed {
        0 => format!("registered {done}/{total}"),
        n => format!("registered {done}/{total} ({n} failed)"),
    }
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
