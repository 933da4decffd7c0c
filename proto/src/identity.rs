//! How certificates name their holders, shared by collector, agent and CLI.
//!
//! The collector's CA writes one URI subject-alternative-name into every client
//! certificate it issues, and that URI — never a payload field — is who the
//! peer is:
//! - a device: `vakt://device/<device-id>`
//! - an admin credential: `vakt://admin/<role>/<name>`

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub const DEVICE_URI_PREFIX: &str = "vakt://device/";
pub const ADMIN_URI_PREFIX: &str = "vakt://admin/";

/// What an admin credential may do; the collector's authz table maps roles to RPCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Viewer, plus acknowledge and silence alerts.
    Operator,
    /// Register devices, nothing else.
    Provisioner,
    /// Everything, including revocation and issuing credentials.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Provisioner, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Provisioner => "provisioner",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole(s.to_owned()))
    }
}

/// Who a verified client certificate belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Device { device_id: String },
    Admin { name: String, role: Role },
}

impl Identity {
    /// The URI SAN that names this identity in a certificate.
    pub fn to_uri(&self) -> String {
        match self {
            Identity::Device { device_id } => format!("{DEVICE_URI_PREFIX}{device_id}"),
            Identity::Admin { name, role } => format!("{ADMIN_URI_PREFIX}{role}/{name}"),
        }
    }

    pub fn from_uri(uri: &str) -> Option<Identity> {
        if let Some(device_id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
            return crate::validate::device_id(device_id)
                .ok()
                .map(|()| Identity::Device {
                    device_id: device_id.to_owned(),
                });
        }
        let rest = uri.strip_prefix(ADMIN_URI_PREFIX)?;
        let (role, name) = rest.split_once('/')?;
        let role = role.parse().ok()?;
        (!name.is_empty()).then(|| Identity::Admin {
            name: name.to_owned(),
            role,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Device { device_id } => write!(f, "device {device_id}"),
            Identity::Admin { name, role } => write!(f, "{name} ({role})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("certificate names no Vakt device or admin identity")]
    NoIdentity,
    #[error("unknown role {0:?} (expected viewer, operator, provisioner or admin)")]
    UnknownRole(String),
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
}

/// Facts read from a certificate that the collector and the agent act on.
#[derive(Clone, Debug)]
pub struct CertificateFacts {
    pub identity: Option<Identity>,
    pub serial_hex: String,
    pub not_before_unix_ms: i64,
    pub not_after_unix_ms: i64,
}

pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let mut identity = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        identity = san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Identity::from_uri(uri),
            _ => None,
        });
    }
    let validity = cert.validity();
    Ok(CertificateFacts {
        identity,
        serial_hex: cert.tbs_certificate.raw_serial_as_string().replace(':', ""),
        not_before_unix_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_unix_ms: validity.not_after.timestamp().saturating_mul(1000),
    })
}

/// The identity a (CA-verified) client certificate names.
pub fn identity_from_certificate(der: &[u8]) -> Result<Identity, IdentityError> {
    certificate_facts(der)?
        .identity
        .ok_or(IdentityError::NoIdentity)
}

/// All certificates in a PEM text, in order.
pub fn parse_certificates_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

pub fn load_certificates_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = read(path)?;
    parse_certificates_pem(&pem).map_err(|reason| IdentityError::Pem {
        path: path.display().to_string(),
        reason,
    })
}

pub fn load_private_key_pem(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| IdentityError::Pem {
        path: path.display().to_string(),
        reason: format!("no private key found: {e}"),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|e| IdentityError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for id in [
            Identity::Device {
                device_id: "d-0123456789abcdef".into(),
            },
            Identity::Admin {
                name: "provision-script".into(),
                role: Role::Provisioner,
            },
        ] {
            assert_eq!(Identity::from_uri(&id.to_uri()), Some(id));
        }
    }

    #[test]
    fn foreign_uris_name_nobody() {
        for uri in [
            "https://example.test/",
            "vakt://device/",
            "vakt://device/../../x",
            "vakt://admin/root/bob",
            "vakt://admin/admin/",
        ] {
            assert_eq!(Identity::from_uri(uri), None, "{uri}");
        }
    }
}
