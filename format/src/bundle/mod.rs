//! The evidence bundle format: its file names, the signed manifest's types
//! (their JSON is what the signature covers, so field order and names are
//! the format), the per-file hashing (size, SHA-256, SHA-3-256, hashing.rs), the Ed25519
//! public-key helpers in [`key`], and the offline verifier in [`verify`].
//!
//! A bundle is a directory or a `.zip` holding:
//! - one MP4 clip per camera;
//! - `manifest.json`: what was asked for and what was delivered, the source
//!   recordings with the SHA-256 of their ciphertext, every file's size,
//!   SHA-256 and SHA3-256, the export time, the clock's sync state, the
//!   operator and the software version;
//! - `manifest.sig`: the raw 64-byte Ed25519 signature of `manifest.json`'s
//!   exact bytes by the device signing key;
//! - `device-public-key.pem`: the public half (SPKI PEM).
//!
//! The daemon writes bundles (it has the recordings and the signing key);
//! everything needed to read and check one is here.

use serde::{Deserialize, Serialize};

pub mod audit_head;
mod hashing;
pub mod key;
pub mod verify;
pub use hashing::{hash_reader, sha256_reader, Hashing};
#[cfg(test)]
mod verify_tests;

pub use verify::{verify_bundle, Finding, Pin, VerifyReport};

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const PUBLIC_KEY: &str = "device-public-key.pem";
pub const BUNDLE_FORMAT: &str = "vigil-evidence-bundle/1";
pub const RECORDING_MANIFEST_FORMAT: &str = "vigil-recording-manifest/1";

/// The wall clock's synchronisation when a manifest was made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimeSyncState {
    pub synchronised: bool,
    pub max_error_us: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Range {
    pub start_utc: String,
    pub end_utc: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceRecording {
    pub id: i64,
    pub file: String,
    pub key_id: String,
    pub start_utc: String,
    pub end_utc: String,
    pub bytes: i64,
    /// SHA-256 of the whole encrypted file as stored (what fixity checks).
    pub ciphertext_sha256: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Clip {
    pub file: String,
    pub camera: String,
    pub actual: Range,
    pub frames: u64,
    pub source_recordings: Vec<SourceRecording>,
    /// The camera's clock as last measured before the bundle was made
    /// (null: never measured). Bundles of earlier versions have no such
    /// field.
    #[serde(default)]
    pub camera_clock: Option<CameraClockState>,
}

/// A camera's clock drift: the camera's clock minus the box's, how it was
/// measured (`onvif`: GetSystemDateAndTime, whole seconds; `rtcp`: the
/// camera's RTCP sender reports) and when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CameraClockState {
    pub drift_ms: i64,
    pub source: String,
    pub measured_utc: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub sha3_256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SigningKey {
    pub algorithm: String,
    pub public_key_file: String,
    pub public_key_hex: String,
    pub fingerprint_sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: String,
    pub image_type: String,
    pub export_id: i64,
    pub device_id: String,
    pub exported_utc: String,
    pub exported_ns: i64,
    pub operator: String,
    pub software: String,
    pub time_sync: TimeSyncState,
    pub requested: Range,
    pub actual: Range,
    pub clips: Vec<Clip>,
    pub files: Vec<FileEntry>,
    pub signing_key: SigningKey,
    /// The device's audit log head, signed just before the bundle was
    /// built ([`audit_head`]); absent in bundles of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<audit_head::AuditHead>,
}
