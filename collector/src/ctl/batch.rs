//! The input side of `vaktctl register --csv FILE`: an RFC 4180 reader (small
//! enough not to need a crate) and the mapping of rows to registrations.
//!
//! Recognised columns (header row required, any order, all optional except
//! that each row needs an identifier or `unbound=true`):
//! `serial, product_uuid, machine_id, unbound, model, class, department, owner,
//! labels` with `labels` written `k=v;k=v`.

use vakt_proto::v1;

/// Splits CSV text into records of fields; returns each record with the line
/// it starts on. Quoted fields may contain commas, doubled quotes and newlines.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut field_was_quoted = false;
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
        match c {
            '"' if field.is_empty() && !field_was_quoted => {
                in_quotes = true;
                field_was_quoted = true;
            }
            '"' => return Err(format!("line {line}: stray quote (quote the whole field)")),
            ',' => {
                record.push(std::mem::take(&mut field));
                field_was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                field_was_quoted = false;
                // Blank lines separate nothing; skip them.
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push((record_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                record_line = line;
            }
            _ if field_was_quoted => {
                return Err(format!("line {line}: text after a closing quote"));
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!("line {record_line}: unterminated quoted field"));
    }
    if !field.is_empty() || field_was_quoted || !record.is_empty() {
        record.push(field);
        records.push((record_line, record));
    }
    Ok(records)
}

const COLUMNS: [&str; 9] = [
    "serial",
    "product_uuid",
    "machine_id",
    "unbound",
    "model",
    "class",
    "department",
    "owner",
    "labels",
];

/// `(line, identifier for the output, request)` per data row, every row
/// validated exactly as the collector will.
pub fn parse_requests(
    text: &str,
) -> Result<Vec<(usize, String, v1::RegisterDeviceRequest)>, String> {
    let mut records = parse_csv(text)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for name in &header {
        if !COLUMNS.contains(&name.as_str()) {
            return Err(format!(
                "line 1: unknown column {name:?} (known: {})",
                COLUMNS.join(", ")
            ));
        }
    }
    if !header
        .iter()
        .any(|h| ["serial", "product_uuid", "machine_id", "unbound"].contains(&h.as_str()))
    {
        return Err("line 1: need a serial, product_uuid, machine_id or unbound column".into());
    }
    let mut out = Vec::new();
    for (line, record) in records {
        if record.len() != header.len() {
            return Err(format!(
                "line {line}: {} fields, but the header has {}",
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
                        _ => return Err(format!("line {line}: unbound must be true or false, not {value:?}")),
                    }
                }
                "model" => req.model = value,
                "class" => {
                    req.class = v1::DeviceClass::from_short_name(&value)
                        .ok_or_else(|| {
                            format!("line {line}: unknown class {value:?} (laptop, server, tablet, gateway, desktop)")
                        })? as i32
                }
                "department" => req.department = value,
                "owner" => req.owner = value,
                "labels" => {
                    for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                        let (key, value) = super::parse_kv(pair).map_err(|e| format!("line {line}: labels: {e}"))?;
                        req.labels.push(v1::Attribute { key, value });
                    }
                }
                _ => {}
            }
        }
        vakt_proto::validate::register_device_request(&req)
            .map_err(|e| format!("line {line}: {e}"))?;
        let key = [
            ("serial", &req.serial),
            ("product_uuid", &req.product_uuid),
            ("machine_id", &req.machine_id),
        ]
        .into_iter()
        .find(|(_, v)| !v.is_empty())
        .map_or_else(|| "unbound".to_string(), |(k, v)| format!("{k}={v}"));
        out.push((line, key, req));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reader_handles_quotes_commas_newlines_and_crlf() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n\n1,,3";
        let records = parse_csv(text).expect("valid csv");
        assert_eq!(
            records,
            vec![
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (
                    2,
                    vec!["x, y".into(), "say \"hi\"".into(), "two\nlines".into()]
                ),
                (5, vec!["1".into(), String::new(), "3".into()]),
            ]
        );
        assert!(
            parse_csv("a,\"open")
                .expect_err("unterminated")
                .contains("unterminated")
        );
        assert!(
            parse_csv("a,b\"c")
                .expect_err("stray")
                .contains("line 1: stray quote")
        );
    }

    #[test]
    fn rows_become_validated_requests() {
        let text = "serial,class,department,labels\nSN1,laptop,IT,site=hq;floor=2\nSN2,,,\n";
        let rows = parse_requests(text).expect("valid batch");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1, "serial=SN1");
        assert_eq!(rows[0].2.class, v1::DeviceClass::Laptop as i32);
        assert_eq!(rows[0].2.labels.len(), 2);
        assert_eq!(rows[1].2.serial, "SN2");

        let err = parse_requests("serial,class\n,laptop\n").expect_err("no identifier");
        assert!(err.starts_with("line 2: serial:"), "{err}");
        let err = parse_requests("serial,colour\nSN1,red\n").expect_err("unknown column");
        assert!(
            err.starts_with("line 1: unknown column \"colour\""),
            "{err}"
        );
        let err = parse_requests("serial,labels\nSN1,oops\n").expect_err("bad label");
        assert!(err.contains("line 2: labels:"), "{err}");
        let err = parse_requests("serial,class\nSN1,toaster\n").expect_err("bad class");
        assert!(err.contains("unknown class \"toaster\""), "{err}");
    }
}
