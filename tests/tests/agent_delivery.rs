//! Nothing the agent collects while offline is lost or stored twice: the real
//! `vakt-agent` against the real `vakt-collector`, with the collector killed,
//! frozen, replaced by an impostor, and the agent killed between send and
//! acknowledgement.
//!
//! Every batch carries exactly one `system.uptime` sample (read from
//! `/proc/uptime`, always present) and, when the CPU counters moved since the
//! previous batch, one total `system.cpu.utilization` sample. So "one uptime
//! point per sequence number, strictly increasing in time and value" is the
//! exact proof of exactly-once, in-order delivery; the CPU series must agree
//! (no duplicates, nothing beyond the uptime points).

use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vakt_tests::{Agent, COMMAND_TIMEOUT, Collector, bin, run_command, wait_until};

/// Long enough for the agent's backoff (1 s doubling, full jitter) to come back.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// `vakt-agent status --state-dir DIR -o json`.
fn status(state_dir: &Path) -> Value {
    let mut cmd = Command::new(bin("vakt-agent"));
    cmd.arg("status")
        .arg("--state-dir")
        .arg(state_dir)
        .args(["-o", "json"]);
    run_command(cmd, COMMAND_TIMEOUT).assert_success().json()
}

fn field(status: &Value, name: &str) -> u64 {
    status[name]
        .as_u64()
        .unwrap_or_else(|| panic!("agent status lacks {name}: {status}"))
}

/// A collector that keeps agents at a 1 s interval (it pushes its own otherwise),
/// and one enrolled, running agent.
fn collector_and_agent(extra_config: &str) -> (Collector, Agent, String) {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = collector.register_unbound();
    let mut agent = Agent::enroll(&collector, &registration.token, "agent");
    if !extra_config.is_empty() {
        let mut text = std::fs::read_to_string(&agent.config).expect("read agent config");
        text.push_str(extra_config);
        std::fs::write(&agent.config, text).expect("write agent config");
    }
    agent.run();
    wait_for_acked(&mut agent, 2);
    (collector, agent, registration.device_id)
}

fn wait_for_acked(agent: &mut Agent, at_least: u64) -> Value {
    let state_dir = agent.state_dir.clone();
    wait_until(
        Duration::from_secs(40),
        &format!("the agent to have {at_least} reports acknowledged"),
        || {
            agent.assert_running();
            let s = status(&state_dir);
            if field(&s, "acked_sequence") >= at_least {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
}

/// Waits until everything spooled up to now is acknowledged and the spool is empty.
fn wait_for_drain(agent: &mut Agent) -> Value {
    let state_dir = agent.state_dir.clone();
    let target = field(&status(&state_dir), "last_sequence");
    wait_until(DRAIN_TIMEOUT, "the agent's spool to drain", || {
        agent.assert_running();
        let s = status(&state_dir);
        if field(&s, "acked_sequence") >= target && field(&s, "spool_reports") == 0 {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
}

/// SIGTERM: the agent reports its shutdown and waits for the acknowledgement,
/// so afterwards every sequence it ever handed out is acknowledged.
fn stop_gracefully(agent: &mut Agent) -> Value {
    let process = agent.process();
    process.signal(Signal::SIGTERM);
    let exit = process.wait_timeout(Duration::from_secs(15));
    assert!(
        exit.is_some_and(|s| s.success()),
        "agent did not exit cleanly on SIGTERM: {exit:?}\n{}",
        process.logs()
    );
    agent.stop();
    let s = status(&agent.state_dir);
    assert_eq!(
        field(&s, "acked_sequence"),
        field(&s, "last_sequence"),
        "the shutdown report and everything before it acknowledged: {s}"
    );
    assert_eq!(field(&s, "spool_reports"), 0, "spool empty: {s}");
    s
}

/// `(timestamp, value)` of the series of `metric` without attributes.
fn plain_series(collector: &Collector, device: &str, metric: &str) -> Vec<(i64, f64)> {
    let json = collector.vaktctl_json(&["metrics", device, metric, "--since", "1h", "-o", "json"]);
    let series = json["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no series array: {json}"));
    let mut points = Vec::new();
    for s in series {
        let plain = s["attributes"].as_object().is_none_or(|a| a.is_empty());
        if !plain {
            continue;
        }
        for p in s["points"].as_array().expect("points array") {
            points.push((
                p["timestamp_unix_ms"].as_i64().expect("timestamp"),
                p["value"].as_f64().expect("value"),
            ));
        }
    }
    points
}

/// The device's ingest state, read from a stopped collector's store.
fn ingest_state(
    collector: &Collector,
    device: &str,
) -> anyhow::Result<vakt_collector::store::IngestState> {
    // The store's flusher is a tokio task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let store = vakt_collector::store::Store::open(&collector.dir.join("data"), 1 << 20)?;
    Ok(store.ingest_state(device)?)
}

/// Checks that the collector holds exactly `expected` reports of the device,
/// one point each, in order, and that its `last_sequence` is `last_sequence`.
fn assert_stored_once(collector: &Collector, device: &str, last_sequence: u64, expected: u64) {
    let stored = stored_in_order(collector, device, last_sequence);
    assert_eq!(
        stored, expected,
        "one system.uptime point per stored report (last sequence {last_sequence})"
    );
}

/// Checks order, uniqueness and `last_sequence`; returns how many reports are stored.
fn stored_in_order(collector: &Collector, device: &str, last_sequence: u64) -> u64 {
    let shown = collector.device(device);
    assert_eq!(
        shown["last_sequence"].as_u64(),
        Some(last_sequence),
        "the collector's last_sequence equals the agent's acknowledged sequence: {shown}"
    );
    let uptime = plain_series(collector, device, "system.uptime");
    let expected = uptime.len() as u64;
    assert!(
        expected <= last_sequence,
        "more points than reports (last sequence {last_sequence}): {uptime:?}"
    );
    for pair in uptime.windows(2) {
        assert!(
            pair[1].0 > pair[0].0 && pair[1].1 >= pair[0].1,
            "reports stored in order, none twice: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let cpu = plain_series(collector, device, "system.cpu.utilization");
    for pair in cpu.windows(2) {
        assert!(
            pair[1].0 > pair[0].0,
            "total CPU points strictly increasing in time: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let uptime_times: std::collections::HashSet<i64> = uptime.iter().map(|p| p.0).collect();
    assert!(
        cpu.iter().all(|p| uptime_times.contains(&p.0)),
        "every total CPU point belongs to a stored report"
    );
    // A batch lacks the total only when no CPU tick passed since the previous
    // one (a shutdown report right after a tick); at 1 s that is rare.
    assert!(
        cpu.len() as u64 + 2 >= expected,
        "one total CPU sample per report: {} points for {expected} reports",
        cpu.len()
    );
    expected
}

#[test]
fn collector_outage_delivers_every_report_once_and_in_order() {
    let (mut collector, mut agent, device) = collector_and_agent("");
    collector.kill9();
    let killed = status(&agent.state_dir);
    std::thread::sleep(Duration::from_secs(8));
    agent.assert_running();
    let offline = status(&agent.state_dir);
    assert_eq!(
        field(&offline, "acked_sequence"),
        field(&killed, "acked_sequence"),
        "nothing acknowledged while the collector is down: {offline}"
    );
    assert!(
        field(&offline, "spool_reports") >= 6,
        "reports collected at 1 s during 8 s offline stay spooled: {offline}"
    );

    collector.serve();
    wait_for_drain(&mut agent);
    let done = stop_gracefully(&mut agent);
    let last = field(&done, "last_sequence");
    assert!(last > field(&offline, "last_sequence"), "{done}");
    assert_stored_once(&collector, &device, last, last);
}

#[test]
fn agent_killed_between_send_and_acknowledgement_stores_each_report_once() {
    let (mut collector, mut agent, device) = collector_and_agent("");

    // Freeze the collector: the stream stays open, the agent keeps sending, no
    // acknowledgement comes back. Then SIGKILL the agent with reports in flight
    // and let the collector read (and store) what reached its socket.
    let frozen_at = field(&status(&agent.state_dir), "acked_sequence");
    collector.process().signal(Signal::SIGSTOP);
    let state_dir = agent.state_dir.clone();
    wait_until(
        Duration::from_secs(20),
        "reports sent to the frozen collector",
        || {
            let s = status(&state_dir);
            if field(&s, "last_sequence") >= frozen_at + 3 {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    agent.process().kill9();
    agent.stop();
    let killed = status(&agent.state_dir);
    assert!(
        field(&killed, "last_sequence") > field(&killed, "acked_sequence"),
        "reports unacknowledged at the kill: {killed}"
    );
    collector.process().signal(Signal::SIGCONT);

    // More kills at arbitrary points of the report cycle, with the collector up:
    // whatever was sent but not acknowledged is resent and must not be stored twice.
    for pause_ms in [1_300, 2_700, 900] {
        agent.run();
        std::thread::sleep(Duration::from_millis(pause_ms));
        agent.assert_running();
        agent.process().kill9();
        agent.stop();
    }

    agent.run();
    wait_for_drain(&mut agent);
    let done = stop_gracefully(&mut agent);
    let last = field(&done, "last_sequence");
    assert_stored_once(&collector, &device, last, last);
}

#[test]
fn a_tiny_spool_drops_the_oldest_reports_and_reports_the_drops() {
    // The smallest cap the agent accepts; a health-only batch is a few KB.
    let (mut collector, mut agent, device) = collector_and_agent("spool_max_bytes = 65536\n");
    collector.kill9();
    let killed = status(&agent.state_dir);
    // Sent but never acknowledged: the collector may have stored these before
    // the kill, and the agent cannot know, so dropping them counts them too.
    // (Batches in flight on a live stream are never dropped, so the drain
    // after the restart adds no such ambiguity.)
    let maybe_stored = field(&killed, "last_sequence") - field(&killed, "acked_sequence");
    let state_dir = agent.state_dir.clone();
    let offline = wait_until(
        Duration::from_secs(120),
        "the agent to drop reports from its full spool",
        || {
            agent.assert_running();
            let s = status(&state_dir);
            if field(&s, "dropped_reports_total") >= 3 {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    assert!(
        field(&offline, "spool_bytes") <= 65536,
        "the spool stays under its cap: {offline}"
    );

    collector.serve();
    wait_for_drain(&mut agent);
    let done = stop_gracefully(&mut agent);
    let last = field(&done, "last_sequence");
    let dropped = field(&done, "dropped_reports_total");
    assert!(dropped >= 3, "{done}");
    // The gap: the dropped reports are missing (less any the collector had
    // stored unacknowledged), the rest stored once and in order.
    let missing = last - stored_in_order(&collector, &device, last);
    assert!(
        missing <= dropped && dropped - missing <= maybe_stored,
        "{missing} reports missing, {dropped} counted dropped, \
         {maybe_stored} unacknowledged at the kill"
    );
    assert!(
        missing >= 3,
        "the oldest reports are gone: {missing} missing"
    );

    // The collector counted the same drops, and shows them to ops.
    let shown = collector.device(&device);
    assert_eq!(
        shown["dropped_reports_total"].as_u64(),
        Some(dropped),
        "the collector's count of dropped reports: {shown}"
    );
}

#[test]
fn an_impostor_collector_gets_nothing_and_the_real_one_gets_everything() {
    let (mut collector, mut agent, device) = collector_and_agent("");
    collector.kill9();
    let before = status(&agent.state_dir);

    // Another CA's collector on the same address, with a certificate for the same names.
    let mut impostor = Collector::init();
    let address = format!("\"127.0.0.1:{}\"", collector.grpc_port);
    impostor.set_config("grpc_listen", &address);
    impostor.grpc_port = collector.grpc_port;
    let ctl = impostor.vaktctl_config();
    let text = std::fs::read_to_string(&ctl).expect("read impostor vaktctl.toml");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("collector") {
                format!("collector = \"https://localhost:{}\"", collector.grpc_port)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ctl, text + "\n").expect("write impostor vaktctl.toml");
    impostor.serve();

    let started = Instant::now();
    let state_dir = agent.state_dir.clone();
    let refused = wait_until(
        Duration::from_secs(40),
        "the agent to refuse the impostor's certificate",
        || {
            agent.assert_running();
            let logs = agent.process().logs();
            let s = status(&state_dir);
            let said = logs.contains("UnknownIssuer") || logs.contains("invalid peer certificate");
            if said && started.elapsed() > Duration::from_secs(5) {
                Ok(s)
            } else {
                Err(format!("{s}"))
            }
        },
    );
    assert_eq!(
        field(&refused, "acked_sequence"),
        field(&before, "acked_sequence"),
        "nothing acknowledged by the impostor: {refused}"
    );
    assert!(
        field(&refused, "spool_reports") >= field(&before, "spool_reports") + 4,
        "the spool keeps growing: {before} then {refused}"
    );
    assert!(
        impostor.devices().is_empty(),
        "the impostor knows no device: {:?}",
        impostor.devices()
    );
    // The impostor's log shows a handshake that failed, never a report.
    impostor.kill9();
    let ingest = ingest_state(&impostor, &device);
    assert!(
        ingest.as_ref().map_or(true, |s| s.last_sequence == 0),
        "the impostor stored nothing for the device: {ingest:?}"
    );

    collector.serve();
    wait_for_drain(&mut agent);
    let done = stop_gracefully(&mut agent);
    let last = field(&done, "last_sequence");
    assert_stored_once(&collector, &device, last, last);
}
