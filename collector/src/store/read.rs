//! Series queries: chunks plus the log records not folded yet, raw samples or
//! 5-minute rollups chosen by range and step. A read holds its device's fold
//! lock shared, so a concurrent fold cannot make it see a sample twice (in
//! the log and in the chunk) or not at all.

use super::compact::{Rollup, decode_chunk, decode_rollups, rollups_of};
use super::series::{self, Kind};
use super::{Result, Store, StoreError, log};
use std::collections::BTreeMap;
use vakt_proto::v1;

/// One series' rollups over a range.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupSeries {
    pub metric: String,
    pub attributes: Vec<v1::Attribute>,
    pub buckets: Vec<Rollup>,
}

/// Which data a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Raw,
    Rollup,
}

impl Store {
    /// Every series of `metric` for the device whose attributes include
    /// `filter`, with samples in `[since_ms, until_ms]`, in time order. Raw
    /// samples while the range is within raw retention, else 5-minute means.
    pub fn query_series(
        &self,
        device_id: &str,
        metric: &str,
        filter: &[v1::Attribute],
        since_ms: i64,
        until_ms: i64,
        max_points: usize,
    ) -> Result<Vec<v1::Series>> {
        self.query_series_step(device_id, metric, filter, since_ms, until_ms, 0, max_points)
    }

    /// Raw or rollup data is picked by [`Store::resolution_for`]. With a step,
    /// each point is the mean of the samples in its step-aligned interval
    /// (weighted by sample count, so rollups and raw data agree).
    #[allow(clippy::too_many_arguments)]
    pub fn query_series_step(
        &self,
        device_id: &str,
        metric: &str,
        filter: &[v1::Attribute],
        since_ms: i64,
        until_ms: i64,
        step_ms: i64,
        max_points: usize,
    ) -> Result<Vec<v1::Series>> {
        let resolution = self.resolution_for(since_ms, step_ms);
        let series: Vec<(String, Vec<v1::Attribute>, Vec<Rollup>)> = match resolution {
            Resolution::Raw => self
                .raw_samples(device_id, metric, filter, since_ms, until_ms)?
                .into_iter()
                .map(|(m, a, points)| {
                    let as_rollups = points.into_iter().map(|(t, v)| Rollup::of(t, v)).collect();
                    (m, a, as_rollups)
                })
                .collect(),
            Resolution::Rollup => self
                .query_rollups(device_id, metric, filter, since_ms, until_ms)?
                .into_iter()
                .map(|s| (s.metric, s.attributes, s.buckets))
                .collect(),
        };
        let mut out = Vec::with_capacity(series.len());
        let mut total = 0usize;
        for (metric, attributes, buckets) in series {
            let points = per_step(buckets, step_ms);
            total += points.len();
            if total > max_points {
                return Err(StoreError::TooManyPoints(max_points));
            }
            if !points.is_empty() {
                out.push(v1::Series {
                    metric,
                    attributes,
                    points,
                });
            }
        }
        Ok(out)
    }

    /// Rollups when retention has deleted raw samples of the range, or when
    /// the step is at least a bucket wide (no raw sample is needed then).
    pub fn resolution_for(&self, since_ms: i64, step_ms: i64) -> Resolution {
        if step_ms >= series::BUCKET_MS || since_ms < self.horizon(Kind::Raw) {
            Resolution::Rollup
        } else {
            Resolution::Raw
        }
    }

    /// Raw samples of every matching series, in series then time order.
    #[allow(clippy::type_complexity)]
    pub fn raw_samples(
        &self,
        device_id: &str,
        metric: &str,
        filter: &[v1::Attribute],
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(String, Vec<v1::Attribute>, Vec<(i64, f64)>)>> {
        let _shared = self.fold_locks[super::stripe_of(device_id)]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Chunks arrive in time order and log records after them, so a
        // series' samples are pushed nearly sorted; a stable sort then keeps
        // the last write of a timestamp (a log record over a chunk, a later
        // record over an earlier one). Cheaper than a map insert per sample.
        let mut by_series: BTreeMap<Vec<u8>, Vec<(i64, f64)>> = BTreeMap::new();
        self.each_chunk(
            Kind::Raw,
            device_id,
            metric,
            filter,
            since_ms,
            until_ms,
            |id, key, bytes| {
                let decoded = decode_chunk(key, bytes)?;
                add_points(&mut by_series, id, |points| {
                    points.extend(
                        decoded
                            .into_iter()
                            .filter(|(t, _)| (since_ms..=until_ms).contains(t)),
                    );
                });
                Ok(())
            },
        )?;
        self.each_logged(device_id, metric, filter, since_ms, until_ms, |id, t, v| {
            add_points(&mut by_series, id, |points| points.push((t, v)))
        })?;
        Ok(by_series
            .into_iter()
            .filter(|(_, points)| !points.is_empty())
            .filter_map(|(id, mut points)| {
                last_write_per_timestamp(&mut points);
                let (metric, attributes) = series::split_series_id(&id)?;
                Some((metric, attributes, points))
            })
            .collect())
    }

    /// 5-minute rollups of every matching series whose bucket starts in
    /// `[bucket_of(since_ms), until_ms]`, including samples not folded yet.
    pub fn query_rollups(
        &self,
        device_id: &str,
        metric: &str,
        filter: &[v1::Attribute],
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<RollupSeries>> {
        let _shared = self.fold_locks[super::stripe_of(device_id)]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = series::bucket_of(since_ms);
        // Chunks come window by window and a window's buckets in order, so
        // each series' buckets arrive sorted and distinct: appended, not
        // looked up (a map per bucket was ~15 % of a fleet query's time).
        let mut by_series: BTreeMap<Vec<u8>, Vec<Rollup>> = BTreeMap::new();
        self.each_chunk(
            Kind::Rollup,
            device_id,
            metric,
            filter,
            first,
            until_ms,
            |id, key, bytes| {
                let decoded = decode_rollups(bytes).map_err(|e| super::compact::corrupt(key, e))?;
                let in_range = decoded
                    .into_iter()
                    .filter(|r| (first..=until_ms).contains(&r.bucket_start_ms));
                if let Some(buckets) = by_series.get_mut(id) {
                    buckets.extend(in_range);
                } else {
                    by_series.insert(id.to_vec(), in_range.collect());
                }
                Ok(())
            },
        )?;
        let mut logged: BTreeMap<Vec<u8>, BTreeMap<i64, f64>> = BTreeMap::new();
        self.each_logged(device_id, metric, filter, first, until_ms, |id, t, v| {
            logged.entry(id.to_vec()).or_default().insert(t, v);
        })?;
        // Samples not folded yet may fall into a bucket a chunk already has.
        for (id, points) in logged {
            let buckets = by_series.entry(id).or_default();
            for r in rollups_of(points) {
                match buckets.binary_search_by_key(&r.bucket_start_ms, |b| b.bucket_start_ms) {
                    Ok(at) => buckets[at].merge(&r),
                    Err(at) => buckets.insert(at, r),
                }
            }
        }
        Ok(by_series
            .into_iter()
            .filter_map(|(id, buckets)| {
                let (metric, attributes) = series::split_series_id(&id)?;
                Some(RollupSeries {
                    metric,
                    attributes,
                    buckets,
                })
            })
            .collect())
    }

    /// Calls `f(series id, key, value)` for every chunk of a matching series
    /// whose window overlaps `[since_ms, until_ms]`, window by window.
    #[allow(clippy::too_many_arguments)]
    fn each_chunk(
        &self,
        kind: Kind,
        device_id: &str,
        metric: &str,
        filter: &[v1::Attribute],
        since_ms: i64,
        until_ms: i64,
        mut f: impl FnMut(&[u8], &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        // The series id handed to `f`: the metric, then a chunk's attributes.
        let mut id = series::series_id(metric, &[]);
        id.pop();
        let metric_len = id.len();
        let mut window = series::window_of(since_ms);
        while window <= until_ms {
            // Jump to the next window anything is stored for: a range from
            // the epoch, or across a gap in the data, costs no empty seeks.
            let Some(next) = self
                .series
                .range(series::window_prefix(kind, window)..)
                .keys()
                .next()
            else {
                break;
            };
            let next = next?;
            let Some(stored) = series::split_chunk_key(kind, &next).map(|k| k.window) else {
                if next.starts_with(kind.tag()) {
                    return Err(super::compact::corrupt(&next, "malformed chunk key"));
                }
                break; // Past the last window.
            };
            if stored > until_ms {
                break;
            }
            window = stored;
            let prefix = series::metric_prefix(kind, window, device_id, metric);
            for item in self.series.scan_prefix(&prefix) {
                let (key, value) = item?;
                if key.last() != Some(&0) {
                    return Err(super::compact::corrupt(
                        &key,
                        "chunk key without series terminator",
                    ));
                }
                // After the prefix: the series' attributes and `\0`.
                let encoded = &key[prefix.len()..];
                let attributes = series::decode_attributes(&encoded[..encoded.len() - 1]);
                if filter.iter().all(|a| attributes.contains(a)) {
                    id.truncate(metric_len);
                    id.extend_from_slice(encoded);
                    f(&id, &key, &value)?;
                }
            }
            let Some(after) = window.checked_add(series::WINDOW_MS) else {
                break;
            };
            window = after;
        }
        Ok(())
    }

    /// Calls `f(series id, ts, value)` for every logged (not yet folded)
    /// sample of a matching series in `[since_ms, until_ms]`, oldest record first.
    fn each_logged(
        &self,
        device_id: &str,
        metric: &str,
        filter: &[v1::Attribute],
        since_ms: i64,
        until_ms: i64,
        mut f: impl FnMut(&[u8], i64, f64),
    ) -> Result<()> {
        let mut wanted = metric.as_bytes().to_vec();
        wanted.push(0x1e);
        let (records, names) = self.logged_records(device_id)?;
        for (key, value) in records {
            for (id, samples) in
                log::decode(&value, &names).map_err(|e| super::compact::corrupt(&key, e))?
            {
                if !id.starts_with(&wanted) {
                    continue;
                }
                if !filter.is_empty() {
                    let attributes = series::split_series_id(&id)
                        .map(|(_, a)| a)
                        .unwrap_or_default();
                    if !filter.iter().all(|a| attributes.contains(a)) {
                        continue;
                    }
                }
                for (t, v) in samples {
                    if (since_ms..=until_ms).contains(&t) {
                        f(&id, t, v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Applies `add` to the series' samples so far; the id is copied only for
/// a series not seen yet (not once per sample).
fn add_points(
    by_series: &mut BTreeMap<Vec<u8>, Vec<(i64, f64)>>,
    id: &[u8],
    add: impl FnOnce(&mut Vec<(i64, f64)>),
) {
    match by_series.get_mut(id) {
        Some(points) => add(points),
        None => add(by_series.entry(id.to_vec()).or_default()),
    }
}

/// Sorts samples by time and keeps, of samples with the same timestamp, the
/// one pushed last.
fn last_write_per_timestamp(points: &mut Vec<(i64, f64)>) {
    if points.windows(2).any(|w| w[0].0 >= w[1].0) {
        points.sort_by_key(|p| p.0);
        // `dedup_by` removes `later` when it returns true; copy it into the
        // kept element first so the last write wins.
        points.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                *kept = *later;
                true
            } else {
                false
            }
        });
    }
}

/// Step-aligned means of time-ordered buckets (the buckets themselves without a step).
fn per_step(buckets: Vec<Rollup>, step_ms: i64) -> Vec<v1::Point> {
    let mut merged: Vec<Rollup> = Vec::new();
    for b in buckets {
        let at = if step_ms > 0 {
            b.bucket_start_ms - b.bucket_start_ms.rem_euclid(step_ms)
        } else {
            b.bucket_start_ms
        };
        match merged.last_mut() {
            Some(last) if last.bucket_start_ms == at => last.merge(&b),
            _ => merged.push(Rollup {
                bucket_start_ms: at,
                ..b
            }),
        }
    }
    merged
        .into_iter()
        .map(|r| v1::Point {
            timestamp_unix_ms: r.bucket_start_ms,
            value: r.mean(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::last_write_per_timestamp;

    #[test]
    fn the_last_write_of_a_timestamp_wins_and_time_order_is_restored() {
        let mut points = vec![
            (10, 1.0),
            (20, 2.0),
            (30, 3.0),
            (20, 9.0),
            (5, 0.5),
            (30, 7.0),
        ];
        last_write_per_timestamp(&mut points);
        assert_eq!(points, vec![(5, 0.5), (10, 1.0), (20, 9.0), (30, 7.0)]);
        let mut sorted = vec![(1, 1.0), (2, 2.0)];
        last_write_per_timestamp(&mut sorted);
        assert_eq!(sorted, vec![(1, 1.0), (2, 2.0)]);
    }
}
