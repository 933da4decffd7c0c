//! Fleet aggregations from 5-minute rollups. Min, max, sum, count and mean
//! over a window need only each bucket's (min, max, sum, count), so a
//! fleet-wide scan reads one rollup per 5 minutes instead of every raw
//! sample (10× fewer values at a 30 s interval, and rollup chunks are
//! smaller).
//!
//! These aggregations cover **whole 5-minute buckets**: the window is
//! widened to the bucket edges around it (`whole_buckets`), so no raw sample
//! is read at its edges and the answer is the raw aggregate over the widened
//! window (up to floating-point summation order). For a fleet question over
//! hours or days, five minutes at either end do not change the answer's
//! meaning, and they save two raw reads per device and series.

use crate::store::compact::Rollup;
use crate::store::fleet_queries::SeriesRange;
use crate::store::series::{BUCKET_MS, bucket_of};
use crate::store::{Result, Store, StoreError};
use vakt_proto::v1::Aggregation;

/// Whether the aggregation can be answered from rollups.
pub fn answerable(aggregation: Aggregation) -> bool {
    matches!(
        aggregation,
        Aggregation::Unspecified
            | Aggregation::Avg
            | Aggregation::Min
            | Aggregation::Max
            | Aggregation::Sum
            | Aggregation::Count
    )
}

/// The range widened to whole buckets: from the start of the bucket holding
/// `since_ms` to the end of the one holding `until_ms`.
pub fn whole_buckets(range: SeriesRange<'_>) -> SeriesRange<'_> {
    SeriesRange {
        since_ms: bucket_of(range.since_ms),
        until_ms: bucket_of(range.until_ms).saturating_add(BUCKET_MS - 1),
        ..range
    }
}

/// Calls `visit` with the device's data in the range: rollups for whole
/// buckets, one-sample rollups for raw samples at the edges. Returns (values
/// read, samples covered); at most `max_points` values are read.
pub fn visit(
    store: &Store,
    device_id: &str,
    range: &SeriesRange<'_>,
    max_points: usize,
    mut visit: impl FnMut(&Rollup),
) -> Result<(usize, u64)> {
    let (since, until) = (range.since_ms, range.until_ms);
    // Buckets starting in [first, end) lie wholly inside [since, until].
    let first = bucket_of(since.saturating_add(BUCKET_MS - 1));
    let end = bucket_of(until.saturating_add(1));
    let mut values: Vec<Rollup> = Vec::new();
    let raw = |from: i64, to: i64, values: &mut Vec<Rollup>| -> Result<()> {
        if from <= to {
            let left = max_points.saturating_sub(values.len());
            for s in store.query_series(device_id, range.metric, range.filter, from, to, left)? {
                values.extend(
                    s.points
                        .iter()
                        .map(|p| Rollup::of(p.timestamp_unix_ms, p.value)),
                );
            }
        }
        Ok(())
    };
    if first >= end {
        raw(since, until, &mut values)?;
    } else {
        raw(since, first - 1, &mut values)?;
        // Up to `end - 1`: the last whole bucket's samples still in log
        // records are filtered by their own timestamps.
        for s in store.query_rollups(device_id, range.metric, range.filter, first, end - 1)? {
            if values.len() + s.buckets.len() > max_points {
                return Err(StoreError::TooManyPoints(max_points));
            }
            values.extend(s.buckets);
        }
        raw(end, until, &mut values)?;
    }
    let mut samples = 0u64;
    for v in &values {
        samples += v.count;
        visit(v);
    }
    Ok((values.len(), samples))
}
