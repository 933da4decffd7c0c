//! Assembling a `ReportBatch` the collector will accept, and showing one as JSON.

use serde_json::{Value, json};
use vakt_proto::v1::{Event, EventKind, Inventory, ReportBatch, Sample};
use vakt_proto::validate::{self, MAX_EVENTS_PER_BATCH, MAX_SAMPLES_PER_BATCH};

/// Builds a batch and makes it pass `validate::report_batch`: samples or events
/// the collector would refuse are dropped (and logged) rather than letting one
/// odd mount point cost the whole report.
pub fn assemble(
    sequence: u64,
    now_ms: i64,
    samples: Vec<Sample>,
    inventory_hash: Vec<u8>,
    inventory: Option<Inventory>,
    events: Vec<Event>,
    dropped_reports: u64,
) -> anyhow::Result<ReportBatch> {
    let mut samples: Vec<Sample> = samples
        .into_iter()
        .filter(|s| match validate::sample("sample", s, now_ms) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(metric = %s.metric, "skipping sample: {e}");
                false
            }
        })
        .collect();
    if samples.len() > MAX_SAMPLES_PER_BATCH {
        tracing::warn!(
            "{} samples, keeping the first {MAX_SAMPLES_PER_BATCH}",
            samples.len()
        );
        samples.truncate(MAX_SAMPLES_PER_BATCH);
    }
    let mut events: Vec<Event> = events
        .into_iter()
        .filter(|e| {
            let alone = ReportBatch {
                sequence: 1,
                collected_at_unix_ms: now_ms,
                events: vec![e.clone()],
                ..Default::default()
            };
            match validate::report_batch(&alone, now_ms) {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!("leaving out an event the collector would refuse: {err}");
                    false
                }
            }
        })
        .collect();
    events.truncate(MAX_EVENTS_PER_BATCH);
    let mut batch = ReportBatch {
        sequence,
        collected_at_unix_ms: now_ms,
        samples,
        inventory_hash,
        inventory,
        events,
        dropped_reports,
        // Set by the caller: the software diff depends on delivery state.
        software: None,
        software_hash: Vec::new(),
    };
    if let Some(Err(e)) = batch.inventory.as_ref().map(validate::inventory) {
        // fit_limits should make this impossible; a report without its inventory
        // is still worth more than no report.
        tracing::warn!("leaving out an inventory the collector would refuse: {e}");
        batch.inventory = None;
    }
    validate::report_batch(&batch, now_ms)
        .map_err(|e| anyhow::anyhow!("assembled report does not validate: {e}"))?;
    Ok(batch)
}

pub fn event(kind: EventKind, detail: &str) -> Event {
    Event {
        kind: kind as i32,
        at_unix_ms: vakt_proto::now_unix_ms(),
        detail: detail.to_owned(),
    }
}

/// A readable JSON rendering of a batch: field names as in the .proto, enums
/// by name, the hash in hex.
pub fn to_json(batch: &ReportBatch) -> Value {
    let attrs = |a: &[vakt_proto::v1::Attribute]| {
        Value::Object(
            a.iter()
                .map(|a| (a.key.clone(), Value::String(a.value.clone())))
                .collect(),
        )
    };
    json!({
        "sequence": batch.sequence,
        "collected_at_unix_ms": batch.collected_at_unix_ms,
        "samples": batch.samples.iter().map(|s| json!({
            "metric": s.metric,
            "attributes": attrs(&s.attributes),
            "value": s.value,
            "timestamp_unix_ms": s.timestamp_unix_ms,
        })).collect::<Vec<_>>(),
        "inventory_hash": crate::state::to_hex(&batch.inventory_hash),
        "inventory": batch.inventory.as_ref().map(inventory_json),
        "events": batch.events.iter().map(|e| json!({
            "kind": EventKind::try_from(e.kind).map_or("unknown", |k| k.short_name()),
            "at_unix_ms": e.at_unix_ms,
            "detail": e.detail,
        })).collect::<Vec<_>>(),
        "dropped_reports": batch.dropped_reports,
        "software_hash": crate::state::to_hex(&batch.software_hash),
        "software": batch.software.as_ref().map(software_json),
    })
}

/// Installed software: the package count and the packages, as the batch
/// carries them (a full list from `collect --once`).
fn software_json(c: &vakt_proto::v1::SoftwareChanges) -> Value {
    let package = |p: &vakt_proto::v1::Package| {
        json!({
            "name": p.name,
            "version": p.version,
            "architecture": p.architecture,
            "source": p.source,
        })
    };
    json!({
        "full": c.full,
        "package_count": c.upserted.len(),
        "packages": c.upserted.iter().map(package).collect::<Vec<_>>(),
        "removed": c.removed.iter().map(|k| json!({
            "name": k.name,
            "architecture": k.architecture,
        })).collect::<Vec<_>>(),
        "base_hash": crate::state::to_hex(&c.base_hash),
        "result_hash": crate::state::to_hex(&c.result_hash),
    })
}

fn inventory_json(inv: &Inventory) -> Value {
    json!({
        "hostname": inv.hostname,
        "os_name": inv.os_name,
        "os_version": inv.os_version,
        "kernel_version": inv.kernel_version,
        "architecture": inv.architecture,
        "cpu_model": inv.cpu_model,
        "cpu_logical_cores": inv.cpu_logical_cores,
        "cpu_physical_cores": inv.cpu_physical_cores,
        "memory_total_bytes": inv.memory_total_bytes,
        "swap_total_bytes": inv.swap_total_bytes,
        "disks": inv.disks.iter().map(|d| json!({
            "name": d.name,
            "mount_point": d.mount_point,
            "file_system": d.file_system,
            "total_bytes": d.total_bytes,
            "removable": d.removable,
            "kind": d.kind,
            "model": d.model,
            "serial": d.serial,
        })).collect::<Vec<_>>(),
        "network_interfaces": inv.network_interfaces.iter().map(|n| json!({
            "name": n.name,
            "mac_address": n.mac_address,
            "ip_addresses": n.ip_addresses,
            "driver": n.driver,
        })).collect::<Vec<_>>(),
        "serial": inv.serial,
        "product_uuid": inv.product_uuid,
        "machine_id": inv.machine_id,
        "manufacturer": inv.manufacturer,
        "model": inv.model,
        "bios_version": inv.bios_version,
        "bios_date": inv.bios_date,
        "chassis_type": inv.chassis_type,
        "agent_version": inv.agent_version,
        "boot_time_unix_ms": inv.boot_time_unix_ms,
        "batteries": inv.batteries.iter().map(|b| json!({
            "name": b.name,
            "manufacturer": b.manufacturer,
            "model": b.model,
            "serial": b.serial,
            "technology": b.technology,
            "design_capacity_wh": b.design_capacity_wh,
        })).collect::<Vec<_>>(),
    })
}

/// One line per sample, Prometheus exposition style, for `collect -o text`.
pub fn to_text(batch: &ReportBatch) -> String {
    let mut out = String::new();
    for s in &batch.samples {
        let labels: Vec<String> = s
            .attributes
            .iter()
            .map(|a| format!("{}={:?}", a.key, a.value))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        out.push_str(&format!("{}{labels} {}\n", s.metric, s.value));
    }
    for e in &batch.events {
        let kind = EventKind::try_from(e.kind).map_or("unknown", |k| k.short_name());
        out.push_str(&format!("# event {kind} {}\n", e.detail));
    }
    if let Some(inv) = &batch.inventory {
        out.push_str(&format!(
            "# inventory {} {} {} ({} disks, {} interfaces)\n",
            inv.hostname,
            inv.os_name,
            inv.os_version,
            inv.disks.len(),
            inv.network_interfaces.len()
        ));
    }
    if let Some(software) = &batch.software {
        out.push_str(&format!(
            "# software {} packages ({})\n",
            software.upserted.len(),
            if software.full {
                "full list"
            } else {
                "changed"
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vakt_proto::v1::Attribute;

    #[test]
    fn bad_samples_are_dropped_not_fatal() {
        let now = vakt_proto::now_unix_ms();
        let good = Sample {
            metric: "system.uptime".into(),
            value: 1.0,
            ..Default::default()
        };
        let bad = Sample {
            metric: "system.filesystem.utilization".into(),
            attributes: vec![Attribute {
                key: "mountpoint".into(),
                value: "/mnt/with\nnewline".into(),
            }],
            value: 0.5,
            ..Default::default()
        };
        let ancient = Event {
            kind: EventKind::Boot as i32,
            at_unix_ms: 1,
            detail: String::new(),
        };
        let batch = assemble(1, now, vec![good, bad], vec![0; 32], None, vec![ancient], 0).unwrap();
        assert_eq!(batch.samples.len(), 1);
        assert!(batch.events.is_empty());
        let json = to_json(&batch);
        assert_eq!(json["samples"][0]["metric"], "system.uptime");
    }
}
