//! Key types shared by the format, the keyring and the sealing code: key ids,
//! data keys (zeroed on drop), and the [`KeyLookup`] that writers and readers
//! use. The daemon's keyring implements [`KeyLookup`]; its own errors reach a
//! reader as [`KeyUnavailable`].

use std::fmt;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// 8-byte key identifier written into each recording header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 32-byte data key. Never printed.
#[derive(Clone)]
pub struct DataKey {
    id: KeyId,
    bytes: [u8; 32],
}

impl DataKey {
    /// A data key with an id of its own (keyring keys have random ids).
    pub fn new(id: KeyId, bytes: [u8; 32]) -> Self {
        DataKey { id, bytes }
    }
    /// A data key whose id is derived from its bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let d = digest::digest(&digest::SHA256, &[b"vigil key id v1\0".as_slice(), &bytes].concat());
        let mut id = [0u8; 8];
        id.copy_from_slice(&d.as_ref()[..8]);
        DataKey { id: KeyId(id), bytes }
    }
    pub fn id(&self) -> KeyId {
        self.id
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, <redacted>)", self.id)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Best effort: do not leave key bytes in freed memory.
        for b in self.bytes.iter_mut() {
            // SAFETY: a volatile write to a valid, aligned, owned byte.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Finds the data key a recording was sealed with, and picks the key a new
/// recording is sealed with.
pub trait KeyLookup: Send + Sync {
    /// The data key with this id; `Ok(None)` when no such key exists (it was
    /// shredded, or the file comes from another device).
    fn data_key(&self, id: &KeyId) -> Result<Option<DataKey>, KeyUnavailable>;
    /// The key for a new recording of `camera_id` that starts at `wall_ns`
    /// (with the keyring: that camera's data key for that UTC day).
    fn recording_key(&self, camera_id: i64, wall_ns: i64) -> Result<DataKey, KeyUnavailable>;
}

/// Why a [`KeyLookup`] could not answer (the keyring's database failed, a
/// wrapped key did not unwrap, ...): the implementation's own error, kept as
/// the source so that its message reaches the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyUnavailable(pub Box<dyn std::error::Error + Send + Sync>);

/// The system random number generator failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// One data key that seals everything (tests, benchmarks and the fuzzer).
pub struct SingleKey {
    key: DataKey,
}

impl SingleKey {
    pub fn new(key: DataKey) -> Self {
        SingleKey { key }
    }
    pub fn current_key(&self) -> DataKey {
        self.key.clone()
    }
    pub fn current_key_id(&self) -> KeyId {
        self.key.id()
    }
}

impl KeyLookup for SingleKey {
    fn data_key(&self, id: &KeyId) -> Result<Option<DataKey>, KeyUnavailable> {
        Ok((self.key.id() == *id).then(|| self.key.clone()))
    }
    fn recording_key(&self, _camera_id: i64, _wall_ns: i64) -> Result<DataKey, KeyUnavailable> {
        Ok(self.key.clone())
    }
}

/// 64 hex digits to 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// 16 hex digits to a key id.
pub fn parse_key_id(s: &str) -> Option<KeyId> {
    let b = s.trim().as_bytes();
    if b.len() != 16 {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(KeyId(out))
}

/// Fresh random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| RandomError)?;
    Ok(b)
}
