//! The device's identity: a random device id and the Ed25519 device signing
//! key that signs evidence manifests.
//!
//! The private key (PKCS#8) lives in the encrypted secrets store, so it is
//! sealed, through the KEK, by the TPM like every other secret. The public
//! key and the device id sit in the `device` table in the clear, so listing
//! them needs no unsealing. The public key is published as an SPKI PEM
//! (`openssl pkeyutl -verify` reads it) and named by its fingerprint: the
//! SHA-256 of the 32 raw public-key bytes, in hex.

use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::keys::keyring::Keyring;
use crate::keys::secrets::{self, SecretError};

pub const SIGNING_KEY_SECRET: &str = "device.signing-key";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the device signing key in the secrets store is not a valid Ed25519 key: {0}")]
    BadKey(String),
    #[error("the device signing key does not match the public key recorded for this device")]
    KeyMismatch,
    #[error("no random numbers available")]
    Random,
}

/// The device's public identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub device_id: String,
    pub public_key: [u8; 32],
}

impl DeviceIdentity {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key)
    }
    pub fn public_key_pem(&self) -> String {
        public_key_pem(&self.public_key)
    }
}

/// SHA-256 of the raw public key, lowercase hex.
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    vigil_format::hex(ring::digest::digest(&ring::digest::SHA256, public_key).as_ref())
}

pub fn public_key_pem(public_key: &[u8; 32]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(public_key);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64_pem(&der)
    )
}

/// Reads an Ed25519 public key given as an SPKI PEM, or as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    let body: String = t
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    if !t.contains("-----BEGIN PUBLIC KEY-----") {
        return Err("expected a PEM \"PUBLIC KEY\" or 64 hex digits".into());
    }
    let der = unbase64(&body).ok_or("the PEM body is not valid base64")?;
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(k) if k.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(k);
            Ok(out)
        }
        _ => Err("not an Ed25519 public key".into()),
    }
}

/// Checks an Ed25519 signature.
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// The device id and public key, if the signing key was made.
pub fn identity(conn: &rusqlite::Connection) -> rusqlite::Result<Option<DeviceIdentity>> {
    Ok(crate::db::device::identity(conn)?.map(|(device_id, public_key)| DeviceIdentity { device_id, public_key }))
}

/// The device signing key, unsealed.
pub struct DeviceKey {
    pair: Ed25519KeyPair,
    identity: DeviceIdentity,
}

impl DeviceKey {
    /// Unseals the signing key; makes it (and the device id) on first use.
    pub fn load_or_create(keyring: &Keyring, why: &str) -> Result<DeviceKey, DeviceError> {
        let conn = rusqlite::Connection::open(keyring.db_path())?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if let Some(identity) = identity(&conn)? {
            let pkcs8 = secrets::get(keyring, SIGNING_KEY_SECRET, why)?;
            let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| DeviceError::BadKey(e.to_string()))?;
            if pair.public_key().as_ref() != identity.public_key {
                return Err(DeviceError::KeyMismatch);
            }
            return Ok(DeviceKey { pair, identity });
        }
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| DeviceError::Random)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| DeviceError::BadKey(e.to_string()))?;
        let mut id = [0u8; 16];
        rng.fill(&mut id).map_err(|_| DeviceError::Random)?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        let identity = DeviceIdentity {
            device_id: format!("vigil-{}", vigil_format::hex(&id)),
            public_key,
        };
        // The secret first: a crash in between leaves a key and no device row,
        // and the next call makes a fresh pair (rotate overwrites the secret).
        secrets::set(keyring, SIGNING_KEY_SECRET, pkcs8.as_ref(), None)?;
        let inserted = crate::db::device::insert_identity(
            &conn,
            &identity.device_id,
            &identity.public_key,
            crate::base::clock::now_ns(),
        )?;
        if !inserted {
            // Another process made it first: use theirs.
            return Self::load_or_create(keyring, why);
        }
        let _ = crate::db::audit::append(
            &conn,
            keyring.actor(),
            "device.signing-key.create",
            &identity.device_id,
            crate::db::audit::Outcome::Ok,
            &format!("fingerprint {}", identity.fingerprint()),
        );
        Ok(DeviceKey { pair, identity })
    }

    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// Notes in the audit log that the device was provisioned (`vigil provision`)
/// by `actor`: its identity and how the first admin stands (`admin`).
/// Provisioning changes nothing here itself, so a failure to write the entry
/// is only logged.
pub fn record_provisioning(conn: &rusqlite::Connection, actor: &str, identity: &DeviceIdentity, admin: &str) {
    if let Err(e) = crate::db::audit::append(
        conn,
        actor,
        "device.provision",
        &identity.device_id,
        crate::db::audit::Outcome::Ok,
        &format!("signing key {}, admin {admin}", identity.fingerprint()),
    ) {
        tracing::warn!("audit entry of the provisioning not written: {e}");
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, on one line.
pub fn base64(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], c.get(1).copied().unwrap_or(0), c.get(2).copied().unwrap_or(0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[(v >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Base64 wrapped at 64 columns, as PEM wants.
fn base64_pem(data: &[u8]) -> String {
    let one = base64(data);
    one.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes().filter(|b| !b.is_ascii_whitespace()) {
        if ch == b'=' {
            break;
        }
        let v = B64.iter().position(|&c| c == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..70 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(unbase64(&base64(&d)).unwrap(), d, "length {n}");
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
    }

    #[test]
    fn public_key_pem_and_hex_parse_back() {
        let pk = [7u8; 32];
        assert_eq!(parse_public_key(&public_key_pem(&pk)).unwrap(), pk);
        assert_eq!(parse_public_key(&vigil_format::hex(&pk)).unwrap(), pk);
        assert!(parse_public_key("nonsense").is_err());
    }
}
