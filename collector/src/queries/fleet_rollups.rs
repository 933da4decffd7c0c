//! Fleet aggregations from 5-minute rollups. Min, max, sum, count and mean
//! over a window need only each bucket's (min, max, sum, count), so a
//! fleet-wide scan reads one rollup per 5 minutes instead of every raw
//! sample (10× fewer values at a 30 s interval, and rollup chunks are
//! smaller).
//!
//! These aggregations cover **whole 5-minute buckets**: the window is
//! widened to the bucket edges around it, so no raw sample
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

/// Calls `visit` with the device's 5-minute rollups of every bucket that
/// overlaps the range (the range widened to whole buckets), samples not
/// folded yet included. Returns (values read, samples covered); at most
/// `max_points` values are read.
pub fn visit(
    store: &Store,
    device_id: &str,
    range: &SeriesRange<'_>,
    max_points: usize,
    mut visit: impl FnMut(&Rollup),
) -> Result<(usize, u64)> {
    let first = bucket_of(range.since_ms);
    let last = bucket_of(range.until_ms).saturating_add(BUCKET_MS - 1);
    let (mut read, mut samples) = (0usize, 0u64);
    for s in store.query_rollups(device_id, range.metric, range.filter, first, last)? {
        read += s.buckets.len();
        if read > max_points {
            return Err(StoreError::TooManyPoints(max_points));
        }
        for bucket in &s.buckets {
            samples += bucket.count;
            visit(bucket);
        }
    }
    Ok((read, samples))
}
