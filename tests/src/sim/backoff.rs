//! The simulated agents' reconnect backoff: exponential with full jitter,
//! like `vakt-agent`'s (`agent/src/transport.rs`: each wait uniform in
//! [0, min(cap, base·2^attempt)], 1 s base, 60 s cap). With the fixed 1-s
//! pause it replaces, 19,000 simulated agents that lost their streams at the
//! same moment all came back within the same second, and again every second
//! while the collector could not take them — a reconnect storm of mTLS
//! handshakes no real fleet would make.

use std::time::Duration;

pub const BASE: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    /// splitmix64 state: each device its own sequence, no shared RNG lock.
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
            rng: seed,
        }
    }

    /// The agent's settings, seeded from the device's index and the clock.
    pub fn for_device(index: usize) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(
            BASE,
            CAP,
            clock ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The ceiling of the next wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = u64::try_from(self.ceiling().as_millis()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        let r = self.next_random();
        Duration::from_millis(if ceiling == u64::MAX {
            r
        } else {
            r % (ceiling + 1)
        })
    }

    /// The link works again: the next failure starts from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_full_jitter_and_resets() {
        let mut b = Backoff::new(BASE, CAP, 42);
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            ceilings.push(ceiling.as_secs());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), BASE);
    }

    #[test]
    fn a_fleet_spreads_its_reconnects_over_the_whole_window() {
        // 10,000 devices failing at once, third attempt (ceiling 4 s).
        let mut per_second = [0u32; 5];
        for i in 0..10_000 {
            let mut b = Backoff::new(BASE, CAP, i * 7_919 + 1);
            b.next_delay();
            b.next_delay();
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(4));
            per_second[(d.as_millis() / 1000) as usize] += 1;
        }
        // Uniform over [0, 4 s]: about 2,500 in each whole second, none piled up.
        for n in &per_second[..4] {
            assert!((2_200..2_800).contains(n), "{per_second:?}");
        }
    }
}
