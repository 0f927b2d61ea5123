//! Where the key-encryption key (KEK) lives at rest: sealed by the TPM as a
//! systemd credential (`systemd-creds encrypt`), or, for development only, in
//! a plain file. Both hold the same text, `vigil-kek-v1:<64 hex digits>`.
//!
//! A sealed KEK has two slots: the current file and `<file>.next`. Rotation
//! seals the new KEK into `.next`, commits the rewrapped keyring, then renames
//! `.next` over the current file, so a crash at any point leaves a slot whose
//! KEK matches the keyring (see `Keyring::open`).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ring::digest;

use crate::config::{CredentialConfig, KeySourceConfig};
use crate::keys::{parse_hex32, random_bytes, KeyError};

const KEK_TEXT_PREFIX: &str = "vigil-kek-v1:";
/// How long one `systemd-creds` call may take (a TPM under load is slow, a
/// hung one must not hang vigil).
const SYSTEMD_CREDS_TIMEOUT: Duration = Duration::from_secs(60);

/// The 32-byte key-encryption key. Never printed; zeroed on drop.
pub struct Kek {
    bytes: [u8; 32],
}

impl Kek {
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Kek {
            bytes: random_bytes::<32>()?,
        })
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek { bytes }
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
    /// A public check value naming this KEK: SHA-256("vigil kek id v1\0" || KEK), first 8 bytes.
    pub fn id(&self) -> [u8; 8] {
        let d = digest::digest(
            &digest::SHA256,
            &[b"vigil kek id v1\0".as_slice(), &self.bytes].concat(),
        );
        let mut id = [0u8; 8];
        id.copy_from_slice(&d.as_ref()[..8]);
        id
    }
    fn to_text(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("{KEK_TEXT_PREFIX}{}\n", vigil_format::hex(&self.bytes)))
    }
    fn from_text(path: &Path, text: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(text).map_err(|_| KeyError::Malformed(path.to_path_buf()))?;
        let hexpart = text
            .trim()
            .strip_prefix(KEK_TEXT_PREFIX)
            .ok_or_else(|| KeyError::Malformed(path.to_path_buf()))?;
        let bytes = parse_hex32(hexpart).ok_or_else(|| KeyError::Malformed(path.to_path_buf()))?;
        Ok(Kek { bytes })
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({}, <redacted>)", vigil_format::hex(&self.id()))
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
}

/// Which of the two sealed copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Current,
    /// Written by a rotation before the keyring commits.
    Next,
}

/// Seals and unseals the KEK according to `[keys]`.
#[derive(Clone, Debug)]
pub struct KekSealer {
    config: KeySourceConfig,
}

impl KekSealer {
    pub fn new(config: KeySourceConfig) -> Self {
        KekSealer { config }
    }

    pub fn is_development(&self) -> bool {
        matches!(self.config, KeySourceConfig::File { .. })
    }

    /// The file that holds the KEK in `slot`.
    pub fn path(&self, slot: Slot) -> PathBuf {
        let base = match &self.config {
            KeySourceConfig::File { path, .. } => path,
            KeySourceConfig::Credential(c) => &c.path,
        };
        match slot {
            Slot::Current => base.clone(),
            Slot::Next => {
                let mut p = base.clone().into_os_string();
                p.push(".next");
                PathBuf::from(p)
            }
        }
    }

    /// One line for `keys status` and the keyring's record of how it is sealed.
    pub fn describe(&self) -> String {
        match &self.config {
            KeySourceConfig::File { path, .. } => format!("plain file {} (DEVELOPMENT: not sealed)", path.display()),
            KeySourceConfig::Credential(c) => format!(
                "systemd credential \"{}\" in {}, sealed with {}{}{}",
                c.name,
                c.path.display(),
                c.with_key,
                if c.tpm2_pcrs.is_empty() {
                    ", no PCR policy".to_string()
                } else {
                    format!(", PCR policy {}", c.tpm2_pcrs)
                },
                c.tpm2_device
                    .as_ref()
                    .map(|d| format!(", TPM device {d}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// The PCRs the seal is bound to ("" for none).
    pub fn pcrs(&self) -> &str {
        match &self.config {
            KeySourceConfig::File { .. } => "",
            KeySourceConfig::Credential(c) => &c.tpm2_pcrs,
        }
    }

    pub fn exists(&self, slot: Slot) -> bool {
        self.path(slot).exists()
    }

    /// The copy systemd unsealed at unit start (`LoadCredentialEncrypted=`),
    /// if there is one: `$CREDENTIALS_DIRECTORY/<name>`.
    fn loaded_copy(&self) -> Option<PathBuf> {
        let KeySourceConfig::Credential(c) = &self.config else {
            return None;
        };
        let p = Path::new(&std::env::var_os("CREDENTIALS_DIRECTORY")?).join(&c.name);
        p.exists().then_some(p)
    }

    /// Whether the current KEK comes from systemd's unit-start copy, which a
    /// later rotation does not change (the sealed file then is newer).
    pub fn has_loaded_copy(&self) -> bool {
        self.loaded_copy().is_some()
    }

    /// Unseals the KEK in `slot`; for the current slot, systemd's copy when
    /// there is one (no TPM access needed).
    pub fn unseal(&self, slot: Slot) -> Result<Kek, KeyError> {
        if slot == Slot::Current {
            if let Some(p) = self.loaded_copy() {
                let text = zeroize::Zeroizing::new(std::fs::read(&p).map_err(|source| KeyError::Io {
                    path: p.clone(),
                    source,
                })?);
                return Kek::from_text(&p, &text);
            }
        }
        self.unseal_file(slot)
    }

    /// Unseals the KEK from the sealed file of `slot` itself.
    pub fn unseal_file(&self, slot: Slot) -> Result<Kek, KeyError> {
        let path = self.path(slot);
        match &self.config {
            KeySourceConfig::File { .. } => {
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyError::Missing(path)),
                    Err(source) => return Err(KeyError::Io { path, source }),
                };
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyError::TooOpen { path, mode });
                }
                let text = zeroize::Zeroizing::new(std::fs::read(&path).map_err(|source| KeyError::Io {
                    path: path.clone(),
                    source,
                })?);
                Kek::from_text(&path, &text)
            }
            KeySourceConfig::Credential(c) => {
                if !path.exists() {
                    return Err(KeyError::Missing(path));
                }
                let text = systemd_creds_decrypt(c, &path)?;
                Kek::from_text(&path, &text)
            }
        }
    }

    /// Seals `kek` into `slot`: written to a temporary file, synced, renamed
    /// into place, directory synced. Replaces what the slot held.
    pub fn seal(&self, kek: &Kek, slot: Slot) -> Result<(), KeyError> {
        let path = self.path(slot);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        match &self.config {
            KeySourceConfig::File { .. } => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io)?;
                f.write_all(kek.to_text().as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            KeySourceConfig::Credential(c) => {
                systemd_creds_encrypt(c, &kek.to_text(), &tmp)?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
                std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            }
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        vigil_format::vseg::sync_dir(&dir).map_err(|e| KeyError::Seal(e.to_string()))?;
        Ok(())
    }

    /// Makes the `.next` slot the current one (the last step of a rotation).
    pub fn promote_next(&self) -> Result<(), KeyError> {
        let next = self.path(Slot::Next);
        let cur = self.path(Slot::Current);
        std::fs::rename(&next, &cur).map_err(|source| KeyError::Io { path: next, source })?;
        if let Some(dir) = cur.parent().filter(|d| !d.as_os_str().is_empty()) {
            vigil_format::vseg::sync_dir(dir).map_err(|e| KeyError::Seal(e.to_string()))?;
        }
        Ok(())
    }

    /// Removes a stale `.next` slot (a rotation that never committed).
    pub fn discard_next(&self) -> Result<(), KeyError> {
        let next = self.path(Slot::Next);
        match std::fs::remove_file(&next) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyError::Io { path: next, source }),
        }
    }
}

fn tpm_args(c: &CredentialConfig, cmd: &mut Command) {
    if let Some(d) = &c.tpm2_device {
        cmd.arg(format!("--tpm2-device={d}"));
    }
}

fn systemd_creds_encrypt(c: &CredentialConfig, plaintext: &str, out: &Path) -> Result<(), KeyError> {
    let mut cmd = Command::new("systemd-creds");
    cmd.arg("encrypt")
        .arg(format!("--name={}", c.name))
        .arg(format!("--with-key={}", c.with_key));
    tpm_args(c, &mut cmd);
    if !c.tpm2_pcrs.is_empty() {
        cmd.arg(format!("--tpm2-pcrs={}", c.tpm2_pcrs));
    }
    cmd.arg("-").arg(out);
    let r = run_bounded(cmd, plaintext.as_bytes()).map_err(|e| KeyError::Seal(format!("systemd-creds: {e}")))?;
    if !r.ok {
        return Err(KeyError::Seal(format!(
            "systemd-creds encrypt failed: {}",
            r.stderr_line()
        )));
    }
    Ok(())
}

fn systemd_creds_decrypt(c: &CredentialConfig, path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
    let mut cmd = Command::new("systemd-creds");
    cmd.arg("decrypt").arg(format!("--name={}", c.name));
    tpm_args(c, &mut cmd);
    cmd.arg(path).arg("-");
    let r = run_bounded(cmd, b"").map_err(|e| KeyError::Unseal {
        path: path.to_path_buf(),
        reason: format!("systemd-creds: {e}"),
    })?;
    if r.ok {
        return Ok(r.stdout);
    }
    let said = r.stderr_line();
    let lower = said.to_ascii_lowercase();
    let reason = if lower.contains("pcr") || lower.contains("policy") || lower.contains("0x99d") {
        format!(
            "the PCR policy does not match: the key was sealed to PCR {} and this boot measured different values \
             (firmware, bootloader or Secure Boot state changed?); re-seal with `vigil keys recover` \
             (systemd-creds: {said})",
            if c.tpm2_pcrs.is_empty() {
                "(unknown)"
            } else {
                &c.tpm2_pcrs
            }
        )
    } else if c.tpm2_pcrs.is_empty() {
        format!("systemd-creds: {said}")
    } else {
        format!(
            "sealed with PCR policy {} (if the boot measurements changed, re-seal with `vigil keys recover`); \
             systemd-creds: {said}",
            c.tpm2_pcrs
        )
    };
    Err(KeyError::Unseal {
        path: path.to_path_buf(),
        reason,
    })
}

struct Output {
    ok: bool,
    stdout: zeroize::Zeroizing<Vec<u8>>,
    stderr: String,
}

impl Output {
    /// The last non-empty line systemd-creds printed, for error messages.
    fn stderr_line(&self) -> String {
        let s = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no message)")
            .trim();
        s.chars().take(300).collect()
    }
}

/// Runs `cmd` with `input` on stdin, bounded by [`SYSTEMD_CREDS_TIMEOUT`];
/// killed and reaped if it overruns.
fn run_bounded(mut cmd: Command, input: &[u8]) -> std::io::Result<Output> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut b);
        }
        zeroize::Zeroizing::new(b)
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + SYSTEMD_CREDS_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer within {} s (is the TPM reachable?)",
                    SYSTEMD_CREDS_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(Output {
        ok: status.success(),
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn file_sealer(p: &Path) -> KekSealer {
        KekSealer::new(KeySourceConfig::File {
            path: p.to_path_buf(),
            origin: Origin {
                file: "t".into(),
                line: 1,
                key: "keys.file".into(),
            },
        })
    }

    #[test]
    fn file_slots_round_trip_and_refuse_open_modes() {
        let d = tempfile::tempdir().unwrap();
        let s = file_sealer(&d.path().join("kek.key"));
        assert!(matches!(s.unseal(Slot::Current), Err(KeyError::Missing(_))));
        let k = Kek::generate().unwrap();
        s.seal(&k, Slot::Current).unwrap();
        assert_eq!(s.unseal(Slot::Current).unwrap().id(), k.id());
        let meta = std::fs::metadata(s.path(Slot::Current)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let k2 = Kek::generate().unwrap();
        s.seal(&k2, Slot::Next).unwrap();
        s.promote_next().unwrap();
        assert_eq!(s.unseal(Slot::Current).unwrap().id(), k2.id());
        assert!(!s.exists(Slot::Next));
        std::fs::set_permissions(s.path(Slot::Current), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(s.unseal(Slot::Current), Err(KeyError::TooOpen { .. })));
        std::fs::write(s.path(Slot::Current), "vigil-master-key-v1:00").unwrap();
        std::fs::set_permissions(s.path(Slot::Current), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(s.unseal(Slot::Current), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = Kek::from_bytes([0xab; 32]);
        assert!(!format!("{k:?}").contains("abab"));
    }
}
