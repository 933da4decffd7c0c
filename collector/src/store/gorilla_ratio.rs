//! Ratio columns: utilizations are `used / total` of integer counts (jiffies,
//! bytes, blocks), computed in f64 by the agent, so every mantissa bit is set
//! and XOR encoding needs ~7 bytes a value. Such a value is exactly
//! `a as f64 / b as f64` (or `1.0 - a as f64 / b as f64`, the agent's
//! `1 - idle/total`) for integers `a`, `b`; storing `a` and `b` as
//! delta-of-deltas takes a third of that, and decoding repeats the same f64
//! operation, so the value comes back bit for bit (the encoder checks).
//!
//! Finding `a / b`: first with the previous value's `b` (a disk's block count
//! does not change); else from the continued fraction of the value: a fraction
//! within half an ulp of a double with `b < 2^26` is one of its convergents
//! (Legendre), and the first convergent that reproduces the value is used,
//! scaled to lie near the previous `b` so the `b` column stays smooth.
//!
//! Per value: `0` = a ratio in the current form, `10` = the other form (which
//! becomes current), then `a` and `b` as delta-of-deltas; `11` = 64 raw bits
//! (a value no small ratio reproduces).

use super::{BitReader, BitWriter, CodecError, get_dod, put_dod, unzigzag, zigzag};

/// Numerators and denominators stay exact in an f64.
const MAX_TERM: u128 = 1 << 53;
/// Larger denominators than this are not searched for.
const MAX_DENOMINATOR: u128 = 1 << 40;

/// The delta-of-delta state of one integer stream.
#[derive(Default)]
struct Dod {
    started: bool,
    prev: i64,
    prev_delta: i64,
}

impl Dod {
    fn put(&mut self, bits: &mut BitWriter, v: i64) {
        if self.started {
            let delta = v.wrapping_sub(self.prev);
            put_dod(bits, zigzag(delta.wrapping_sub(self.prev_delta)));
            self.prev_delta = delta;
        } else {
            bits.put(v as u64, 64);
            self.started = true;
        }
        self.prev = v;
    }

    fn get(&mut self, bits: &mut BitReader) -> Result<i64, CodecError> {
        let v = if self.started {
            let delta = self.prev_delta.wrapping_add(unzigzag(get_dod(bits)?));
            self.prev_delta = delta;
            self.prev.wrapping_add(delta)
        } else {
            self.started = true;
            bits.get(64)? as i64
        };
        self.prev = v;
        Ok(v)
    }
}

/// The value a ratio stands for: `a / b`, or `1 - a / b` in the complement form.
fn value_of(complement: bool, a: i64, b: i64) -> f64 {
    let r = a as f64 / b as f64;
    if complement { 1.0 - r } else { r }
}

pub(super) fn put_ratios(bits: &mut BitWriter, values: &[f64]) {
    let (mut a_stream, mut b_stream) = (Dod::default(), Dod::default());
    let mut complement = false;
    let mut b_prev = 0i64;
    for &v in values {
        let found = find(v, complement, b_prev)
            .map(|r| (complement, r))
            .or_else(|| find(v, !complement, b_prev).map(|r| (!complement, r)));
        match found {
            Some((form, (a, b))) => {
                if form == complement {
                    bits.put(0, 1);
                } else {
                    bits.put(0b10, 2);
                    complement = form;
                }
                a_stream.put(bits, a);
                b_stream.put(bits, b);
                b_prev = b;
            }
            None => {
                bits.put(0b11, 2);
                bits.put(v.to_bits(), 64);
            }
        }
    }
}

pub(super) fn get_ratios(bits: &mut BitReader, count: usize) -> Result<Vec<f64>, CodecError> {
    let (mut a_stream, mut b_stream) = (Dod::default(), Dod::default());
    let mut complement = false;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if bits.get(1)? == 1 {
            if bits.get(1)? == 1 {
                out.push(f64::from_bits(bits.get(64)?));
                continue;
            }
            complement = !complement;
        }
        let a = a_stream.get(bits)?;
        let b = b_stream.get(bits)?;
        out.push(value_of(complement, a, b));
    }
    Ok(out)
}

/// Integers `a >= 0`, `b > 0` whose ratio (in the form) is `v` bit for bit.
fn find(v: f64, complement: bool, b_prev: i64) -> Option<(i64, i64)> {
    if !v.is_finite() || v.to_bits() == (-0.0f64).to_bits() {
        return None;
    }
    let target = if complement { 1.0 - v } else { v };
    if target < 0.0 {
        return None;
    }
    let fits = |a: u128, b: u128| a <= MAX_TERM && b <= MAX_TERM && b > 0;
    let exact = |a: u128, b: u128| {
        fits(a, b) && value_of(complement, a as i64, b as i64).to_bits() == v.to_bits()
    };
    if b_prev > 0 {
        let a = (target * b_prev as f64).round();
        if a >= 0.0 && a <= MAX_TERM as f64 && exact(a as u128, b_prev as u128) {
            return Some((a as i64, b_prev));
        }
    }
    let (mut num, mut den) = exact_fraction(target)?;
    // Convergents h/k of num/den: h(-2) = 0, h(-1) = 1, k(-2) = 1, k(-1) = 0.
    let (mut h0, mut h1, mut k0, mut k1) = (0u128, 1u128, 1u128, 0u128);
    while den != 0 {
        let q = num / den;
        let h = q.checked_mul(h1)?.checked_add(h0)?;
        let k = q.checked_mul(k1)?.checked_add(k0)?;
        if k > MAX_DENOMINATOR {
            return None;
        }
        if exact(h, k) {
            // The same fraction scaled to the multiple of `k` nearest the
            // previous denominator: same value, smoother `b` column.
            let b_prev = b_prev as u128;
            let m = if b_prev > k { (b_prev + k / 2) / k } else { 1 };
            let (a, b) = match (h.checked_mul(m), k.checked_mul(m)) {
                (Some(a), Some(b)) if m > 1 && exact(a, b) => (a, b),
                _ => (h, k),
            };
            return Some((a as i64, b as i64));
        }
        (h0, h1, k0, k1) = (h1, h, k1, k);
        (num, den) = (den, num - q * den);
    }
    None
}

/// A finite `x >= 0` as an exact fraction `num / den` (`den` a power of two),
/// if it fits in u128 with room for the continued fraction.
fn exact_fraction(x: f64) -> Option<(u128, u128)> {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mut mantissa, mut e) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), exponent - 1075)
    };
    if mantissa == 0 {
        return Some((0, 1));
    }
    let tz = mantissa.trailing_zeros();
    mantissa >>= tz;
    e += tz as i32;
    match e {
        0..=60 => Some((u128::from(mantissa) << e, 1)),
        -120..=-1 => Some((u128::from(mantissa), 1u128 << -e)),
        _ => None,
    }
}
