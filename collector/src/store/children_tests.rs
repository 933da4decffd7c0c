use super::super::{AuditFilter, Registration, Store, TokenRecord};
use vakt_proto::v1;

const NOW: i64 = 1_780_000_000_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
    (dir, store)
}

async fn register(store: &Store, id: &str, serial: &str, class: &str, dept: &str, via: &str) {
    let reg = Registration {
        serial: serial.into(),
        class: class.into(),
        department: dept.into(),
        via_gateway: via.into(),
        ..Default::default()
    };
    let token = TokenRecord {
        device_id: String::new(),
        secret_sha256: "00".into(),
        created_at_ms: NOW,
        expires_at_ms: NOW + 1000,
        used_at_ms: 0,
    };
    store
        .register(reg, id.into(), format!("t-{id}"), token)
        .await
        .unwrap();
}

fn child(identifier: &str, serial: &str) -> v1::ChildDevice {
    v1::ChildDevice {
        identifier: identifier.into(),
        serial: serial.into(),
        battery_percent: Some(50.0),
        ..Default::default()
    }
}

fn batch(sequence: u64, children: Vec<v1::ChildDevice>) -> v1::ReportBatch {
    v1::ReportBatch {
        sequence,
        collected_at_unix_ms: NOW,
        children,
        invalid_child_lines: 1,
        ..Default::default()
    }
}

fn refused_audits(store: &Store) -> Vec<String> {
    store
        .list_audit(&AuditFilter {
            action_prefix: "gateway.child_refused".into(),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

#[tokio::test]
async fn children_registered_via_the_gateway_are_accepted_and_others_refused_once() {
    let (_dir, store) = open();
    register(&store, "d-gw", "GW1", "gateway", "Ward", "").await;
    register(&store, "d-gw2", "GW2", "gateway", "Ward", "").await;
    register(&store, "d-t1", "TAB1", "tablet", "Ward", "d-gw").await;
    register(&store, "d-t2", "TAB2", "tablet", "Ward", "d-gw2").await;
    register(&store, "d-t3", "TAB3", "tablet", "Ward", "").await;
    let children = vec![
        child("mdm-1", "TAB1"),
        child("mdm-2", "TAB2"),
        child("mdm-3", "TAB3"),
        child("mdm-4", "NOPE"),
        // Matched by identifier when the serial is unknown.
        child("TAB1-alias", ""),
    ];
    store
        .ingest("d-gw", &batch(1, children.clone()), NOW)
        .unwrap();
    let state = store.child_state("d-t1").unwrap().expect("accepted");
    assert_eq!(state.gateway_device_id, "d-gw");
    assert_eq!(state.reported_at_unix_ms, NOW);
    assert_eq!(state.reported.unwrap().battery_percent, Some(50.0));
    assert!(store.child_state("d-t2").unwrap().is_none());
    assert!(store.child_state("d-t3").unwrap().is_none());

    let record = store.gateway_record("d-gw").unwrap();
    let reasons: Vec<(&str, &str)> = record
        .refused
        .iter()
        .map(|r| (r.identifier.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("TAB1-alias", "not registered"),
            ("mdm-2", "d-t2 is registered via another gateway (d-gw2)"),
            ("mdm-3", "d-t3 is not registered via this gateway"),
            ("mdm-4", "not registered"),
        ]
    );
    assert_eq!(record.invalid_lines_total, 1);
    assert_eq!(refused_audits(&store).len(), 4);

    // The next report: counts grow, no new audit entries; a resend changes nothing.
    store
        .ingest("d-gw", &batch(2, children.clone()), NOW + 5)
        .unwrap();
    store.ingest("d-gw", &batch(2, children), NOW + 9).unwrap();
    let record = store.gateway_record("d-gw").unwrap();
    assert!(
        record
            .refused
            .iter()
            .all(|r| r.count == 2 && r.first_seen_ms == NOW)
    );
    assert!(record.refused.iter().all(|r| r.last_seen_ms == NOW + 5));
    assert_eq!(record.invalid_lines_total, 2);
    assert_eq!(refused_audits(&store).len(), 4);
    assert_eq!(store.refused_children().unwrap().len(), 4);

    // Registered through the gateway after all: accepted, no longer refused.
    register(&store, "d-t3", "TAB3", "tablet", "Ward", "d-gw").await;
    store
        .ingest("d-gw", &batch(3, vec![child("mdm-3", "TAB3")]), NOW + 10)
        .unwrap();
    assert!(store.child_state("d-t3").unwrap().is_some());
    assert!(
        !store
            .gateway_record("d-gw")
            .unwrap()
            .refused
            .iter()
            .any(|r| r.identifier == "mdm-3")
    );
}

#[tokio::test]
async fn department_policy_and_non_gateways() {
    let (_dir, store) = open();
    register(&store, "d-gw", "GW1", "gateway", "Ward", "").await;
    register(&store, "d-lap", "LAP1", "laptop", "Ward", "").await;
    register(&store, "d-t3", "TAB3", "tablet", "Ward", "").await;
    register(&store, "d-t4", "TAB4", "tablet", "Office", "").await;
    store.child_policy().set_accept_by_department(true);
    let children = vec![child("a", "TAB3"), child("b", "TAB4"), child("c", "LAP1")];
    store
        .ingest("d-gw", &batch(1, children.clone()), NOW)
        .unwrap();
    assert!(store.child_state("d-t3").unwrap().is_some());
    assert!(store.child_state("d-t4").unwrap().is_none());
    assert!(store.child_state("d-lap").unwrap().is_none());
    // A laptop's agent cannot speak for tablets at all.
    store.ingest("d-lap", &batch(1, children), NOW).unwrap();
    let record = store.gateway_record("d-lap").unwrap();
    assert_eq!(record.refused.len(), 3);
    assert!(
        record.refused[0]
            .reason
            .contains("not registered as a gateway")
    );
}

#[tokio::test]
async fn a_flood_of_new_identifiers_is_audited_in_summary() {
    let (_dir, store) = open();
    register(&store, "d-gw", "GW1", "gateway", "Ward", "").await;
    let children = (0..100).map(|i| child(&format!("x{i}"), "")).collect();
    store.ingest("d-gw", &batch(1, children), NOW).unwrap();
    let audits = refused_audits(&store);
    assert_eq!(audits.len(), super::MAX_REFUSED_AUDITS_PER_REPORT + 1);
    assert!(
        audits.iter().any(|d| d.starts_with("84 more identifiers")),
        "{audits:?}"
    );
    assert_eq!(store.gateway_record("d-gw").unwrap().refused.len(), 100);
}
