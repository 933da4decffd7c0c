//! Gorilla-style compression of one chunk: strictly increasing timestamps as
//! delta-of-deltas, and one or more value columns, each in the shortest of
//! three lossless forms:
//!
//! - XOR-encoded floats (Pelkonen et al., "Gorilla", VLDB 2015);
//! - scaled integers: when every value of the column is exactly `n / 10^k`
//!   for integers `n` and a small `k`, the integers `n` as delta-of-deltas
//!   divided by their greatest common divisor. Counters, byte gauges (whole kB
//!   or 4 KiB blocks: the divisor takes the 1024 or 4096 out) and values
//!   printed with a few decimals (load averages "0.52", `/proc/uptime`)
//!   compress far better so; VictoriaMetrics scales decimals the same way;
//! - ratios (`gorilla_ratio.rs`): utilizations computed as `a / b` or
//!   `1 - a / b` of integer counts, stored as the integers.
//!
//! A form is used only if decoding gives back every value bit for bit (so
//! `-0.0`, NaN and values with more digits stay floats).
//!
//! Layout: `version u8`, `count varint`, `columns varint`, then one bit stream:
//! the timestamps, then each column: `0` = XOR floats; in version 2 `10` =
//! scaled integers (`k` in 4 bits, the divisor `g` as a 6-bit length and its
//! bits, then the delta-of-deltas), `11` = ratios; in version 1 `1` = plain
//! integers (no `k`, no `g`), which still decode. Decoding is exact to the
//! bit (including `-0.0` and NaN payloads); the encoder refuses timestamps
//! that do not strictly increase rather than reorder them silently — callers
//! sort and deduplicate first.

const VERSION: u8 = 2;
/// Chunks written before decimal scaling: integer columns without `k` and `g`.
const VERSION_1: u8 = 1;
/// Exact powers of ten (every one up to 10^22 is exact in an f64).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("timestamp {index} is not after the one before it")]
    NotIncreasing { index: usize },
    #[error("column {column} has {len} values for {count} timestamps")]
    ColumnLength {
        column: usize,
        len: usize,
        count: usize,
    },
    #[error("chunk is truncated or corrupt")]
    Truncated,
    #[error("unknown chunk version {0}")]
    Version(u8),
    #[error("log record names series {0}, which the device's series table lacks")]
    UnknownSeries(u64),
}

/// Encodes `timestamps` and the value `columns` (each as long as `timestamps`).
pub fn encode(timestamps: &[i64], columns: &[&[f64]]) -> Result<Vec<u8>, CodecError> {
    for (i, pair) in timestamps.windows(2).enumerate() {
        if pair[1] <= pair[0] {
            return Err(CodecError::NotIncreasing { index: i + 1 });
        }
    }
    for (column, values) in columns.iter().enumerate() {
        if values.len() != timestamps.len() {
            return Err(CodecError::ColumnLength {
                column,
                len: values.len(),
                count: timestamps.len(),
            });
        }
    }
    let mut out = vec![VERSION];
    put_varint(&mut out, timestamps.len() as u64);
    put_varint(&mut out, columns.len() as u64);
    let mut bits = BitWriter::new(out);
    put_integers(&mut bits, timestamps.iter().copied(), 1);
    for values in columns {
        let as_floats = {
            let mut w = BitWriter::new(Vec::new());
            put_floats(&mut w, values);
            w
        };
        let as_ints = scaled_integers(values).map(|(k, ints)| {
            let g = common_divisor(&ints);
            let mut w = BitWriter::new(Vec::new());
            w.put(u64::from(k), 4);
            let len = 64 - g.leading_zeros();
            w.put(u64::from(len), 6);
            w.put(g, len);
            put_integers(&mut w, ints.into_iter(), g);
            w
        });
        let mut best = (0u64, as_floats); // (mode bits as written, stream)
        if let Some(ints) = as_ints
            && ints.bit_len() < best.1.bit_len()
        {
            best = (0b10, ints);
        }
        // Ratios only for columns XOR encoding leaves expensive (utilizations
        // with every mantissa bit set); the search costs more than the others.
        if best.0 == 0 && best.1.bit_len() > 24 * values.len() {
            let mut w = BitWriter::new(Vec::new());
            put_ratios(&mut w, values);
            if w.bit_len() < best.1.bit_len() {
                best = (0b11, w);
            }
        }
        match best {
            (0, floats) => {
                bits.put(0, 1);
                bits.append(&floats);
            }
            (mode, stream) => {
                bits.put(mode, 2);
                bits.append(&stream);
            }
        }
    }
    Ok(bits.finish())
}

/// Decodes a chunk into its timestamps and value columns.
pub fn decode(bytes: &[u8]) -> Result<(Vec<i64>, Vec<Vec<f64>>), CodecError> {
    let (&version, mut rest) = bytes.split_first().ok_or(CodecError::Truncated)?;
    if version != VERSION && version != VERSION_1 {
        return Err(CodecError::Version(version));
    }
    let count = get_varint(&mut rest)?;
    let ncols = get_varint(&mut rest)?;
    // Every timestamp and value takes at least one bit: refuse counts the
    // input cannot hold before allocating for them.
    let available = (rest.len() as u64).saturating_mul(8);
    if count > available || ncols.saturating_mul(count) > available || ncols > 64 {
        return Err(CodecError::Truncated);
    }
    let count = count as usize;
    let mut bits = BitReader::new(rest);
    let timestamps = get_integers(&mut bits, count, 1)?;
    let mut columns = Vec::with_capacity(ncols as usize);
    for _ in 0..ncols {
        let column = match (version, bits.get(1)?) {
            (_, 0) => get_floats(&mut bits, count)?,
            (VERSION_1, _) => get_integers(&mut bits, count, 1)?
                .into_iter()
                .map(|n| n as f64)
                .collect(),
            _ if bits.get(1)? == 1 => get_ratios(&mut bits, count)?,
            _ => {
                let k = bits.get(4)? as usize;
                let len = bits.get(6)? as u32;
                let g = bits.get(len)?;
                if g == 0 || g > i64::MAX as u64 {
                    return Err(CodecError::Truncated);
                }
                let scale = POW10[k];
                get_integers(&mut bits, count, g)?
                    .into_iter()
                    .map(|n| n as f64 / scale)
                    .collect()
            }
        };
        columns.push(column);
    }
    Ok((timestamps, columns))
}

/// The smallest `k` and integers `n` with `n as f64 / 10^k` equal to every
/// value bit for bit (`-0.0` is never one: it would come back as `0.0`).
fn scaled_integers(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    (0..POW10.len()).find_map(|k| {
        let scale = POW10[k];
        let ints: Option<Vec<i64>> = values
            .iter()
            .map(|&v| {
                let scaled = (v * scale).round();
                // `as` saturates; values out of range then fail the check.
                let n = scaled as i64;
                (scaled.is_finite() && (n as f64 / scale).to_bits() == v.to_bits()).then_some(n)
            })
            .collect();
        ints.map(|ints| (k as u8, ints))
    })
}

/// The greatest common divisor of the integers' delta-of-deltas (1 if there
/// are none, or if it does not fit an i64).
fn common_divisor(ints: &[i64]) -> u64 {
    let mut g = 0u64;
    let mut prev_delta = 0i64;
    for pair in ints.windows(2) {
        let delta = pair[1].wrapping_sub(pair[0]);
        g = gcd(g, delta.wrapping_sub(prev_delta).unsigned_abs());
        prev_delta = delta;
        if g == 1 {
            break;
        }
    }
    if g == 0 || g > i64::MAX as u64 { 1 } else { g }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Delta-of-delta with wrapping arithmetic, so any i64 sequence round-trips
/// (huge jumps just take the 64-bit escape). Buckets sized for regular
/// report intervals with jitter: `0` for an unchanged delta. Every
/// delta-of-delta is a multiple of `g` and written divided by it.
fn put_integers(bits: &mut BitWriter, values: impl Iterator<Item = i64>, g: u64) {
    let g = g as i64;
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for (i, v) in values.enumerate() {
        if i == 0 {
            bits.put(v as u64, 64);
        } else {
            let delta = v.wrapping_sub(prev);
            put_dod(bits, zigzag(delta.wrapping_sub(prev_delta) / g));
            prev_delta = delta;
        }
        prev = v;
    }
}

/// One zigzagged delta-of-delta in the bucket code.
fn put_dod(bits: &mut BitWriter, dod: u64) {
    match dod {
        0 => bits.put(0, 1),
        d if d < 1 << 7 => bits.put((0b10 << 7) | d, 9),
        d if d < 1 << 9 => bits.put((0b110 << 9) | d, 12),
        d if d < 1 << 12 => bits.put((0b1110 << 12) | d, 16),
        d if d < 1 << 20 => bits.put((0b11110 << 20) | d, 25),
        d => {
            bits.put(0b11111, 5);
            bits.put(d, 64);
        }
    }
}

fn get_dod(bits: &mut BitReader) -> Result<u64, CodecError> {
    let mut prefix = 0;
    while prefix < 5 && bits.get(1)? == 1 {
        prefix += 1;
    }
    let width = [0, 7, 9, 12, 20, 64][prefix];
    Ok(if width == 0 { 0 } else { bits.get(width)? })
}

fn get_integers(bits: &mut BitReader, count: usize, g: u64) -> Result<Vec<i64>, CodecError> {
    let g = g as i64;
    let mut out = Vec::with_capacity(count);
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for i in 0..count {
        let v = if i == 0 {
            bits.get(64)? as i64
        } else {
            let dod = unzigzag(get_dod(bits)?).wrapping_mul(g);
            let delta = prev_delta.wrapping_add(dod);
            prev_delta = delta;
            prev.wrapping_add(delta)
        };
        out.push(v);
        prev = v;
    }
    Ok(out)
}

fn put_floats(bits: &mut BitWriter, values: &[f64]) {
    let mut prev = 0u64;
    // The current window of meaningful bits: (leading zeros, length).
    let mut window: Option<(u32, u32)> = None;
    for (i, v) in values.iter().enumerate() {
        let v = v.to_bits();
        if i == 0 {
            bits.put(v, 64);
        } else {
            let xor = v ^ prev;
            if xor == 0 {
                bits.put(0, 1);
            } else {
                let lead = xor.leading_zeros();
                let trail = xor.trailing_zeros();
                match window {
                    Some((wl, wlen)) if lead >= wl && trail >= 64 - wl - wlen => {
                        bits.put(0b10, 2);
                        bits.put(xor >> (64 - wl - wlen), wlen);
                    }
                    _ => {
                        let len = 64 - lead - trail;
                        bits.put(0b11, 2);
                        bits.put(u64::from(lead), 6);
                        bits.put(u64::from(len - 1), 6);
                        bits.put(xor >> trail, len);
                        window = Some((lead, len));
                    }
                }
            }
        }
        prev = v;
    }
}

fn get_floats(bits: &mut BitReader, count: usize) -> Result<Vec<f64>, CodecError> {
    let mut out = Vec::with_capacity(count);
    let mut prev = 0u64;
    let mut window = (0u32, 0u32);
    for i in 0..count {
        let v = if i == 0 {
            bits.get(64)?
        } else if bits.get(1)? == 0 {
            prev
        } else {
            if bits.get(1)? == 1 {
                let lead = bits.get(6)? as u32;
                let len = bits.get(6)? as u32 + 1;
                if lead + len > 64 {
                    return Err(CodecError::Truncated);
                }
                window = (lead, len);
            } else if window.1 == 0 {
                return Err(CodecError::Truncated);
            }
            let (lead, len) = window;
            prev ^ (bits.get(len)? << (64 - lead - len))
        };
        out.push(f64::from_bits(v));
        prev = v;
    }
    Ok(out)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(input: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(CodecError::Truncated)?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::Truncated)
}

struct BitWriter {
    out: Vec<u8>,
    /// Bits not yet written to `out`, left-aligned in the low `pending` bits.
    acc: u64,
    pending: u32,
    /// Bits written in total, including the bytes `out` started with.
    start_bytes: usize,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> Self {
        let start_bytes = out.len();
        Self {
            out,
            acc: 0,
            pending: 0,
            start_bytes,
        }
    }

    fn bit_len(&self) -> usize {
        (self.out.len() - self.start_bytes) * 8 + self.pending as usize
    }

    /// Writes the low `n` bits of `value`, most significant first.
    fn put(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        let value = if n == 64 {
            value
        } else {
            value & ((1 << n) - 1)
        };
        let mut left = n;
        while left > 0 {
            let room = 8 - self.pending;
            let take = room.min(left);
            let chunk = (value >> (left - take)) & ((1 << take) - 1);
            self.acc = (self.acc << take) | chunk;
            self.pending += take;
            left -= take;
            if self.pending == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.pending = 0;
            }
        }
    }

    fn append(&mut self, other: &BitWriter) {
        for &byte in &other.out[other.start_bytes..] {
            self.put(u64::from(byte), 8);
        }
        self.put(other.acc, other.pending);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            let pad = 8 - self.pending;
            self.put(0, pad);
        }
        self.out
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, bit: 0 }
    }

    fn get(&mut self, n: u32) -> Result<u64, CodecError> {
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = *self.bytes.get(self.bit / 8).ok_or(CodecError::Truncated)?;
            let offset = (self.bit % 8) as u32;
            let avail = 8 - offset;
            let take = avail.min(left);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1 << take) - 1);
            v = if take == 64 {
                chunk
            } else {
                (v << take) | chunk
            };
            self.bit += take as usize;
            left -= take;
        }
        Ok(v)
    }
}

#[path = "gorilla_ratio.rs"]
mod ratio;
use ratio::{get_ratios, put_ratios};

#[cfg(test)]
#[path = "gorilla_tests.rs"]
mod tests;
