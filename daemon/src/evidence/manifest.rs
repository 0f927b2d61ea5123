//! The signed "primary image" manifest of one recording: what it is (camera,
//! times, codec, key id), the SHA-256 of its ciphertext, and when fixity last
//! checked it, signed by the device key.

use crate::base::time::format_ns;
use crate::evidence::bundle::{software_version, time_sync_now, EvidenceError};
use crate::evidence::device::DeviceKey;
use vigil_format::bundle::RECORDING_MANIFEST_FORMAT;
use vigil_format::hex;

/// A manifest's exact bytes and their Ed25519 signature.
pub type SignedManifest = (Vec<u8>, [u8; 64]);

/// The signed "primary image" manifest of one stored recording: the
/// ciphertext's SHA-256 as written, its fixity state, its time range.
/// Returns the manifest's exact bytes and their Ed25519 signature.
pub fn recording_manifest(
    index: &crate::db::Index,
    device: &DeviceKey,
    id: i64,
) -> Result<Option<SignedManifest>, EvidenceError> {
    let Some(rec) = index.recording(id)? else {
        return Ok(None);
    };
    let fixity = crate::db::fixity::of_recording(index.conn(), id).ok();
    let (fixity_ns, fixity_ok) = fixity.unwrap_or((None, None));
    let now = crate::base::clock::now_ns();
    let m = serde_json::json!({
        "format": RECORDING_MANIFEST_FORMAT,
        "image_type": "primary",
        "device_id": device.identity().device_id,
        "generated_utc": format_ns(now),
        "software": software_version(),
        "time_sync": time_sync_now(),
        "recording": {
            "id": rec.id,
            "camera": rec.camera,
            "file": rec.file_name,
            "state": rec.state,
            "codec": rec.codec,
            "key_id": hex(&rec.key_id),
            "start_utc": format_ns(rec.start_wall_ns),
            "end_utc": format_ns(rec.end_wall_ns()),
            "frames": rec.frames,
            "bytes": rec.bytes,
            "ciphertext_sha256": rec.sha256.as_deref().map(hex),
        },
        "fixity": {
            "last_verified_utc": fixity_ns.map(format_ns),
            "result": match fixity_ok { Some(1) => "ok", Some(_) => "mismatch", None => "not yet verified" },
        },
        "signing_key": {
            "algorithm": "Ed25519",
            "public_key_hex": hex(&device.identity().public_key),
            "fingerprint_sha256": device.identity().fingerprint(),
        },
    });
    let mut bytes = serde_json::to_vec_pretty(&m).map_err(|e| EvidenceError::Zip(e.to_string()))?;
    bytes.push(b'\n');
    let sig = device.sign(&bytes);
    Ok(Some((bytes, sig)))
}

/// Hex of a 32-byte digest for headers and listings.
pub fn digest_hex(d: &[u8; 32]) -> String {
    hex(d)
}
