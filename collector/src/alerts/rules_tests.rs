use super::*;

fn errors(text: &str) -> Vec<String> {
    match check_text(text, "r.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

#[test]
fn the_defaults_parse() {
    let set = load_text(None, "").expect("defaults");
    assert!(set.rules.iter().any(|r| r.name == "server-offline"));
    assert!(
        set.rules
            .iter()
            .any(|r| matches!(r.kind, Kind::FilesystemFull { .. }))
    );
    assert_eq!(set.flap.max_changes, 4);
}

#[test]
fn a_threshold_with_for_and_hysteresis() {
    let text = r#"
evaluation_interval = "1s"
[[rule]]
name = "cpu"
kind = "threshold"
severity = "critical"
metric = "system.cpu.utilization"
above = 0.9
clear = 0.85
for = "2s"
scope = { department = ["IT"], class = ["server"], labels = { site = "hq" } }
labels = { team = "ops" }
"#;
    let set = load_text(Some(text), "r.toml").expect("valid");
    let rule = set.rules.iter().find(|r| r.name == "cpu").expect("cpu");
    assert_eq!(rule.severity, Severity::Critical);
    assert_eq!(
        rule.kind,
        Kind::Threshold {
            metric: "system.cpu.utilization".into(),
            attributes: BTreeMap::new(),
            above: Some(0.9),
            below: None,
            clear: 0.85,
            for_: Duration::from_secs(2),
        }
    );
    let labels: BTreeMap<String, String> = [("site".to_owned(), "hq".to_owned())].into();
    assert!(rule.scope.matches("IT", "server", &labels));
    assert!(!rule.scope.matches("IT", "laptop", &labels));
    assert!(!rule.scope.matches("IT", "server", &BTreeMap::new()));
    assert_eq!(set.evaluation_interval, Duration::from_secs(1));
}

#[test]
fn a_file_overrides_and_disables_defaults() {
    let text = r#"
[[rule]]
name = "server-offline"
kind = "offline"
missed_intervals = 5

[[rule]]
name = "device-stale"
kind = "stale"
enabled = false
"#;
    let set = load_text(Some(text), "r.toml").expect("valid");
    let offline: Vec<&Rule> = set
        .rules
        .iter()
        .filter(|r| r.name == "server-offline")
        .collect();
    assert_eq!(offline.len(), 1);
    assert!(matches!(
        offline[0].kind,
        Kind::Offline {
            missed_intervals: 5,
            ..
        }
    ));
    assert!(offline[0].scope.classes.is_empty(), "replaced, not merged");
    assert!(!set.rules.iter().any(|r| r.name == "device-stale"));
}

#[test]
fn errors_name_the_line_and_column() {
    // A TOML syntax error.
    assert_eq!(
        errors("[[rule]]\nname = \"x\nkind = 1\n")[0]
            .split(':')
            .nth(1),
        Some("2")
    );
    // An unknown field, on its own line.
    let e = errors("[[rule]]\nname = \"x\"\nkind = \"stale\"\nafterr = \"1d\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("r.toml:4:"), "{e:?}");
    assert!(e[0].contains("afterr"), "{e:?}");
    // Semantic errors, all of them, each at its value.
    let text = r#"[[rule]]
name = "a"
kind = "threshold"
metric = "m"
above = 0.9
clear = 0.95
for = "soon"

[[rule]]
name = "b"
kind = "offlien"

[[rule]]
name = "a"
kind = "stale"
severity = "loud"
"#;
    let e = errors(text);
    assert!(
        e.iter().any(|l| l.starts_with("r.toml:6:9: clear")),
        "{e:?}"
    );
    assert!(e.iter().any(|l| l.starts_with("r.toml:7:7: for")), "{e:?}");
    assert!(
        e.iter()
            .any(|l| l.starts_with("r.toml:11:8: kind \"offlien\"")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("r.toml:14:8: rule \"a\" is already defined on line 2")),
        "{e:?}"
    );
}

#[test]
fn kind_specific_requirements() {
    let e = errors("[[rule]]\nname = \"t\"\nkind = \"threshold\"\n");
    assert!(e.iter().any(|l| l.contains("needs `metric`")), "{e:?}");
    assert!(
        e.iter()
            .any(|l| l.contains("exactly one of `above` and `below`")),
        "{e:?}"
    );
    let e = errors("[[rule]]\nname = \"v\"\nkind = \"agent_version\"\nminimum = \"new\"\n");
    assert!(e[0].starts_with("r.toml:4:11:"), "{e:?}");
    let e =
        errors("[[rule]]\nname = \"i\"\nkind = \"inventory_change\"\nchanges = [\"ram_pulled\"]\n");
    assert!(e[0].starts_with("r.toml:4:12:"), "{e:?}");
    let e = errors("[[rule]]\nname = \"o\"\nkind = \"offline\"\nscope = { class = [\"phone\"] }\n");
    assert!(e[0].starts_with("r.toml:4:20:"), "{e:?}");
}
