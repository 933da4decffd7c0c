//! Suspend/resume detection, so that a laptop whose lid was closed shows as
//! asleep rather than gone.
//!
//! CLOCK_BOOTTIME keeps counting while the machine is suspended and
//! CLOCK_MONOTONIC does not; both are immune to wall-clock changes (NTP steps,
//! a user setting the time), which a wall-clock jump test is not. When, between
//! two loop ticks, BOOTTIME advanced more than MONOTONIC by more than
//! [`THRESHOLD`], the machine slept for that difference.

use crate::batch;
use std::time::Duration;
use vakt_proto::v1::{Event, EventKind};

/// Smaller gaps are scheduling noise or a VM paused for a moment.
pub const THRESHOLD: Duration = Duration::from_secs(5);

/// One reading of both clocks and the wall clock, taken together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clocks {
    pub boottime: Duration,
    pub monotonic: Duration,
    pub wall_unix_ms: i64,
}

impl Clocks {
    /// Reads the clocks; None where CLOCK_BOOTTIME does not exist.
    pub fn now() -> Option<Self> {
        use nix::time::{ClockId, clock_gettime};
        let read = |id| -> Option<Duration> {
            let t = clock_gettime(id).ok()?;
            Some(Duration::new(
                u64::try_from(t.tv_sec()).ok()?,
                u32::try_from(t.tv_nsec()).ok()?,
            ))
        };
        // MONOTONIC first: read the other way round, the nanoseconds between
        // the two calls would make BOOTTIME look behind on a machine that never slept.
        let monotonic = read(ClockId::CLOCK_MONOTONIC)?;
        let boottime = read(ClockId::CLOCK_BOOTTIME)?;
        Some(Self {
            boottime,
            monotonic,
            wall_unix_ms: vakt_proto::now_unix_ms(),
        })
    }
}

/// A sleep that ended since the previous reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slept {
    pub asleep_at_unix_ms: i64,
    pub resumed_at_unix_ms: i64,
}

impl Slept {
    /// The SLEEP and RESUME events for the next batch.
    pub fn events(&self) -> [Event; 2] {
        let seconds = (self.resumed_at_unix_ms - self.asleep_at_unix_ms) / 1000;
        let mut sleep = batch::event(EventKind::Sleep, "suspended (estimated start)");
        sleep.at_unix_ms = self.asleep_at_unix_ms;
        let mut resume = batch::event(EventKind::Resume, &format!("resumed after {seconds} s"));
        resume.at_unix_ms = self.resumed_at_unix_ms;
        [sleep, resume]
    }
}

#[derive(Debug, Default)]
pub struct Detector {
    last: Option<Clocks>,
}

impl Detector {
    /// Takes a reading; reports a sleep if one happened since the previous one.
    pub fn observe(&mut self, now: Clocks) -> Option<Slept> {
        let last = self.last.replace(now)?;
        let boot = now.boottime.checked_sub(last.boottime)?;
        let awake = now.monotonic.checked_sub(last.monotonic)?;
        let asleep = boot.checked_sub(awake)?;
        if asleep <= THRESHOLD {
            return None;
        }
        // The sleep lies somewhere in the interval; all the clocks say is how
        // long the machine was awake in it. Assume half of that came before
        // the suspend and half after the resume: off by at most half an
        // interval either way. Anchored to the wall clock now, so that an NTP
        // step after resume (common) does not misplace the events.
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let resumed = now.wall_unix_ms.saturating_sub(ms(awake) / 2);
        Some(Slept {
            asleep_at_unix_ms: resumed.saturating_sub(ms(asleep)),
            resumed_at_unix_ms: resumed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(boot_s: u64, mono_s: u64, wall_s: i64) -> Clocks {
        Clocks {
            boottime: Duration::from_secs(boot_s),
            monotonic: Duration::from_secs(mono_s),
            wall_unix_ms: wall_s * 1000,
        }
    }

    #[test]
    fn first_reading_and_awake_ticks_report_nothing() {
        let mut d = Detector::default();
        assert_eq!(d.observe(at(100, 90, 1_000)), None);
        assert_eq!(d.observe(at(130, 120, 1_030)), None);
        // Up to the threshold is noise (a busy host, a paused VM).
        assert_eq!(d.observe(at(165, 150, 1_065)), None);
    }

    #[test]
    fn a_suspend_between_ticks_is_reported_once() {
        let mut d = Detector::default();
        d.observe(at(100, 90, 1_000));
        // 30 s awake, 3600 s suspended.
        let slept = d.observe(at(3_730, 120, 4_630)).unwrap();
        assert_eq!(slept.resumed_at_unix_ms, 4_615_000);
        assert_eq!(slept.asleep_at_unix_ms, 1_015_000);
        assert_eq!(
            slept.resumed_at_unix_ms - slept.asleep_at_unix_ms,
            3_600_000
        );
        let [sleep, resume] = slept.events();
        assert_eq!(sleep.kind, EventKind::Sleep as i32);
        assert_eq!(resume.kind, EventKind::Resume as i32);
        assert_eq!(resume.at_unix_ms, 4_615_000);
        assert!(resume.detail.contains("3600 s"), "{}", resume.detail);
        // The next tick is an ordinary one again.
        assert_eq!(d.observe(at(3_760, 150, 4_660)), None);
    }

    #[test]
    fn wall_clock_jumps_are_not_sleeps() {
        let mut d = Detector::default();
        d.observe(at(100, 90, 1_000));
        // Someone set the clock a day ahead: BOOTTIME and MONOTONIC agree.
        assert_eq!(d.observe(at(130, 120, 1_030 + 86_400)), None);
    }

    #[test]
    fn clocks_going_backwards_are_ignored() {
        let mut d = Detector::default();
        d.observe(at(100, 90, 1_000));
        assert_eq!(d.observe(at(50, 40, 1_030)), None);
        assert_eq!(d.observe(at(20, 95, 1_030)), None);
    }

    #[test]
    fn real_clocks_are_readable_and_consistent() {
        let c = Clocks::now().expect("CLOCK_BOOTTIME on Linux");
        assert!(c.boottime >= c.monotonic, "{c:?}");
        let mut d = Detector::default();
        assert_eq!(d.observe(c), None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(d.observe(Clocks::now().unwrap()), None);
    }
}
