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
    /// Register every row of a CSV file (header: serial,product_uuid,machine_id,
    /// unbound,model,class,department,owner,labels with labels as k=v;k=v)
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "serial", "product_uuid", "machine_id", "unbound", "model", "class", "department", "owner", "labels",
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
    /// How long the token stays valid [default: the collector's, 7 days]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub token_ttl: Option<Duration>,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
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
        }
    }
}

pub async fn run(admin: &mut Admin, args: &RegisterArgs, format: Format) -> Result<String> {
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
    Ok(render_registration(
        &response,
        format,
        vakt_proto::now_unix_ms(),
    ))
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
    match format {
        Format::Json => output::json(&RegistrationJson::from(r)),
        Format::Csv => output::csv_row(&CSV_HEADER) + &output::csv_row(&csv_cells(r)),
        Format::Table => {
            let verb = if r.created {
                "Registered new device"
            } else {
                "Updated registration of"
            };
            let expiry = match output::rfc3339(r.token_expires_at_unix_ms) {
                Some(t) => format!(
                    "expires {t}, {}",
                    output::relative(r.token_expires_at_unix_ms, now_ms)
                ),
                None => "no expiry reported".into(),
            };
            format!(
                "{verb} {}.\nOne-time enrollment token ({expiry}; shown only now):\n{}\n",
                output::terminal_safe(&r.device_id),
                output::terminal_safe(&r.token)
            )
        }
    }
}

/// One row of a batch with what it produced.
pub struct BatchResult {
    pub key: String,
    pub response: v1::RegisterDeviceResponse,
}

pub fn render_batch(results: &[BatchResult], format: Format) -> String {
    match format {
        Format::Json => {
            let rows: Vec<_> = results
                .iter()
                .map(|r| RegistrationJson::from(&r.response))
                .collect();
            output::json(&rows)
        }
        Format::Csv => {
            let mut out = output::csv_row(&[
                "identifier",
                CSV_HEADER[0],
                CSV_HEADER[1],
                CSV_HEADER[2],
                CSV_HEADER[3],
            ]);
            for r in results {
                let [a, b, c, d] = csv_cells(&r.response);
                out.push_str(&output::csv_row(&[r.key.clone(), a, b, c, d]));
            }
            out
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    let [id, token, expires, _] = csv_cells(&r.response);
                    let created = if r.response.created { "new" } else { "updated" };
                    vec![r.key.clone(), id, created.into(), expires, token]
                })
                .collect();
            output::table(
                &["IDENTIFIER", "DEVICE", "REGISTRATION", "EXPIRES", "TOKEN"],
                &rows,
            )
        }
    }
}

/// Parses the whole file and validates every row before registering any, so
/// a typo on line 40 does not leave a half-registered batch.
async fn run_batch(
    admin: &mut Admin,
    path: &std::path::Path,
    ttl: Option<Duration>,
    format: Format,
) -> Result<String> {
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
    let mut results = Vec::with_capacity(rows.len());
    for (line, key, request) in &rows {
        let mut request = request.clone();
        request.token_ttl_seconds = ttl.map_or(0, |d| d.as_secs());
        match admin.client.register_device(request).await {
            Ok(response) => results.push(BatchResult {
                key: key.clone(),
                response: response.into_inner(),
            }),
            Err(status) => {
                // Tokens already issued must not be lost: print them, then fail.
                // Re-running the file is safe (same serial = same device).
                let done = render_batch(&results, format);
                super::emit(&done)?;
                bail!(
                    "line {line} ({key}): {} ({} of {} registered before this)",
                    admin.error(status),
                    results.len(),
                    rows.len()
                );
            }
        }
    }
    Ok(render_batch(&results, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(created: bool) -> v1::RegisterDeviceResponse {
        v1::RegisterDeviceResponse {
            device_id: "dev-7f3a".into(),
            token: "vkt_4NqZ2x".into(),
            token_expires_at_unix_ms: 1_700_604_800_000,
            created,
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn table_ends_with_the_token_alone() {
        assert_eq!(
            render_registration(&response(true), Format::Table, NOW),
            "Registered new device dev-7f3a.\n\
             One-time enrollment token (expires 2023-11-21T22:13:20Z, in 7d; shown only now):\n\
             vkt_4NqZ2x\n"
        );
        assert!(
            render_registration(&response(false), Format::Table, NOW)
                .starts_with("Updated registration of dev-7f3a.")
        );
    }

    #[test]
    fn json_and_csv() {
        assert_eq!(
            render_registration(&response(true), Format::Json, NOW),
            "{\n  \"device_id\": \"dev-7f3a\",\n  \"token\": \"vkt_4NqZ2x\",\n  \
             \"token_expires_at\": \"2023-11-21T22:13:20Z\",\n  \"created\": true\n}\n"
        );
        assert_eq!(
            render_registration(&response(false), Format::Csv, NOW),
            "device_id,token,token_expires_at,created\ndev-7f3a,vkt_4NqZ2x,2023-11-21T22:13:20Z,false\n"
        );
    }

    #[test]
    fn batch_rendering() {
        let results = vec![BatchResult {
            key: "serial=SN1".into(),
            response: response(true),
        }];
        assert_eq!(
            render_batch(&results, Format::Csv),
            "identifier,device_id,token,token_expires_at,created\nserial=SN1,dev-7f3a,vkt_4NqZ2x,2023-11-21T22:13:20Z,true\n"
        );
        assert_eq!(
            render_batch(&results, Format::Table),
            "IDENTIFIER   DEVICE     REGISTRATION   EXPIRES                TOKEN\n\
             serial=SN1   dev-7f3a   new            2023-11-21T22:13:20Z   vkt_4NqZ2x\n"
        );
    }
}
