//! Token buckets for `Enroll`: one per source address and one for everyone,
//! so neither one brute-forcing host nor a botnet can grind tokens quickly.
//! (A token's secret is 256 bits; this is about noise and CPU, not odds.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Forget idle addresses beyond this many, so the map cannot grow unbounded.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

pub struct EnrollLimiter {
    per_address: Rate,
    global: Rate,
    state: Mutex<(Bucket, HashMap<IpAddr, Bucket>)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Address,
    Global,
}

impl EnrollLimiter {
    pub fn new(per_address: Rate, global: Rate) -> Self {
        let now = Instant::now();
        Self {
            per_address,
            global,
            state: Mutex::new((Bucket::full(global, now), HashMap::new())),
        }
    }

    pub fn check(&self, peer: Option<IpAddr>) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (global, addresses) = &mut *guard;
        if let Some(ip) = peer {
            if addresses.len() >= MAX_TRACKED_ADDRESSES && !addresses.contains_key(&ip) {
                let rate = self.per_address;
                // Drop buckets that have refilled completely: they hold no state.
                addresses.retain(|_, b| {
                    b.tokens
                        + now.saturating_duration_since(b.updated).as_secs_f64() * rate.per_second
                        < rate.burst
                });
            }
            let bucket = addresses
                .entry(ip)
                .or_insert_with(|| Bucket::full(self.per_address, now));
            if !bucket.take(self.per_address, now) {
                return Err(Refusal::Address);
            }
        }
        if !global.take(self.global, now) {
            return Err(Refusal::Global);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_throttled_after_its_burst_others_are_not() {
        let limiter = EnrollLimiter::new(
            Rate {
                per_second: 0.001,
                burst: 5.0,
            },
            Rate {
                per_second: 0.001,
                burst: 100.0,
            },
        );
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..5 {
            assert_eq!(limiter.check(a), Ok(()));
        }
        assert_eq!(limiter.check(a), Err(Refusal::Address));
        assert_eq!(limiter.check(b), Ok(()));
    }

    #[test]
    fn the_global_bucket_caps_everyone() {
        let limiter = EnrollLimiter::new(
            Rate {
                per_second: 0.001,
                burst: 100.0,
            },
            Rate {
                per_second: 0.001,
                burst: 3.0,
            },
        );
        for i in 0..3u8 {
            assert_eq!(limiter.check(Some(IpAddr::from([10, 0, 0, i]))), Ok(()));
        }
        assert_eq!(
            limiter.check(Some(IpAddr::from([10, 0, 0, 9]))),
            Err(Refusal::Global)
        );
    }
}
