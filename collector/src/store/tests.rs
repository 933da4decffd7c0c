use super::*;

fn token(now: i64) -> TokenRecord {
    TokenRecord {
        device_id: String::new(),
        secret_sha256: "00".into(),
        created_at_ms: now,
        expires_at_ms: now + 1000,
        used_at_ms: 0,
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
    (dir, store)
}

fn batch(sequence: u64, ts: i64, value: f64) -> v1::ReportBatch {
    v1::ReportBatch {
        sequence,
        collected_at_unix_ms: ts,
        samples: vec![
            v1::Sample {
                metric: "system.cpu.utilization".into(),
                value,
                ..Default::default()
            },
            v1::Sample {
                metric: "system.filesystem.utilization".into(),
                attributes: vec![v1::Attribute {
                    key: "mountpoint".into(),
                    value: "/".into(),
                }],
                value: value / 2.0,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn the_same_serial_registers_one_device_and_a_new_token_replaces_the_old() {
    let (_dir, store) = open();
    let reg = Registration {
        serial: "SN1".into(),
        department: "IT".into(),
        class: "laptop".into(),
        ..Default::default()
    };
    let (first, created) = store
        .register(reg.clone(), "d-1".into(), "t1".into(), token(10))
        .await
        .unwrap();
    assert!(created);
    let again = Registration {
        serial: "SN1".into(),
        class: "unknown".into(),
        owner: "K. Berg".into(),
        ..Default::default()
    };
    let (second, created) = store
        .register(again, "d-2".into(), "t2".into(), token(20))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        second.department, "IT",
        "an update keeps what it does not name"
    );
    assert_eq!(second.class, "laptop");
    assert_eq!(second.owner, "K. Berg");
    assert_eq!(first.device_id, second.device_id);
    assert_eq!(store.devices().unwrap().len(), 1);
    assert!(store.token("t1").unwrap().is_none());
    assert_eq!(store.token("t2").unwrap().unwrap().device_id, "d-1");
    assert_eq!(store.find_device("SN1").unwrap().unwrap().device_id, "d-1");
}

#[tokio::test]
async fn a_token_completes_exactly_one_enrollment() {
    let (_dir, store) = open();
    let reg = Registration {
        machine_id: "m".into(),
        ..Default::default()
    };
    store
        .register(reg, "d-1".into(), "t1".into(), token(10))
        .await
        .unwrap();
    let set = |d: &mut DeviceRecord| d.enrolled_at_ms = 11;
    assert!(store.complete_enrollment("t1", 11, set).unwrap().is_some());
    assert!(store.complete_enrollment("t1", 12, set).unwrap().is_none());
    assert!(
        store
            .complete_enrollment("nope", 12, set)
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_expired_token_enrolls_nothing() {
    let (_dir, store) = open();
    let reg = Registration {
        machine_id: "m".into(),
        ..Default::default()
    };
    store
        .register(reg, "d-1".into(), "t1".into(), token(10))
        .await
        .unwrap();
    assert!(
        store
            .complete_enrollment("t1", 5000, |_| {})
            .unwrap()
            .is_none()
    );
    assert_eq!(store.device("d-1").unwrap().unwrap().enrolled_at_ms, 0);
}

#[tokio::test]
async fn a_resent_sequence_is_acknowledged_but_not_stored_twice() {
    let (_dir, store) = open();
    let first = store.ingest("d-1", &batch(1, 1000, 0.5), 1000).unwrap();
    assert_eq!(first.acked_sequence, 1);
    assert!(first.stored);
    let again = store.ingest("d-1", &batch(1, 1500, 0.9), 1500).unwrap();
    assert_eq!(again.acked_sequence, 1);
    assert!(!again.stored);
    store.ingest("d-1", &batch(2, 2000, 0.7), 2000).unwrap();
    store.durable().await.unwrap();
    let series = store
        .query_series("d-1", "system.cpu.utilization", &[], 0, 10_000, 100)
        .unwrap();
    assert_eq!(series.len(), 1);
    let points: Vec<(i64, f64)> = series[0]
        .points
        .iter()
        .map(|p| (p.timestamp_unix_ms, p.value))
        .collect();
    assert_eq!(points, vec![(1000, 0.5), (2000, 0.7)]);
    assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 2);
}

#[tokio::test]
async fn queries_honour_range_attributes_and_point_cap() {
    let (_dir, store) = open();
    for i in 1..=10u64 {
        store
            .ingest("d-1", &batch(i, i as i64 * 1000, 0.1), i as i64 * 1000)
            .unwrap();
    }
    store.ingest("d-2", &batch(1, 5000, 0.9), 5000).unwrap();
    let fs = store
        .query_series(
            "d-1",
            "system.filesystem.utilization",
            &[v1::Attribute {
                key: "mountpoint".into(),
                value: "/".into(),
            }],
            3000,
            5000,
            100,
        )
        .unwrap();
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].points.len(), 3);
    let none = store
        .query_series(
            "d-1",
            "system.filesystem.utilization",
            &[v1::Attribute {
                key: "mountpoint".into(),
                value: "/home".into(),
            }],
            0,
            i64::MAX,
            100,
        )
        .unwrap();
    assert!(none.is_empty());
    assert!(matches!(
        store.query_series("d-1", "system.cpu.utilization", &[], 0, 100_000, 5),
        Err(StoreError::TooManyPoints(5))
    ));
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        store.ingest("d-1", &batch(7, 1000, 0.5), 1000).unwrap();
        store.durable().await.unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
    assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 7);
}

#[tokio::test]
async fn enrolling_again_restarts_the_sequence_and_denylists_the_old_certificates() {
    let (_dir, store) = open();
    let reg = Registration {
        machine_id: "m".into(),
        ..Default::default()
    };
    store
        .register(reg.clone(), "d-1".into(), "t1".into(), token(10))
        .await
        .unwrap();
    store
        .complete_enrollment("t1", 11, |d| Store::record_certificate(d, "aa", 99))
        .unwrap()
        .unwrap();
    store.ingest("d-1", &batch(3, 500, 0.5), 500).unwrap();
    store
        .reissue_token("d-1", "t2", token(20))
        .unwrap()
        .unwrap();
    let device = store
        .complete_enrollment("t2", 21, |d| Store::record_certificate(d, "bb", 99))
        .unwrap()
        .unwrap();
    assert_eq!(device.issued_serials, vec!["bb".to_string()]);
    assert!(store.is_denylisted("aa").unwrap());
    assert!(!store.is_denylisted("bb").unwrap());
    let fresh = store.ingest("d-1", &batch(1, 600, 0.5), 600).unwrap();
    assert!(fresh.stored, "the new agent's first batch is stored");
    assert!(!fresh.clone_suspected);
}

#[tokio::test]
async fn enrolling_again_after_unfolded_reports_keeps_them_and_the_new_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, 1 << 20).unwrap();
    let reg = Registration {
        machine_id: "m".into(),
        ..Default::default()
    };
    store
        .register(reg, "d-1".into(), "t1".into(), token(10))
        .await
        .unwrap();
    store
        .complete_enrollment("t1", 11, |_| {})
        .unwrap()
        .unwrap();
    // The old instance's reports live only in log records (not folded).
    let old = (1..=5)
        .map(|s| batch(s, 500 + s as i64, s as f64))
        .collect();
    store.ingest_group("d-1", old, 506).unwrap();
    store
        .reissue_token("d-1", "t2", token(20))
        .unwrap()
        .unwrap();
    store
        .complete_enrollment("t2", 21, |_| {})
        .unwrap()
        .unwrap();
    let new = store
        .ingest_group("d-1", vec![batch(1, 600, 9.0)], 600)
        .unwrap();
    assert!(new[0].stored);
    // A report of the old instance that raced the enrollment (stored after
    // the fold, before the transaction): its record has the old generation.
    let stale = IngestState {
        last_sequence: 6,
        generation: store.ingest_state("d-1").unwrap().generation - 1,
        ..Default::default()
    };
    store
        .telemetry
        .insert(
            series::log_key("d-1", 6),
            log::encode(
                &stale,
                &batch(6, 506, 6.0),
                &mut series_table::SeriesTable::full(),
            ),
        )
        .unwrap();
    store.close().await.unwrap();

    // Reopened, the device continues from the new instance's sequence, not
    // from the old instance's newest record, and no sample was lost.
    let store = Store::open(&path, 1 << 20).unwrap();
    assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 1);
    assert!(
        store
            .ingest_group("d-1", vec![batch(2, 601, 9.5)], 601)
            .unwrap()[0]
            .stored
    );
    let points: Vec<(i64, f64)> = store
        .raw_samples("d-1", "system.cpu.utilization", &[], 0, 1_000)
        .unwrap()
        .into_iter()
        .flat_map(|(_, _, p)| p)
        .collect();
    let mut want: Vec<(i64, f64)> = (1..=6).map(|s| (500 + s, s as f64)).collect();
    want.extend([(600, 9.0), (601, 9.5)]);
    assert_eq!(points, want);
}
