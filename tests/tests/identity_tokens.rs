//! Enrollment tokens: single use, expiring, throttled against brute force, and
//! replaced (never duplicated) when the same hardware is registered again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::Code;
use vakt_proto::v1;
use vakt_proto::v1::enrollment_client::EnrollmentClient;
use vakt_tests::identity::{audit, csr, random_token, token_parts};
use vakt_tests::{
    Agent, Collector, SERVING, agent_enroll, assert_code, connect, enroll_direct, expect_status,
    find_device, health_status, str_field, test_hardware, wait_for_device,
};

#[test]
fn a_token_used_twice_is_refused_audited_and_the_first_device_keeps_reporting() {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = collector.register_unbound();
    let device_id = registration.device_id.clone();
    let mut first = Agent::enroll(&collector, &registration.token, "first");
    let first_cert = std::fs::read(first.state_dir.join("cert.pem")).expect("cert.pem");
    first.run();
    let before = wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(30),
        "the first device to report",
        |d| match d["last_sequence"].as_u64() {
            Some(n) if n >= 1 => Ok(()),
            _ => Err("no report yet".into()),
        },
    );

    // A second device, with its own state directory, tries the same token.
    let second_dir = collector.agent_dir("second");
    let out = agent_enroll(&collector, &registration.token, &second_dir);
    assert_eq!(out.code, Some(1), "a used token must be refused: {out}");
    assert!(
        out.stderr.to_lowercase().contains("token"),
        "stderr names the token as the reason: {out}"
    );
    for file in ["cert.pem", "enrollment.json"] {
        assert!(
            !second_dir.join(file).exists(),
            "the refused device must not get {file}"
        );
    }

    // Audited: one refusal about this token (or device), one acceptance.
    let (token_id, secret) = token_parts(&registration.token);
    let refused = audit(&collector, &["--action", "enroll.refused"]);
    let about_this: Vec<_> = refused
        .iter()
        .filter(|r| {
            let target = r["target"].as_str().unwrap_or("");
            target.contains(token_id) || target == device_id
        })
        .collect();
    assert!(
        !about_this.is_empty(),
        "an enroll.refused record names the token or the device: {refused:?}"
    );
    assert_eq!(about_this[0]["outcome"], "refused", "{}", about_this[0]);
    assert!(
        !about_this[0]["at"].is_null(),
        "the record says when: {}",
        about_this[0]
    );
    let accepted = audit(
        &collector,
        &["--action", "enroll.accepted", "--device", &device_id],
    );
    assert_eq!(accepted.len(), 1, "one accepted enrollment: {accepted:?}");
    let everything = serde_json::to_string(&audit(&collector, &[])).expect("json");
    assert!(
        !everything.contains(secret),
        "the audit log must never hold a token's secret: {everything}"
    );

    // The first device is untouched and keeps reporting with its certificate.
    let devices = collector.devices();
    assert_eq!(devices.len(), 1, "no second device: {devices:?}");
    let first_seq = before["last_sequence"].as_u64().expect("last_sequence");
    let after = wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(20),
        "the first device to go on reporting",
        |d| match d["last_sequence"].as_u64() {
            Some(n) if n >= first_seq + 2 => Ok(()),
            _ => Err("no new reports".into()),
        },
    );
    assert_eq!(after["status"], "online", "{after}");
    assert_eq!(after["enrolled_at"], before["enrolled_at"], "{after}");
    assert_eq!(
        after["certificate_not_after"], before["certificate_not_after"],
        "{after}"
    );
    assert!(
        after["flags"].as_array().is_none_or(Vec::is_empty),
        "the refused attempt flags nothing on the first device: {after}"
    );
    first.assert_running();
    assert_eq!(
        std::fs::read(first.state_dir.join("cert.pem")).expect("cert.pem"),
        first_cert,
        "the first device's certificate is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_and_enrolls_no_device() {
    let collector = Collector::start();
    let registration = collector.register(&["--unbound", "--token-ttl", "1s"]);
    let device_id = registration.device_id.clone();
    assert!(
        registration.json["token_expires_at"].is_string(),
        "register says when the token expires: {}",
        registration.json
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let state_dir = collector.agent_dir("late");
    let out =
        tokio::task::block_in_place(|| agent_enroll(&collector, &registration.token, &state_dir));
    assert_eq!(out.code, Some(1), "an expired token must be refused: {out}");
    assert!(
        out.stderr.to_lowercase().contains("token"),
        "stderr names the token as the reason: {out}"
    );
    assert!(
        !state_dir.join("cert.pem").exists(),
        "no certificate for an expired token"
    );
    let status = expect_status(
        enroll_direct(
            collector.grpc_port,
            &collector.ca_pem(),
            &registration.token,
            test_hardware("late-direct"),
        )
        .await,
        "direct Enroll with an expired token",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "direct Enroll with an expired token",
    );

    tokio::task::block_in_place(|| {
        let device = collector.device(&device_id);
        assert!(device["enrolled_at"].is_null(), "not enrolled: {device}");
        assert!(
            device["certificate_not_after"].is_null(),
            "no certificate issued: {device}"
        );
        assert_eq!(device["status"], "never-seen", "{device}");
        assert_eq!(device["last_sequence"], 0, "{device}");
        assert_eq!(collector.devices().len(), 1, "no device was created");

        let never_seen =
            match collector.vaktctl_json(&["devices", "--status", "never-seen", "-o", "json"]) {
                serde_json::Value::Array(devices) => devices,
                other => panic!("devices printed no array: {other}"),
            };
        let listed = find_device(&never_seen, &device_id)
            .unwrap_or_else(|| panic!("{device_id} not in --status never-seen: {never_seen:?}"));
        assert!(
            !str_field(listed, "registered_at").is_empty(),
            "never-seen devices are listed with their registration date: {listed}"
        );

        let refused = audit(&collector, &["--action", "enroll.refused"]);
        assert!(
            refused.len() >= 2,
            "both refused attempts are audited: {refused:?}"
        );
    });
}

/// The per-address bucket the collector starts with (`enroll_burst_per_address`).
const DEFAULT_BURST_PER_ADDRESS: f64 = 30.0;
/// `enroll_rate_per_address`, per second.
const DEFAULT_RATE_PER_ADDRESS: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_tokens_from_one_address_are_refused_and_throttled() {
    const ATTEMPTS: usize = 1000;
    const CONCURRENCY: usize = 25;
    let collector = Collector::start();
    let ca = collector.ca_pem();
    let channel = connect(collector.grpc_port, &ca, None)
        .await
        .expect("TLS without a client certificate");
    let client = EnrollmentClient::new(channel);
    let (_key, csr_pem) = csr("brute-force", None);

    let started = Instant::now();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut sample_messages: BTreeMap<String, String> = BTreeMap::new();
    let mut sent = 0;
    while sent < ATTEMPTS {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY.min(ATTEMPTS - sent) {
            let mut client = client.clone();
            let request = v1::EnrollRequest {
                token: random_token(),
                csr_pem: csr_pem.clone(),
                hardware: Some(test_hardware("brute-force")),
            };
            tasks.spawn(async move {
                let token = request.token.clone();
                (token, client.enroll(request).await)
            });
            sent += 1;
        }
        while let Some(joined) = tasks.join_next().await {
            let (token, result) = joined.expect("enroll task");
            match result {
                Ok(response) => panic!(
                    "a random token {token} enrolled device {}",
                    response.into_inner().device_id
                ),
                Err(status) => {
                    let code = format!("{:?}", status.code());
                    *codes.entry(code.clone()).or_default() += 1;
                    sample_messages
                        .entry(code)
                        .or_insert_with(|| status.message().to_owned());
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{ATTEMPTS} random tokens in {elapsed:.1}s: {codes:?} {sample_messages:?}");

    let count = |code: Code| codes.get(&format!("{code:?}")).copied().unwrap_or(0);
    let unauthenticated = count(Code::Unauthenticated);
    let exhausted = count(Code::ResourceExhausted);
    assert_eq!(
        unauthenticated + exhausted,
        ATTEMPTS,
        "every attempt is refused as UNAUTHENTICATED or throttled as RESOURCE_EXHAUSTED: {codes:?} {sample_messages:?}"
    );
    assert!(exhausted > 0, "the flood is throttled: {codes:?}");
    assert!(
        unauthenticated > 0,
        "the attempts within the rate limit are refused as UNAUTHENTICATED: {codes:?}"
    );
    let allowance = DEFAULT_BURST_PER_ADDRESS + DEFAULT_RATE_PER_ADDRESS * elapsed.ceil() + 2.0;
    assert!(
        (unauthenticated as f64) <= allowance,
        "{unauthenticated} attempts got past the per-address limit in {elapsed:.1}s \
         (burst {DEFAULT_BURST_PER_ADDRESS}, {DEFAULT_RATE_PER_ADDRESS}/s allow {allowance:.0})"
    );

    assert_eq!(
        health_status(collector.grpc_port, &ca)
            .await
            .expect("health after the flood"),
        SERVING
    );
    tokio::task::block_in_place(|| {
        assert!(
            collector.devices().is_empty(),
            "no device came out of the flood"
        );
        // Throttled attempts are counted, not audited: the flood cannot fill the log.
        let refused = audit(&collector, &["--action", "enroll"]);
        assert!(
            refused.len() <= unauthenticated,
            "{} enroll audit records for {unauthenticated} attempts past the limiter",
            refused.len()
        );
    });
}

/// Writes `text` to `tmp/name` and returns the path as a string.
fn write_csv(collector: &Collector, name: &str, text: &str) -> String {
    let path = collector.tmp().join(name);
    std::fs::write(&path, text).expect("write csv");
    path.to_str().expect("utf-8 path").to_owned()
}

/// `vaktctl register --csv FILE -o json`: (exit code, rows).
fn import(collector: &Collector, file: &str) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = collector.vaktctl(&["register", "--csv", file, "-o", "json"]);
    let rows = match serde_json::from_str(&out.stdout) {
        Ok(serde_json::Value::Array(rows)) => rows,
        _ => panic!("register --csv -o json printed no JSON array: {out}"),
    };
    (out.code, rows, out.to_string())
}

const FLEET_CSV: &str = "serial,model,class,department,owner,labels\n\
SN-CSV-1,ThinkPad T14,laptop,IT,alice,site=hq;floor=3\n\
SN-CSV-2,ThinkPad T14,laptop,IT,bob,site=hq\n\
SN-CSV-3,PowerEdge R650,server,Ops,carol,site=dc1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_csv_twice_gives_the_same_devices_with_fresh_tokens() {
    let collector = Collector::start();
    let file = write_csv(&collector, "fleet.csv", FLEET_CSV);
    let serials = ["SN-CSV-1", "SN-CSV-2", "SN-CSV-3"];

    let (first, second) = tokio::task::block_in_place(|| {
        let (code, first, out) = import(&collector, &file);
        assert_eq!(code, Some(0), "{out}");
        let (code, second, out) = import(&collector, &file);
        assert_eq!(code, Some(0), "{out}");
        (first, second)
    });
    assert_eq!(first.len(), 3, "one row per device: {first:?}");
    assert_eq!(second.len(), 3, "one row per device: {second:?}");
    let by_serial = |rows: &[serde_json::Value]| -> BTreeMap<String, serde_json::Value> {
        rows.iter()
            .map(|r| {
                let identifier = str_field(r, "identifier");
                let serial = identifier.strip_prefix("serial=").unwrap_or(identifier);
                (serial.to_owned(), r.clone())
            })
            .collect()
    };
    let (first, second) = (by_serial(&first), by_serial(&second));
    for serial in serials {
        let a = first
            .get(serial)
            .unwrap_or_else(|| panic!("first import has no row for {serial}: {first:?}"));
        let b = second
            .get(serial)
            .unwrap_or_else(|| panic!("second import has no row for {serial}: {second:?}"));
        assert_eq!(a["status"], "created", "{a}");
        assert_eq!(b["status"], "updated", "{b}");
        assert_eq!(
            a["device_id"], b["device_id"],
            "{serial}: the same device both times"
        );
        assert_ne!(
            str_field(a, "token"),
            str_field(b, "token"),
            "{serial}: the second import issues a fresh token"
        );
    }

    let devices = tokio::task::block_in_place(|| collector.devices());
    assert_eq!(devices.len(), 3, "no duplicates: {devices:?}");
    for serial in serials {
        let matching: Vec<_> = devices.iter().filter(|d| d["serial"] == serial).collect();
        assert_eq!(matching.len(), 1, "{serial} once: {devices:?}");
        assert_eq!(matching[0]["device_id"], second[serial]["device_id"]);
    }
    let one = devices
        .iter()
        .find(|d| d["serial"] == "SN-CSV-1")
        .expect("SN-CSV-1");
    assert_eq!(one["department"], "IT", "{one}");
    assert_eq!(one["class"], "laptop", "{one}");
    assert_eq!(one["owner"], "alice", "{one}");
    assert_eq!(one["labels"]["site"], "hq", "{one}");
    assert_eq!(one["labels"]["floor"], "3", "{one}");

    // The first import's tokens stopped working; the second import's work.
    let ca = collector.ca_pem();
    for serial in serials {
        let hardware = v1::HardwareFacts {
            serial: serial.to_owned(),
            ..test_hardware(&serial.to_lowercase())
        };
        let status = expect_status(
            enroll_direct(
                collector.grpc_port,
                &ca,
                str_field(&first[serial], "token"),
                hardware.clone(),
            )
            .await,
            &format!("{serial}: Enroll with the first import's token"),
        );
        assert_code(
            &status,
            Code::Unauthenticated,
            &format!("{serial}: Enroll with the first import's token"),
        );
        let creds = enroll_direct(
            collector.grpc_port,
            &ca,
            str_field(&second[serial], "token"),
            hardware,
        )
        .await
        .unwrap_or_else(|s| panic!("{serial}: the fresh token must enroll: {s:?}"));
        assert_eq!(creds.device_id, str_field(&second[serial], "device_id"));
    }
    let devices = tokio::task::block_in_place(|| collector.devices());
    assert_eq!(
        devices.len(),
        3,
        "enrolling made no new devices: {devices:?}"
    );
}

#[test]
fn a_csv_with_a_bad_row_registers_the_good_rows_and_exits_1() {
    let collector = Collector::start();
    let file = write_csv(
        &collector,
        "batch.csv",
        "serial,model,class,department,owner,labels\n\
         SN-BATCH-1,X1 Carbon,laptop,IT,dan,\n\
         ,X1 Carbon,laptop,IT,erin,\n\
         SN-BATCH-3,X1 Carbon,laptop,IT,frank,\n",
    );
    let (code, rows, out) = import(&collector, &file);
    assert_eq!(code, Some(1), "a bad row makes the exit code 1: {out}");
    assert_eq!(rows.len(), 3, "one result row per CSV row: {out}");
    let bad: Vec<_> = rows.iter().filter(|r| r["status"] == "error").collect();
    assert_eq!(bad.len(), 1, "exactly the bad row fails: {out}");
    assert_eq!(bad[0]["line"], 3, "the error names the CSV line: {out}");
    assert!(
        !bad[0]["error"].as_str().unwrap_or("").trim().is_empty(),
        "the failed row says why: {out}"
    );
    for row in rows.iter().filter(|r| r["status"] != "error") {
        assert_eq!(row["status"], "created", "{out}");
        assert!(!str_field(row, "token").is_empty(), "{out}");
        assert!(!str_field(row, "device_id").is_empty(), "{out}");
    }

    let devices = collector.devices();
    assert_eq!(
        devices.len(),
        2,
        "the two good rows are registered: {devices:?}"
    );
    for serial in ["SN-BATCH-1", "SN-BATCH-3"] {
        assert!(
            devices.iter().any(|d| d["serial"] == serial),
            "{serial} registered: {devices:?}"
        );
    }
}
