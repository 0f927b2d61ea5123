//! Key types shared by the format, the keyring and the sealing code: key ids,
//! data keys (zeroed on drop), the [`KeyLookup`] the recorder and readers use,
//! and [`KeyError`].

use std::fmt;
use std::path::PathBuf;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// 8-byte key identifier written into each recording header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::vseg::hex(&self.0))
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
    fn data_key(&self, id: &KeyId) -> Result<Option<DataKey>, KeyError>;
    /// The key for a new recording of `camera_id` that starts at `wall_ns`
    /// (with the keyring: that camera's data key for that UTC day).
    fn recording_key(&self, camera_id: i64, wall_ns: i64) -> Result<DataKey, KeyError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} does not exist (on a new box run `vigil keys init`; to restore a lost key, `vigil keys recover`)")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} does not hold a Vigil key-encryption key (expected one line `vigil-kek-v1:<64 hex digits>`)")]
    Malformed(PathBuf),
    #[error("key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{0} already exists; refusing to overwrite a key that recordings may need")]
    Exists(PathBuf),
    #[error("the system random number generator failed")]
    Random,
    #[error("the TPM refused to unseal {path}: {reason}")]
    Unseal { path: PathBuf, reason: String },
    #[error("sealing with the TPM failed: {0}")]
    Seal(String),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("the keyring has no key-encryption key yet; run `vigil keys init`")]
    NotInitialised,
    #[error("the keyring is already initialised (key-encryption key {0}); refusing to replace it")]
    AlreadyInitialised(String),
    #[error(
        "the sealed key-encryption key is {found} but the keyring was wrapped under {expected}; \
         this credential belongs to another keyring (restore access with `vigil keys recover`)"
    )]
    KekMismatch { found: String, expected: String },
    #[error("data key {0} failed to unwrap: the keyring row was altered or the key-encryption key is wrong")]
    Unwrap(KeyId),
    #[error("recovery key: {0}")]
    Recovery(String),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
}

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
    fn data_key(&self, id: &KeyId) -> Result<Option<DataKey>, KeyError> {
        Ok((self.key.id() == *id).then(|| self.key.clone()))
    }
    fn recording_key(&self, _camera_id: i64, _wall_ns: i64) -> Result<DataKey, KeyError> {
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
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| KeyError::Random)?;
    Ok(b)
}
