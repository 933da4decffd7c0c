//! The input side of `vaktctl register --csv FILE`: an RFC 4180 reader (small
//! enough not to need a crate) and the mapping of rows to registrations.
//!
//! Recognised columns (header row required, any order, all optional except
//! that each row needs an identifier or `unbound=true`):
//! `serial, product_uuid, machine_id, unbound, model, class, department, owner,
//! labels, via` with `labels` written `k=v;k=v` and `via` naming a tablet's gateway.

use vakt_proto::v1;

/// Splits CSV text into records of fields, each with the line it starts on.
/// Quoted fields may contain commas, doubled quotes and newlines. A malformed
/// record (stray quote) becomes an error for that record only and reading
/// resumes on the next line, so one typo does not hide the rest of the file.
pub fn parse_csv(text: &str) -> Vec<(usize, Result<Vec<String>, String>)> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut field_was_quoted = false;
    let mut error: Option<String> = None;
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        // The rest of a broken record is skipped up to its end of line.
        if error.is_some() && c != '\n' {
            continue;
        }
        // Records spanning lines (quoted newlines) name where it went wrong.
        let at = |what: &str| {
            if line == record_line {
                what.to_string()
            } else {
                format!("{what} on line {line}")
            }
        };
        match c {
            '"' if field.is_empty() && !field_was_quoted => {
                in_quotes = true;
                field_was_quoted = true;
            }
            '"' => error = Some(at("stray quote (quote the whole field)")),
            ',' => {
                record.push(std::mem::take(&mut field));
                field_was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                field_was_quoted = false;
                let done = std::mem::take(&mut record);
                match error.take() {
                    Some(e) => records.push((record_line, Err(e))),
                    // Blank lines separate nothing; skip them.
                    None if done.len() == 1 && done[0].is_empty() => {}
                    None => records.push((record_line, Ok(done))),
                }
                line += 1;
                record_line = line;
            }
            _ if field_was_quoted => error = Some(at("text after a closing quote")),
            _ => field.push(c),
        }
    }
    if in_quotes {
        records.push((
            record_line,
            Err("unterminated quoted field (it runs to the end of the file)".into()),
        ));
    } else if let Some(e) = error {
        records.push((record_line, Err(e)));
    } else if !field.is_empty() || field_was_quoted || !record.is_empty() {
        record.push(field);
        records.push((record_line, Ok(record)));
    }
    records
}

const COLUMNS: [&str; 10] = [
    "serial",
    "product_uuid",
    "machine_id",
    "unbound",
    "model",
    "class",
    "department",
    "owner",
    "labels",
    "via",
];

const IDENTIFIERS: [&str; 3] = ["serial", "product_uuid", "machine_id"];

/// One data row of the file: where it is, what it is about, and either the
/// validated request or why it cannot be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub line: usize,
    /// `serial=SN1`, `product_uuid=…`, `machine_id=…` or `unbound`; empty
    /// when the row is too broken to tell.
    pub identifier: String,
    pub request: Result<v1::RegisterDeviceRequest, String>,
}

/// Every data row of the file, validated exactly as the collector will. Only
/// problems of the file as a whole (unreadable header, unknown column) are an
/// `Err`; a bad row is reported in its own `Row` and the others still go.
pub fn parse_requests(text: &str) -> Result<Vec<Row>, String> {
    let mut records = parse_csv(text).into_iter();
    let Some((header_line, header)) = records.next() else {
        return Ok(Vec::new());
    };
    let header = header.map_err(|e| format!("line {header_line} (header): {e}"))?;
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for name in &header {
        if !COLUMNS.contains(&name.as_str()) {
            return Err(format!(
                "line {header_line}: unknown column {name:?} (known: {})",
                COLUMNS.join(", ")
            ));
        }
    }
    if !header
        .iter()
        .any(|h| IDENTIFIERS.contains(&h.as_str()) || h == "unbound")
    {
        return Err(format!(
            "line {header_line}: need a serial, product_uuid, machine_id or unbound column"
        ));
    }
    Ok(records
        .map(|(line, record)| match record {
            Err(e) => Row {
                line,
                identifier: String::new(),
                request: Err(e),
            },
            Ok(fields) => Row {
                line,
                identifier: raw_identifier(&header, &fields),
                request: row_request(&header, fields),
            },
        })
        .collect())
}

/// The identifier as written, even when the row is invalid, so the output
/// says which device a failed row was about.
fn raw_identifier(header: &[String], fields: &[String]) -> String {
    let value = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| fields.get(i))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    IDENTIFIERS
        .iter()
        .find_map(|name| value(name).map(|v| format!("{name}={v}")))
        .or_else(|| {
            value("unbound")
                .filter(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
                .map(|_| "unbound".to_string())
        })
        .unwrap_or_default()
}

fn row_request(
    header: &[String],
    record: Vec<String>,
) -> Result<v1::RegisterDeviceRequest, String> {
    if record.len() != header.len() {
        return Err(format!(
            "{} fields, but the header has {}",
            record.len(),
            header.len()
        ));
    }
    let mut req = v1::RegisterDeviceRequest::default();
    for (name, value) in header.iter().zip(record) {
        let value = value.trim().to_string();
        match name.as_str() {
            "serial" => req.serial = value,
            "product_uuid" => req.product_uuid = value,
            "machine_id" => req.machine_id = value,
            "unbound" => {
                req.unbound = match value.to_ascii_lowercase().as_str() {
                    "" | "false" | "no" | "0" => false,
                    "true" | "yes" | "1" => true,
                    _ => return Err(format!("unbound must be true or false, not {value:?}")),
                }
            }
            "model" => req.model = value,
            "class" => {
                req.class = v1::DeviceClass::from_short_name(&value).ok_or_else(|| {
                    format!("unknown class {value:?} (laptop, server, tablet, gateway, desktop)")
                })? as i32
            }
            "department" => req.department = value,
            "owner" => req.owner = value,
            "via" => req.via_gateway = value,
            "labels" => {
                for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    let (key, value) = super::parse_kv(pair).map_err(|e| format!("labels: {e}"))?;
                    req.labels.push(v1::Attribute { key, value });
                }
            }
            _ => {}
        }
    }
    vakt_proto::validate::register_device_request(&req).map_err(|e| e.to_string())?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reader_handles_quotes_commas_newlines_and_crlf() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n\n1,,3";
        let records = parse_csv(text);
        let ok = |fields: &[&str]| Ok(fields.iter().map(|f| f.to_string()).collect());
        assert_eq!(
            records,
            vec![
                (1, ok(&["a", "b", "c"])),
                (2, ok(&["x, y", "say \"hi\"", "two\nlines"])),
                (5, ok(&["1", "", "3"])),
            ]
        );
    }

    #[test]
    fn a_malformed_record_spoils_only_itself() {
        let records =
            parse_csv("a,b\nx,y\"z\"\n\"q\"r,s\n\"multi\nline\",oo\"ps\nok,1\nlast,\"open");
        assert_eq!(
            records,
            vec![
                (1, Ok(vec!["a".into(), "b".into()])),
                (2, Err("stray quote (quote the whole field)".into())),
                (3, Err("text after a closing quote".into())),
                (
                    4,
                    Err("stray quote (quote the whole field) on line 5".into())
                ),
                (6, Ok(vec!["ok".into(), "1".into()])),
                (
                    7,
                    Err("unterminated quoted field (it runs to the end of the file)".into())
                ),
            ]
        );
    }

    #[test]
    fn rows_become_validated_requests() {
        let text = "serial,class,department,labels\nSN1,laptop,IT,site=hq;floor=2\nSN2,,,\n";
        let rows = parse_requests(text).expect("valid batch");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].identifier, "serial=SN1");
        let first = rows[0].request.as_ref().expect("valid row");
        assert_eq!(first.class, v1::DeviceClass::Laptop as i32);
        assert_eq!(first.labels.len(), 2);
        assert_eq!(
            rows[1].request.as_ref().map(|r| r.serial.as_str()),
            Ok("SN2")
        );
    }

    #[test]
    fn bad_rows_are_reported_one_by_one() {
        let text = "serial,machine_id,class,labels,unbound\n\
                    SN1,,laptop,,\n\
                    ,,laptop,,\n\
                    SN3,,toaster,,\n\
                    SN4,,,oops,\n\
                    SN5,,\n\
                    ,m-6,,,maybe\n\
                    ,,server,,yes\n\
                    SN8,\"bad\"quote,,,\n\
                    SN9,,,,\n";
        let rows = parse_requests(text).expect("the file as a whole is fine");
        let summary: Vec<(usize, &str, Result<&str, &str>)> = rows
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.identifier.as_str(),
                    r.request
                        .as_ref()
                        .map(|q| q.serial.as_str())
                        .map_err(String::as_str),
                )
            })
            .collect();
        assert_eq!(summary[0], (2, "serial=SN1", Ok("SN1")));
        assert_eq!(summary[1].0, 3);
        assert_eq!(summary[1].1, "");
        assert!(
            summary[1].2.is_err_and(|e| e.starts_with("serial:")),
            "{:?}",
            summary[1]
        );
        assert_eq!(
            summary[2],
            (
                4,
                "serial=SN3",
                Err("unknown class \"toaster\" (laptop, server, tablet, gateway, desktop)")
            )
        );
        assert_eq!(
            summary[3],
            (
                5,
                "serial=SN4",
                Err("labels: expected KEY=VALUE, got \"oops\"")
            )
        );
        assert_eq!(
            summary[4],
            (6, "serial=SN5", Err("3 fields, but the header has 5"))
        );
        assert_eq!(
            summary[5],
            (
                7,
                "machine_id=m-6",
                Err("unbound must be true or false, not \"maybe\"")
            )
        );
        assert_eq!(summary[6], (8, "unbound", Ok("")));
        assert_eq!(summary[7], (9, "", Err("text after a closing quote")));
        assert_eq!(summary[8], (10, "serial=SN9", Ok("SN9")));
        assert_eq!(rows.len(), 9);
    }

    #[test]
    fn problems_of_the_whole_file_still_stop_it() {
        let err = parse_requests("serial,colour\nSN1,red\n").expect_err("unknown column");
        assert!(
            err.starts_with("line 1: unknown column \"colour\""),
            "{err}"
        );
        let err = parse_requests("model,owner\nX1,ana\n").expect_err("no identifier column");
        assert!(err.contains("need a serial"), "{err}");
        let err = parse_requests("serial,\"mod\"el\nSN1,X\n").expect_err("bad header");
        assert_eq!(err, "line 1 (header): text after a closing quote");
        assert_eq!(parse_requests(""), Ok(Vec::new()));
    }
}
