use super::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
    (dir, store)
}

fn pkg(name: &str, version: &str, arch: &str) -> v1::Package {
    v1::Package {
        name: name.into(),
        version: version.into(),
        architecture: arch.into(),
        source: "dpkg".into(),
    }
}

fn hash(packages: &[v1::Package]) -> Vec<u8> {
    vakt_proto::software_hash(packages)
}

fn full(packages: &[v1::Package]) -> v1::SoftwareChanges {
    v1::SoftwareChanges {
        full: true,
        upserted: packages.to_vec(),
        result_hash: hash(packages),
        ..Default::default()
    }
}

fn report(sequence: u64, software: Option<v1::SoftwareChanges>, current: &[u8]) -> v1::ReportBatch {
    v1::ReportBatch {
        sequence,
        collected_at_unix_ms: 1_000 + sequence as i64,
        software,
        software_hash: current.to_vec(),
        ..Default::default()
    }
}

fn set_a() -> Vec<v1::Package> {
    vec![
        pkg("bash", "5.2", "amd64"),
        pkg("libc6", "2.36", "amd64"),
        pkg("libc6", "2.36", "i386"),
        pkg("vim", "9.0", "amd64"),
    ]
}

fn set_b() -> Vec<v1::Package> {
    vec![
        pkg("bash", "5.3", "amd64"),
        pkg("curl", "7.88", "amd64"),
        pkg("libc6", "2.36", "amd64"),
        pkg("libc6", "2.36", "i386"),
    ]
}

fn diff_a_to_b() -> v1::SoftwareChanges {
    v1::SoftwareChanges {
        full: false,
        upserted: vec![pkg("bash", "5.3", "amd64"), pkg("curl", "7.88", "amd64")],
        removed: vec![v1::PackageKey {
            name: "vim".into(),
            architecture: "amd64".into(),
        }],
        base_hash: hash(&set_a()),
        result_hash: hash(&set_b()),
    }
}

#[tokio::test]
async fn a_full_list_then_a_diff_are_applied_with_history_and_index() {
    let (_dir, store) = open();
    let a = set_a();
    let got = store
        .ingest("d-1", &report(1, Some(full(&a)), &hash(&a)), 10)
        .unwrap();
    assert!(!got.need_full_software);
    assert_eq!(store.packages("d-1").unwrap(), a);
    let state = store.software_state("d-1").unwrap();
    assert_eq!((state.hash.clone(), state.package_count), (hash(&a), 4));

    let b = set_b();
    let got = store
        .ingest("d-1", &report(2, Some(diff_a_to_b()), &hash(&b)), 20)
        .unwrap();
    assert!(!got.need_full_software);
    assert_eq!(store.packages("d-1").unwrap(), b);

    let history = store.inventory_history("d-1", 0, 100).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            history[0].incremental,
            history[0].added,
            history[0].sequence
        ),
        (false, 4, 1)
    );
    let last = &history[1];
    assert_eq!(
        (last.incremental, last.added, last.removed, last.changed),
        (true, 1, 1, 1)
    );
    assert!(
        last.packages
            .iter()
            .any(|p| p.name == "bash" && p.old_version == "5.2" && p.new_version == "5.3")
    );

    // The fleet index follows: vim is gone, libc6 is there for both arches.
    assert!(store.find_package("vim").unwrap().is_empty());
    let libc = store.find_package("libc6").unwrap();
    assert_eq!(libc.len(), 2);
    assert_eq!(libc[0].device_id, "d-1");
    assert_eq!(libc[1].architecture, "i386");
    let bash = store.find_package("bash").unwrap();
    assert_eq!(bash[0].version, "5.3");
    // A prefix of a name is not the name.
    assert!(store.find_package("bas").unwrap().is_empty());
}

#[tokio::test]
async fn a_diff_against_another_base_is_ignored_and_the_full_list_requested() {
    let (_dir, store) = open();
    // A fresh device: nothing stored, so a diff cannot apply.
    let got = store
        .ingest("d-1", &report(1, Some(diff_a_to_b()), &hash(&set_b())), 10)
        .unwrap();
    assert!(got.need_full_software);
    assert!(store.packages("d-1").unwrap().is_empty());
    assert!(store.inventory_history("d-1", 0, 100).unwrap().is_empty());
    // Batches without changes keep asking while the hash differs.
    let got = store
        .ingest("d-1", &report(2, None, &hash(&set_b())), 20)
        .unwrap();
    assert!(got.need_full_software);

    let b = set_b();
    let got = store
        .ingest("d-1", &report(3, Some(full(&b)), &hash(&b)), 30)
        .unwrap();
    assert!(!got.need_full_software);
    assert_eq!(store.packages("d-1").unwrap(), b);

    // A diff whose result hash is wrong changes nothing.
    let mut bad = diff_a_to_b();
    bad.base_hash = hash(&b);
    let got = store
        .ingest("d-1", &report(4, Some(bad), &hash(&set_a())), 40)
        .unwrap();
    assert!(got.need_full_software);
    assert_eq!(store.packages("d-1").unwrap(), b);

    // An agent that cannot read its package database asks for nothing.
    let got = store.ingest("d-1", &report(5, None, &[]), 50).unwrap();
    assert!(!got.need_full_software);
}

#[tokio::test]
async fn an_unchanged_full_list_is_not_history_and_a_resend_writes_nothing() {
    let (_dir, store) = open();
    let a = set_a();
    store
        .ingest("d-1", &report(1, Some(full(&a)), &hash(&a)), 10)
        .unwrap();
    store
        .ingest("d-1", &report(2, Some(full(&a)), &hash(&a)), 20)
        .unwrap();
    assert_eq!(store.inventory_history("d-1", 0, 100).unwrap().len(), 1);
    // A resend of sequence 2 with other content is deduplicated.
    let empty: Vec<v1::Package> = Vec::new();
    let got = store
        .ingest("d-1", &report(2, Some(full(&empty)), &hash(&empty)), 30)
        .unwrap();
    assert!(!got.stored);
    assert_eq!(store.packages("d-1").unwrap().len(), 4);
    // Another device's set is its own.
    assert!(store.packages("d-10").unwrap().is_empty());
}

#[tokio::test]
async fn inventory_changes_name_their_fields() {
    let (_dir, store) = open();
    let mut inv = v1::Inventory {
        hostname: "web-1".into(),
        os_version: "12".into(),
        ..Default::default()
    };
    let with = |sequence: u64, inv: &v1::Inventory| v1::ReportBatch {
        sequence,
        collected_at_unix_ms: 1,
        inventory_hash: vakt_proto::inventory_hash(inv),
        inventory: Some(inv.clone()),
        ..Default::default()
    };
    store.ingest("d-1", &with(1, &inv), 10).unwrap();
    store.ingest("d-1", &with(2, &inv), 20).unwrap();
    // NTP moved the kernel's idea of the boot time: sent again, not history.
    inv.boot_time_unix_ms += 1_000;
    store.ingest("d-1", &with(3, &inv), 25).unwrap();
    inv.os_version = "13".into();
    inv.batteries.push(v1::Battery {
        name: "BAT0".into(),
        design_capacity_wh: 50.0,
        ..Default::default()
    });
    store.ingest("d-1", &with(4, &inv), 30).unwrap();
    let history = store.inventory_history("d-1", 0, 100).unwrap();
    assert_eq!(history.len(), 2, "an unchanged inventory is not history");
    assert_eq!(
        history[0].changed_fields,
        ["hostname", "os_version"],
        "{history:?}"
    );
    assert_eq!(history[1].changed_fields, ["os_version", "batteries"]);
    assert_eq!(history[1].kind, "inventory");
    // since and limit.
    assert_eq!(store.inventory_history("d-1", 25, 100).unwrap().len(), 1);
    let newest = store.inventory_history("d-1", 0, 1).unwrap();
    assert_eq!(newest[0].sequence, 4);
}
