//! Validation of every incoming message, before it touches storage.
//!
//! Limits are named constants so that the agent can keep its own reports within
//! them and tests can aim just past them. Strings are already valid UTF-8 once
//! prost has decoded them; what is checked here is size, count, character set,
//! finiteness and time.

use crate::v1;

mod children;
pub use children::{
    MAX_BATTERY_HEALTH_PERCENT, MAX_CHILD_IDENTIFIER_BYTES, MAX_CHILDREN_PER_BATCH,
    MIN_CHILD_LAST_SYNC_MS, batch_children, child_device, list_refused_children_request,
};
mod fleet;
pub use fleet::*;

/// Largest encoded message either side accepts. tonic enforces it while
/// decoding (as `OUT_OF_RANGE`, which the collector reports as
/// `RESOURCE_EXHAUSTED`).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;
pub const MAX_EVENTS_PER_BATCH: usize = 256;
pub const MAX_ATTRIBUTES: usize = 16;
pub const MAX_LABELS: usize = 32;
pub const MAX_METRIC_NAME_BYTES: usize = 128;
pub const MAX_KEY_BYTES: usize = 64;
pub const MAX_VALUE_BYTES: usize = 256;
/// Free-text fields: hostnames, models, OS names, departments, owners.
pub const MAX_TEXT_BYTES: usize = 256;
pub const MAX_DISKS: usize = 512;
pub const MAX_NETWORK_INTERFACES: usize = 512;
pub const MAX_IP_ADDRESSES: usize = 64;
pub const MAX_TOKEN_BYTES: usize = 256;
pub const MAX_CSR_PEM_BYTES: usize = 16 * 1024;
pub const MAX_DEVICE_ID_BYTES: usize = 64;
pub const INVENTORY_HASH_BYTES: usize = 32;
/// Samples older than this are refused: longer than any agent spool can hold.
pub const MAX_SAMPLE_AGE_MS: i64 = 400 * 24 * 3600 * 1000;
/// Samples further ahead of the collector's clock than this are refused.
pub const MAX_CLOCK_AHEAD_MS: i64 = 3600 * 1000;
pub const MIN_REPORT_INTERVAL_SECONDS: u32 = 1;
pub const MAX_REPORT_INTERVAL_SECONDS: u32 = 24 * 3600;
/// Longest range one metrics query may scan, and the most points it returns.
pub const MAX_QUERY_RANGE_MS: i64 = 400 * 24 * 3600 * 1000;
pub const MAX_QUERY_POINTS: usize = 100_000;
pub const MAX_TOKEN_TTL_SECONDS: u64 = 90 * 24 * 3600;
pub const MAX_CREDENTIAL_LIFETIME_SECONDS: u64 = 5 * 365 * 24 * 3600;
pub const MAX_AUDIT_RECORDS: usize = 100_000;
/// Installed software (issue 4). A full list of 10,000 packages at the
/// longest names and versions still fits MAX_MESSAGE_BYTES with room for a
/// batch's samples (see the test in `validate/software.rs`); real machines have
/// 500 to 5,000.
pub const MAX_PACKAGES_PER_BATCH: usize = 10_000;
pub const MAX_PACKAGE_NAME_BYTES: usize = 128;
pub const MAX_PACKAGE_VERSION_BYTES: usize = 128;
pub const MAX_PACKAGE_ARCH_BYTES: usize = 32;
pub const MAX_PACKAGE_SOURCE_BYTES: usize = 16;
pub const SOFTWARE_HASH_BYTES: usize = 32;
pub const MAX_BATTERIES: usize = 16;
/// Inventory history entries one query returns, and package changes one entry keeps.
pub const MAX_HISTORY_ENTRIES: usize = 10_000;
pub const MAX_HISTORY_PACKAGES: usize = 1_000;

mod software;
pub use software::{
    find_package_request, get_inventory_request, list_inventory_history_request, package,
    software_changes,
};

/// An incoming message broke a rule: which field, and why. Becomes
/// `INVALID_ARGUMENT` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl From<ValidationError> for tonic::Status {
    fn from(err: ValidationError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, ValidationError>;

fn fail(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Text within `max` bytes and without control characters (the check both
/// `text` and the allocation-free fast path of `report_batch` use).
fn text_ok(value: &str, max: usize) -> bool {
    value.len() <= max && !value.chars().any(|c| c.is_control())
}

/// Non-empty, starts with a letter, then letters, digits, '_', '.', '-'.
fn identifier_ok(value: &str, max: usize) -> bool {
    value.len() <= max
        && value
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn timestamp_ok(at_ms: i64, now_ms: i64) -> bool {
    at_ms >= now_ms.saturating_sub(MAX_SAMPLE_AGE_MS)
        && at_ms <= now_ms.saturating_add(MAX_CLOCK_AHEAD_MS)
}

/// Whether `sample` would accept `s`, without building any field name: the
/// ingest path validates ~30 samples per report, and formatting a path per
/// field cost more than the checks. On `false` the caller runs `sample` for
/// the error message.
fn sample_ok(s: &v1::Sample, now_ms: i64) -> bool {
    identifier_ok(&s.metric, MAX_METRIC_NAME_BYTES)
        && s.attributes.len() <= MAX_ATTRIBUTES
        && s.attributes.iter().enumerate().all(|(i, a)| {
            identifier_ok(&a.key, MAX_KEY_BYTES)
                && text_ok(&a.value, MAX_VALUE_BYTES)
                && !s.attributes[..i].iter().any(|b| b.key == a.key)
        })
        && s.value.is_finite()
        && (s.timestamp_unix_ms == 0 || timestamp_ok(s.timestamp_unix_ms, now_ms))
}

fn text(field: &str, value: &str, max: usize) -> Result {
    if value.len() > max {
        return Err(fail(
            field,
            format!("{} bytes, at most {max} allowed", value.len()),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(fail(field, "contains control characters"));
    }
    Ok(())
}

fn required_text(field: &str, value: &str, max: usize) -> Result {
    if value.is_empty() {
        return Err(fail(field, "must not be empty"));
    }
    text(field, value, max)
}

fn count(field: &str, n: usize, max: usize) -> Result {
    if n > max {
        return Err(fail(field, format!("{n} entries, at most {max} allowed")));
    }
    Ok(())
}

/// Metric names and attribute/label keys: `[A-Za-z0-9_.-]`, starting with a letter.
fn identifier(field: &str, value: &str, max: usize) -> Result {
    required_text(field, value, max)?;
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(fail(
            field,
            format!(
                "{value:?} must start with a letter and use only letters, digits, '_', '.', '-'"
            ),
        ));
    }
    Ok(())
}

/// Device ids are issued by the collector: lowercase letters, digits and '-'.
pub fn device_id(value: &str) -> Result {
    if value.is_empty() || value.len() > MAX_DEVICE_ID_BYTES {
        return Err(fail("device_id", "must be 1 to 64 bytes"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(fail("device_id", "only a-z, 0-9 and '-' allowed"));
    }
    Ok(())
}

fn timestamp(field: &str, at_ms: i64, now_ms: i64) -> Result {
    if at_ms < now_ms.saturating_sub(MAX_SAMPLE_AGE_MS) {
        return Err(fail(
            field,
            format!("{at_ms} is older than the 400-day window"),
        ));
    }
    if at_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(fail(
            field,
            format!("{at_ms} is more than an hour ahead of the collector's clock"),
        ));
    }
    Ok(())
}

pub fn attributes(field: &str, attrs: &[v1::Attribute], max: usize) -> Result {
    count(field, attrs.len(), max)?;
    for (i, attr) in attrs.iter().enumerate() {
        identifier(&format!("{field}[{i}].key"), &attr.key, MAX_KEY_BYTES)?;
        text(&format!("{field}[{i}].value"), &attr.value, MAX_VALUE_BYTES)?;
        if attrs[..i].iter().any(|a| a.key == attr.key) {
            return Err(fail(
                format!("{field}[{i}].key"),
                format!("{:?} appears twice", attr.key),
            ));
        }
    }
    Ok(())
}

pub fn sample(field: &str, s: &v1::Sample, now_ms: i64) -> Result {
    identifier(&format!("{field}.metric"), &s.metric, MAX_METRIC_NAME_BYTES)?;
    attributes(
        &format!("{field}.attributes"),
        &s.attributes,
        MAX_ATTRIBUTES,
    )?;
    if !s.value.is_finite() {
        return Err(fail(format!("{field}.value"), "must be a finite number"));
    }
    if s.timestamp_unix_ms != 0 {
        timestamp(
            &format!("{field}.timestamp_unix_ms"),
            s.timestamp_unix_ms,
            now_ms,
        )?;
    }
    Ok(())
}

pub fn inventory(inv: &v1::Inventory) -> Result {
    for (field, value) in [
        ("inventory.hostname", &inv.hostname),
        ("inventory.os_name", &inv.os_name),
        ("inventory.os_version", &inv.os_version),
        ("inventory.kernel_version", &inv.kernel_version),
        ("inventory.architecture", &inv.architecture),
        ("inventory.cpu_model", &inv.cpu_model),
        ("inventory.serial", &inv.serial),
        ("inventory.product_uuid", &inv.product_uuid),
        ("inventory.machine_id", &inv.machine_id),
        ("inventory.manufacturer", &inv.manufacturer),
        ("inventory.model", &inv.model),
        ("inventory.bios_version", &inv.bios_version),
        ("inventory.bios_date", &inv.bios_date),
        ("inventory.chassis_type", &inv.chassis_type),
        ("inventory.agent_version", &inv.agent_version),
    ] {
        text(field, value, MAX_TEXT_BYTES)?;
    }
    count("inventory.disks", inv.disks.len(), MAX_DISKS)?;
    for (i, d) in inv.disks.iter().enumerate() {
        for (name, value) in [
            ("name", &d.name),
            ("mount_point", &d.mount_point),
            ("file_system", &d.file_system),
            ("kind", &d.kind),
            ("model", &d.model),
            ("serial", &d.serial),
        ] {
            text(
                &format!("inventory.disks[{i}].{name}"),
                value,
                MAX_TEXT_BYTES,
            )?;
        }
    }
    count(
        "inventory.network_interfaces",
        inv.network_interfaces.len(),
        MAX_NETWORK_INTERFACES,
    )?;
    for (i, n) in inv.network_interfaces.iter().enumerate() {
        let f = format!("inventory.network_interfaces[{i}]");
        text(&format!("{f}.name"), &n.name, MAX_TEXT_BYTES)?;
        text(&format!("{f}.mac_address"), &n.mac_address, MAX_TEXT_BYTES)?;
        text(&format!("{f}.driver"), &n.driver, MAX_TEXT_BYTES)?;
        count(
            &format!("{f}.ip_addresses"),
            n.ip_addresses.len(),
            MAX_IP_ADDRESSES,
        )?;
        for (j, ip) in n.ip_addresses.iter().enumerate() {
            text(&format!("{f}.ip_addresses[{j}]"), ip, MAX_TEXT_BYTES)?;
        }
    }
    software::batteries(&inv.batteries)
}

pub fn report_batch(batch: &v1::ReportBatch, now_ms: i64) -> Result {
    if batch.sequence == 0 {
        return Err(fail("sequence", "must be at least 1"));
    }
    timestamp("collected_at_unix_ms", batch.collected_at_unix_ms, now_ms)?;
    count("samples", batch.samples.len(), MAX_SAMPLES_PER_BATCH)?;
    for (i, s) in batch.samples.iter().enumerate() {
        if !sample_ok(s, now_ms) {
            sample(&format!("samples[{i}]"), s, now_ms)?;
        }
    }
    if !batch.inventory_hash.is_empty() && batch.inventory_hash.len() != INVENTORY_HASH_BYTES {
        return Err(fail("inventory_hash", "must be a 32-byte SHA-256 or empty"));
    }
    if let Some(inv) = &batch.inventory {
        inventory(inv)?;
    }
    software::batch_fields(batch)?;
    count("events", batch.events.len(), MAX_EVENTS_PER_BATCH)?;
    for (i, e) in batch.events.iter().enumerate() {
        if v1::EventKind::try_from(e.kind).is_err() || e.kind == 0 {
            return Err(fail(format!("events[{i}].kind"), "unknown event kind"));
        }
        timestamp(&format!("events[{i}].at_unix_ms"), e.at_unix_ms, now_ms)?;
        text(&format!("events[{i}].detail"), &e.detail, MAX_TEXT_BYTES)?;
    }
    batch_children(&batch.children, now_ms)
}

fn csr(field: &str, pem: &str) -> Result {
    if pem.len() > MAX_CSR_PEM_BYTES {
        return Err(fail(
            field,
            format!("at most {MAX_CSR_PEM_BYTES} bytes allowed"),
        ));
    }
    if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
        return Err(fail(field, "not a PEM certificate signing request"));
    }
    Ok(())
}

pub fn enroll_request(req: &v1::EnrollRequest) -> Result {
    required_text("token", &req.token, MAX_TOKEN_BYTES)?;
    csr("csr_pem", &req.csr_pem)?;
    let hw = req
        .hardware
        .as_ref()
        .ok_or_else(|| fail("hardware", "is required"))?;
    for (field, value) in [
        ("hardware.serial", &hw.serial),
        ("hardware.product_uuid", &hw.product_uuid),
        ("hardware.machine_id", &hw.machine_id),
        ("hardware.hostname", &hw.hostname),
        ("hardware.os_name", &hw.os_name),
        ("hardware.os_version", &hw.os_version),
        ("hardware.agent_version", &hw.agent_version),
    ] {
        text(field, value, MAX_TEXT_BYTES)?;
    }
    Ok(())
}

pub fn renew_request(req: &v1::RenewCertificateRequest) -> Result {
    csr("csr_pem", &req.csr_pem)
}

pub fn register_device_request(req: &v1::RegisterDeviceRequest) -> Result {
    for (field, value) in [
        ("serial", &req.serial),
        ("product_uuid", &req.product_uuid),
        ("machine_id", &req.machine_id),
        ("model", &req.model),
        ("department", &req.department),
        ("owner", &req.owner),
        ("via_gateway", &req.via_gateway),
    ] {
        text(field, value, MAX_TEXT_BYTES)?;
    }
    let bound =
        !(req.serial.is_empty() && req.product_uuid.is_empty() && req.machine_id.is_empty());
    if bound && req.unbound {
        return Err(fail(
            "unbound",
            "cannot be combined with a hardware identifier",
        ));
    }
    if !bound && !req.unbound {
        return Err(fail(
            "serial",
            "name a serial, product UUID or machine id, or say explicitly that the registration is unbound",
        ));
    }
    if v1::DeviceClass::try_from(req.class).is_err() {
        return Err(fail("class", "unknown device class"));
    }
    attributes("labels", &req.labels, MAX_LABELS)?;
    if req.token_ttl_seconds > MAX_TOKEN_TTL_SECONDS {
        return Err(fail("token_ttl_seconds", "at most 90 days allowed"));
    }
    Ok(())
}

pub fn list_devices_request(req: &v1::ListDevicesRequest) -> Result {
    text("department", &req.department, MAX_TEXT_BYTES)?;
    text("via_gateway", &req.via_gateway, MAX_TEXT_BYTES)?;
    if v1::DeviceClass::try_from(req.class).is_err() {
        return Err(fail("class", "unknown device class"));
    }
    if v1::DeviceStatus::try_from(req.status).is_err() {
        return Err(fail("status", "unknown device status"));
    }
    attributes("labels", &req.labels, MAX_LABELS)
}

pub fn get_device_request(req: &v1::GetDeviceRequest) -> Result {
    required_text("device", &req.device, MAX_TEXT_BYTES)
}

pub fn query_metrics_request(req: &v1::QueryMetricsRequest, now_ms: i64) -> Result {
    required_text("device", &req.device, MAX_TEXT_BYTES)?;
    identifier("metric", &req.metric, MAX_METRIC_NAME_BYTES)?;
    attributes("attributes", &req.attributes, MAX_ATTRIBUTES)?;
    let until = if req.until_unix_ms == 0 {
        now_ms
    } else {
        req.until_unix_ms
    };
    if req.since_unix_ms < 0 || req.since_unix_ms > until {
        return Err(fail("since_unix_ms", "must be before the end of the range"));
    }
    if until - req.since_unix_ms > MAX_QUERY_RANGE_MS {
        return Err(fail("since_unix_ms", "range longer than 400 days"));
    }
    if req.step_ms < 0 {
        return Err(fail("step_ms", "must not be negative"));
    }
    if v1::Aggregation::try_from(req.step_aggregation).is_err() {
        return Err(fail("step_aggregation", "unknown aggregation"));
    }
    Ok(())
}

pub fn reenroll_device_request(req: &v1::ReenrollDeviceRequest) -> Result {
    required_text("device", &req.device, MAX_TEXT_BYTES)?;
    if req.token_ttl_seconds > MAX_TOKEN_TTL_SECONDS {
        return Err(fail("token_ttl_seconds", "at most 90 days allowed"));
    }
    Ok(())
}

pub fn revoke_device_request(req: &v1::RevokeDeviceRequest) -> Result {
    required_text("device", &req.device, MAX_TEXT_BYTES)?;
    text("reason", &req.reason, MAX_TEXT_BYTES)
}

/// Credential names become part of a URI and of audit records.
pub fn issue_credential_request(req: &v1::IssueCredentialRequest) -> Result {
    required_text("name", &req.name, MAX_KEY_BYTES)?;
    if !req
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(fail(
            "name",
            "only letters, digits, '-', '_', '.', '@' allowed",
        ));
    }
    if req.role.parse::<crate::identity::Role>().is_err() {
        return Err(fail(
            "role",
            "must be viewer, operator, provisioner or admin",
        ));
    }
    csr("csr_pem", &req.csr_pem)?;
    if req.lifetime_seconds > MAX_CREDENTIAL_LIFETIME_SECONDS {
        return Err(fail("lifetime_seconds", "at most 5 years allowed"));
    }
    Ok(())
}

pub fn list_audit_request(req: &v1::ListAuditRequest) -> Result {
    text("action_prefix", &req.action_prefix, MAX_KEY_BYTES)?;
    text("device_id", &req.device_id, MAX_DEVICE_ID_BYTES)?;
    if req.limit as usize > MAX_AUDIT_RECORDS {
        return Err(fail(
            "limit",
            format!("at most {MAX_AUDIT_RECORDS} allowed"),
        ));
    }
    Ok(())
}

pub fn agent_settings(s: &v1::AgentSettings) -> Result {
    let interval = s.report_interval_seconds;
    if interval != 0
        && !(MIN_REPORT_INTERVAL_SECONDS..=MAX_REPORT_INTERVAL_SECONDS).contains(&interval)
    {
        return Err(fail(
            "report_interval_seconds",
            "must be between 1 s and 24 h",
        ));
    }
    Ok(())
}

// The alert RPCs (issue 5).
mod alerts;
pub use alerts::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(now: i64) -> v1::ReportBatch {
        v1::ReportBatch {
            sequence: 1,
            collected_at_unix_ms: now,
            samples: vec![v1::Sample {
                metric: "system.filesystem.utilization".into(),
                attributes: vec![v1::Attribute {
                    key: "mountpoint".into(),
                    value: "/".into(),
                }],
                value: 0.5,
                timestamp_unix_ms: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_fast_sample_check_agrees_with_the_detailed_one() {
        let now = 1_800_000_000_000;
        let attr = |k: &str, v: &str| v1::Attribute {
            key: k.into(),
            value: v.into(),
        };
        let base = batch(now).samples.remove(0);
        let mut cases = vec![base.clone()];
        for metric in [
            "",
            "9cpu",
            "a b",
            "cpu\u{7}",
            "ünï",
            "a.b-c_d",
            &"m".repeat(129),
        ] {
            cases.push(v1::Sample {
                metric: metric.into(),
                ..base.clone()
            });
        }
        for attrs in [
            vec![attr("k", "v"), attr("k", "w")],
            vec![attr("", "v")],
            vec![attr("k", "line\nbreak")],
            vec![attr("k", &"v".repeat(257))],
            vec![attr("k", "ünïcode ok")],
            (0..17).map(|i| attr(&format!("k{i}"), "v")).collect(),
        ] {
            cases.push(v1::Sample {
                attributes: attrs,
                ..base.clone()
            });
        }
        for (value, ts) in [
            (f64::NAN, 0),
            (f64::INFINITY, 0),
            (1.0, now - MAX_SAMPLE_AGE_MS - 1),
            (1.0, now - MAX_SAMPLE_AGE_MS),
            (1.0, now + MAX_CLOCK_AHEAD_MS),
            (1.0, now + MAX_CLOCK_AHEAD_MS + 1),
        ] {
            cases.push(v1::Sample {
                value,
                timestamp_unix_ms: ts,
                ..base.clone()
            });
        }
        for case in &cases {
            assert_eq!(
                sample_ok(case, now),
                sample("s", case, now).is_ok(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn a_normal_batch_passes() {
        let now = 1_800_000_000_000;
        assert_eq!(report_batch(&batch(now), now), Ok(()));
    }

    #[test]
    fn bad_batches_name_the_field() {
        let now = 1_800_000_000_000;
        type Mutation = Box<dyn Fn(&mut v1::ReportBatch)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|b| b.sequence = 0), "sequence"),
            (
                Box::new(|b| b.samples[0].value = f64::NAN),
                "samples[0].value",
            ),
            (
                Box::new(|b| b.samples[0].value = f64::INFINITY),
                "samples[0].value",
            ),
            (
                Box::new(|b| b.samples[0].metric = "9bad".into()),
                "samples[0].metric",
            ),
            (
                Box::new(|b| b.samples[0].metric = "a\u{0}b".into()),
                "samples[0].metric",
            ),
            (
                Box::new(|b| b.samples[0].attributes[0].value = "x".repeat(MAX_VALUE_BYTES + 1)),
                "samples[0].attributes[0].value",
            ),
            (
                Box::new(|b| b.samples = vec![b.samples[0].clone(); MAX_SAMPLES_PER_BATCH + 1]),
                "samples",
            ),
            (
                Box::new(|b| b.collected_at_unix_ms += 2 * MAX_CLOCK_AHEAD_MS),
                "collected_at_unix_ms",
            ),
            (
                Box::new(|b| b.samples[0].timestamp_unix_ms = 1),
                "samples[0].timestamp_unix_ms",
            ),
            (
                Box::new(|b| b.inventory_hash = vec![0; 7]),
                "inventory_hash",
            ),
        ];
        for (mutate, field) in cases {
            let mut b = batch(now);
            mutate(&mut b);
            let err = report_batch(&b, now).expect_err(field);
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn registration_must_be_bound_or_say_unbound() {
        let mut req = v1::RegisterDeviceRequest::default();
        assert!(register_device_request(&req).is_err());
        req.unbound = true;
        assert!(register_device_request(&req).is_ok());
        req.serial = "SN1".into();
        assert!(register_device_request(&req).is_err());
        req.unbound = false;
        assert!(register_device_request(&req).is_ok());
    }
}
