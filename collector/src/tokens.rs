//! One-time enrollment tokens: `vakt1.<id>.<secret>`.
//!
//! The id (64 bits) is public and looks the record up without scanning; the
//! secret (256 bits) is stored only as its SHA-256 and compared in constant
//! time. SHA-256 without a slow KDF is enough because the secret is random and
//! 256 bits long: there is no dictionary to grind.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "vakt1";

pub struct NewToken {
    /// The full token, shown once to whoever registered the device.
    pub token: String,
    pub id: String,
    pub secret_sha256: String,
}

pub fn generate() -> NewToken {
    let id: [u8; 8] = rand::random();
    let secret: [u8; 32] = rand::random();
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    NewToken {
        token: format!("{PREFIX}.{id}.{secret}"),
        secret_sha256: hash(&secret),
        id,
    }
}

/// Splits a token into (id, secret); `None` if it is not shaped like one.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.trim().split('.');
    let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let shaped = prefix == PREFIX
        && parts.next().is_none()
        && id.len() == 16
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    shaped.then_some((id, secret))
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn secret_matches(secret: &str, stored_sha256: &str) -> bool {
    hash(secret)
        .as_bytes()
        .ct_eq(stored_sha256.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_verify() {
        let t = generate();
        let (id, secret) = parse(&t.token).unwrap();
        assert_eq!(id, t.id);
        assert!(secret_matches(secret, &t.secret_sha256));
        assert!(!secret_matches(&"0".repeat(64), &t.secret_sha256));
        assert!(!t.token.contains(&t.secret_sha256));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "vakt1",
            "vakt1.abc.def",
            "vakt2.0123456789abcdef.00",
            "x.y.z.w",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
