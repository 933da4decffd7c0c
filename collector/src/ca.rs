//! The collector's certificate authority: creates the CA, the server
//! certificate and admin credentials at `init`, and signs device CSRs at
//! enrollment and renewal.
//!
//! The CA never sees a device's private key: it signs the public key from a
//! CSR whose signature it has verified, and names the certificate itself (the
//! CSR's subject and extensions are ignored), so a device cannot ask for
//! another identity.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;
use vakt_proto::Identity;
use vakt_proto::identity::Role;

/// Most a certificate is backdated, for clock differences between collector and devices.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_LIFETIME: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
pub const ADMIN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A PEM certificate and its PEM private key, freshly generated.
pub struct KeyAndCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A signed certificate and the facts the store keeps about it.
pub struct Signed {
    pub cert_pem: String,
    pub serial_hex: String,
    pub not_after_unix_ms: i64,
}

pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate signing request does not parse or its signature is invalid: {0}")]
    Invalid(String),
    #[error(
        "the certificate signing request asks for subject alternative names; the collector names certificates itself, so send a CSR without them"
    )]
    ClaimsNames,
}

impl CertificateAuthority {
    /// Creates a new CA. The caller persists `ca_pem` and the key.
    pub fn create(common_name: &str) -> Result<(Self, KeyAndCert)> {
        let key = KeyPair::generate().context("generate CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_LIFETIME);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .context("self-sign CA certificate")?;
        let out = KeyAndCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let ca = Self {
            ca_pem: out.cert_pem.clone(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, out))
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let ca_pem = std::fs::read_to_string(cert_path)
            .with_context(|| format!("read CA certificate {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("read CA key {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("parse CA key {}", key_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
            .with_context(|| format!("parse CA certificate {}", cert_path.display()))?;
        Ok(Self { issuer, ca_pem })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The collector's TLS server certificate, for DNS names and IP addresses.
    pub fn issue_server(&self, names: &[String]) -> Result<KeyAndCert> {
        let key = KeyPair::generate().context("generate server key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(names.first().map_or("vakt-collector", String::as_str));
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => {
                    Ok(SanType::DnsName(name.as_str().try_into().with_context(
                        || format!("{name:?} is not a valid DNS name"),
                    )?))
                }
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, SERVER_LIFETIME);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("sign server certificate")?;
        Ok(KeyAndCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// An admin credential (key generated here because it is written straight to
    /// the file of the person or script that will use it).
    pub fn issue_admin(&self, name: &str, role: Role, lifetime: Duration) -> Result<KeyAndCert> {
        let key = KeyPair::generate().context("generate admin key")?;
        let identity = Identity::Admin {
            name: name.to_owned(),
            role,
        };
        let params = client_params(&identity, name, lifetime)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("sign admin certificate")?;
        Ok(KeyAndCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs an admin credential's CSR (the key stays with its holder).
    pub fn sign_admin_csr(
        &self,
        csr_pem: &str,
        name: &str,
        role: Role,
        lifetime: Duration,
    ) -> Result<Signed, CsrError> {
        let identity = Identity::Admin {
            name: name.to_owned(),
            role,
        };
        self.sign_csr(csr_pem, &identity, name, lifetime)
    }

    /// Signs a device's CSR. Only the CSR's public key is used.
    pub fn sign_device_csr(
        &self,
        csr_pem: &str,
        device_id: &str,
        lifetime: Duration,
    ) -> Result<Signed, CsrError> {
        let identity = Identity::Device {
            device_id: device_id.to_owned(),
        };
        self.sign_csr(csr_pem, &identity, device_id, lifetime)
    }

    fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        common_name: &str,
        lifetime: Duration,
    ) -> Result<Signed, CsrError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        // The collector names certificates itself. A CSR that asks for names
        // is refused rather than silently rewritten, so an attempt to claim
        // another identity is visible.
        if !csr.params.subject_alt_names.is_empty() {
            return Err(CsrError::ClaimsNames);
        }
        let params = client_params(identity, common_name, lifetime)
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        let facts = vakt_proto::identity::certificate_facts(cert.der())
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        Ok(Signed {
            cert_pem: cert.pem(),
            serial_hex: facts.serial_hex,
            not_after_unix_ms: facts.not_after_unix_ms,
        })
    }
}

fn client_params(
    identity: &Identity,
    common_name: &str,
    lifetime: Duration,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.subject_alt_names = vec![SanType::URI(
        identity
            .to_uri()
            .try_into()
            .context("identity URI is not a valid IA5 string")?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut params, lifetime);
    params.serial_number = Some(random_serial());
    Ok(params)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Vakt");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    // Backdating absorbs clock differences, but must stay a small part of a
    // short lifetime: agents renew at a fraction of not_after - not_before.
    let backdate = BACKDATE.min(lifetime / 100);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - backdate;
    params.not_after = now + lifetime;
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive INTEGER: the top bit must be clear.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csr_claiming_another_identity_is_refused() {
        let (ca, _) = CertificateAuthority::create("test CA").unwrap();
        let device_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names.push(SanType::URI(
            "vakt://device/d-ffffffffffffffff".try_into().unwrap(),
        ));
        let csr = params
            .serialize_request(&device_key)
            .unwrap()
            .pem()
            .unwrap();
        assert!(matches!(
            ca.sign_device_csr(&csr, "d-0011223344556677", Duration::from_secs(3600)),
            Err(CsrError::ClaimsNames)
        ));
    }

    #[test]
    fn device_certificate_names_the_device_not_the_csr_subject() {
        let (ca, _) = CertificateAuthority::create("test CA").unwrap();
        let device_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "d-ffffffffffffffff");
        let csr = params
            .serialize_request(&device_key)
            .unwrap()
            .pem()
            .unwrap();
        let signed = ca
            .sign_device_csr(&csr, "d-0011223344556677", Duration::from_secs(3600))
            .unwrap();
        let der = vakt_proto::identity::parse_certificates_pem(signed.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            vakt_proto::identity::identity_from_certificate(&der[0]).unwrap(),
            Identity::Device {
                device_id: "d-0011223344556677".into()
            }
        );
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let (ca, _) = CertificateAuthority::create("test CA").unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let mut der = csr.der().to_vec();
        let last = der.len() - 3;
        der[last] ^= 0xff;
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64_encode(&der)
        );
        assert!(
            ca.sign_device_csr(&pem, "d-1", Duration::from_secs(60))
                .is_err()
        );
    }

    fn base64_encode(data: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
