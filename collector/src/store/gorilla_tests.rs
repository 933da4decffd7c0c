use super::*;
use proptest::prelude::*;

fn round_trip(ts: &[i64], cols: &[Vec<f64>]) {
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let bytes = encode(ts, &refs).unwrap();
    let (ts2, cols2) = decode(&bytes).unwrap();
    assert_eq!(ts2, ts);
    assert_eq!(cols2.len(), cols.len());
    for (a, b) in cols.iter().zip(&cols2) {
        let a: Vec<u64> = a.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = b.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
}

/// Strictly increasing timestamps from a start and positive gaps.
fn timestamps(start: i64, gaps: &[u32]) -> Vec<i64> {
    let mut t = start;
    let mut out = vec![t];
    for g in gaps {
        t = t.saturating_add(i64::from(*g) + 1);
        if t == *out.last().unwrap() {
            break;
        }
        out.push(t);
    }
    out
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("NaN-free", |v| !v.is_nan()),
        (-1000i64..1000).prop_map(|v| v as f64),
        any::<i64>().prop_map(|v| v as f64),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        (0.0f64..1.0),
    ]
}

proptest! {
    #[test]
    fn any_increasing_series_round_trips_exactly(
        start in any::<i64>().prop_map(|v| v / 2),
        gaps in prop::collection::vec(prop_oneof![Just(29_999u32), 0u32..100, any::<u32>()], 0..300),
        seed in prop::collection::vec(value_strategy(), 1..300),
    ) {
        let ts = timestamps(start, &gaps);
        let values: Vec<f64> = (0..ts.len()).map(|i| seed[i % seed.len()]).collect();
        round_trip(&ts, &[values]);
    }

    #[test]
    fn several_columns_round_trip(
        gaps in prop::collection::vec(0u32..1_000_000, 0..100),
        a in prop::collection::vec(value_strategy(), 101),
        b in prop::collection::vec((0u32..1_000).prop_map(f64::from), 101),
    ) {
        let ts = timestamps(1_767_225_600_000, &gaps);
        let n = ts.len();
        round_trip(&ts, &[a[..n].to_vec(), b[..n].to_vec(), vec![7.5; n]]);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }
}

#[test]
fn edge_cases_round_trip() {
    let ts = [0, 1, 2, 3];
    round_trip(&ts, &[vec![5.0; 4]]);
    round_trip(&ts, &[vec![-0.0, 0.0, -0.0, 0.0]]);
    round_trip(
        &[i64::MIN, -1, i64::MAX],
        &[vec![f64::MIN, f64::MAX, f64::EPSILON]],
    );
    round_trip(&[1, i64::MAX], &[vec![1e300, -1e-300]]);
    round_trip(&[], &[vec![]]);
    round_trip(&[42], &[vec![f64::INFINITY]]);
    round_trip(
        &ts,
        &[vec![9.007_199_254_740_993e15, 2f64.powi(60), -1.0, 3.0]],
    );
}

#[test]
fn out_of_order_and_duplicate_timestamps_are_refused() {
    assert_eq!(
        encode(&[1, 3, 2], &[&[0.0, 0.0, 0.0]]),
        Err(CodecError::NotIncreasing { index: 2 })
    );
    assert_eq!(
        encode(&[1, 1], &[&[0.0, 0.0]]),
        Err(CodecError::NotIncreasing { index: 1 })
    );
    assert!(matches!(
        encode(&[1, 2], &[&[0.0]]),
        Err(CodecError::ColumnLength { .. })
    ));
}

#[test]
fn regular_counters_take_about_two_bits_a_sample() {
    let ts: Vec<i64> = (0..720).map(|i| 1_767_225_600_000 + i * 30_000).collect();
    let counter: Vec<f64> = (0..720i64).map(|i| (i * 6_000_000) as f64).collect();
    let bytes = encode(&ts, &[&counter]).unwrap();
    assert!(bytes.len() < 720 * 2 / 8 + 40, "{} bytes", bytes.len());
}

/// Values as `/proc/loadavg` prints them, parsed like the agent parses them.
fn two_decimals() -> impl Strategy<Value = f64> {
    (0u32..100_000).prop_map(|n| format!("{}.{:02}", n / 100, n % 100).parse().unwrap())
}

proptest! {
    #[test]
    fn decimal_and_scaled_integer_columns_round_trip(
        gaps in prop::collection::vec(0u32..100, 0..200),
        decimals in prop::collection::vec(two_decimals(), 201),
        kib in prop::collection::vec(0u64..1 << 40, 201),
        k in 0u32..16,
        mixed in prop::collection::vec(value_strategy(), 201),
    ) {
        let ts = timestamps(1_767_225_600_000, &gaps);
        let n = ts.len();
        let bytes: Vec<f64> = kib[..n].iter().map(|v| (v * 1024) as f64).collect();
        let scaled: Vec<f64> = decimals[..n].iter().map(|v| v / 10f64.powi(k as i32)).collect();
        // A decimal column with one odd value in it must stay exact too.
        let mut spoiled = decimals[..n].to_vec();
        spoiled[n / 2] = mixed[n / 2];
        round_trip(&ts, &[decimals[..n].to_vec(), bytes, scaled, spoiled]);
    }
}

#[test]
fn decimals_and_whole_kilobytes_are_stored_as_small_integers() {
    let ts: Vec<i64> = (0..720).map(|i| 1_767_225_600_000 + i * 30_000).collect();
    // A load average printed with two decimals, wandering by a few hundredths.
    let load: Vec<f64> = (0..720u64)
        .map(|i| format!("0.{:02}", 40 + (i * 7919) % 13).parse().unwrap())
        .collect();
    let xor_only = {
        let mut w = BitWriter::new(Vec::new());
        put_floats(&mut w, &load);
        w.bit_len() / 8
    };
    let bytes = encode(&ts, &[&load]).unwrap();
    assert!(bytes.len() * 4 < xor_only, "{} vs {xor_only}", bytes.len());
    assert!(bytes.len() < 720 * 12 / 8 + 40, "{} bytes", bytes.len());
    // Memory in bytes as sysinfo reports it: whole kB, moving by a few MB.
    let mem: Vec<f64> = (0..720u64)
        .map(|i| ((4_000_000 + (i * 104_729) % 5_000) * 1024) as f64)
        .collect();
    let bytes = encode(&ts, &[&mem]).unwrap();
    assert!(bytes.len() < 720 * 16 / 8 + 40, "{} bytes", bytes.len());
}

#[test]
fn near_decimals_with_more_digits_stay_floats_and_exact() {
    let ts = [1, 2, 3];
    // 0.1 + 0.2 is not the double nearest 0.3: scaling would lose it.
    round_trip(&ts, &[vec![0.1 + 0.2, 0.3, 1.0 / 3.0]]);
    round_trip(&ts, &[vec![0.5, -0.0, 0.25]]);
    round_trip(&ts, &[vec![1e300, 0.01, f64::NAN]]);
}

#[test]
fn version_1_chunks_still_decode() {
    // The layout before decimal scaling: integer columns without k and g.
    let ts = [10i64, 20, 35];
    let mut out = vec![VERSION_1];
    put_varint(&mut out, 3);
    put_varint(&mut out, 2);
    let mut bits = BitWriter::new(out);
    put_integers(&mut bits, ts.iter().copied(), 1);
    bits.put(1, 1);
    put_integers(&mut bits, [5i64, -7, 1 << 40].into_iter(), 1);
    bits.put(0, 1);
    put_floats(&mut bits, &[0.5, 0.25, -0.0]);
    let (ts2, cols) = decode(&bits.finish()).unwrap();
    assert_eq!(ts2, ts);
    assert_eq!(cols[0], vec![5.0, -7.0, (1u64 << 40) as f64]);
    assert_eq!(cols[1][2].to_bits(), (-0.0f64).to_bits());
}

proptest! {
    #[test]
    fn ratio_columns_round_trip(
        pairs in prop::collection::vec((0u64..1 << 34, 1u64..1 << 34), 1..200),
        complement in prop::collection::vec(any::<bool>(), 200),
        noise in prop::collection::vec(value_strategy(), 200),
    ) {
        let n = pairs.len();
        let ts: Vec<i64> = (0..n as i64).collect();
        // used/total and the agent's `1 - idle/total`, with odd values among them.
        let ratios: Vec<f64> = pairs
            .iter()
            .zip(&complement)
            .map(|((a, b), c)| {
                let r = *a.min(b) as f64 / *b as f64;
                if *c { 1.0 - r } else { r }
            })
            .collect();
        let mut spoiled = ratios.clone();
        spoiled[n / 2] = noise[n / 2];
        round_trip(&ts, &[ratios, spoiled]);
    }
}

#[test]
fn utilization_ratios_take_a_fraction_of_xor() {
    let ts: Vec<i64> = (0..720).map(|i| 1_767_225_600_000 + i * 30_000).collect();
    // CPU: jiffies over 30 s on 8 cores, the total wandering by a few ticks.
    let mut cpu = Vec::new();
    let mut busy_share = Vec::new();
    for i in 0..720u64 {
        let total = 24_000 + (i * 7_919) % 17 - 8;
        let idle = 12_000 + (i * 104_729) % 2_400;
        cpu.push(1.0 - idle as f64 / total as f64);
        busy_share.push((total - idle) as f64 / total as f64);
    }
    // A filesystem: used blocks growing by ~100 a report out of a fixed total.
    let blocks = 122_877_498u64;
    let fs: Vec<f64> = (0..720u64)
        .map(|i| ((60_000_000 + i * 100 + i % 3) * 4096) as f64 / (blocks * 4096) as f64)
        .collect();
    for (name, column, most) in [
        ("cpu", &cpu, 4.0),
        ("share", &busy_share, 4.0),
        ("fs", &fs, 2.0),
    ] {
        let bytes = encode(&ts, &[column]).unwrap();
        let per_value = (bytes.len() - 16) as f64 / 720.0;
        assert!(per_value < most, "{name}: {per_value} bytes a value");
        let (_, cols) = decode(&bytes).unwrap();
        assert!(
            cols[0]
                .iter()
                .zip(column.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}
