//! The Vakt wire protocol: the `vakt.v1` services and messages, the limits every
//! incoming message is validated against, and the identity conventions that
//! collector, agent and `vaktctl` share (how a certificate names a device or an
//! admin role).
//!
//! This crate depends on nothing of ours; the agent, the collector and the CLI
//! depend on it.
#![forbid(unsafe_code)]

pub mod codec;
pub mod identity;
pub mod validate;

/// Generated `vakt.v1` types, clients and servers.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("vakt.v1");
}

/// Encoded `FileDescriptorSet` of `vakt.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vakt_descriptor");

pub use identity::Identity;
pub use validate::ValidationError;

/// The content hash of an inventory: SHA-256 over its protobuf encoding.
/// Agents send it with every batch; the full inventory only when it changes.
pub fn inventory_hash(inventory: &v1::Inventory) -> Vec<u8> {
    use prost::Message;
    use sha2::Digest;
    sha2::Sha256::digest(inventory.encode_to_vec()).to_vec()
}

/// The content hash of a software set: SHA-256 over its packages sorted by
/// (name, architecture), each as `name \0 architecture \0 version \n`. Agent
/// and collector compute it independently, so a diff can name the set it
/// applies to and the set it produces. The source ("dpkg"/"rpm") is left out:
/// it follows from the package, and the hash should not change with it.
pub fn software_hash<'a>(packages: impl IntoIterator<Item = &'a v1::Package>) -> Vec<u8> {
    use sha2::Digest;
    let mut sorted: Vec<&v1::Package> = packages.into_iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    let mut hasher = sha2::Sha256::new();
    for p in sorted {
        hasher.update(p.name.as_bytes());
        hasher.update([0]);
        hasher.update(p.architecture.as_bytes());
        hasher.update([0]);
        hasher.update(p.version.as_bytes());
        hasher.update([b'\n']);
    }
    hasher.finalize().to_vec()
}

/// Milliseconds since the Unix epoch, as every `*_unix_ms` field carries it.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl v1::DeviceClass {
    /// The name used on the command line and in output (`laptop`, `server`, ...).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::Laptop => "laptop",
            Self::Server => "server",
            Self::Tablet => "tablet",
            Self::Gateway => "gateway",
            Self::Desktop => "desktop",
        }
    }

    pub fn from_short_name(name: &str) -> Option<Self> {
        Some(match name {
            "laptop" => Self::Laptop,
            "server" => Self::Server,
            "tablet" => Self::Tablet,
            "gateway" => Self::Gateway,
            "desktop" => Self::Desktop,
            "unknown" | "" => Self::Unspecified,
            _ => return None,
        })
    }
}

impl v1::DeviceStatus {
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::NeverSeen => "never-seen",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Asleep => "asleep",
            Self::Off => "off",
            Self::Revoked => "revoked",
        }
    }

    pub fn from_short_name(name: &str) -> Option<Self> {
        Some(match name {
            "never-seen" => Self::NeverSeen,
            "online" => Self::Online,
            "offline" => Self::Offline,
            "asleep" => Self::Asleep,
            "off" => Self::Off,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

impl v1::EventKind {
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "",
            Self::AgentStart => "agent-start",
            Self::Boot => "boot",
            Self::Shutdown => "shutdown",
            Self::Sleep => "sleep",
            Self::Resume => "resume",
        }
    }
}
