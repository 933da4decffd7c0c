//! The expression language of `vaktctl query`, a small subset of PromQL's
//! shape:
//!
//! ```text
//! expr     = agg "(" metric [ "{" matcher { "," matcher } [","] "}" ] ")" [ "by" group ]
//! agg      = avg | min | max | count | sum | p95
//! matcher  = key "=" quoted          e.g. mountpoint="/"
//! group    = name | "(" name ")"     department, class or a label key
//! ```
//!
//! Errors name the 1-based column (in characters) where the problem is, so a
//! typo in a long expression is found at once.

use super::fleet_args::{Agg, Group};

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub agg: Agg,
    pub metric: String,
    pub attributes: Vec<(String, String)>,
    pub group: Group,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

/// A clap value parser.
pub fn parse_expr(input: &str) -> Result<Expr, String> {
    parse(input).map_err(|e| e.to_string())
}

pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
    };
    p.skip_space();
    let agg_at = p.pos;
    let agg_name = p.name("an aggregation (avg, min, max, count, sum, p95)")?;
    let agg = match Agg::from_name(&agg_name) {
        Some(Agg::Last) => {
            return Err(p.error_at(
                agg_at,
                "last is not a fleet aggregation; `vaktctl top METRIC` lists current values",
            ));
        }
        Some(agg) => agg,
        None => {
            return Err(p.error_at(
                agg_at,
                format!("unknown aggregation {agg_name:?}; use avg, min, max, count, sum or p95"),
            ));
        }
    };
    p.expect('(', &format!("'(' after {agg_name}"))?;
    let metric = p.name("a metric name")?;
    let mut attributes = Vec::new();
    if p.peek() == Some('{') {
        p.pos += 1;
        loop {
            p.skip_space();
            if p.peek() == Some('}') {
                p.pos += 1;
                break;
            }
            let key_at = p.pos;
            let key = p.name("an attribute name or '}'")?;
            if attributes.iter().any(|(k, _)| *k == key) {
                return Err(p.error_at(key_at, format!("attribute {key:?} given twice")));
            }
            p.expect('=', &format!("'=' after {key}"))?;
            let value = p.quoted()?;
            attributes.push((key, value));
            p.skip_space();
            match p.peek() {
                Some(',') => p.pos += 1,
                Some('}') => {}
                _ => return Err(p.error_here("',' or '}' after the attribute")),
            }
        }
    }
    p.expect(')', "')' after the metric")?;
    p.skip_space();
    let mut group = Group::Fleet;
    if !p.at_end() {
        let by_at = p.pos;
        let word = p.name("'by' or the end of the expression")?;
        if word != "by" {
            return Err(p.error_at(by_at, format!("expected 'by', found {word:?}")));
        }
        p.skip_space();
        let parenthesized = p.peek() == Some('(');
        if parenthesized {
            p.pos += 1;
        }
        let name = p.name("department, class or a label key after 'by'")?;
        if parenthesized {
            p.expect(')', &format!("')' after {name}"))?;
        }
        group = Group::from_name(&name);
        p.skip_space();
        if !p.at_end() {
            return Err(p.error_here("the end of the expression"));
        }
    }
    Ok(Expr {
        agg,
        metric,
        attributes,
        group,
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end".to_owned(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            column: pos + 1,
            message: message.into(),
        }
    }

    /// "expected X, found Y" at the current position.
    fn error_here(&self, expected: &str) -> ParseError {
        self.error_at(
            self.pos,
            format!("expected {expected}, found {}", self.found()),
        )
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error_here(what))
        }
    }

    /// A metric name, attribute key, aggregation or group: a letter, then
    /// letters, digits, '_', '.', '-' (what the collector accepts).
    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        self.skip_space();
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(self.error_here(what));
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            self.pos += 1;
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// A value in double or single quotes; `\"`, `\'` and `\\` escape.
    fn quoted(&mut self) -> Result<String, ParseError> {
        self.skip_space();
        let Some(quote @ ('"' | '\'')) = self.peek() else {
            return Err(self.error_here("a quoted value like \"/\""));
        };
        let open = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error_at(open, "this quote is never closed")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ ('"' | '\'' | '\\')) => value.push(c),
                        _ => return Err(self.error_here("\\\", \\' or \\\\ after '\\'")),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_expressions() {
        let e = parse("max(system.filesystem.utilization) by department").expect("ok");
        assert_eq!(e.agg, Agg::Max);
        assert_eq!(e.metric, "system.filesystem.utilization");
        assert!(e.attributes.is_empty());
        assert_eq!(e.group, Group::Department);

        let e = parse(" p95 ( system.filesystem.utilization{mountpoint=\"/\", device='sda\\'1',} ) by (site) ")
            .expect("ok");
        assert_eq!(e.agg, Agg::P95);
        assert_eq!(
            e.attributes,
            vec![
                ("mountpoint".to_owned(), "/".to_owned()),
                ("device".to_owned(), "sda'1".to_owned())
            ]
        );
        assert_eq!(e.group, Group::Label("site".into()));

        let e = parse("count(system.cpu.utilization{})").expect("ok");
        assert_eq!((e.agg, e.group), (Agg::Count, Group::Fleet));
        let e = parse("avg(m) by class").expect("ok");
        assert_eq!(e.group, Group::Class);
    }

    #[test]
    fn errors_point_at_the_column() {
        let err = |s: &str| parse(s).expect_err(s).to_string();
        assert_eq!(
            err("maxx(m)"),
            "column 1: unknown aggregation \"maxx\"; use avg, min, max, count, sum or p95"
        );
        assert_eq!(
            err("last(m)"),
            "column 1: last is not a fleet aggregation; `vaktctl top METRIC` lists current values"
        );
        assert_eq!(err("max m"), "column 5: expected '(' after max, found 'm'");
        assert_eq!(
            err("max(m"),
            "column 6: expected ')' after the metric, found the end"
        );
        assert_eq!(
            err("max(1m)"),
            "column 5: expected a metric name, found '1'"
        );
        assert_eq!(
            err("max(m{mountpoint=/})"),
            "column 18: expected a quoted value like \"/\", found '/'"
        );
        assert_eq!(
            err("max(m{a=\"x\" b=\"y\"})"),
            "column 13: expected ',' or '}' after the attribute, found 'b'"
        );
        assert_eq!(err("max(m{a=\"x)"), "column 9: this quote is never closed");
        assert_eq!(
            err("max(m{a=\"1\",a=\"2\"})"),
            "column 13: attribute \"a\" given twice"
        );
        assert_eq!(
            err("max(m) per department"),
            "column 8: expected 'by', found \"per\""
        );
        assert_eq!(
            err("max(m) by"),
            "column 10: expected department, class or a label key after 'by', found the end"
        );
        assert_eq!(
            err("max(m) by department extra"),
            "column 22: expected the end of the expression, found 'e'"
        );
        assert_eq!(
            err(""),
            "column 1: expected an aggregation (avg, min, max, count, sum, p95), found the end"
        );
        // Columns count characters, not bytes.
        assert_eq!(
            err("max(m{a=\"å\" ?})"),
            "column 13: expected ',' or '}' after the attribute, found '?'"
        );
    }
}
