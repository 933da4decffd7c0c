//! Rendering shared by every listing: the `-o table|json|csv` switch, aligned
//! tables, RFC 4180 CSV, and the time formats people and scripts read.
//!
//! Everything here is pure (no I/O, `now` passed in) so the command modules can
//! be snapshot-tested without a collector.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `-o` selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// Machine-readable JSON (stable field names).
    Json,
    /// RFC 4180 CSV with a header row (absolute times).
    Csv,
}

/// Separation between table columns; three spaces like kubectl, so columns
/// stay distinguishable even when a value contains single spaces.
const COLUMN_GAP: &str = "   ";

/// Aligns `rows` under `header`, left-justified, without trailing spaces.
/// Empty cells show as `-` so columns never collapse visually.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_indented("", header, rows)
}

/// Like [`table`], every line prefixed by `indent` (for nested blocks).
pub fn table_indented(indent: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|row| {
            row.iter()
                .map(|cell| {
                    if cell.is_empty() {
                        "-".to_string()
                    } else {
                        terminal_safe(cell)
                    }
                })
                .collect()
        }))
        .collect();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str(COLUMN_GAP);
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Aligned `key: value` lines (for `device show`).
pub fn key_values(indent: &str, pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let label = format!("{key}:");
        let value = if value.is_empty() {
            "-".to_string()
        } else {
            terminal_safe(value)
        };
        out.push_str(&format!("{indent}{label:<width$}  {value}\n"));
    }
    out
}

/// Device-reported strings (hostnames, models, ...) come from the network:
/// escape control characters so they cannot move the cursor, recolour the
/// terminal or break a row across lines.
pub fn terminal_safe(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return value.to_string();
    }
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One CSV record (RFC 4180): fields containing a comma, quote, CR or LF are
/// quoted, quotes doubled. Ends with `\n`.
pub fn csv_row<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

pub fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Pretty JSON with a final newline. Serializing our own plain structs cannot
/// fail; should it ever, the error is reported instead of panicking.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// The last instant humantime can format (end of year 9999). Timestamps come
/// from the network and humantime panics outside 1970..=9999, so range-check.
const MAX_FORMATTABLE_MS: i64 = 253_402_300_799_999;

fn system_time(ms: i64) -> Option<SystemTime> {
    if !(0..=MAX_FORMATTABLE_MS).contains(&ms) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?))
}

/// RFC 3339 UTC with whole seconds; `None` for 0 ("never") or out of range.
pub fn rfc3339(ms: i64) -> Option<String> {
    if ms == 0 {
        return None;
    }
    system_time(ms).map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// RFC 3339 UTC with milliseconds, for metric points (0 is a valid instant
/// there, unlike the "never" of device fields).
pub fn rfc3339_millis(ms: i64) -> Option<String> {
    system_time(ms).map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// `rfc3339` or the empty string (CSV cells, `-` in tables).
pub fn rfc3339_or_empty(ms: i64) -> String {
    rfc3339(ms).unwrap_or_default()
}

/// Coarse relative time like `12s ago`, `5m ago`, `3h ago`, `4d ago`,
/// `in 7d` (future), or `never` for 0.
pub fn relative(ms: i64, now_ms: i64) -> String {
    if ms == 0 {
        return "never".to_string();
    }
    let delta = now_ms.saturating_sub(ms);
    let secs = delta.unsigned_abs() / 1000;
    // Past: whole units elapsed, like kubectl. Future: nearest unit, so a
    // token issued for 7 days reads "in 7d" despite the request's latency.
    let span = if delta >= 0 {
        short_duration(secs)
    } else {
        short_duration_nearest(secs)
    };
    if delta >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// `45s`, `12m`, `5h`, `3d`: one unit, rounded down; hours up to two days so
/// "last seen 30h ago" stays more precise than "1d ago".
pub fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn short_duration_nearest(secs: u64) -> String {
    let round = |unit: u64| secs.saturating_add(unit / 2) / unit;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", round(60)),
        3600..172_800 => format!("{}h", round(3600)),
        _ => format!("{}d", round(86_400)),
    }
}

/// Binary units for sizes, one decimal: `15.6 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `k=v` pairs joined by `sep`, in the order given.
pub fn attributes(attrs: &[vakt_proto::v1::Attribute], sep: &str) -> String {
    attrs
        .iter()
        .map(|a| format!("{}={}", a.key, a.value))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_marks_empty_cells() {
        let out = table(
            &["ID", "NAME", "X"],
            &[
                vec!["a".into(), "longer name".into(), "1".into()],
                vec!["bbbb".into(), String::new(), String::new()],
            ],
        );
        assert_eq!(
            out,
            "ID     NAME          X\n\
             a      longer name   1\n\
             bbbb   -             -\n"
        );
    }

    #[test]
    fn table_escapes_control_characters() {
        let out = table(&["H"], &[vec!["evil\n\u{1b}[31mhost".into()]]);
        assert_eq!(out, "H\nevil\\n\\u{1b}[31mhost\n");
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        assert_eq!(
            csv_row(&["plain", "a,b", "say \"hi\"", "two\nlines", "cr\r", ""]),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\",\n"
        );
    }

    #[test]
    fn times_are_rfc3339_and_never_panic_on_odd_values() {
        assert_eq!(
            rfc3339(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            rfc3339_millis(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(rfc3339(0), None);
        assert_eq!(rfc3339(-5), None);
        assert_eq!(rfc3339(i64::MAX), None);
        assert_eq!(rfc3339_millis(i64::MIN), None);
        assert_eq!(
            rfc3339_millis(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn relative_times() {
        let now = 1_000_000_000_000;
        assert_eq!(relative(0, now), "never");
        assert_eq!(relative(now - 12_000, now), "12s ago");
        assert_eq!(relative(now - 5 * 60_000, now), "5m ago");
        assert_eq!(relative(now - 30 * 3_600_000, now), "30h ago");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3d ago");
        assert_eq!(relative(now + 7 * 86_400_000, now), "in 7d");
        assert_eq!(relative(now + 7 * 86_400_000 - 2_500, now), "in 7d");
        assert_eq!(relative(now + 90 * 60_000 - 1, now), "in 1h");
        assert_eq!(relative(i64::MIN, i64::MAX), "106751991167d ago");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(16_747_003_904), "15.6 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
    }
}
