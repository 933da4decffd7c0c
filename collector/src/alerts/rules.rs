//! Alert rules: the TOML format, its validation with line-precise errors, and
//! the merge of the built-in defaults (`defaults.rs`) with a municipality's
//! own file (same name replaces a default; `enabled = false` removes one).
//!
//! The file is parsed into a flat, span-carrying raw form first and checked
//! per kind afterwards, so every error can name the line it is about (serde's
//! internally tagged enums would lose the spans).

use super::lifecycle::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;
use vakt_proto::v1::EventKind;

/// Which devices a rule applies to; an empty list means "any".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub departments: Vec<String>,
    pub classes: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Scope {
    pub fn matches(
        &self,
        department: &str,
        class: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        (self.departments.is_empty() || self.departments.iter().any(|d| d == department))
            && (self.classes.is_empty() || self.classes.iter().any(|c| c == class))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// An inventory difference worth an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    MemoryDecreased,
    MemoryIncreased,
    DiskAdded,
    DiskRemoved,
    SerialChanged,
    ProductUuidChanged,
    OsDowngraded,
}

impl Change {
    pub const ALL: [Change; 7] = [
        Change::MemoryDecreased,
        Change::MemoryIncreased,
        Change::DiskAdded,
        Change::DiskRemoved,
        Change::SerialChanged,
        Change::ProductUuidChanged,
        Change::OsDowngraded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Change::MemoryDecreased => "memory_decreased",
            Change::MemoryIncreased => "memory_increased",
            Change::DiskAdded => "disk_added",
            Change::DiskRemoved => "disk_removed",
            Change::SerialChanged => "serial_changed",
            Change::ProductUuidChanged => "product_uuid_changed",
            Change::OsDowngraded => "os_downgraded",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Fires when the metric is above `above` (or below `below`) for `for_`,
    /// clears only once it is back past `clear` (hysteresis).
    Threshold {
        metric: String,
        attributes: BTreeMap<String, String>,
        above: Option<f64>,
        below: Option<f64>,
        clear: f64,
        for_: Duration,
    },
    /// No report for `missed_intervals` report intervals, unless the last
    /// thing the device said was one of `excuse_events` (shutdown, sleep).
    Offline {
        missed_intervals: u32,
        excuse_events: Vec<EventKind>,
    },
    /// Seen once, but not for `after`.
    Stale { after: Duration },
    /// Registered `after` ago and never reported.
    NeverSeen { after: Duration },
    /// Hardware or OS changed between two inventories; stays firing for `hold`.
    InventoryChange {
        changes: Vec<Change>,
        hold: Duration,
    },
    /// Least-squares fit of the filesystem utilization over `window`
    /// reaches 100 % within `within`.
    FilesystemFull {
        metric: String,
        within: Duration,
        window: Duration,
        min_points: usize,
        every: Duration,
    },
    /// The agent's clock is ahead of the collector's by more than `max`.
    ClockSkew { max: Duration },
    /// The agent's spool dropped reports; stays firing for `hold`.
    SpoolDrops { hold: Duration },
    /// The agent is older than `minimum` (dotted numeric versions).
    AgentVersion { minimum: String },
    /// The identity code set one of these flags on the device within `hold`.
    DeviceFlag { flags: Vec<String>, hold: Duration },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Threshold { .. } => "threshold",
            Kind::Offline { .. } => "offline",
            Kind::Stale { .. } => "stale",
            Kind::NeverSeen { .. } => "never_seen",
            Kind::InventoryChange { .. } => "inventory_change",
            Kind::FilesystemFull { .. } => "filesystem_full",
            Kind::ClockSkew { .. } => "clock_skew",
            Kind::SpoolDrops { .. } => "spool_drops",
            Kind::AgentVersion { .. } => "agent_version",
            Kind::DeviceFlag { .. } => "device_flag",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    pub scope: Scope,
    /// Extra labels on every alert of this rule (routing in Alertmanager).
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
    pub kind: Kind,
}

/// Flap damping: more than `max_changes` state changes within `window`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlapPolicy {
    pub window: Duration,
    pub max_changes: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// How often time-based rules (absence, predictive) and expiries run.
    pub evaluation_interval: Duration,
    pub flap: FlapPolicy,
}

/// One problem in a rules file, at a line and column (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct RuleError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in a file, rendered one per line as `FILE:LINE:COL: message`.
#[derive(Debug, thiserror::Error)]
pub struct RuleErrors {
    pub file: String,
    pub errors: Vec<RuleError>,
}

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{e}", self.file)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    evaluation_interval: Option<Spanned<String>>,
    flap: Option<RawFlap>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlap {
    window: Option<Spanned<String>>,
    max_changes: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    department: Vec<String>,
    #[serde(default)]
    class: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    kind: Spanned<String>,
    enabled: Option<bool>,
    severity: Option<Spanned<String>>,
    summary: Option<String>,
    description: Option<String>,
    scope: Option<RawScope>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    metric: Option<Spanned<String>>,
    attributes: Option<BTreeMap<String, String>>,
    above: Option<Spanned<f64>>,
    below: Option<Spanned<f64>>,
    clear: Option<Spanned<f64>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    missed_intervals: Option<Spanned<u32>>,
    excuse_events: Option<Vec<Spanned<String>>>,
    after: Option<Spanned<String>>,
    hold: Option<Spanned<String>>,
    changes: Option<Vec<Spanned<String>>>,
    within: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    min_points: Option<Spanned<u32>>,
    every: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
    minimum: Option<Spanned<String>>,
    flags: Option<Vec<Spanned<String>>>,
}

/// What a file said: its rules (some maybe disabling defaults) and settings.
struct Parsed {
    rules: Vec<Rule>,
    disabled: Vec<String>,
    evaluation_interval: Option<Duration>,
    flap_window: Option<Duration>,
    flap_max_changes: Option<usize>,
}

/// Collects errors with their positions while checking one file.
struct Checker<'a> {
    text: &'a str,
    errors: Vec<RuleError>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(RuleError {
            line,
            column,
            message: message.into(),
        });
    }

    fn duration(&mut self, value: &Spanned<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    value.span(),
                    format!(
                        "{field}: {:?} is not a duration ({e}); e.g. \"30s\", \"5m\", \"7d\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn opt_duration(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        value
            .as_ref()
            .and_then(|v| self.duration(v, field))
            .unwrap_or(default)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

fn parse(text: &str) -> Result<Parsed, Vec<RuleError>> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
            return Err(vec![RuleError {
                line,
                column,
                message: e.message().trim().to_owned(),
            }]);
        }
    };
    let mut c = Checker {
        text,
        errors: Vec::new(),
    };
    let evaluation_interval = raw
        .evaluation_interval
        .as_ref()
        .and_then(|v| c.duration(v, "evaluation_interval"));
    if let (Some(d), Some(v)) = (evaluation_interval, &raw.evaluation_interval)
        && d < Duration::from_millis(100)
    {
        c.error(v.span(), "evaluation_interval must be at least 100ms");
    }
    let (flap_window, flap_max_changes) = match &raw.flap {
        Some(f) => (
            f.window.as_ref().and_then(|v| c.duration(v, "flap.window")),
            f.max_changes.as_ref().map(|v| *v.get_ref() as usize),
        ),
        None => (None, None),
    };
    let mut rules = Vec::new();
    let mut disabled = Vec::new();
    let mut seen = BTreeMap::new();
    for spanned in &raw.rule {
        let r = spanned.get_ref();
        let name = r.name.get_ref().trim().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
        {
            c.error(
                r.name.span(),
                format!("name {name:?}: use letters, digits, '-', '_' and '.'"),
            );
            continue;
        }
        if let Some(first_line) = seen.insert(name.clone(), line_col(text, r.name.span().start).0) {
            c.error(
                r.name.span(),
                format!("rule {name:?} is already defined on line {first_line}"),
            );
            continue;
        }
        if r.enabled == Some(false) {
            disabled.push(name);
            continue;
        }
        if let Some(rule) = check_rule(&mut c, r, name) {
            rules.push(rule);
        }
    }
    if c.errors.is_empty() {
        Ok(Parsed {
            rules,
            disabled,
            evaluation_interval,
            flap_window,
            flap_max_changes,
        })
    } else {
        Err(c.errors)
    }
}

/// `1.2.3` → [1, 2, 3]; a suffix after `-` or `+` is ignored.
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+', ' ']).next()?;
    core.split('.').map(|p| p.parse().ok()).collect()
}

/// Checks a rules file on its own (what `vaktctl rules check` runs).
pub fn check_text(text: &str, file: &str) -> Result<usize, RuleErrors> {
    parse(text)
        .map(|p| p.rules.len())
        .map_err(|errors| RuleErrors {
            file: file.to_owned(),
            errors,
        })
}

/// The defaults merged with a file's text (None: defaults only).
pub fn load_text(text: Option<&str>, file: &str) -> Result<RuleSet, RuleErrors> {
    let defaults = parse(super::defaults::DEFAULT_RULES).map_err(|errors| RuleErrors {
        file: "built-in defaults".into(),
        errors,
    })?;
    let mut set = RuleSet {
        rules: defaults.rules,
        evaluation_interval: defaults
            .evaluation_interval
            .unwrap_or(Duration::from_secs(15)),
        flap: FlapPolicy {
            window: defaults.flap_window.unwrap_or(Duration::from_secs(3600)),
            max_changes: defaults.flap_max_changes.unwrap_or(4),
        },
    };
    let Some(text) = text else {
        return Ok(set);
    };
    let own = parse(text).map_err(|errors| RuleErrors {
        file: file.to_owned(),
        errors,
    })?;
    set.rules
        .retain(|d| !own.disabled.contains(&d.name) && !own.rules.iter().any(|r| r.name == d.name));
    set.rules.extend(own.rules);
    if let Some(d) = own.evaluation_interval {
        set.evaluation_interval = d;
    }
    if let Some(w) = own.flap_window {
        set.flap.window = w;
    }
    if let Some(n) = own.flap_max_changes {
        set.flap.max_changes = n;
    }
    Ok(set)
}

/// Loads the defaults merged with the file at `path` (if any).
pub fn load(path: Option<&Path>) -> anyhow::Result<RuleSet> {
    use anyhow::Context;
    match path {
        None => Ok(load_text(None, "")?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read alert rules {}", p.display()))?;
            Ok(load_text(Some(&text), &p.display().to_string())?)
        }
    }
}

/// Per-kind checks (a child module: it sees the raw, span-carrying types).
#[path = "rules_kinds.rs"]
mod kinds;
use kinds::check_rule;

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
