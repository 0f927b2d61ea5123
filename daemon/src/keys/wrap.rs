//! Wrapping data keys under the key-encryption key: ChaCha20-Poly1305 under
//! the KEK, a random 96-bit nonce per row,
//! AAD = "vigil-dek-v1\0" || dek id || KEK id || purpose || "\0" || scope.
//! A row moved to another key id, purpose or scope no longer unwraps.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use crate::keys::sealing::Kek;
use crate::keys::{random_bytes, DataKey, KeyError, KeyId};

/// What a data key protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Recording,
    Secrets,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Recording => "recording",
            Purpose::Secrets => "secrets",
        }
    }
}

pub const SECRETS_SCOPE: &str = "secrets";

/// The scope of a recording key: one camera, one UTC day.
pub fn recording_scope(camera_id: i64, wall_ns: i64) -> (String, String) {
    let day = utc_day(wall_ns);
    (format!("camera:{camera_id}:{day}"), day)
}

/// `YYYY-MM-DD` of a wall-clock instant, in UTC.
pub fn utc_day(wall_ns: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(wall_ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

pub(crate) fn kek_aead(kek: &Kek) -> LessSafeKey {
    // A 32-byte key is always a valid ChaCha20-Poly1305 key.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, kek.bytes()).unwrap_or_else(|_| unreachable!()))
}

pub(crate) fn dek_aad(dek_id: &KeyId, kek_id: &[u8; 8], purpose: &str, scope: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(13 + 16 + purpose.len() + 1 + scope.len());
    a.extend_from_slice(b"vigil-dek-v1\0");
    a.extend_from_slice(&dek_id.0);
    a.extend_from_slice(kek_id);
    a.extend_from_slice(purpose.as_bytes());
    a.push(0);
    a.extend_from_slice(scope.as_bytes());
    a
}

/// Wraps `dek` under `kek`: (nonce, ciphertext || tag).
pub fn wrap_dek(kek: &Kek, dek: &DataKey, purpose: &str, scope: &str) -> Result<([u8; 12], Vec<u8>), KeyError> {
    let nonce = random_bytes::<12>()?;
    let mut buf = dek.bytes().to_vec();
    kek_aead(kek)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(dek_aad(&dek.id(), &kek.id(), purpose, scope)),
            &mut buf,
        )
        .map_err(|_| KeyError::Keyring("wrapping a data key failed".into()))?;
    Ok((nonce, buf))
}

pub fn unwrap_dek(
    kek: &Kek,
    id: KeyId,
    purpose: &str,
    scope: &str,
    nonce: &[u8],
    wrapped: &[u8],
) -> Result<DataKey, KeyError> {
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| KeyError::Unwrap(id))?;
    let mut buf = Zeroizing::new(wrapped.to_vec());
    let plain = kek_aead(kek)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(dek_aad(&id, &kek.id(), purpose, scope)),
            &mut buf,
        )
        .map_err(|_| KeyError::Unwrap(id))?;
    let bytes: [u8; 32] = plain.try_into().map_err(|_| KeyError::Unwrap(id))?;
    Ok(DataKey::new(id, bytes))
}

pub(crate) fn key_id_of(v: &[u8]) -> Result<KeyId, KeyError> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| KeyError::Keyring(format!("key id of {} bytes in the keyring", v.len())))?;
    Ok(KeyId(a))
}

pub(crate) fn kek_id_of(v: &[u8]) -> Result<[u8; 8], KeyError> {
    key_id_of(v).map(|k| k.0)
}
