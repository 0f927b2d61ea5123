//! The signed head of a device's audit log (an "audit checkpoint"): the
//! device id, the checkpoint's sequence number, the id of the last entry it
//! covers (the entry count: ids run 1, 2, 3, ...), that entry's chain hash
//! and the time, signed with the device's Ed25519 key. The daemon stores
//! one in its database within about a second after the log grows, and puts
//! the latest in every bundle manifest, so a later truncation or rewrite of
//! the log is contradicted by a signature the attacker cannot make.
//!
//! The signed message is, byte by byte: `vigil audit checkpoint v1\0`,
//! the device id's length (u64, big-endian) and UTF-8 bytes, then the
//! sequence number, the entry id (both i64, big-endian), the 32-byte head
//! hash and the time in nanoseconds since the Unix epoch (i64, big-endian).

use serde::{Deserialize, Serialize};

use super::key::{fingerprint, verify_signature};
use crate::hex;

/// The signed head as a manifest or the API shows it. Hex for the bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub entry_id: i64,
    /// The chain hash of entry `entry_id` (hex).
    pub hash: String,
    /// When it was signed, UTC (RFC 3339).
    pub ts: String,
    /// The same instant in nanoseconds since the epoch: what is signed.
    pub ts_ns: i64,
    /// Ed25519 signature of [`checkpoint_message`] (hex).
    pub signature: String,
    /// SHA-256 of the signing public key (hex), as in `signing_key`.
    pub public_key_fingerprint: String,
}

/// The exact bytes a checkpoint's signature covers.
pub fn checkpoint_message(device_id: &str, seq: i64, entry_id: i64, head_hash: &[u8; 32], ts_ns: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(26 + 8 + device_id.len() + 8 + 8 + 32 + 8);
    m.extend_from_slice(b"vigil audit checkpoint v1\0");
    m.extend_from_slice(&(device_id.len() as u64).to_be_bytes());
    m.extend_from_slice(device_id.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&entry_id.to_be_bytes());
    m.extend_from_slice(head_hash);
    m.extend_from_slice(&ts_ns.to_be_bytes());
    m
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl AuditHead {
    /// Checks the signature against `public_key` for `device_id`; says what
    /// is wrong otherwise.
    pub fn verify(&self, device_id: &str, public_key: &[u8; 32]) -> Result<(), String> {
        if self.public_key_fingerprint != fingerprint(public_key) {
            return Err(format!(
                "the audit head names signing key {}, not the device key {}",
                self.public_key_fingerprint,
                fingerprint(public_key)
            ));
        }
        let hash = unhex::<32>(&self.hash).ok_or("the audit head's hash is not 64 hex digits")?;
        let sig = unhex::<64>(&self.signature).ok_or("the audit head's signature is not 128 hex digits")?;
        let msg = checkpoint_message(device_id, self.seq, self.entry_id, &hash, self.ts_ns);
        if !verify_signature(public_key, &msg, &sig) {
            return Err("the audit head's signature does not verify with the device key".into());
        }
        Ok(())
    }

    /// Builds the shown form of a stored checkpoint.
    pub fn new(
        seq: i64,
        entry_id: i64,
        hash: &[u8; 32],
        ts: String,
        ts_ns: i64,
        signature: &[u8; 64],
        public_key: &[u8; 32],
    ) -> Self {
        AuditHead {
            seq,
            entry_id,
            hash: hex(hash),
            ts,
            ts_ns,
            signature: hex(signature),
            public_key_fingerprint: fingerprint(public_key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn pair() -> (Ed25519KeyPair, [u8; 32]) {
        let rng = ring::rand::SystemRandom::new();
        let p = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let pk: [u8; 32] = p.public_key().as_ref().try_into().unwrap();
        (p, pk)
    }

    #[test]
    fn a_signed_head_verifies_and_any_change_or_stranger_key_does_not() {
        let (p, pk) = pair();
        let hash = [7u8; 32];
        let sig: [u8; 64] = p
            .sign(&checkpoint_message("vigil-x", 3, 40, &hash, 99))
            .as_ref()
            .try_into()
            .unwrap();
        let head = AuditHead::new(3, 40, &hash, "t".into(), 99, &sig, &pk);
        assert_eq!(head.verify("vigil-x", &pk), Ok(()));
        assert!(head.verify("vigil-y", &pk).is_err(), "another device id");
        let mut h = head.clone();
        h.entry_id = 39;
        assert!(h.verify("vigil-x", &pk).unwrap_err().contains("does not verify"));
        let mut h = head.clone();
        h.hash = "zz".into();
        assert!(h.verify("vigil-x", &pk).is_err());
        let (stranger, spk) = pair();
        let ssig: [u8; 64] = stranger
            .sign(&checkpoint_message("vigil-x", 3, 40, &hash, 99))
            .as_ref()
            .try_into()
            .unwrap();
        let forged = AuditHead::new(3, 40, &hash, "t".into(), 99, &ssig, &spk);
        assert!(forged
            .verify("vigil-x", &pk)
            .unwrap_err()
            .contains("not the device key"));
    }
}
