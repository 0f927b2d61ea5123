//! Key sources. Issue 2 has the development source: a key file holding the
//! 32-byte master key, which is used directly as the data key. The TPM-sealed
//! source and the wrapped keyring come later behind the same [`KeyLookup`].

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

const KEY_FILE_PREFIX: &str = "vigil-master-key-v1:";

/// 8-byte key identifier written into each recording header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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

/// Finds the data key a recording was sealed with.
pub trait KeyLookup: Send + Sync {
    fn data_key(&self, id: &KeyId) -> Option<DataKey>;
    /// The key new recordings are sealed with.
    fn current_key(&self) -> DataKey;
    fn current_key_id(&self) -> KeyId {
        self.current_key().id()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {0} does not exist (create it with `vigil keys init`)")]
    Missing(PathBuf),
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {0} is not a Vigil key file (expected one line `vigil-master-key-v1:<64 hex digits>`)")]
    Malformed(PathBuf),
    #[error("key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("key file {0} already exists; refusing to overwrite a key that recordings may need")]
    Exists(PathBuf),
    #[error("the system random number generator failed")]
    Random,
}

/// One data key that seals everything: what the development key file holds
/// (and what tests and the fuzzer use).
pub struct SingleKey {
    key: DataKey,
}

impl SingleKey {
    pub fn new(key: DataKey) -> Self {
        SingleKey { key }
    }
}

impl KeyLookup for SingleKey {
    fn data_key(&self, id: &KeyId) -> Option<DataKey> {
        (self.key.id() == *id).then(|| self.key.clone())
    }
    fn current_key(&self) -> DataKey {
        self.key.clone()
    }
}

/// The development key source: one master key in a file (mode 0600).
pub struct FileKeySource;

impl FileKeySource {
    pub fn load(path: &Path) -> Result<SingleKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyError::Missing(path.to_path_buf())),
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let hexpart = text
            .trim()
            .strip_prefix(KEY_FILE_PREFIX)
            .ok_or_else(|| KeyError::Malformed(path.to_path_buf()))?;
        let bytes = parse_hex32(hexpart).ok_or_else(|| KeyError::Malformed(path.to_path_buf()))?;
        Ok(SingleKey::new(DataKey::from_bytes(bytes)))
    }

    /// Creates a new key file with mode 0600; refuses to overwrite.
    pub fn init(path: &Path) -> Result<KeyId, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Err(KeyError::Exists(path.to_path_buf()));
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
        let key = DataKey::from_bytes(bytes);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists(path.to_path_buf())
                } else {
                    io(e)
                }
            })?;
        writeln!(f, "{KEY_FILE_PREFIX}{}", crate::vseg::hex(&bytes)).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(dir) = path.parent() {
            let _ = crate::vseg::sync_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            });
        }
        bytes.fill(0);
        Ok(key.id())
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
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

/// Fresh random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| KeyError::Random)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_overwrite_and_is_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/master.key");
        let id = FileKeySource::init(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(FileKeySource::init(&p), Err(KeyError::Exists(_))));
        assert_eq!(FileKeySource::load(&p).unwrap().current_key_id(), id);
    }

    #[test]
    fn load_rejects_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("master.key");
        assert!(matches!(FileKeySource::load(&p), Err(KeyError::Missing(_))));
        std::fs::write(&p, "garbage").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(FileKeySource::load(&p), Err(KeyError::Malformed(_))));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(FileKeySource::load(&p), Err(KeyError::TooOpen { .. })));
    }
}
