//! Validation of installed-software changes, batteries and the inventory
//! queries (issue 4). The limits are in `validate.rs` with the others.

use super::{
    MAX_BATTERIES, MAX_HISTORY_ENTRIES, MAX_PACKAGE_ARCH_BYTES, MAX_PACKAGE_NAME_BYTES,
    MAX_PACKAGE_SOURCE_BYTES, MAX_PACKAGE_VERSION_BYTES, MAX_PACKAGES_PER_BATCH, MAX_TEXT_BYTES,
    Result, SOFTWARE_HASH_BYTES, count, fail, required_text, text,
};
use crate::v1;
use std::collections::HashSet;

pub fn package(field: &str, p: &v1::Package) -> Result {
    required_text(&format!("{field}.name"), &p.name, MAX_PACKAGE_NAME_BYTES)?;
    text(
        &format!("{field}.version"),
        &p.version,
        MAX_PACKAGE_VERSION_BYTES,
    )?;
    text(
        &format!("{field}.architecture"),
        &p.architecture,
        MAX_PACKAGE_ARCH_BYTES,
    )?;
    text(
        &format!("{field}.source"),
        &p.source,
        MAX_PACKAGE_SOURCE_BYTES,
    )
}

fn hash(field: &str, value: &[u8], may_be_empty: bool) -> Result {
    if (value.is_empty() && may_be_empty) || value.len() == SOFTWARE_HASH_BYTES {
        return Ok(());
    }
    Err(fail(field, "must be a 32-byte SHA-256"))
}

/// A change to a device's software set. Keys are unique within `upserted`: the
/// collector keeps one package per (name, architecture), so a duplicate could
/// never produce the hash the agent computed.
pub fn software_changes(field: &str, c: &v1::SoftwareChanges) -> Result {
    count(
        field,
        c.upserted.len() + c.removed.len(),
        MAX_PACKAGES_PER_BATCH,
    )?;
    let mut keys = HashSet::with_capacity(c.upserted.len());
    for (i, p) in c.upserted.iter().enumerate() {
        let f = format!("{field}.upserted[{i}]");
        package(&f, p)?;
        if !keys.insert((p.name.as_str(), p.architecture.as_str())) {
            return Err(fail(
                f,
                format!("{}:{} appears twice", p.name, p.architecture),
            ));
        }
    }
    for (i, k) in c.removed.iter().enumerate() {
        let f = format!("{field}.removed[{i}]");
        required_text(&format!("{f}.name"), &k.name, MAX_PACKAGE_NAME_BYTES)?;
        text(
            &format!("{f}.architecture"),
            &k.architecture,
            MAX_PACKAGE_ARCH_BYTES,
        )?;
    }
    hash(&format!("{field}.base_hash"), &c.base_hash, c.full)?;
    hash(&format!("{field}.result_hash"), &c.result_hash, false)
}

/// The batch's own software fields (8 and 9).
pub(super) fn batch_fields(batch: &v1::ReportBatch) -> Result {
    hash("software_hash", &batch.software_hash, true)?;
    if let Some(c) = &batch.software {
        software_changes("software", c)?;
    }
    Ok(())
}

pub(super) fn batteries(list: &[v1::Battery]) -> Result {
    count("inventory.batteries", list.len(), MAX_BATTERIES)?;
    for (i, b) in list.iter().enumerate() {
        let f = format!("inventory.batteries[{i}]");
        for (name, value) in [
            ("name", &b.name),
            ("manufacturer", &b.manufacturer),
            ("model", &b.model),
            ("serial", &b.serial),
            ("technology", &b.technology),
        ] {
            text(&format!("{f}.{name}"), value, MAX_TEXT_BYTES)?;
        }
        if !b.design_capacity_wh.is_finite() || b.design_capacity_wh < 0.0 {
            return Err(fail(
                format!("{f}.design_capacity_wh"),
                "must be a finite, non-negative number",
            ));
        }
    }
    Ok(())
}

pub fn get_inventory_request(req: &v1::GetInventoryRequest) -> Result {
    required_text("device", &req.device, MAX_TEXT_BYTES)
}

pub fn list_inventory_history_request(req: &v1::ListInventoryHistoryRequest) -> Result {
    required_text("device", &req.device, MAX_TEXT_BYTES)?;
    if req.since_unix_ms < 0 {
        return Err(fail("since_unix_ms", "must not be negative"));
    }
    if req.limit as usize > MAX_HISTORY_ENTRIES {
        return Err(fail(
            "limit",
            format!("at most {MAX_HISTORY_ENTRIES} allowed"),
        ));
    }
    Ok(())
}

pub fn find_package_request(req: &v1::FindPackageRequest) -> Result {
    required_text("name", &req.name, MAX_PACKAGE_NAME_BYTES)
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_MESSAGE_BYTES, report_batch};
    use super::*;
    use prost::Message;

    fn pkg(name: &str, version: &str) -> v1::Package {
        v1::Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: "dpkg".into(),
        }
    }

    fn full(packages: Vec<v1::Package>) -> v1::SoftwareChanges {
        v1::SoftwareChanges {
            full: true,
            result_hash: crate::software_hash(&packages),
            upserted: packages,
            ..Default::default()
        }
    }

    #[test]
    fn the_largest_full_list_fits_one_message_with_samples() {
        let now = 1_800_000_000_000;
        let packages: Vec<v1::Package> = (0..MAX_PACKAGES_PER_BATCH)
            .map(|i| v1::Package {
                name: format!("{i:0>width$}", width = MAX_PACKAGE_NAME_BYTES),
                version: "9".repeat(MAX_PACKAGE_VERSION_BYTES),
                architecture: "a".repeat(MAX_PACKAGE_ARCH_BYTES),
                source: "s".repeat(MAX_PACKAGE_SOURCE_BYTES),
            })
            .collect();
        let batch = v1::ReportBatch {
            sequence: 1,
            collected_at_unix_ms: now,
            samples: vec![
                v1::Sample {
                    metric: "system.filesystem.utilization".into(),
                    attributes: vec![v1::Attribute {
                        key: "mountpoint".into(),
                        value: "/srv/some/long/mount/point".into(),
                    }],
                    value: 0.5,
                    timestamp_unix_ms: 0,
                };
                1_000
            ],
            software_hash: crate::software_hash(&packages),
            software: Some(full(packages)),
            ..Default::default()
        };
        assert_eq!(report_batch(&batch, now), Ok(()));
        let size = batch.encoded_len();
        assert!(size < MAX_MESSAGE_BYTES, "{size} bytes");
    }

    #[test]
    fn bad_changes_name_the_field() {
        let ok = full(vec![pkg("bash", "5.2-1"), pkg("coreutils", "9.1-1")]);
        assert_eq!(software_changes("software", &ok), Ok(()));
        type Mutation = Box<dyn Fn(&mut v1::SoftwareChanges)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|c| c.upserted[1].name = "bash".into()),
                "software.upserted[1]",
            ),
            (
                Box::new(|c| c.upserted[0].name.clear()),
                "software.upserted[0].name",
            ),
            (
                Box::new(|c| c.upserted[0].version = "1\n2".into()),
                "software.upserted[0].version",
            ),
            (
                Box::new(|c| c.upserted[0].architecture = "x".repeat(33)),
                "software.upserted[0].architecture",
            ),
            (Box::new(|c| c.result_hash.clear()), "software.result_hash"),
            (
                Box::new(|c| {
                    c.full = false;
                    c.base_hash.clear();
                }),
                "software.base_hash",
            ),
            (
                Box::new(|c| c.removed = vec![v1::PackageKey::default(); MAX_PACKAGES_PER_BATCH]),
                "software",
            ),
        ];
        for (mutate, field) in cases {
            let mut c = ok.clone();
            mutate(&mut c);
            let err = software_changes("software", &c).expect_err(field);
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn batteries_are_checked() {
        let mut b = vec![v1::Battery {
            name: "BAT0".into(),
            design_capacity_wh: 50.0,
            ..Default::default()
        }];
        assert_eq!(batteries(&b), Ok(()));
        b[0].design_capacity_wh = f64::NAN;
        assert_eq!(
            batteries(&b).unwrap_err().field,
            "inventory.batteries[0].design_capacity_wh"
        );
    }

    #[test]
    fn software_hash_ignores_order_and_source() {
        let a = [pkg("a", "1"), pkg("b", "2")];
        let mut b = [pkg("b", "2"), pkg("a", "1")];
        b[0].source = "rpm".into();
        assert_eq!(crate::software_hash(&a), crate::software_hash(&b));
        b[0].version = "3".into();
        assert_ne!(crate::software_hash(&a), crate::software_hash(&b));
        assert_eq!(crate::software_hash(&[]).len(), SOFTWARE_HASH_BYTES);
    }
}
