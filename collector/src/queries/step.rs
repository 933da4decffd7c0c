//! One point per step for `QueryMetrics`: the samples of each step bucket
//! combined by the requested aggregation (average by default).

use super::Accumulator;
use vakt_proto::v1::{self, Aggregation};

/// One point per step bucket (aligned to multiples of `step_ms`), stamped
/// with the bucket's start. `points` are in time order.
pub fn per_step(points: &[v1::Point], step_ms: i64, aggregation: Aggregation) -> Vec<v1::Point> {
    let mut out = Vec::new();
    let mut current: Option<(i64, Accumulator)> = None;
    for p in points {
        let bucket = p.timestamp_unix_ms - p.timestamp_unix_ms.rem_euclid(step_ms);
        match &mut current {
            Some((start, acc)) if *start == bucket => acc.add(p.value),
            _ => {
                if let Some((start, mut acc)) = current.take() {
                    out.extend(finish(start, &mut acc, aggregation));
                }
                let mut acc = Accumulator::new(aggregation);
                acc.add(p.value);
                current = Some((bucket, acc));
            }
        }
    }
    if let Some((start, mut acc)) = current {
        out.extend(finish(start, &mut acc, aggregation));
    }
    out
}

fn finish(start: i64, acc: &mut Accumulator, aggregation: Aggregation) -> Option<v1::Point> {
    Some(v1::Point {
        timestamp_unix_ms: start,
        value: acc.finish(aggregation)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, f64)]) -> Vec<v1::Point> {
        v.iter()
            .map(|&(t, x)| v1::Point {
                timestamp_unix_ms: t,
                value: x,
            })
            .collect()
    }

    #[test]
    fn steps_align_to_bucket_starts_and_aggregate() {
        let input = pts(&[(1000, 1.0), (1500, 3.0), (1900, 2.0), (2100, 5.0)]);
        let cases = [
            (Aggregation::Unspecified, pts(&[(1000, 2.0), (2000, 5.0)])),
            (Aggregation::Avg, pts(&[(1000, 2.0), (2000, 5.0)])),
            (Aggregation::Min, pts(&[(1000, 1.0), (2000, 5.0)])),
            (Aggregation::Max, pts(&[(1000, 3.0), (2000, 5.0)])),
            (Aggregation::Last, pts(&[(1000, 2.0), (2000, 5.0)])),
            (Aggregation::Count, pts(&[(1000, 3.0), (2000, 1.0)])),
            (Aggregation::Sum, pts(&[(1000, 6.0), (2000, 5.0)])),
            (Aggregation::P95, pts(&[(1000, 3.0), (2000, 5.0)])),
        ];
        for (aggregation, want) in cases {
            assert_eq!(per_step(&input, 1000, aggregation), want, "{aggregation:?}");
        }
        assert!(per_step(&[], 1000, Aggregation::Avg).is_empty());
    }
}
