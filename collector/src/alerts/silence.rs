//! Silences: label matchers (`k=v`, `k!=v`, `k=~regex`, `k!~regex`, as in
//! Alertmanager) and a time window. A silenced alert still changes state
//! and is listed, but writes no notification.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

impl MatchOp {
    pub fn symbol(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "=" => MatchOp::Eq,
            "!=" => MatchOp::Ne,
            "=~" => MatchOp::Re,
            "!~" => MatchOp::NotRe,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

/// Longest regex accepted in a matcher (compiled per check; keep them small).
pub const MAX_REGEX_BYTES: usize = 512;

impl Matcher {
    /// `name=value`, `name!=value`, `name=~regex`, `name!~regex`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, op, value) = if let Some((n, v)) = text.split_once("!~") {
            (n, MatchOp::NotRe, v)
        } else if let Some((n, v)) = text.split_once("=~") {
            (n, MatchOp::Re, v)
        } else if let Some((n, v)) = text.split_once("!=") {
            (n, MatchOp::Ne, v)
        } else if let Some((n, v)) = text.split_once('=') {
            (n, MatchOp::Eq, v)
        } else {
            return Err(format!(
                "matcher {text:?}: expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX"
            ));
        };
        Self::new(name.trim(), op, value)
    }

    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a matcher needs a label name".into());
        }
        if matches!(op, MatchOp::Re | MatchOp::NotRe) {
            if value.len() > MAX_REGEX_BYTES {
                return Err(format!(
                    "matcher on {name}: regex longer than {MAX_REGEX_BYTES} bytes"
                ));
            }
            anchored(value).map_err(|e| format!("matcher on {name}: {e}"))?;
        }
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
        })
    }

    /// A missing label matches as the empty string (Alertmanager's rule).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            MatchOp::Eq => actual == self.value,
            MatchOp::Ne => actual != self.value,
            MatchOp::Re => anchored(&self.value).is_ok_and(|r| r.is_match(actual)),
            MatchOp::NotRe => anchored(&self.value).is_ok_and(|r| !r.is_match(actual)),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.symbol(), self.value)
    }
}

fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub comment: String,
    pub author: String,
    pub created_at_ms: i64,
}

impl Silence {
    pub fn active(&self, now: i64) -> bool {
        self.starts_at_ms <= now && now < self.ends_at_ms
    }

    pub fn covers(&self, labels: &BTreeMap<String, String>, now: i64) -> bool {
        self.active(now) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matchers_parse_and_match() {
        let l = labels(&[("alertname", "cpu-high"), ("department", "IT")]);
        assert!(Matcher::parse("alertname=cpu-high").unwrap().matches(&l));
        assert!(!Matcher::parse("alertname!=cpu-high").unwrap().matches(&l));
        assert!(Matcher::parse("alertname=~cpu-.*").unwrap().matches(&l));
        assert!(
            !Matcher::parse("alertname=~cpu").unwrap().matches(&l),
            "anchored"
        );
        assert!(
            Matcher::parse("department!~HR|Finance")
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::parse("missing=").unwrap().matches(&l));
        assert!(Matcher::parse("nonsense").is_err());
        assert!(Matcher::parse("=v").is_err());
        assert!(Matcher::parse("a=~(").is_err());
        assert_eq!(Matcher::parse("a!=b").unwrap().to_string(), "a!=b");
    }

    #[test]
    fn silence_window() {
        let s = Silence {
            id: "s".into(),
            matchers: vec![Matcher::parse("device=d-1").unwrap()],
            starts_at_ms: 100,
            ends_at_ms: 200,
            comment: String::new(),
            author: String::new(),
            created_at_ms: 100,
        };
        let l = labels(&[("device", "d-1")]);
        assert!(!s.covers(&l, 99));
        assert!(s.covers(&l, 100));
        assert!(!s.covers(&l, 200));
        assert!(!s.covers(&labels(&[("device", "d-2")]), 150));
    }
}
