//! The secrets store: camera and ONVIF passwords, webhook tokens, TOTP seeds.
//! Each value is a field encrypted with the keyring's current secrets data
//! key (ChaCha20-Poly1305, random nonce), AAD = "vigil-field-v1\0" ||
//! table "\0" column "\0" || row id || key id, so a value copied to another
//! row or column does not decrypt. Values are never logged and never listed;
//! every read and write is audited.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use crate::db::audit::{self, Outcome};
use crate::db::secrets::{self as rows, SealedSecret};
use crate::keys::keyring::Keyring;
use crate::keys::wrap::{Purpose, SECRETS_SCOPE};
use crate::keys::{random_bytes, DataKey, KeyError, KeyId};

use crate::base::names::SECRET_NAME_RULE as NAME_RULE;
/// Largest secret value accepted (a certificate key fits; a video does not).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// `status` calls a secret "expiring soon" this long before it expires.
pub const EXPIRING_SOON_NS: i64 = 14 * 86_400 * 1_000_000_000;

use crate::base::names::valid_secret_name as valid_name;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no secret named \"{0}\" (add it with `vigil secrets set {0}`)")]
    NotFound(String),
    #[error("\"{0}\": {NAME_RULE}")]
    BadName(String),
    #[error("the value is empty")]
    Empty,
    #[error("the value is {0} bytes; the limit is {MAX_VALUE_BYTES}")]
    TooLarge(usize),
    #[error("secret \"{0}\" does not decrypt: its row was altered or moved")]
    Corrupt(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<rusqlite::Error> for SecretError {
    fn from(e: rusqlite::Error) -> Self {
        SecretError::Key(KeyError::Sql(e))
    }
}

/// What a listing shows: never the value.
#[derive(Clone, Debug)]
pub struct SecretMeta {
    pub name: String,
    pub version: i64,
    pub key_id: KeyId,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub expires_ns: Option<i64>,
}

impl SecretMeta {
    pub fn expiry_state(&self, now_ns: i64) -> &'static str {
        match self.expires_ns {
            None => "",
            Some(e) if e <= now_ns => "EXPIRED",
            Some(e) if e - now_ns <= EXPIRING_SOON_NS => "expiring soon",
            Some(_) => "",
        }
    }
}

fn field_aad(row_id: i64, key_id: &KeyId) -> Vec<u8> {
    let mut a = b"vigil-field-v1\0secret\0value\0".to_vec();
    a.extend_from_slice(&row_id.to_be_bytes());
    a.extend_from_slice(&key_id.0);
    a
}

fn aead(key: &DataKey) -> LessSafeKey {
    // A 32-byte key is always a valid ChaCha20-Poly1305 key.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key.bytes()).unwrap_or_else(|_| unreachable!()))
}

fn seal_field(key: &DataKey, row_id: i64, value: &[u8]) -> Result<([u8; 12], Vec<u8>), KeyError> {
    let nonce = random_bytes::<12>()?;
    let mut buf = value.to_vec();
    aead(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(field_aad(row_id, &key.id())),
            &mut buf,
        )
        .map_err(|_| KeyError::Keyring("sealing a secret failed".into()))?;
    Ok((nonce, buf))
}

fn open_field(key: &DataKey, row_id: i64, nonce: &[u8], ct: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let n = aead(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(field_aad(row_id, &key.id())),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

fn check(name: &str, value: &[u8]) -> Result<(), SecretError> {
    if !valid_name(name) {
        return Err(SecretError::BadName(name.to_string()));
    }
    if value.is_empty() {
        return Err(SecretError::Empty);
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(SecretError::TooLarge(value.len()));
    }
    Ok(())
}

fn current_key(kr: &Keyring) -> Result<DataKey, KeyError> {
    kr.active_key(Purpose::Secrets, SECRETS_SCOPE, None, None)
}

/// Stores `value` under `name` (new, or a new version). Returns the version.
pub fn set(kr: &Keyring, name: &str, value: &[u8], expires_ns: Option<i64>) -> Result<i64, SecretError> {
    write(kr, name, value, expires_ns, false)
}

/// Replaces an existing secret's value; keeps its expiry unless one is given.
pub fn rotate(kr: &Keyring, name: &str, value: &[u8], expires_ns: Option<i64>) -> Result<i64, SecretError> {
    write(kr, name, value, expires_ns, true)
}

fn write(
    kr: &Keyring,
    name: &str,
    value: &[u8],
    expires_ns: Option<i64>,
    must_exist: bool,
) -> Result<i64, SecretError> {
    check(name, value)?;
    // The key may be retired between fetching it and the transaction (a
    // re-encryption of the secrets key): then fetch it again (bounded).
    for _ in 0..3 {
        let key = current_key(kr)?;
        if let Some(v) = write_with(kr, &key, name, value, expires_ns, must_exist)? {
            return Ok(v);
        }
    }
    Err(SecretError::Key(KeyError::Keyring(
        "the secrets key kept changing; try again".into(),
    )))
}

/// `Ok(None)`: `key` is no longer the active secrets key; nothing written.
fn write_with(
    kr: &Keyring,
    key: &DataKey,
    name: &str,
    value: &[u8],
    expires_ns: Option<i64>,
    must_exist: bool,
) -> Result<Option<i64>, SecretError> {
    let actor = kr.actor().to_string();
    let action = if must_exist { "secret.rotate" } else { "secret.write" };
    let r = kr.with_index(|idx| {
        let tx = rows::Tx::begin(idx)?;
        if !tx.key_is_active(key.id().0.as_slice())? {
            return Ok(Err(()));
        }
        let now = crate::base::clock::now_ns();
        let (id, version) = match tx.version(name)? {
            Some(old) => {
                tx.set_version(old.id, old.version + 1, now, expires_ns.or(old.expires_ns))?;
                (old.id, old.version + 1)
            }
            None if must_exist => {
                tx.audit(&actor, action, name, Outcome::Failed, "no such secret")?;
                tx.commit()?;
                return Ok(Ok(None));
            }
            None => (tx.insert_empty(name, now, expires_ns)?, 1),
        };
        let (nonce, ct) = seal_field(key, id, value)?;
        tx.store_value(id, key.id().0.as_slice(), nonce.as_slice(), &ct)?;
        tx.audit(&actor, action, name, Outcome::Ok, &format!("version {version}"))?;
        tx.commit()?;
        Ok(Ok(Some(version)))
    })?;
    match r {
        Err(()) => Ok(None),
        Ok(Some(v)) => Ok(Some(v)),
        Ok(None) => Err(SecretError::NotFound(name.to_string())),
    }
}

/// Reads a secret's value; `why` goes to the audit log (e.g. "camera front-door login").
pub fn get(kr: &Keyring, name: &str, why: &str) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let actor = kr.actor().to_string();
    let row = kr.with_index(|idx| Ok(rows::sealed(idx.conn(), name)?))?;
    let audit_read = |outcome: Outcome, detail: &str| {
        kr.with_index(|idx| Ok(audit::append(idx.conn(), &actor, "secret.read", name, outcome, detail)?))
    };
    let Some(SealedSecret {
        id,
        key_id,
        nonce,
        value: ct,
    }) = row
    else {
        audit_read(Outcome::Failed, &format!("{why}: no such secret"))?;
        return Err(SecretError::NotFound(name.to_string()));
    };
    let key_id = KeyId(
        key_id
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::Corrupt(name.to_string()))?,
    );
    let key = match kr.lookup(&key_id) {
        Ok(Some(k)) => k,
        Ok(None) => {
            audit_read(Outcome::Failed, &format!("{why}: its data key is gone"))?;
            return Err(SecretError::Corrupt(name.to_string()));
        }
        Err(e) => {
            audit_read(Outcome::Failed, &format!("{why}: {e}"))?;
            return Err(e.into());
        }
    };
    match open_field(&key, id, &nonce, &ct) {
        Some(v) => {
            audit_read(Outcome::Ok, why)?;
            Ok(v)
        }
        None => {
            audit_read(Outcome::Failed, &format!("{why}: does not decrypt"))?;
            Err(SecretError::Corrupt(name.to_string()))
        }
    }
}

/// Whether a secret of this name exists (no read, nothing audited).
pub fn exists(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    rows::exists(conn, name)
}

/// Names and metadata, never values.
pub fn list(kr: &Keyring) -> Result<Vec<SecretMeta>, SecretError> {
    kr.with_index(|idx| list_in(idx.conn()).map_err(KeyError::from))
        .map_err(SecretError::from)
}

/// The listing straight from a database connection (no KEK needed).
pub fn list_in(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<SecretMeta>> {
    Ok(rows::list(conn)?
        .into_iter()
        .map(|r| {
            let mut k = [0u8; 8];
            if r.key_id.len() == 8 {
                k.copy_from_slice(&r.key_id);
            }
            SecretMeta {
                name: r.name,
                version: r.version,
                key_id: KeyId(k),
                created_ns: r.created_ns,
                updated_ns: r.updated_ns,
                expires_ns: r.expires_ns,
            }
        })
        .collect())
}

pub fn remove(kr: &Keyring, name: &str) -> Result<(), SecretError> {
    let actor = kr.actor().to_string();
    let n = kr.with_index(|idx| {
        let tx = rows::Tx::begin(idx)?;
        let n = tx.delete(name)?;
        tx.audit(
            &actor,
            "secret.remove",
            name,
            if n > 0 { Outcome::Ok } else { Outcome::Failed },
            "",
        )?;
        tx.commit()?;
        Ok(n)
    })?;
    if n == 0 {
        return Err(SecretError::NotFound(name.to_string()));
    }
    Ok(())
}

/// Re-encrypts every secret sealed under `old` with the current secrets key
/// (after `old` was retired), in one transaction. Returns how many.
pub fn reseal_all(kr: &Keyring, old: &KeyId) -> Result<usize, SecretError> {
    let old_key = kr
        .lookup(old)?
        .ok_or_else(|| SecretError::Key(KeyError::Keyring(format!("data key {old} is not in the keyring"))))?;
    let new_key = current_key(kr)?;
    let actor = kr.actor().to_string();
    let n = kr.with_index(|idx| {
        let tx = rows::Tx::begin(idx)?;
        let sealed = tx.sealed_under(old.0.as_slice())?;
        for s in &sealed {
            let v = open_field(&old_key, s.id, &s.nonce, &s.value)
                .ok_or_else(|| KeyError::Keyring(format!("secret \"{}\" does not decrypt", s.name)))?;
            let (n2, c2) = seal_field(&new_key, s.id, &v)?;
            tx.store_value(s.id, new_key.id().0.as_slice(), n2.as_slice(), &c2)?;
        }
        tx.audit(
            &actor,
            "secret.reencrypt",
            &old.to_string(),
            Outcome::Ok,
            &format!("{} secret(s) to key {}", sealed.len(), new_key.id()),
        )?;
        tx.commit()?;
        Ok(sealed.len())
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_are_versioned_and_bound_to_their_row() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("v.db");
        let sealer = crate::keys::keyring::tests_support::file_sealer(d.path());
        crate::keys::keyring::init(&db, &sealer, "t").unwrap();
        let kr = Keyring::open(&db, sealer, "t").unwrap();
        assert_eq!(set(&kr, "front-door", b"hunter2", None).unwrap(), 1);
        assert_eq!(set(&kr, "back-door", b"swordfish", Some(5)).unwrap(), 1);
        assert_eq!(&get(&kr, "front-door", "test").unwrap()[..], b"hunter2");
        assert_eq!(rotate(&kr, "front-door", b"correct horse", None).unwrap(), 2);
        assert!(matches!(rotate(&kr, "nope", b"x", None), Err(SecretError::NotFound(_))));
        assert!(matches!(set(&kr, "bad name", b"x", None), Err(SecretError::BadName(_))));
        assert_eq!(list(&kr).unwrap().len(), 2);
        // Swap the two ciphertexts: neither decrypts in the other's row.
        kr.with_index(|idx| {
            idx.conn().execute_batch(
                "UPDATE secret SET value = (SELECT value FROM secret WHERE name = 'back-door'), \
                 nonce = (SELECT nonce FROM secret WHERE name = 'back-door') WHERE name = 'front-door'",
            )?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(get(&kr, "front-door", "test"), Err(SecretError::Corrupt(_))));
        let log = kr.with_index(|idx| Ok(audit::tail(idx.conn(), 100)?)).unwrap();
        assert!(log.iter().any(|e| e.action == "secret.read" && e.outcome == "failed"));
        assert!(log.iter().any(|e| e.action == "secret.read" && e.outcome == "ok"));
    }
}
