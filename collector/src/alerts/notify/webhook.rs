//! A generic JSON webhook, signed so the receiver can tell it came from this
//! collector and was not replayed from long ago.
//!
//! Headers: `X-Vakt-Timestamp: <unix seconds>`, `X-Vakt-Signature:
//! sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (the timestamp is
//! signed, so a receiver that rejects old timestamps also rejects replays),
//! and `Idempotency-Key: <notification id>` — the same on every retry, so a
//! receiver can drop the duplicates that at-least-once delivery may bring.

use super::alertmanager::rfc3339;
use super::http::{HttpClient, Target};
use super::receiver::{Failure, classify};
use crate::alerts::notification::Notification;
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use hyper::http::Method;
use serde_json::json;
use sha2::Sha256;
use std::path::Path;

pub const SIGNATURE_HEADER: &str = "x-vakt-signature";
pub const TIMESTAMP_HEADER: &str = "x-vakt-timestamp";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Shorter secrets are refused: the HMAC is only as strong as its key.
pub const MIN_SECRET_BYTES: usize = 16;

pub struct Webhook {
    target: Target,
    client: HttpClient,
    secret: Vec<u8>,
}

/// Reads a webhook secret file (surrounding whitespace is not part of it).
pub fn read_secret(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read(path).with_context(|| format!("read webhook secret {}", path.display()))?;
    let secret = text.trim_ascii().to_vec();
    anyhow::ensure!(
        secret.len() >= MIN_SECRET_BYTES,
        "webhook secret {} must be at least {MIN_SECRET_BYTES} bytes",
        path.display()
    );
    Ok(secret)
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON a webhook receives.
pub fn body(n: &Notification) -> serde_json::Value {
    json!({
        "version": "1",
        "id": n.id,
        "fingerprint": n.fingerprint,
        "status": n.status,
        "labels": n.labels,
        "annotations": n.annotations,
        "startsAt": rfc3339(n.starts_at_unix_ms),
        "endsAt": n.ends_at_unix_ms.map(rfc3339),
        "generatorURL": n.generator_url,
    })
}

impl Webhook {
    pub fn new(target: Target, client: HttpClient, secret: Vec<u8>) -> Self {
        Self {
            target,
            client,
            secret,
        }
    }

    pub async fn send(&self, n: &Notification) -> Result<(), Failure> {
        let body = serde_json::to_vec(&body(n)).map_err(|e| Failure::Refused(e.to_string()))?;
        // Signed afresh on each attempt: the timestamp says when it was sent.
        let timestamp = (vakt_proto::now_unix_ms() / 1000).to_string();
        let headers = [
            ("content-type", "application/json".to_owned()),
            (IDEMPOTENCY_HEADER, n.id.clone()),
            (SIGNATURE_HEADER, signature(&self.secret, &timestamp, &body)),
            (TIMESTAMP_HEADER, timestamp),
        ];
        let response = self
            .client
            .request(Method::POST, &self.target, &headers, body)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        classify(&response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // HMAC-SHA256("Jefe", "what do ya want for nothing?"), split at the '.'.
        let sig = signature(b"Jefe", "what do ya want for nothing?", b"").replace("sha256=", "");
        // The signed material is "<ts>.<body>", so check against the same
        // construction with a known vector instead:
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?.");
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_secret(&path).is_err());
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"0123456789abcdef0123");
    }
}
