//! `vakt-agent status`: what the state directory says, without contacting anyone.

use crate::state::{self, Delivery, Enrollment};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub state_dir: String,
    pub device_id: String,
    pub collector: String,
    pub certificate_not_after_unix_ms: i64,
    /// RFC 3339, for people.
    pub certificate_not_after: String,
    pub certificate_expired: bool,
    pub spool_reports: usize,
    pub spool_bytes: u64,
    pub last_sequence: u64,
    pub acked_sequence: u64,
    /// Reports dropped unacknowledged (spool cap reached, or refused by the collector).
    pub dropped_reports_total: u64,
    pub report_interval_seconds: u32,
}

pub fn read(state_dir: &Path) -> anyhow::Result<Status> {
    let enrollment = Enrollment::load(state_dir)?;
    // The certificate itself is the truth after renewals; enrollment.json is the fallback.
    let not_after = crate::renew::certificate_validity(state_dir)
        .map(|(_, not_after)| not_after)
        .unwrap_or(enrollment.certificate_not_after_unix_ms);
    let delivery = Delivery::load(state_dir);
    let (spool_reports, spool_bytes) = crate::spool::depth(&state::spool_dir(state_dir));
    Ok(Status {
        state_dir: state_dir.display().to_string(),
        device_id: enrollment.device_id,
        collector: enrollment.collector,
        certificate_not_after_unix_ms: not_after,
        certificate_not_after: format_ms(not_after),
        certificate_expired: not_after <= vakt_proto::now_unix_ms(),
        spool_reports,
        spool_bytes,
        last_sequence: state::load_sequence(state_dir).unwrap_or(0),
        acked_sequence: delivery.acked_sequence,
        dropped_reports_total: delivery.dropped_reports_total,
        report_interval_seconds: enrollment.settings.report_interval_seconds,
    })
}

pub fn format_ms(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

pub fn to_text(s: &Status) -> String {
    let expiry = if s.certificate_expired {
        format!("{} (EXPIRED: enroll again)", s.certificate_not_after)
    } else {
        let left = s.certificate_not_after_unix_ms - vakt_proto::now_unix_ms();
        let left =
            std::time::Duration::from_secs(u64::try_from(left / 1000).unwrap_or(0) / 3600 * 3600);
        format!(
            "{} (in {})",
            s.certificate_not_after,
            humantime::format_duration(left)
        )
    };
    format!(
        "device id:          {}\n\
         collector:          {}\n\
         certificate expiry: {expiry}\n\
         spool:              {} reports, {} bytes\n\
         last sequence:      {}\n\
         last acknowledged:  {}\n\
         dropped reports:    {}\n\
         state directory:    {}\n",
        s.device_id,
        s.collector,
        s.spool_reports,
        s.spool_bytes,
        s.last_sequence,
        s.acked_sequence,
        s.dropped_reports_total,
        s.state_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_an_unenrolled_dir_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", read(dir.path()).unwrap_err());
        assert!(err.contains("not enrolled"), "{err}");
    }

    #[test]
    fn status_reads_the_state_files() {
        let dir = tempfile::tempdir().unwrap();
        Enrollment {
            device_id: "d-1".into(),
            collector: "https://127.0.0.1:7443".into(),
            settings: Default::default(),
            certificate_not_after_unix_ms: 4_102_444_800_000,
            enrolled_at_unix_ms: 0,
        }
        .save(dir.path())
        .unwrap();
        state::save_sequence(dir.path(), 7).unwrap();
        Delivery {
            acked_sequence: 5,
            ..Default::default()
        }
        .save(dir.path())
        .unwrap();
        let s = read(dir.path()).unwrap();
        assert_eq!(
            (s.device_id.as_str(), s.last_sequence, s.acked_sequence),
            ("d-1", 7, 5)
        );
        assert_eq!(s.certificate_not_after, "2100-01-01T00:00:00Z");
        assert!(to_text(&s).contains("last acknowledged:  5"));
    }
}
