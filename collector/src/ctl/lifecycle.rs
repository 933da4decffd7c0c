//! `vaktctl device reenroll` and `vaktctl revoke`: the two ways an operator
//! changes what an existing device may do. Re-enrollment hands out a fresh
//! one-time token (printed exactly like `register` prints one); revocation
//! ends the device's identity for good.

use super::connect::Admin;
use super::output::{self, Format};
use super::register;
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;
use vakt_proto::v1;

#[derive(Clone, Debug, clap::Args)]
pub struct ReenrollArgs {
    /// Device id, hostname or serial
    pub device: String,
    /// How long the token stays valid [default: the collector's, 7 days]
    #[arg(long, value_name = "DURATION", value_parser = register::parse_ttl)]
    pub token_ttl: Option<Duration>,
}

impl ReenrollArgs {
    pub fn request(&self) -> v1::ReenrollDeviceRequest {
        v1::ReenrollDeviceRequest {
            device: self.device.clone(),
            token_ttl_seconds: self.token_ttl.map_or(0, |d| d.as_secs()),
        }
    }
}

pub async fn reenroll(admin: &mut Admin, args: &ReenrollArgs, format: Format) -> Result<String> {
    let response = admin
        .client
        .reenroll_device(args.request())
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(render_reenrollment(
        &response,
        format,
        vakt_proto::now_unix_ms(),
    ))
}

/// The `register` rendering with a headline that says what happened: the
/// device keeps its id and history, only its way in is new.
pub fn render_reenrollment(r: &v1::RegisterDeviceResponse, format: Format, now_ms: i64) -> String {
    let headline = format!(
        "New enrollment token for device {}; its earlier tokens no longer work.",
        output::terminal_safe(&r.device_id)
    );
    register::render_token(r, format, now_ms, &headline)
}

/// Long help of `revoke`: what it does is irreversible, so say it plainly.
pub const REVOKE_HELP: &str = "\
Revoke a device: the collector refuses its very next request (open streams \
are ended), denylists every certificate serial it has issued to it and \
invalidates its enrollment tokens. Its history stays queryable.

Revocation cannot be undone. To bring the same hardware back, register it \
again (`vaktctl register --serial …`): it gets a new device id.

Examples:
  vaktctl revoke web-1 --reason \"stolen laptop, ticket OPS-1234\"
  vaktctl revoke dev-7f3a -o json | jq -r '.denylisted_certificate_serials[]'";

#[derive(Clone, Debug, clap::Args)]
pub struct RevokeArgs {
    /// Device id, hostname or serial
    pub device: String,
    /// Why, for the audit log (e.g. a ticket number)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

impl RevokeArgs {
    pub fn request(&self) -> v1::RevokeDeviceRequest {
        v1::RevokeDeviceRequest {
            device: self.device.clone(),
            reason: self.reason.clone().unwrap_or_default(),
        }
    }
}

pub async fn revoke(admin: &mut Admin, args: &RevokeArgs, format: Format) -> Result<String> {
    let response = admin
        .client
        .revoke_device(args.request())
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(render_revocation(&response, format))
}

#[derive(Serialize)]
struct RevocationJson<'a> {
    device_id: &'a str,
    revoked_at: Option<String>,
    denylisted_certificate_serials: &'a [String],
}

pub fn render_revocation(r: &v1::RevokeDeviceResponse, format: Format) -> String {
    let revoked_at = output::rfc3339(r.revoked_at_unix_ms);
    match format {
        Format::Json => output::json(&RevocationJson {
            device_id: &r.device_id,
            revoked_at,
            denylisted_certificate_serials: &r.denylisted_certificate_serials,
        }),
        // Serials joined with `;` like the labels of `register --csv`, so
        // the record keeps one field per column.
        Format::Csv => {
            output::csv_row(&["device_id", "revoked_at", "denylisted_certificate_serials"])
                + &output::csv_row(&[
                    r.device_id.clone(),
                    revoked_at.unwrap_or_default(),
                    r.denylisted_certificate_serials.join(";"),
                ])
        }
        Format::Table => format!(
            "Revoked device {} at {}; denylisted {} certificate serial(s).\n",
            output::terminal_safe(&r.device_id),
            revoked_at.as_deref().unwrap_or("an unreported time"),
            r.denylisted_certificate_serials.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn revocation() -> v1::RevokeDeviceResponse {
        v1::RevokeDeviceResponse {
            device_id: "dev-7f3a".into(),
            revoked_at_unix_ms: NOW,
            denylisted_certificate_serials: vec!["0a1b".into(), "2c3d".into()],
        }
    }

    #[test]
    fn revocation_renderings() {
        assert_eq!(
            render_revocation(&revocation(), Format::Table),
            "Revoked device dev-7f3a at 2023-11-14T22:13:20Z; denylisted 2 certificate serial(s).\n"
        );
        assert_eq!(
            render_revocation(&revocation(), Format::Json),
            "{\n  \"device_id\": \"dev-7f3a\",\n  \"revoked_at\": \"2023-11-14T22:13:20Z\",\n  \
             \"denylisted_certificate_serials\": [\n    \"0a1b\",\n    \"2c3d\"\n  ]\n}\n"
        );
        assert_eq!(
            render_revocation(&revocation(), Format::Csv),
            "device_id,revoked_at,denylisted_certificate_serials\n\
             dev-7f3a,2023-11-14T22:13:20Z,0a1b;2c3d\n"
        );
        let never_enrolled = v1::RevokeDeviceResponse {
            denylisted_certificate_serials: Vec::new(),
            ..revocation()
        };
        assert_eq!(
            render_revocation(&never_enrolled, Format::Json),
            "{\n  \"device_id\": \"dev-7f3a\",\n  \"revoked_at\": \"2023-11-14T22:13:20Z\",\n  \
             \"denylisted_certificate_serials\": []\n}\n"
        );
    }

    fn token() -> v1::RegisterDeviceResponse {
        v1::RegisterDeviceResponse {
            device_id: "dev-7f3a".into(),
            token: "vkt_9PqR".into(),
            token_expires_at_unix_ms: NOW + 2 * 86_400_000,
            created: false,
        }
    }

    #[test]
    fn reenrollment_prints_the_token_like_register() {
        assert_eq!(
            render_reenrollment(&token(), Format::Table, NOW),
            "New enrollment token for device dev-7f3a; its earlier tokens no longer work.\n\
             One-time enrollment token (expires 2023-11-16T22:13:20Z, in 2d; shown only now):\n\
             vkt_9PqR\n"
        );
        for format in [Format::Json, Format::Csv] {
            assert_eq!(
                render_reenrollment(&token(), format, NOW),
                register::render_registration(&token(), format, NOW)
            );
        }
    }
}
