//! When the alert engine's periodic work runs, and on which thread.
//!
//! The disk-full forecast reads a day of filesystem series per device. Done
//! for the whole fleet at once (every 10 min by default) that was seconds of
//! CPU in one go on a 19,000-device collector, at the same moment as the
//! first fold pass. A forecast rule whose `every` spans several ticks now
//! reads one slice of the fleet per tick instead: a device is due when its
//! id's hash falls in the tick's slice, so every device is still forecast
//! once per `every`, and each tick does 1/`slices` of the work.

use super::rules::{Kind, RuleSet};
use std::collections::HashMap;
use std::time::Duration;

/// Which devices a forecast rule reads this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not a forecast rule, or not due.
    Never,
    /// Every device (the rule's period is not longer than a tick).
    All,
    /// Devices whose bucket is `current` out of `slices`.
    Slice { slices: u64, current: u64 },
}

impl Plan {
    pub fn due(&self, device_id: &str) -> bool {
        match *self {
            Plan::Never => false,
            Plan::All => true,
            Plan::Slice { slices, current } => bucket(device_id) % slices == current,
        }
    }
}

/// A stable hash of the device id (FNV-1a): the same slice on every tick.
fn bucket(device_id: &str) -> u64 {
    device_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One plan per rule (by index) for the tick numbered `ticks`. `last` holds
/// when an unsliced forecast rule last ran, by rule name.
pub fn forecast_plans(
    rules: &RuleSet,
    last: &mut HashMap<String, i64>,
    ticks: u64,
    now: i64,
) -> Vec<Plan> {
    let tick_ms = ms(rules.evaluation_interval).max(1);
    rules
        .rules
        .iter()
        .map(|r| {
            let Kind::FilesystemFull { every, .. } = &r.kind else {
                return Plan::Never;
            };
            let every = ms(*every);
            let slices = u64::try_from(every / tick_ms).unwrap_or(1);
            if slices >= 2 {
                return Plan::Slice {
                    slices,
                    current: ticks % slices,
                };
            }
            let due = now - last.get(&r.name).copied().unwrap_or(0) >= every;
            if due {
                last.insert(r.name.clone(), now);
                Plan::All
            } else {
                Plan::Never
            }
        })
        .collect()
}

/// Runs `work` (a pass over the fleet) without holding up the async worker
/// it is called from: in a multi-threaded runtime the worker's other tasks
/// (report streams) move to another thread meanwhile. Elsewhere (a
/// single-threaded test runtime) it just runs.
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(every: &str, interval: &str) -> RuleSet {
        let text = format!(
            "evaluation_interval = \"{interval}\"\n\
             [[rule]]\nname = \"filesystem-full-soon\"\nkind = \"filesystem_full\"\n\
             severity = \"warning\"\nwithin = \"7d\"\nwindow = \"24h\"\nmin_points = 12\n\
             every = \"{every}\"\n"
        );
        crate::alerts::rules::load_text(Some(&text), "test.toml").expect("rules parse")
    }

    fn plan_of(rules: &RuleSet, ticks: u64, now: i64, last: &mut HashMap<String, i64>) -> Plan {
        let i = rules
            .rules
            .iter()
            .position(|r| r.name == "filesystem-full-soon")
            .expect("the rule");
        forecast_plans(rules, last, ticks, now)[i]
    }

    #[test]
    fn a_long_period_is_read_in_slices_that_cover_every_device_once() {
        let rules = rules("10m", "15s");
        let mut last = HashMap::new();
        let devices: Vec<String> = (0..2_000).map(|i| format!("d-{i:08x}")).collect();
        let mut seen = HashMap::<&str, u32>::new();
        let mut largest = 0;
        for tick in 0..40 {
            let plan = plan_of(&rules, tick, tick as i64 * 15_000, &mut last);
            assert!(matches!(plan, Plan::Slice { slices: 40, .. }), "{plan:?}");
            let due: Vec<&str> = devices
                .iter()
                .filter(|d| plan.due(d))
                .map(String::as_str)
                .collect();
            largest = largest.max(due.len());
            for d in due {
                *seen.entry(d).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), devices.len(), "every device once per period");
        assert!(seen.values().all(|n| *n == 1));
        // 2,000 / 40 = 50 a tick on average; no slice much larger.
        assert!(largest < 100, "largest slice {largest}");
    }

    #[test]
    fn a_short_period_reads_everyone_when_due() {
        let rules = rules("200ms", "200ms");
        let mut last = HashMap::new();
        assert_eq!(plan_of(&rules, 1, 1_000, &mut last), Plan::All);
        assert_eq!(plan_of(&rules, 2, 1_100, &mut last), Plan::Never);
        assert_eq!(plan_of(&rules, 3, 1_200, &mut last), Plan::All);
        // Twice the tick: half the fleet a tick.
        let rules = super::tests::rules("400ms", "200ms");
        assert_eq!(
            plan_of(&rules, 3, 1_400, &mut last),
            Plan::Slice {
                slices: 2,
                current: 1
            }
        );
        assert!(Plan::All.due("x") && !Plan::Never.due("x"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_runs_in_either_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }

    #[tokio::test]
    async fn blocking_work_runs_on_a_current_thread_runtime() {
        assert_eq!(blocking(|| 8), 8);
    }
}
