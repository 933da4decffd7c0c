//! Snapshot tests of the token and batch renderings.

use super::*;

fn response(created: bool) -> v1::RegisterDeviceResponse {
    v1::RegisterDeviceResponse {
        device_id: "dev-7f3a".into(),
        token: "vkt_4NqZ2x".into(),
        token_expires_at_unix_ms: 1_700_604_800_000,
        created,
    }
}

const NOW: i64 = 1_700_000_000_000;

#[test]
fn table_ends_with_the_token_alone() {
    assert_eq!(
        render_registration(&response(true), Format::Table, NOW),
        "Registered new device dev-7f3a.\n\
         One-time enrollment token (expires 2023-11-21T22:13:20Z, in 7d; shown only now):\n\
         vkt_4NqZ2x\n"
    );
    assert!(
        render_registration(&response(false), Format::Table, NOW)
            .starts_with("Updated registration of dev-7f3a.")
    );
}

#[test]
fn json_and_csv() {
    assert_eq!(
        render_registration(&response(true), Format::Json, NOW),
        "{\n  \"device_id\": \"dev-7f3a\",\n  \"token\": \"vkt_4NqZ2x\",\n  \
         \"token_expires_at\": \"2023-11-21T22:13:20Z\",\n  \"created\": true\n}\n"
    );
    assert_eq!(
        render_registration(&response(false), Format::Csv, NOW),
        "device_id,token,token_expires_at,created\ndev-7f3a,vkt_4NqZ2x,2023-11-21T22:13:20Z,false\n"
    );
}

/// What `run_batch` does, minus the network: locally invalid rows keep
/// their error, valid rows get the "collector's" answer.
fn simulate(text: &str) -> Vec<BatchRow> {
    crate::ctl::batch::parse_requests(text)
        .expect("file-level ok")
        .into_iter()
        .map(|row| BatchRow {
            line: row.line,
            result: row.request.and_then(|req| match req.serial.as_str() {
                "SN-TAKEN" => Err("serial \"SN-TAKEN\" belongs to revoked device dev-0001".into()),
                serial => Ok(v1::RegisterDeviceResponse {
                    device_id: format!("dev-{}", serial.to_lowercase()),
                    token: format!("vkt_{serial}"),
                    token_expires_at_unix_ms: 1_700_604_800_000,
                    created: serial != "SN2",
                }),
            }),
            identifier: row.identifier,
        })
        .collect()
}

const BATCH: &str = "serial,class,owner\n\
                     SN1,laptop,ana\n\
                     SN2,server,\"bo, ops\"\n\
                     SN3,toaster,cy\n\
                     SN-TAKEN,laptop,di\n\
                     SN5,laptop,\"e\"d\n";

#[test]
fn batch_reports_every_row_with_its_status() {
    let rows = simulate(BATCH);
    assert_eq!(
        render_batch(&rows, Format::Table),
        "LINE   IDENTIFIER        STATUS    DEVICE    EXPIRES                TOKEN     ERROR\n\
         2      serial=SN1        created   dev-sn1   2023-11-21T22:13:20Z   vkt_SN1   -\n\
         3      serial=SN2        updated   dev-sn2   2023-11-21T22:13:20Z   vkt_SN2   -\n\
         4      serial=SN3        error     -         -                      -         unknown class \"toaster\" (laptop, server, tablet, gateway, desktop)\n\
         5      serial=SN-TAKEN   error     -         -                      -         serial \"SN-TAKEN\" belongs to revoked device dev-0001\n\
         6      -                 error     -         -                      -         text after a closing quote\n"
    );
    assert_eq!(
        render_batch(&rows, Format::Csv),
        "line,identifier,device_id,token,token_expires_at,status,error\n\
         2,serial=SN1,dev-sn1,vkt_SN1,2023-11-21T22:13:20Z,created,\n\
         3,serial=SN2,dev-sn2,vkt_SN2,2023-11-21T22:13:20Z,updated,\n\
         4,serial=SN3,,,,error,\"unknown class \"\"toaster\"\" (laptop, server, tablet, gateway, desktop)\"\n\
         5,serial=SN-TAKEN,,,,error,\"serial \"\"SN-TAKEN\"\" belongs to revoked device dev-0001\"\n\
         6,,,,,error,text after a closing quote\n"
    );
    assert_eq!(
        batch_failure(&rows).as_deref(),
        Some(
            "3 of 5 rows failed (line 4, 5, 6; see the error column); \
             the other rows were registered"
        )
    );
}

#[test]
fn batch_json_rows_all_have_the_same_keys() {
    let rows = simulate(BATCH);
    let out = render_batch(&rows, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
    assert_eq!(
        v[0],
        serde_json::json!({"line": 2, "identifier": "serial=SN1", "device_id": "dev-sn1",
            "token": "vkt_SN1", "token_expires_at": "2023-11-21T22:13:20Z",
            "status": "created", "error": null})
    );
    assert_eq!(
        v[3],
        serde_json::json!({"line": 5, "identifier": "serial=SN-TAKEN", "device_id": null,
            "token": null, "token_expires_at": null, "status": "error",
            "error": "serial \"SN-TAKEN\" belongs to revoked device dev-0001"})
    );
    assert!(out.starts_with(
        "[\n  {\n    \"line\": 2,\n    \"identifier\": \"serial=SN1\",\n    \"device_id\""
    ));
    assert_eq!(v.as_array().map(Vec::len), Some(5));
}

#[test]
fn a_clean_batch_is_no_failure() {
    let rows = simulate("serial\nSN1\nSN2\n");
    assert_eq!(batch_failure(&rows), None);
    assert_eq!(
        render_batch(&rows, Format::Csv),
        "line,identifier,device_id,token,token_expires_at,status,error\n\
         2,serial=SN1,dev-sn1,vkt_SN1,2023-11-21T22:13:20Z,created,\n\
         3,serial=SN2,dev-sn2,vkt_SN2,2023-11-21T22:13:20Z,updated,\n"
    );
    assert_eq!(progress_line(120, 500, 0), "registered 120/500");
    assert_eq!(progress_line(500, 500, 3), "registered 500/500 (3 failed)");
}
