//! Installed software travels as a diff: a real agent reads a fixture rootfs's
//! dpkg database, the collector's package list (via `vaktctl inventory`)
//! follows it, an edit of one added and one removed package arrives as an
//! incremental change, and a collector that lost the list (restored from a
//! backup) gets the full list again.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vakt_tests::{Agent, Collector, wait_until};

const WAIT: Duration = Duration::from_secs(60);

const BASE_STATUS: &str = "\
Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2
Description: GNU Bourne Again SHell
 Status: deinstall ok config-files (part of the description)

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: amd64
Version: 2.36-9+deb12u4

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: i386
Version: 2.36-9+deb12u4

Package: broken-thing
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0

Package: vim
Status: deinstall ok config-files
Architecture: amd64
Version: 2:9.0.1378-2

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
";

const CURL: &str = "
Package: curl
Status: install ok installed
Architecture: amd64
Version: 7.88.1-10+deb12u5
";

fn write_status(rootfs: &Path, text: &str) {
    let path = rootfs.join("var/lib/dpkg/status");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir dpkg");
    // Write then rename, as dpkg does, so the agent never reads half a file.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write status");
    std::fs::rename(&tmp, &path).expect("rename status");
}

/// `name:arch=version` of every package the collector holds for the device.
fn packages(collector: &Collector, device: &str) -> (Vec<String>, Value) {
    let json = collector.vaktctl_json(&["inventory", device, "--software", "-o", "json"]);
    let list = json["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages array: {json}"))
        .iter()
        .map(|p| {
            format!(
                "{}:{}={}",
                p["name"].as_str().unwrap_or_default(),
                p["architecture"].as_str().unwrap_or_default(),
                p["version"].as_str().unwrap_or_default()
            )
        })
        .collect();
    (list, json)
}

fn wait_for_packages(collector: &Collector, agent: &mut Agent, device: &str, want: &[&str]) {
    wait_until(WAIT, "the collector's package list", || {
        agent.assert_running();
        let (list, json) = packages(collector, device);
        if list == want {
            Ok(json)
        } else {
            Err(format!("{list:?}"))
        }
    });
}

/// Software entries of the history, oldest first.
fn software_history(collector: &Collector, device: &str) -> Vec<Value> {
    let json =
        collector.vaktctl_json(&["inventory", device, "--history", "--software", "-o", "json"]);
    json.as_array()
        .unwrap_or_else(|| panic!("history is not an array: {json}"))
        .clone()
}

fn counts(entry: &Value) -> (&str, u64, u64, u64) {
    (
        entry["mode"].as_str().unwrap_or_default(),
        entry["added"].as_u64().unwrap_or(u64::MAX),
        entry["removed"].as_u64().unwrap_or(u64::MAX),
        entry["changed"].as_u64().unwrap_or(u64::MAX),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir backup");
    for entry in std::fs::read_dir(from).expect("read data dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn software_is_sent_in_full_then_as_diffs_and_in_full_again_when_the_collector_lost_it() {
    let mut collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = collector.register_unbound();
    let device = registration.device_id.clone();
    let mut agent = Agent::enroll(&collector, &registration.token, "agent");
    let rootfs: PathBuf = collector.tmp().join("rootfs");
    write_status(&rootfs, BASE_STATUS);
    let mut config = std::fs::read_to_string(&agent.config).expect("read agent config");
    config.push_str(&format!(
        "\n[paths]\nrootfs = {:?}\n",
        rootfs.display().to_string()
    ));
    std::fs::write(&agent.config, config).expect("write agent config");
    agent.run();

    // A fresh device: the full list, installed packages only, both libc6 arches.
    let base = [
        "bash:amd64=5.2.15-2+b2",
        "libc6:amd64=2.36-9+deb12u4",
        "libc6:i386=2.36-9+deb12u4",
        "tzdata:all=2024a-0+deb12u1",
    ];
    wait_for_packages(&collector, &mut agent, &device, &base);
    let history = software_history(&collector, &device);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(counts(&history[0]), ("full", 4, 0, 0));
    let summary = collector.vaktctl_json(&["inventory", &device, "-o", "json"]);
    assert_eq!(summary["software"]["package_count"], 4, "{summary}");
    let shown = collector.device(&device);
    assert_eq!(
        shown["device_id"],
        device.as_str(),
        "device show still works"
    );

    // A backup of the collector's data while it holds that list.
    let data = collector.dir.join("data");
    assert!(data.is_dir(), "collector data dir {}", data.display());
    let backup = collector.tmp().join("data-backup");
    collector.kill9();
    copy_dir(&data, &backup);
    collector.serve();

    // One package added, one removed: only the difference travels.
    let edited = BASE_STATUS.replace(
        "Package: tzdata\nStatus: install ok installed",
        "Package: tzdata\nStatus: deinstall ok config-files",
    ) + CURL;
    write_status(&rootfs, &edited);
    let after = [
        "bash:amd64=5.2.15-2+b2",
        "curl:amd64=7.88.1-10+deb12u5",
        "libc6:amd64=2.36-9+deb12u4",
        "libc6:i386=2.36-9+deb12u4",
    ];
    wait_for_packages(&collector, &mut agent, &device, &after);
    let history = software_history(&collector, &device);
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(counts(&history[1]), ("incremental", 1, 1, 0), "{history:?}");
    let names: Vec<&str> = history[1]["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["tzdata", "curl"]);
    // The table view lists it too.
    let table = collector.vaktctl(&["inventory", &device, "--software"]);
    assert!(table.success(), "{table}");
    assert!(table.stdout.contains("curl"), "{table}");

    // The collector loses the list (restored from the backup): the agent's
    // hash no longer matches, the collector asks, and the full list returns.
    collector.kill9();
    std::fs::remove_dir_all(&data).expect("remove data dir");
    copy_dir(&backup, &data);
    collector.serve();
    wait_for_packages(&collector, &mut agent, &device, &after);
    let history = software_history(&collector, &device);
    let last = history.last().expect("history entry");
    assert_eq!(counts(last), ("full", 1, 1, 0), "{history:?}");
}
