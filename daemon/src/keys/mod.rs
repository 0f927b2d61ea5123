//! The keys layer: where the key-encryption key is sealed ([`sealing`]), the
//! recovery key ([`recovery`]), the keyring of data keys wrapped by the KEK
//! ([`keyring`]), and the secrets store encrypted under it ([`secrets`]).
//! The key types themselves belong to the format (`vigil_format::keys`) and
//! are re-exported here for the layers above.

use std::path::PathBuf;

pub mod keyring;
pub mod mfa;
pub mod recovery;
pub mod sealing;
pub mod secrets;
pub mod wrap;

pub use vigil_format::keys::{
    parse_hex32, parse_key_id, random_bytes, DataKey, KeyId, KeyLookup, KeyUnavailable, RandomError, SingleKey,
};

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
    #[error("{0}")]
    Lookup(#[from] KeyUnavailable),
}

impl From<RandomError> for KeyError {
    fn from(_: RandomError) -> Self {
        KeyError::Random
    }
}

impl From<KeyError> for KeyUnavailable {
    fn from(e: KeyError) -> Self {
        KeyUnavailable(Box::new(e))
    }
}
