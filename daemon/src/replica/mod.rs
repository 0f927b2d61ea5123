//! Off-box copies: finished recordings replicated, as the ciphertext written
//! on disk, to an S3-compatible bucket (Garage, Ceph RGW, MinIO, AWS), each
//! with a manifest signed by the device key, the data keys wrapped to the
//! recovery key's public half, and the signed audit head. `upload` is the
//! daemon's side; `remote` reads a bucket on any machine (list, verify) and
//! `restore` turns it back into footage with the recovery key (an MP4, or a
//! new box's storage). See docs/replication.md.
//!
//! It sits above `evidence` (the device key signs what is uploaded) and
//! below `run`, which starts the uploader.

pub mod http;
pub mod objects;
pub mod remote;
pub mod restore;
pub mod store;
pub mod upload;

/// Why a replication step failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The bucket refused or could not be reached; the text says which.
    #[error("{0}")]
    Store(String),
    /// The bucket answered 404: no such object, or no such multipart upload.
    #[error("{0}")]
    Missing(String),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Index(#[from] crate::db::IndexError),
    #[error("{0}")]
    Key(#[from] crate::keys::KeyError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// An object is missing, altered or does not say what it must.
    #[error("{0}")]
    Integrity(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

impl ReplicaError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ReplicaError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where objects live under a box's prefix.
pub mod names {
    /// The device's identity: its id, signing key and recovery public key.
    pub const DEVICE: &str = "device.json";
    /// The latest signed audit checkpoint.
    pub const AUDIT_HEAD: &str = "audit/head.json";
    /// A signed JSON object's signature (hex Ed25519) is beside it.
    pub const SIG_SUFFIX: &str = ".sig";

    /// `recordings/<camera>/<UTC day>/<id, 12 digits>` (+ `.vseg`, `.json`).
    pub fn recording_stem(camera: &str, start_wall_ns: i64, id: i64) -> String {
        format!(
            "recordings/{camera}/{}/{id:012}",
            crate::keys::wrap::utc_day(start_wall_ns)
        )
    }

    pub fn key(key_id: &[u8]) -> String {
        format!("keys/{}.json", vigil_format::hex(key_id))
    }

    pub fn sig(name: &str) -> String {
        format!("{name}{SIG_SUFFIX}")
    }
}
