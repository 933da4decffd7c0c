//! What the fleet-wide commands (`query`, `top`, `inventory query`,
//! `summary`) share: which devices (`--department`, `--class`, `--label`),
//! grouping (`--by`), aggregation names and how values are shown.

use vakt_proto::v1::{self, Aggregation, GroupBy};

/// Which devices a fleet question is about.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SelectorArgs {
    /// Only devices of this department
    #[arg(long, value_name = "D")]
    pub department: Option<String>,
    /// Only devices of this class
    #[arg(long, value_name = "C", value_parser = super::class_parser())]
    pub class: Option<i32>,
    /// Only devices carrying this label (repeatable; all must match)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::parse_kv)]
    pub labels: Vec<(String, String)>,
}

impl SelectorArgs {
    pub fn selector(&self) -> Option<v1::FleetSelector> {
        if self.department.is_none() && self.class.is_none() && self.labels.is_empty() {
            return None;
        }
        Some(v1::FleetSelector {
            department: self.department.clone().unwrap_or_default(),
            class: self.class.unwrap_or_default(),
            labels: super::attributes(&self.labels),
        })
    }
}

/// `--agg` and the function names of `vaktctl query` expressions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Agg {
    #[default]
    Avg,
    Min,
    Max,
    Last,
    Count,
    Sum,
    P95,
}

impl Agg {
    pub const NAMES: &'static [&'static str] =
        &["avg", "min", "max", "last", "count", "sum", "p95"];

    pub fn wire(self) -> Aggregation {
        match self {
            Agg::Avg => Aggregation::Avg,
            Agg::Min => Aggregation::Min,
            Agg::Max => Aggregation::Max,
            Agg::Last => Aggregation::Last,
            Agg::Count => Aggregation::Count,
            Agg::Sum => Aggregation::Sum,
            Agg::P95 => Aggregation::P95,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Last => "last",
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::P95 => "p95",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "last" => Agg::Last,
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "p95" => Agg::P95,
            _ => return None,
        })
    }
}

/// What rows are grouped by: `department`, `class`, or a label key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Group {
    #[default]
    Fleet,
    Department,
    Class,
    Label(String),
}

impl Group {
    /// `department` and `class` are the registration fields; any other name
    /// is a label key (`--by site` groups by the `site=` label).
    pub fn from_name(name: &str) -> Self {
        match name {
            "department" => Group::Department,
            "class" => Group::Class,
            "fleet" | "none" | "" => Group::Fleet,
            other => Group::Label(other.to_owned()),
        }
    }

    pub fn wire(&self) -> (i32, String) {
        match self {
            Group::Fleet => (GroupBy::None as i32, String::new()),
            Group::Department => (GroupBy::Department as i32, String::new()),
            Group::Class => (GroupBy::Class as i32, String::new()),
            Group::Label(key) => (GroupBy::Label as i32, key.clone()),
        }
    }

    /// The column name in output (`department`, `class`, the label key).
    pub fn name(&self) -> &str {
        match self {
            Group::Fleet => "fleet",
            Group::Department => "department",
            Group::Class => "class",
            Group::Label(key) => key,
        }
    }

    pub fn is_fleet(&self) -> bool {
        *self == Group::Fleet
    }
}

/// A clap value parser for `--by`: a grouping name, checked like a label key.
pub fn parse_group(s: &str) -> Result<Group, String> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "expected department, class or a label key (letters, digits, '_', '.', '-'), got {s:?}"
        ));
    }
    Ok(Group::from_name(s))
}

/// A group's value in a table: empty (no department, no label) shows as
/// `(none)`, so it is not mistaken for a missing cell.
pub fn group_cell(group: &str) -> String {
    if group.is_empty() {
        "(none)".to_owned()
    } else {
        group.to_owned()
    }
}

/// Values for people: integers as such, others with at most four decimals
/// (JSON and CSV keep full precision).
pub fn value_cell(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let s = format!("{value:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A clap value parser for percentages (`80` or `80%`), above 0 and at most 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("expected a percentage like 80, got {s:?}"))?;
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(format!(
            "expected a percentage above 0 and at most 100, got {s:?}"
        ))
    }
}

pub fn class_name(class: i32) -> &'static str {
    v1::DeviceClass::try_from(class).map_or("unknown", |c| c.short_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_groups_for_people() {
        assert_eq!(value_cell(3.0), "3");
        assert_eq!(value_cell(0.95), "0.95");
        assert_eq!(value_cell(2.0 / 3.0), "0.6667");
        assert_eq!(value_cell(-0.00001), "0");
        assert_eq!(value_cell(1e20), "100000000000000000000");
        assert_eq!(group_cell(""), "(none)");
        assert_eq!(parse_group("site"), Ok(Group::Label("site".into())));
        assert_eq!(parse_group("department"), Ok(Group::Department));
        assert!(parse_group("9x").is_err());
        for name in Agg::NAMES {
            assert_eq!(Agg::from_name(name).map(Agg::name), Some(*name));
        }
    }
}
