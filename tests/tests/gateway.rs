//! The tablet gateway end to end: a real collector, a real `vakt-agent run`
//! enrolled as a gateway over mTLS, and a source script (written here) that
//! lists three tablets, of which only two were registered through that
//! gateway. The two appear under the gateway as tablets; the third is refused,
//! and ops see the refusal in `vaktctl devices --refused`, in `device show
//! GATEWAY` and (once) in the audit log.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use vakt_tests::{Agent, Collector, wait_until};

const TIMEOUT: Duration = Duration::from_secs(60);

fn array(value: Value, what: &str) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("{what} printed no array: {other}"),
    }
}

/// The source: three tablets, a line that is not JSON, and a word on stderr.
/// POSIX sh only, like deploy/gateway/example-source.sh.
fn write_source(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tablets.sh");
    let script = r#"#!/bin/sh
now_ms=$(( $(date +%s) * 1000 ))
echo '{"identifier":"mdm-1","serial":"TAB-1","model":"Galaxy Tab A8","os":"Android","os_version":"14","battery_percent":81,"battery_health_percent":96,"storage_total_bytes":64000000000,"storage_free_bytes":21000000000,"last_sync":'"$now_ms"'}'
echo '{"identifier":"mdm-2","serial":"TAB-2","model":"iPad (9th gen)","os":"iPadOS","os_version":"17.5","battery_percent":12.5,"last_sync":"'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"}'
echo '{"identifier":"mdm-3","serial":"TAB-3","model":"Lenovo Tab M10","os":"Android","os_version":"13"}'
echo 'Device list exported by FakeMDM'
echo 'fakemdm: 3 devices' >&2
"#;
    std::fs::write(&path, script).expect("write source script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn tablets_registered_via_the_gateway_appear_under_it_and_the_other_is_refused() {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let gateway =
        collector.register(&["--unbound", "--class", "gateway", "--department", "Ward 3"]);
    let gw = gateway.device_id.clone();

    // Two tablets through the gateway (one on the command line, one from a
    // provisioning CSV with a via column), one registered without it.
    // --via alone makes it a tablet.
    collector.register(&["--serial", "TAB-1", "--via", &gw]);
    let csv = collector.tmp().join("tablets.csv");
    std::fs::write(
        &csv,
        format!("serial,class,department,via\nTAB-2,tablet,Ward 3,{gw}\n"),
    )
    .expect("write csv");
    let csv_path = csv.to_string_lossy().into_owned();
    collector
        .vaktctl(&["register", "--csv", &csv_path, "-o", "json"])
        .assert_success();
    let third = collector.register(&[
        "--serial",
        "TAB-3",
        "--class",
        "tablet",
        "--department",
        "Ward 3",
    ]);
    // --via must name a gateway.
    let refused = collector.vaktctl(&["register", "--serial", "TAB-9", "--via", &third.device_id]);
    assert!(!refused.success(), "{refused}");
    assert!(refused.stderr.contains("not gateway"), "{refused}");

    let mut agent = Agent::enroll(&collector, &gateway.token, "gateway");
    let source = write_source(collector.tmp());
    let mut config = std::fs::read_to_string(&agent.config).expect("read agent config");
    config.push_str(&format!(
        "\n[[gateway.source]]\nexec = \"{}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
        source.display()
    ));
    std::fs::write(&agent.config, config).expect("write agent config");
    agent.run();

    let children = wait_until(TIMEOUT, "two online tablets under the gateway", || {
        agent.assert_running();
        let out = collector.vaktctl(&["devices", "--via", &gw, "-o", "json"]);
        if !out.success() {
            return Err(out.to_string());
        }
        let devices = array(out.json(), "devices --via");
        let online = devices.iter().filter(|d| d["status"] == "online").count();
        if online == 2 && devices.len() == 2 {
            Ok(devices)
        } else {
            Err(format!("{devices:?}"))
        }
    });
    let mut serials: Vec<&str> = children
        .iter()
        .filter_map(|d| d["serial"].as_str())
        .collect();
    serials.sort_unstable();
    assert_eq!(serials, ["TAB-1", "TAB-2"]);
    for child in &children {
        assert_eq!(child["class"], "tablet", "{child}");
        assert_eq!(child["via_gateway"], gw.as_str(), "{child}");
        assert_eq!(child["child"]["gateway_device_id"], gw.as_str(), "{child}");
        assert!(child["last_seen_at"].is_string(), "{child}");
    }
    let tab1 = children
        .iter()
        .find(|d| d["serial"] == "TAB-1")
        .expect("TAB-1");
    assert_eq!(tab1["child"]["identifier"], "mdm-1");
    assert_eq!(tab1["child"]["battery_percent"], 81.0);
    assert_eq!(tab1["child"]["storage_free_bytes"], 21_000_000_000_u64);
    assert_eq!(tab1["child"]["source"], "tablets.sh");

    // The whole fleet: the third tablet is registered but never reported.
    let devices = collector.devices();
    let tab3 = devices
        .iter()
        .find(|d| d["device_id"] == third.device_id.as_str())
        .expect("TAB-3 listed");
    assert_eq!(tab3["status"], "never-seen", "{tab3}");
    assert_eq!(tab3["via_gateway"], "", "{tab3}");
    let table = collector
        .vaktctl(&["devices"])
        .assert_success()
        .stdout
        .clone();
    assert!(
        table.lines().next().is_some_and(|h| h.ends_with("VIA")),
        "{table}"
    );

    // Refused, and visible as such, after several reports.
    let listed = wait_until(TIMEOUT, "the third tablet refused in 3 reports", || {
        let refused = array(
            collector.vaktctl_json(&["devices", "--refused", "-o", "json"]),
            "devices --refused",
        );
        match refused.as_slice() {
            [one] if one["count"].as_u64() >= Some(3) => Ok(one.clone()),
            _ => Err(format!("{refused:?}")),
        }
    });
    assert_eq!(listed["gateway_device_id"], gw.as_str());
    assert_eq!(listed["identifier"], "mdm-3");
    assert_eq!(listed["serial"], "TAB-3");
    let reason = listed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not registered via this gateway"),
        "{reason}"
    );

    let shown = collector.device(&gw);
    assert_eq!(shown["class"], "gateway");
    assert_eq!(
        shown["refused_children"][0]["identifier"], "mdm-3",
        "{shown}"
    );
    assert!(
        shown["invalid_child_lines_total"].as_u64() >= Some(1),
        "{shown}"
    );
    let text = collector
        .vaktctl(&["device", "show", &gw])
        .assert_success()
        .stdout
        .clone();
    assert!(text.contains("Refused children: 1"), "{text}");
    let text = collector
        .vaktctl(&["device", "show", "TAB-1"])
        .assert_success()
        .stdout
        .clone();
    assert!(
        text.contains("Reported by gateway:") && text.contains("81 %"),
        "{text}"
    );

    // Audited once per refused identifier, not once per report.
    let audit = array(
        collector.vaktctl_json(&["audit", "--action", "gateway.child_refused", "-o", "json"]),
        "audit",
    );
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["target"], gw.as_str());
    assert_eq!(audit[0]["actor"], format!("device:{gw}"));
    assert!(
        audit[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("TAB-3")),
        "{audit:?}"
    );

    // The agent logged the script's bad line and its stderr.
    agent.assert_running();
    let logs = agent.process().logs();
    assert!(logs.contains("invalid gateway source line"), "{logs}");
    assert!(logs.contains("fakemdm: 3 devices"), "{logs}");
}
