//! The JSON objects a box puts beside its recordings in the bucket, each
//! signed by the device key (the signature, hex Ed25519 over the exact bytes,
//! is the object `<name>.sig`): the device's identity, one manifest per
//! recording, each data key wrapped to the recovery key, and the audit head.
//! Built here for the uploader, parsed and checked here for `vigil replica`.

use serde::{Deserialize, Serialize};
use vigil_format::bundle::key::{fingerprint, verify_signature};
use vigil_format::hex;

use super::ReplicaError;
use crate::base::time::format_ns;
use crate::db::holds::Hold;
use crate::db::RecordingRow;

pub const DEVICE_FORMAT: &str = "vigil-replica-device-v1";
pub const RECORDING_FORMAT: &str = "vigil-replica-recording-v1";
pub const KEY_FORMAT: &str = "vigil-replica-key-v1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceDoc {
    pub format: String,
    pub device_id: String,
    pub signing_public_key_hex: String,
    pub signing_key_fingerprint_sha256: String,
    /// The recovery key's X25519 public half: data keys are wrapped to it.
    pub recovery_public_key_hex: String,
    pub software: String,
    pub written_utc: String,
}

/// What a recording is and how its ciphertext maps to time: enough to
/// rebuild its index row on another machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordingFacts {
    pub id: i64,
    pub camera: String,
    pub codec: String,
    pub state: String,
    pub start_utc: String,
    pub end_utc: String,
    pub start_wall_ns: i64,
    pub timescale: i64,
    pub start_pts: i64,
    pub end_pts: i64,
    pub frames: i64,
    pub chunks: i64,
    pub continues_previous: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HoldFacts {
    pub id: i64,
    pub what: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_utc: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordingManifest {
    pub format: String,
    pub device_id: String,
    /// The ciphertext object, relative to the box's prefix.
    pub object: String,
    pub bytes: u64,
    pub ciphertext_sha256: String,
    pub key_id: String,
    pub recording: RecordingFacts,
    /// The legal holds on the recording when this manifest was written.
    pub legal_holds: Vec<HoldFacts>,
    pub written_utc: String,
    pub software: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeyDoc {
    pub format: String,
    pub device_id: String,
    pub key_id: String,
    /// X25519 (ephemeral) + HKDF-SHA-256 + ChaCha20-Poly1305 to the
    /// recovery public key: `eph_pub || ciphertext || tag`.
    pub wrapped_hex: String,
    pub recovery_public_key_hex: String,
}

/// A signed object: its exact bytes and the signature object's text.
pub struct Signed {
    pub bytes: Vec<u8>,
    pub sig_hex: String,
}

pub fn sign<T: Serialize>(doc: &T, sign: &dyn Fn(&[u8]) -> [u8; 64]) -> Result<Signed, ReplicaError> {
    let mut bytes = serde_json::to_vec_pretty(doc).map_err(|e| ReplicaError::Other(e.to_string()))?;
    bytes.push(b'\n');
    let sig_hex = hex(&sign(&bytes));
    Ok(Signed { bytes, sig_hex })
}

pub fn device_doc(device_id: &str, public_key: &[u8; 32], recovery_pub: &[u8; 32], now_ns: i64) -> DeviceDoc {
    DeviceDoc {
        format: DEVICE_FORMAT.into(),
        device_id: device_id.into(),
        signing_public_key_hex: hex(public_key),
        signing_key_fingerprint_sha256: fingerprint(public_key),
        recovery_public_key_hex: hex(recovery_pub),
        software: crate::evidence::bundle::software_version(),
        written_utc: format_ns(now_ns),
    }
}

pub fn recording_manifest(
    device_id: &str,
    object: &str,
    rec: &RecordingRow,
    holds: &[Hold],
    now_ns: i64,
) -> Result<RecordingManifest, ReplicaError> {
    let sha = rec
        .sha256
        .as_deref()
        .ok_or_else(|| ReplicaError::Other(format!("recording {} has no ciphertext hash yet", rec.id)))?;
    Ok(RecordingManifest {
        format: RECORDING_FORMAT.into(),
        device_id: device_id.into(),
        object: object.into(),
        bytes: rec.bytes.max(0) as u64,
        ciphertext_sha256: hex(sha),
        key_id: hex(&rec.key_id),
        recording: RecordingFacts {
            id: rec.id,
            camera: rec.camera.clone(),
            codec: rec.codec.clone(),
            state: rec.state.clone(),
            start_utc: format_ns(rec.start_wall_ns),
            end_utc: format_ns(rec.end_wall_ns()),
            start_wall_ns: rec.start_wall_ns,
            timescale: rec.timescale,
            start_pts: rec.start_pts,
            end_pts: rec.end_pts,
            frames: rec.frames,
            chunks: rec.chunks,
            continues_previous: rec.continues_previous,
        },
        legal_holds: holds
            .iter()
            .map(|h| HoldFacts {
                id: h.id,
                what: h.describe(),
                reason: h.reason.clone(),
                placed_by: h.placed_by.clone(),
                placed_utc: format_ns(h.placed_ns),
            })
            .collect(),
        written_utc: format_ns(now_ns),
        software: crate::evidence::bundle::software_version(),
    })
}

impl RecordingManifest {
    /// The end in wall-clock time; saturating, as the numbers come from a bucket.
    pub fn end_wall_ns(&self) -> i64 {
        let r = &self.recording;
        let ticks = i128::from(r.end_pts) - i128::from(r.start_pts);
        let ns = ticks * 1_000_000_000 / i128::from(r.timescale.max(1)) + i128::from(r.start_wall_ns);
        ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// 64 hex digits of a signature.
fn parse_sig(text: &[u8]) -> Option<[u8; 64]> {
    vigil_format::unhex(std::str::from_utf8(text).ok()?.trim())?
        .try_into()
        .ok()
}

/// Checks `bytes` against the signature object's text under `public_key`,
/// then parses them. `name` is the object, for the error.
pub fn open_signed<T: for<'de> Deserialize<'de>>(
    name: &str,
    bytes: &[u8],
    sig: &[u8],
    public_key: &[u8; 32],
) -> Result<T, ReplicaError> {
    let sig = parse_sig(sig)
        .ok_or_else(|| ReplicaError::Integrity(format!("{name}: its signature object is not 128 hex digits")))?;
    if !verify_signature(public_key, bytes, &sig) {
        return Err(ReplicaError::Integrity(format!(
            "{name}: the signature does not match (the object or its signature was altered, or another key signed it)"
        )));
    }
    parse(name, bytes)
}

pub fn parse<T: for<'de> Deserialize<'de>>(name: &str, bytes: &[u8]) -> Result<T, ReplicaError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ReplicaError::Integrity(format!("{name}: not a valid object of its kind: {e}")))
}

/// The device document's signing key, checked against its own signature and,
/// when given, the fingerprint the installer wrote down.
pub fn trusted_device(
    bytes: &[u8],
    sig: &[u8],
    expect_fingerprint: Option<&str>,
) -> Result<(DeviceDoc, [u8; 32]), ReplicaError> {
    let doc: DeviceDoc = parse(super::names::DEVICE, bytes)?;
    if doc.format != DEVICE_FORMAT {
        return Err(ReplicaError::Integrity(format!(
            "device.json: unknown format \"{}\"",
            doc.format
        )));
    }
    let key = vigil_format::keys::parse_hex32(&doc.signing_public_key_hex)
        .ok_or_else(|| ReplicaError::Integrity("device.json: the signing key is not 64 hex digits".into()))?;
    if fingerprint(&key) != doc.signing_key_fingerprint_sha256 {
        return Err(ReplicaError::Integrity(
            "device.json: the fingerprint does not match the signing key".into(),
        ));
    }
    if let Some(want) = expect_fingerprint {
        let want = want.trim().to_ascii_lowercase().replace(':', "");
        if want != doc.signing_key_fingerprint_sha256 {
            return Err(ReplicaError::Integrity(format!(
                "device.json: the signing key's fingerprint is {}, not the expected {want}: this is not the box you named",
                doc.signing_key_fingerprint_sha256
            )));
        }
    }
    let doc: DeviceDoc = open_signed(super::names::DEVICE, bytes, sig, &key)?;
    Ok((doc, key))
}
