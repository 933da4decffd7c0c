//! Fleet questions against a real store with a small, fixed fleet.

use super::*;
use crate::store::{Registration, TokenRecord};

const MIN: i64 = 60_000;
const FS: &str = "system.filesystem.utilization";

fn attr(k: &str, v: &str) -> v1::Attribute {
    v1::Attribute {
        key: k.into(),
        value: v.into(),
    }
}

struct Fleet {
    _dir: tempfile::TempDir,
    store: Store,
    now: i64,
}

/// Four devices: two in IT (laptop + server), one in HR, one revoked in HR.
/// Each reports `/` utilization at now-20m, now-10m and now-1m.
async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), 1 << 20).expect("open");
    let now = vakt_proto::now_unix_ms();
    let devices = [
        ("d-it1", "it-laptop", "IT", "laptop", [0.5, 0.6, 0.7]),
        ("d-it2", "it-server", "IT", "server", [0.2, 0.95, 0.3]),
        ("d-hr1", "hr-laptop", "HR", "laptop", [0.1, 0.1, 0.4]),
        ("d-hr2", "hr-gone", "HR", "laptop", [0.99, 0.99, 0.99]),
    ];
    for (id, host, dept, class, values) in devices {
        let registration = Registration {
            serial: format!("SN-{id}"),
            class: class.into(),
            department: dept.into(),
            labels: [("site".to_owned(), format!("site-{}", &id[2..4]))].into(),
            ..Default::default()
        };
        let token = TokenRecord {
            device_id: String::new(),
            secret_sha256: "00".into(),
            created_at_ms: now,
            expires_at_ms: now + 1000,
            used_at_ms: 0,
        };
        store
            .register(registration, id.into(), format!("t-{id}"), token)
            .await
            .expect("register");
        for (i, (value, ago)) in values.iter().zip([20, 10, 1]).enumerate() {
            let at = now - ago * MIN;
            let batch = v1::ReportBatch {
                sequence: i as u64 + 1,
                collected_at_unix_ms: at,
                samples: vec![
                    v1::Sample {
                        metric: FS.into(),
                        attributes: vec![attr("mountpoint", "/")],
                        value: *value,
                        timestamp_unix_ms: at,
                    },
                    v1::Sample {
                        metric: FS.into(),
                        attributes: vec![attr("mountpoint", "/boot")],
                        value: 0.05,
                        timestamp_unix_ms: at,
                    },
                ],
                inventory: Some(v1::Inventory {
                    hostname: host.into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            store.ingest(id, &batch, at).expect("ingest");
        }
    }
    store.revoke("d-hr2", now).expect("revoke");
    Fleet {
        _dir: dir,
        store,
        now,
    }
}

fn aggregate_request(aggregation: Aggregation, group_by: GroupBy) -> v1::FleetAggregateRequest {
    v1::FleetAggregateRequest {
        metric: FS.into(),
        attributes: vec![attr("mountpoint", "/")],
        aggregation: aggregation as i32,
        group_by: group_by as i32,
        since_unix_ms: 0,
        ..Default::default()
    }
}

fn groups(response: &v1::FleetAggregateResponse) -> Vec<(&str, f64, u32, u64)> {
    response
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.value, g.devices, g.samples))
        .collect()
}

#[tokio::test]
async fn aggregations_by_department_class_and_label() {
    let f = fleet().await;
    let run = |req: &v1::FleetAggregateRequest| aggregate(&f.store, req, f.now).expect("aggregate");

    let max = run(&aggregate_request(Aggregation::Max, GroupBy::Department));
    // The revoked HR device (0.99) is not part of the fleet any more.
    assert_eq!(groups(&max), vec![("HR", 0.4, 1, 3), ("IT", 0.95, 2, 6)]);
    assert_eq!(max.devices_scanned, 3);

    let count = run(&aggregate_request(Aggregation::Count, GroupBy::Class));
    assert_eq!(
        groups(&count),
        vec![("laptop", 2.0, 2, 6), ("server", 1.0, 1, 3)]
    );

    let mut avg = aggregate_request(Aggregation::Avg, GroupBy::None);
    avg.since_unix_ms = f.now - 5 * MIN;
    let got = run(&avg);
    assert_eq!(got.groups.len(), 1);
    assert!((got.groups[0].value - (0.7 + 0.3 + 0.4) / 3.0).abs() < 1e-12);

    let mut p95 = aggregate_request(Aggregation::P95, GroupBy::Label);
    p95.group_label = "site".into();
    let got = run(&p95);
    assert_eq!(
        groups(&got),
        vec![("site-hr", 0.4, 1, 3), ("site-it", 0.95, 2, 6)]
    );

    // Without the attribute filter every mountpoint counts.
    let mut all = aggregate_request(Aggregation::Min, GroupBy::Department);
    all.attributes.clear();
    all.selector = Some(v1::FleetSelector {
        department: "IT".into(),
        ..Default::default()
    });
    assert_eq!(groups(&run(&all)), vec![("IT", 0.05, 2, 12)]);
}

#[tokio::test]
async fn top_ranks_current_values() {
    let f = fleet().await;
    let req = v1::FleetTopRequest {
        metric: FS.into(),
        k: 2,
        ..Default::default()
    };
    let got = top(&f.store, &req).expect("top");
    let rows: Vec<(&str, f64, String)> = got
        .values
        .iter()
        .map(|v| {
            (
                v.hostname.as_str(),
                v.value,
                crate::ctl::output::attributes(&v.attributes, ","),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("it-laptop", 0.7, "mountpoint=/".to_owned()),
            ("hr-laptop", 0.4, "mountpoint=/".to_owned())
        ]
    );
    assert_eq!(got.values[0].timestamp_unix_ms, f.now - MIN);

    let by_dept = v1::FleetTopRequest {
        metric: FS.into(),
        attributes: vec![attr("mountpoint", "/")],
        k: 1,
        ascending: true,
        group_by: GroupBy::Department as i32,
        ..Default::default()
    };
    let got = top(&f.store, &by_dept).expect("top");
    let rows: Vec<(&str, &str, f64)> = got
        .values
        .iter()
        .map(|v| (v.group.as_str(), v.hostname.as_str(), v.value))
        .collect();
    assert_eq!(
        rows,
        vec![("HR", "hr-laptop", 0.4), ("IT", "it-server", 0.3)]
    );

    let stale_only = v1::FleetTopRequest {
        metric: FS.into(),
        newer_than_unix_ms: f.now,
        ..Default::default()
    };
    assert!(top(&f.store, &stale_only).expect("top").values.is_empty());
}

/// Observed latency of the fleet scans on this store (not a benchmark: the
/// storage work measures them formally). Run with
/// `VAKT_LATENCY_DEVICES=200 cargo test -p vakt-collector --lib -- --ignored fleet_scan_latency --nocapture`.
#[tokio::test]
#[ignore = "slow; prints timings"]
async fn fleet_scan_latency() {
    let n: usize = std::env::var("VAKT_LATENCY_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), 32 << 20).expect("open");
    let now = vakt_proto::now_unix_ms();
    let points = 24 * 60; // 24 h at 60 s
    let load = std::time::Instant::now();
    for d in 0..n {
        let id = format!("d-{d:05}");
        let registration = Registration {
            serial: format!("SN-{d}"),
            class: if d % 4 == 0 { "server" } else { "laptop" }.into(),
            department: format!("dept-{}", d % 10),
            ..Default::default()
        };
        let token = TokenRecord {
            device_id: String::new(),
            secret_sha256: "00".into(),
            created_at_ms: now,
            expires_at_ms: now + 1000,
            used_at_ms: 0,
        };
        store
            .register(registration, id.clone(), format!("t-{d}"), token)
            .await
            .expect("register");
        let samples = (0..points)
            .map(|i| v1::Sample {
                metric: FS.into(),
                attributes: vec![attr("mountpoint", "/")],
                value: (d as f64 + i as f64 / points as f64) / (n as f64 + 1.0),
                timestamp_unix_ms: now - (points - i) as i64 * MIN,
            })
            .collect();
        let batch = v1::ReportBatch {
            sequence: 1,
            collected_at_unix_ms: now - MIN,
            samples,
            ..Default::default()
        };
        store.ingest(&id, &batch, now - MIN).expect("ingest");
    }
    eprintln!(
        "loaded {n} devices x {points} samples in {:?}",
        load.elapsed()
    );
    let mut req = aggregate_request(Aggregation::P95, GroupBy::Department);
    req.since_unix_ms = now - 24 * 60 * MIN;
    let time = |name: &str, f: &dyn Fn()| {
        let mut runs: Vec<std::time::Duration> = (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                f();
                start.elapsed()
            })
            .collect();
        runs.sort();
        eprintln!("{name}: median {:?}, max {:?} (5 runs)", runs[2], runs[4]);
    };
    time("p95 by department over 24h", &|| {
        let got = aggregate(&store, &req, now).expect("aggregate");
        assert_eq!(got.groups.len(), 10.min(n));
    });
    let top_req = v1::FleetTopRequest {
        metric: FS.into(),
        k: 10,
        ..Default::default()
    };
    time("top 10 current values", &|| {
        top(&store, &top_req).expect("top");
    });
    time("summary", &|| {
        summary::summary(
            &store,
            &v1::FleetSummaryRequest::default(),
            now,
            std::time::Duration::from_secs(60),
            &Default::default(),
        )
        .expect("summary");
    });
}

/// Aggregations answered from rollups equal the same aggregation over the
/// raw samples of the window widened to whole 5-minute buckets, for windows
/// aligned and not aligned to buckets, folded or still in log records.
#[tokio::test]
async fn rollup_answers_equal_raw_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), 1 << 20).expect("open");
    let start = 1_767_225_600_000i64;
    let token = TokenRecord {
        device_id: String::new(),
        secret_sha256: "00".into(),
        created_at_ms: start,
        expires_at_ms: start + 1000,
        used_at_ms: 0,
    };
    let registration = Registration {
        serial: "SN-r".into(),
        department: "IT".into(),
        ..Default::default()
    };
    store
        .register(registration, "d-r".into(), "t-r".into(), token)
        .await
        .expect("register");
    // Three hours at an odd 37 s interval; two mountpoints.
    let mut samples: Vec<(i64, f64)> = Vec::new();
    let mut root: Vec<(i64, f64)> = Vec::new();
    for i in 0..292i64 {
        let at = start + 11_000 + i * 37_000;
        let value = ((i * 7_919) % 1_000) as f64 / 1_000.0 + 0.001;
        let batch = v1::ReportBatch {
            sequence: i as u64 + 1,
            collected_at_unix_ms: at,
            samples: ["/", "/home"]
                .iter()
                .enumerate()
                .map(|(m, mount)| v1::Sample {
                    metric: FS.into(),
                    attributes: vec![attr("mountpoint", mount)],
                    value: value / (m + 1) as f64,
                    timestamp_unix_ms: at,
                })
                .collect(),
            ..Default::default()
        };
        samples.push((at, value));
        samples.push((at, value / 2.0));
        root.push((at, value));
        store.ingest("d-r", &batch, at).expect("ingest");
        // Fold the first two hours; the rest stays in log records.
        if i == 194 {
            store.compact().expect("compact");
        }
    }
    let windows = [
        (start, start + 3 * 60 * MIN),
        (start + 7 * MIN + 123, start + 151 * MIN - 1),
        (start + 60 * MIN, start + 60 * MIN + 4 * MIN),
        (start + 2 * MIN, start + 170 * MIN + 17),
    ];
    let bucket = crate::store::series::BUCKET_MS;
    for (since, until) in windows {
        let (from, to) = (
            since - since.rem_euclid(bucket),
            until - until.rem_euclid(bucket) + bucket - 1,
        );
        let inside: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| (from..=to).contains(t))
            .map(|(_, v)| *v)
            .collect();
        for aggregation in [
            Aggregation::Avg,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Sum,
            Aggregation::Count,
        ] {
            let req = v1::FleetAggregateRequest {
                metric: FS.into(),
                aggregation: aggregation as i32,
                group_by: GroupBy::Department as i32,
                since_unix_ms: since,
                until_unix_ms: until,
                ..Default::default()
            };
            let got = aggregate(&store, &req, until).expect("aggregate");
            let group = &got.groups[0];
            assert_eq!(
                group.samples,
                inside.len() as u64,
                "{aggregation:?} {since}"
            );
            let sum: f64 = inside.iter().sum();
            let want = match aggregation {
                Aggregation::Avg => sum / inside.len() as f64,
                Aggregation::Min => inside.iter().copied().fold(f64::MAX, f64::min),
                Aggregation::Max => inside.iter().copied().fold(f64::MIN, f64::max),
                Aggregation::Sum => sum,
                _ => 1.0,
            };
            assert!(
                (group.value - want).abs() < 1e-9,
                "{aggregation:?} over {since}..={until}: {} vs {want}",
                group.value
            );
        }
        // An attribute filter: `/` only.
        let req = v1::FleetAggregateRequest {
            metric: FS.into(),
            attributes: vec![attr("mountpoint", "/")],
            aggregation: Aggregation::Sum as i32,
            since_unix_ms: since,
            until_unix_ms: until,
            ..Default::default()
        };
        let got = aggregate(&store, &req, until).expect("aggregate");
        let want: f64 = root
            .iter()
            .filter(|(t, _)| (from..=to).contains(t))
            .map(|(_, v)| *v)
            .sum();
        assert!((got.groups[0].value - want).abs() < 1e-9, "filtered sum");
    }
}
