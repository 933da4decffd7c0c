//! Snapshot tests of the device renderings against a fixed fleet and clock.

use super::*;

const NOW: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

fn attr(k: &str, v: &str) -> v1::Attribute {
    v1::Attribute {
        key: k.into(),
        value: v.into(),
    }
}

fn server() -> v1::Device {
    v1::Device {
        device_id: "dev-01".into(),
        hostname: "web-1".into(),
        serial: "SRV-42".into(),
        model: "PowerEdge R650".into(),
        class: v1::DeviceClass::Server as i32,
        department: "Platform".into(),
        owner: "ops@example.com".into(),
        labels: vec![attr("site", "hq"), attr("rack", "b3")],
        status: v1::DeviceStatus::Online as i32,
        registered_at_unix_ms: NOW - 10 * 86_400_000,
        enrolled_at_unix_ms: NOW - 9 * 86_400_000,
        last_seen_at_unix_ms: NOW - 12_000,
        last_sequence: 1234,
        certificate_not_after_unix_ms: NOW + 21 * 86_400_000,
        report_interval_seconds: 60,
        last_event: v1::EventKind::Boot as i32,
        inventory: Some(v1::Inventory {
            hostname: "web-1".into(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0-18-amd64".into(),
            architecture: "x86_64".into(),
            cpu_model: "Xeon Gold 5317".into(),
            cpu_logical_cores: 24,
            cpu_physical_cores: 12,
            memory_total_bytes: 68_719_476_736,
            swap_total_bytes: 0,
            serial: "SRV-42".into(),
            manufacturer: "Dell Inc.".into(),
            model: "PowerEdge R650".into(),
            chassis_type: "rack mount chassis".into(),
            agent_version: "0.1.0".into(),
            boot_time_unix_ms: NOW - 3 * 3_600_000,
            disks: vec![v1::Disk {
                name: "sda".into(),
                mount_point: "/".into(),
                file_system: "ext4".into(),
                total_bytes: 512_110_190_592,
                removable: false,
                kind: "ssd".into(),
                model: "SAMSUNG MZ7L3".into(),
                serial: "S6Y1".into(),
            }],
            network_interfaces: vec![v1::NetworkInterface {
                name: "eno1".into(),
                mac_address: "aa:bb:cc:dd:ee:ff".into(),
                ip_addresses: vec!["10.0.0.5".into(), "fe80::1".into()],
                driver: "tg3".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Registered but never enrolled; a department name that needs CSV quoting.
fn laptop() -> v1::Device {
    v1::Device {
        device_id: "dev-02".into(),
        serial: "LT-7".into(),
        class: v1::DeviceClass::Laptop as i32,
        department: "Sales, \"EMEA\"".into(),
        status: v1::DeviceStatus::NeverSeen as i32,
        registered_at_unix_ms: NOW - 3_600_000,
        ..Default::default()
    }
}

/// A revoked gateway whose identity turned up twice, then on new hardware.
fn flagged() -> v1::Device {
    let flag = |kind: &str, ago_ms: i64, detail: &str| v1::DeviceFlag {
        kind: kind.into(),
        at_unix_ms: NOW - ago_ms,
        detail: detail.into(),
    };
    v1::Device {
        device_id: "dev-03".into(),
        hostname: "gw-7".into(),
        serial: "GW-7".into(),
        class: v1::DeviceClass::Gateway as i32,
        department: "Field".into(),
        status: v1::DeviceStatus::Revoked as i32,
        registered_at_unix_ms: NOW - 40 * 86_400_000,
        enrolled_at_unix_ms: NOW - 39 * 86_400_000,
        last_seen_at_unix_ms: NOW - 2 * 3_600_000,
        revoked_at_unix_ms: NOW - 3_600_000,
        flags: vec![
            flag(
                "clone-suspected",
                3 * 3_600_000,
                "sequence 900 reported from 10.0.0.7 and 10.9.0.4",
            ),
            flag("clone-suspected", 2 * 3_600_000, "again, from 10.9.0.4"),
            flag(
                "enrollment-mismatch",
                90 * 60_000,
                "token for serial GW-7 presented by serial GW-8",
            ),
        ],
        ..Default::default()
    }
}

#[test]
fn table() {
    assert_eq!(
        render_devices(&[server(), laptop(), flagged()], Format::Table, NOW),
        "ID       HOSTNAME   CLASS     DEPARTMENT      STATUS       FLAGS                                 LAST SEEN   REGISTERED   SERIAL\n\
         dev-01   web-1      server    Platform        online       -                                     12s ago     2023-11-04   SRV-42\n\
         dev-02   -          laptop    Sales, \"EMEA\"   never-seen   -                                     never       2023-11-14   LT-7\n\
         dev-03   gw-7       gateway   Field           revoked      clone-suspected,enrollment-mismatch   2h ago      2023-10-05   GW-7\n"
    );
    assert_eq!(
        render_devices(&[], Format::Table, NOW),
        "ID   HOSTNAME   CLASS   DEPARTMENT   STATUS   FLAGS   LAST SEEN   REGISTERED   SERIAL\n"
    );
}

#[test]
fn csv() {
    assert_eq!(
        render_devices(&[server(), laptop(), flagged()], Format::Csv, NOW),
        "device_id,hostname,class,department,status,last_seen_at,serial,registered_at,flags\n\
         dev-01,web-1,server,Platform,online,2023-11-14T22:13:08Z,SRV-42,2023-11-04T22:13:20Z,\n\
         dev-02,,laptop,\"Sales, \"\"EMEA\"\"\",never-seen,,LT-7,2023-11-14T21:13:20Z,\n\
         dev-03,gw-7,gateway,Field,revoked,2023-11-14T20:13:20Z,GW-7,2023-10-05T22:13:20Z,clone-suspected;enrollment-mismatch\n"
    );
}

#[test]
fn flags_and_revocation_in_json_come_last() {
    let out = render_device(&flagged(), Format::Json, NOW);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revoked_at"], "2023-11-14T21:13:20Z");
    assert_eq!(
        v["flags"][2],
        serde_json::json!({"kind": "enrollment-mismatch", "at": "2023-11-14T20:43:20Z",
            "detail": "token for serial GW-7 presented by serial GW-8"})
    );
    assert_eq!(v["flags"].as_array().map(Vec::len), Some(3));
    assert!(
        out.contains("\"inventory\": null,\n  \"flags\": [\n    {\n      \"kind\""),
        "{out}"
    );
    assert!(
        out.ends_with(
            "\n  \"revoked_at\": \"2023-11-14T21:13:20Z\",\n  \"dropped_reports_total\": 0\n}\n"
        ),
        "{out}"
    );
}

#[test]
fn show_lists_flags_with_time_and_detail() {
    let out = render_device(&flagged(), Format::Table, NOW);
    assert!(
        out.contains(
            "Revoked:          2023-11-14T21:13:20Z (1h ago)\n\
             Flags:            clone-suspected, enrollment-mismatch (below)\n\
             \n\
             Security flags:\n\
             \x20 KIND                  RAISED                          DETAIL\n\
             \x20 clone-suspected       2023-11-14T19:13:20Z (3h ago)   sequence 900 reported from 10.0.0.7 and 10.9.0.4\n\
             \x20 clone-suspected       2023-11-14T20:13:20Z (2h ago)   again, from 10.9.0.4\n\
             \x20 enrollment-mismatch   2023-11-14T20:43:20Z (1h ago)   token for serial GW-7 presented by serial GW-8\n\
             \n\
             Inventory: none reported yet\n"
        ),
        "{out}"
    );
}

#[test]
fn json_array_of_device_objects() {
    let out = render_devices(&[server(), laptop()], Format::Json, NOW);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
    let expected_laptop = serde_json::json!({
        "device_id": "dev-02", "hostname": "", "serial": "LT-7", "product_uuid": "", "machine_id": "",
        "model": "", "class": "laptop", "department": "Sales, \"EMEA\"", "owner": "", "labels": {},
        "status": "never-seen", "registered_at": "2023-11-14T21:13:20Z", "enrolled_at": null,
        "last_seen_at": null, "last_sequence": 0, "certificate_not_after": null,
        "report_interval_seconds": 0, "last_event": null, "inventory": null,
        "flags": [], "revoked_at": null, "dropped_reports_total": 0
    });
    assert_eq!(v[1], expected_laptop);
    let s = &v[0];
    assert_eq!(s["class"], "server");
    assert_eq!(s["status"], "online");
    assert_eq!(s["labels"], serde_json::json!({"site": "hq", "rack": "b3"}));
    assert_eq!(s["last_seen_at"], "2023-11-14T22:13:08Z");
    assert_eq!(s["certificate_not_after"], "2023-12-05T22:13:20Z");
    assert_eq!(s["last_event"], "boot");
    assert_eq!(s["last_sequence"], 1234);
    let inv = &s["inventory"];
    assert_eq!(inv["boot_time"], "2023-11-14T19:13:20Z");
    assert_eq!(inv["memory_total_bytes"], 68_719_476_736_u64);
    assert_eq!(
        inv["disks"][0],
        serde_json::json!({"name": "sda", "mount_point": "/", "file_system": "ext4", "total_bytes": 512_110_190_592_u64,
            "removable": false, "kind": "ssd", "model": "SAMSUNG MZ7L3", "serial": "S6Y1"})
    );
    assert_eq!(
        inv["network_interfaces"][0],
        serde_json::json!({"name": "eno1", "mac_address": "aa:bb:cc:dd:ee:ff",
            "ip_addresses": ["10.0.0.5", "fe80::1"], "driver": "tg3"})
    );
    let keys: Vec<&str> = inv
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 23, "the inventory fields and its batteries");
    // Field order follows the documented shape (serde_json sorts keys in
    // Value, so check the raw text).
    assert!(out.starts_with(
        "[\n  {\n    \"device_id\": \"dev-01\",\n    \"hostname\": \"web-1\",\n    \"serial\""
    ));
    assert_eq!(render_devices(&[], Format::Json, NOW), "[]\n");
}

#[test]
fn show_single_device_json_is_an_object() {
    let v: serde_json::Value =
        serde_json::from_str(&render_device(&laptop(), Format::Json, NOW)).expect("valid json");
    assert_eq!(v["device_id"], "dev-02");
}

#[test]
fn show_table_block() {
    assert_eq!(
        render_device(&server(), Format::Table, NOW),
        "Device:           dev-01\n\
         Hostname:         web-1\n\
         Status:           online (last event: boot)\n\
         Last seen:        2023-11-14T22:13:08Z (12s ago)\n\
         Class:            server\n\
         Department:       Platform\n\
         Owner:            ops@example.com\n\
         Labels:           site=hq, rack=b3\n\
         Model:            PowerEdge R650\n\
         Serial:           SRV-42\n\
         Product UUID:     -\n\
         Machine ID:       -\n\
         Registered:       2023-11-04T22:13:20Z (10d ago)\n\
         Enrolled:         2023-11-05T22:13:20Z (9d ago)\n\
         Certificate:      valid until 2023-12-05T22:13:20Z (in 21d)\n\
         Report interval:  60s\n\
         Last sequence:    1234\n\
         Dropped reports:  0\n\
         Revoked:          no\n\
         Flags:            none\n\
         \n\
         Inventory:\n\
         \x20 OS:            Debian GNU/Linux 12\n\
         \x20 Kernel:        6.1.0-18-amd64\n\
         \x20 Architecture:  x86_64\n\
         \x20 CPU:           Xeon Gold 5317 (24 logical / 12 physical cores)\n\
         \x20 Memory:        64.0 GiB (swap 0 B)\n\
         \x20 Hardware:      Dell Inc. / PowerEdge R650 / rack mount chassis\n\
         \x20 BIOS:          -\n\
         \x20 Agent:         0.1.0\n\
         \x20 Booted:        2023-11-14T19:13:20Z (3h ago)\n\
         \x20 Disks:\n\
         \x20   NAME   MOUNT   FS     SIZE        KIND   REMOVABLE   MODEL           SERIAL\n\
         \x20   sda    /       ext4   476.9 GiB   ssd    no          SAMSUNG MZ7L3   S6Y1\n\
         \x20 Interfaces:\n\
         \x20   NAME   MAC                 ADDRESSES           DRIVER\n\
         \x20   eno1   aa:bb:cc:dd:ee:ff   10.0.0.5, fe80::1   tg3\n"
    );
    let never = render_device(&laptop(), Format::Table, NOW);
    assert!(never.contains("Enrolled:         never\n"), "{never}");
    assert!(
        never.ends_with("\nInventory: none reported yet\n"),
        "{never}"
    );
}
