use super::*;

const NOW: i64 = 1_780_000_000_000;

async fn parse(text: &str) -> (Vec<ChildDevice>, Vec<String>, usize) {
    parse_output(BufReader::new(text.as_bytes()), "mdm.sh")
        .await
        .unwrap()
}

#[test]
fn a_full_line_and_a_minimal_one() {
    let child = parse_line(
        br#"{"identifier":"mdm-1","serial":"R52N","model":"Tab A8","os":"Android","os_version":"14",
            "battery_percent":81,"battery_health_percent":97.5,"storage_total_bytes":64000000000,
            "storage_free_bytes":1000,"last_sync":"2026-05-28T10:00:00+02:00"}"#,
        "mdm.sh",
        NOW,
    )
    .unwrap();
    assert_eq!(child.identifier, "mdm-1");
    assert_eq!(child.os_name, "Android");
    assert_eq!(child.battery_percent, Some(81.0));
    assert_eq!(child.storage_free_bytes, Some(1000));
    assert_eq!(child.last_sync_unix_ms, 1_779_955_200_000);
    assert_eq!(child.source, "mdm.sh");
    let bare = parse_line(
        br#"{"identifier":"x","last_sync":1779955200000,"serial":null}"#,
        "s",
        NOW,
    )
    .unwrap();
    assert_eq!(bare.last_sync_unix_ms, 1_779_955_200_000);
    assert_eq!(bare.battery_percent, None);
}

#[test]
fn bad_lines_say_why() {
    for (line, needle) in [
        (r#"{"serial":"S"}"#, "missing field `identifier`"),
        (r#"{"identifier":""}"#, "identifier: must not be empty"),
        (
            r#"{"identifier":"x","battery_percent":"full"}"#,
            "invalid type",
        ),
        (
            r#"{"identifier":"x","battery_percent":101}"#,
            "battery_percent: 101",
        ),
        (r#"{"identifier":"x","storage_total_bytes":-1}"#, "invalid"),
        (
            r#"{"identifier":"x","storage_total_bytes":1,"storage_free_bytes":2}"#,
            "storage_free_bytes",
        ),
        (
            r#"{"identifier":"x","last_sync":"yesterday"}"#,
            "last_sync: \"yesterday\" is not RFC 3339",
        ),
        (
            r#"{"identifier":"x","last_sync":1779955200}"#,
            "last_sync: 1779955200 is before 2000",
        ),
        (
            r#"{"identifier":"x","batery_percent":5}"#,
            "unknown field `batery_percent`",
        ),
        (
            r#"{"identifier":"x","model":"a\u0007b"}"#,
            "model: contains control characters",
        ),
        ("not json", "expected"),
        (r#"["identifier"]"#, "invalid type"),
    ] {
        let err = parse_line(line.as_bytes(), "s", NOW).expect_err(line);
        assert!(err.contains(needle), "{line}: {err}");
    }
}

#[tokio::test]
async fn bad_lines_are_counted_and_never_stop_the_others() {
    let long = format!("{{\"identifier\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES));
    let text = format!(
        "{{\"identifier\":\"a\"}}\n\nbroken\n{long}\n{{\"identifier\":\"b\",\"battery_percent\":5}}\n{{\"identifier\":\"a\",\"model\":\"newer\"}}"
    );
    let (children, errors, lines) = parse(&text).await;
    let ids: Vec<&str> = children.iter().map(|c| c.identifier.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    // The later line about the same device wins.
    assert_eq!(children[0].model, "newer");
    assert_eq!(lines, 6);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("line 3: "), "{errors:?}");
    assert!(
        errors[1].starts_with(&format!("line 4: {} bytes", long.len())),
        "{errors:?}"
    );
}

#[test]
fn config_is_checked() {
    let ok = |text: &str| -> anyhow::Result<GatewayConfig> {
        let c: GatewayConfig = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    };
    let c = ok(r#"
        [[source]]
        exec = "/usr/lib/vakt/mdm.sh"
        args = ["--export", "/var/lib/mdm/devices.csv"]
        interval = "5m"
        timeout = "1m"
        [[source]]
        exec = "/usr/lib/vakt/adb.sh"
        interval = "30s"
    "#)
    .unwrap();
    assert_eq!(c.sources.len(), 2);
    assert_eq!(c.sources[0].name(), "mdm.sh");
    assert_eq!(c.sources[1].timeout(), Duration::from_secs(30));
    for (text, needle) in [
        (
            "[[source]]\nexec = \"mdm.sh\"\ninterval = \"5m\"",
            "absolute",
        ),
        ("[[source]]\nexec = \"/a\"\ninterval = \"0s\"", "interval"),
        (
            "[[source]]\nexec = \"/a\"\ninterval = \"1m\"\ntimeout = \"2m\"",
            "timeout",
        ),
        ("[[source]]\nexec = \"/a\"", "interval"),
        (
            "[[source]]\nexec = \"/a\"\ninterval = \"1m\"\nintervall = \"1m\"",
            "intervall",
        ),
        (
            "[[source]]\nexec = \"/x/a\"\ninterval = \"1m\"\n[[source]]\nexec = \"/y/a\"\ninterval = \"1m\"",
            "two sources",
        ),
    ] {
        let err = format!("{:#}", ok(text).expect_err(text));
        assert!(err.contains(needle), "{text}: {err}");
    }
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_source_runs_and_its_children_wait_for_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let exec = script(
        dir.path(),
        "tablets.sh",
        r#"echo '{"identifier":"t1","serial":"S1"}'; echo 'oops'; echo 'to stderr' >&2"#,
    );
    let config = GatewayConfig {
        sources: vec![SourceConfig {
            exec,
            args: vec![],
            interval: Duration::from_secs(3600),
            timeout: None,
            name: None,
        }],
    };
    let gateway = Gateway::start(&config).unwrap();
    let mut got = (Vec::new(), 0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = gateway.take();
        if !got.0.is_empty() {
            break;
        }
    }
    assert_eq!(got.0.len(), 1);
    assert_eq!(got.0[0].source, "tablets.sh");
    assert_eq!(got.1, 1);
    assert_eq!(gateway.take(), (Vec::new(), 0));
}

#[tokio::test]
async fn a_source_that_hangs_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let exec = script(
        dir.path(),
        "hang.sh",
        &format!(
            "sleep 300 & echo $! > {}\necho '{{\"identifier\":\"t1\"}}'\nwait",
            pidfile.display()
        ),
    );
    let source = SourceConfig {
        exec,
        args: vec![],
        interval: Duration::from_secs(60),
        timeout: Some(Duration::from_secs(1)),
        name: None,
    };
    let started = std::time::Instant::now();
    let err = run_source(&source, "hang.sh").await.expect_err("timeout");
    assert!(format!("{err:#}").contains("killed"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    // The background `sleep` went with it (a zombie at worst, until reaped).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
}

#[tokio::test]
async fn gateway_check_reports_children_bad_lines_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let good = script(
        dir.path(),
        "good.sh",
        r#"echo '{"identifier":"t1","battery_percent":50}'; echo '{"identifier":"t2","battery_percent":500}'"#,
    );
    let source = |exec| SourceConfig {
        exec,
        args: vec![],
        interval: Duration::from_secs(60),
        timeout: None,
        name: None,
    };
    let config = GatewayConfig {
        sources: vec![source(good), source(dir.path().join("missing.sh"))],
    };
    let (report, clean) = check_sources(&config).await;
    assert!(!clean);
    let first = &report["sources"][0];
    assert_eq!(first["children"][0]["identifier"], "t1");
    assert_eq!(first["children"][0]["battery_percent"], 50.0);
    assert_eq!(
        first["invalid_lines"][0],
        "line 2: battery_percent: 500 is not a number from 0 to 100"
    );
    let second = &report["sources"][1];
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot run")),
        "{report}"
    );
}
