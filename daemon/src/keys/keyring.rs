//! The keyring: data keys (DEKs) wrapped by the key-encryption key (KEK) in
//! SQLite, one per camera per UTC day for recordings and one for the secrets
//! store. The KEK itself is sealed by the TPM ([`crate::keys::sealing`]) and
//! escrowed to the recovery key ([`crate::keys::recovery`]).
//! How a data key is wrapped is [`crate::keys::wrap`]'s.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::db::audit::{self, Outcome};
use crate::db::keyring::{self as rows, NewDataKey, NewKeyring, RotatedKek, WrappedKeyRow};
use crate::db::Index;
use crate::keys::recovery::{self, RecoveryKey};
use crate::keys::sealing::{Kek, KekSealer, Slot};
use crate::keys::{random_bytes, DataKey, KeyError, KeyId, KeyLookup, KeyUnavailable};

use crate::keys::wrap::{kek_id_of, key_id_of};
use crate::keys::wrap::{recording_scope, unwrap_dek, utc_day, wrap_dek, Purpose};

/// The keyring's own row.
#[derive(Clone, Debug)]
pub struct KeyringRow {
    pub kek_id: [u8; 8],
    pub kek_generation: i64,
    pub kek_created_ns: i64,
    pub sealing: String,
    pub pcrs: String,
    pub recovery_pub: [u8; 32],
    pub escrow: Vec<u8>,
    pub created_ns: i64,
    pub rotated_ns: Option<i64>,
}

pub fn keyring_row(index: &Index) -> Result<Option<KeyringRow>, KeyError> {
    let Some(r) = rows::keyring(index.conn())? else {
        return Ok(None);
    };
    let recovery_pub: [u8; 32] = r
        .recovery_pub
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Keyring("recovery public key has the wrong length".into()))?;
    Ok(Some(KeyringRow {
        kek_id: kek_id_of(&r.kek_id)?,
        kek_generation: r.kek_generation,
        kek_created_ns: r.kek_created_ns,
        sealing: r.sealing,
        pcrs: r.pcrs,
        recovery_pub,
        escrow: r.escrow,
        created_ns: r.created_ns,
        rotated_ns: r.rotated_ns,
    }))
}

/// A keyring mutex; a poisoned one (a panic elsewhere) is an error, not a panic.
fn locked<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, KeyError> {
    m.lock().map_err(|_| KeyError::Keyring("keyring lock poisoned".into()))
}

/// The KEK id the keyring row names, read inside a transaction.
fn keyring_kek_id(tx: &rows::Tx<'_>) -> Result<[u8; 8], KeyError> {
    kek_id_of(&tx.kek_id()?)
}

/// Inserts `dek` wrapped under `kek` (the keyring's current KEK, checked by
/// the caller inside `tx`) as the active key of `scope`.
fn insert_wrapped(
    tx: &rows::Tx<'_>,
    kek: &Kek,
    dek: &DataKey,
    purpose: Purpose,
    scope: &str,
    camera_id: Option<i64>,
    day: Option<&str>,
) -> Result<(), KeyError> {
    let (nonce, wrapped) = wrap_dek(kek, dek, purpose.as_str(), scope)?;
    tx.insert_data_key(&NewDataKey {
        id: dek.id().0.as_slice(),
        purpose: purpose.as_str(),
        scope,
        camera_id,
        day,
        created_ns: crate::base::clock::now_ns(),
        kek_id: kek.id().as_slice(),
        nonce: nonce.as_slice(),
        wrapped: &wrapped,
    })?;
    Ok(())
}

/// Serialises key operations across processes (init, rotation, recovery,
/// completing an interrupted rotation): an exclusive lock on `<db>.keys.lock`.
pub struct KeysLock(#[allow(dead_code)] File);

impl KeysLock {
    fn path(db: &Path) -> PathBuf {
        let mut p = db.to_path_buf().into_os_string();
        p.push(".keys.lock");
        PathBuf::from(p)
    }
    /// Waits (bounded: 60 s) for the lock.
    pub fn acquire(db: &Path) -> Result<Self, KeyError> {
        let p = Self::path(db);
        let f = File::create(&p).map_err(|source| KeyError::Io {
            path: p.clone(),
            source,
        })?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(KeysLock(f)),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(_) => {
                    return Err(KeyError::Keyring(format!(
                        "another key operation holds {} (waited 60 s)",
                        p.display()
                    )))
                }
            }
        }
    }
}

/// What `keys init` produced.
pub struct InitReport {
    pub kek_id: [u8; 8],
    pub recovery_key: RecoveryKey,
    /// A sealed file that no keyring referenced was replaced.
    pub replaced_stray: bool,
}

/// What `keys rotate-kek` did.
#[derive(Debug)]
pub struct RotateReport {
    pub old_kek_id: [u8; 8],
    pub new_kek_id: [u8; 8],
    pub generation: i64,
    pub rewrapped: usize,
    pub seal_ms: f64,
    pub rewrap_ms: f64,
}

/// Creates the KEK, seals it, escrows it to a new recovery key and records
/// the keyring. Refuses if a keyring exists.
pub fn init(db: &Path, sealer: &KekSealer, actor: &str) -> Result<InitReport, KeyError> {
    let _lock = KeysLock::acquire(db)?;
    let mut index = Index::open(db).map_err(|e| KeyError::Keyring(e.to_string()))?;
    if let Some(row) = keyring_row(&index)? {
        return Err(KeyError::AlreadyInitialised(vigil_format::hex(&row.kek_id)));
    }
    let kek = Kek::generate()?;
    let recovery_key = RecoveryKey::generate()?;
    let recovery_pub = recovery_key.public_key();
    let escrow = recovery::escrow(&kek, &recovery_pub)?;
    let replaced_stray = sealer.exists(Slot::Current);
    sealer.discard_next()?;
    sealer.seal(&kek, Slot::Current)?;
    // Prove the seal opens before anything depends on it.
    if sealer.unseal(Slot::Current)?.id() != kek.id() {
        return Err(KeyError::Seal("the sealed key did not unseal to the same key".into()));
    }
    let now = crate::base::clock::now_ns();
    let tx = rows::Tx::begin(&mut index)?;
    tx.insert_keyring(&NewKeyring {
        kek_id: kek.id().as_slice(),
        now_ns: now,
        sealing: &sealer.describe(),
        pcrs: sealer.pcrs(),
        recovery_pub: recovery_pub.as_slice(),
        escrow: &escrow,
    })?;
    tx.audit(
        actor,
        "keys.init",
        &vigil_format::hex(&kek.id()),
        Outcome::Ok,
        &sealer.describe(),
    )?;
    tx.commit()?;
    Ok(InitReport {
        kek_id: kek.id(),
        recovery_key,
        replaced_stray,
    })
}

/// Unseals the KEK that matches the keyring, finishing an interrupted
/// rotation if needed: the current slot, else `.next` (promoted).
fn unseal_matching(db: &Path, sealer: &KekSealer, expected: [u8; 8]) -> Result<Kek, KeyError> {
    let first_err = match sealer.unseal(Slot::Current) {
        Ok(k) if k.id() == expected => {
            if sealer.exists(Slot::Next) {
                // A rotation that never committed: its .next is useless. Only
                // removed under the keys lock (a rotation may be running).
                if let Ok(lock) = try_keys_lock(db) {
                    if let Ok(row_now) = Index::open(db)
                        .map_err(|e| KeyError::Keyring(e.to_string()))
                        .and_then(|i| keyring_row(&i))
                    {
                        if row_now.is_some_and(|r| r.kek_id == expected) {
                            let _ = sealer.discard_next();
                        }
                    }
                    drop(lock);
                }
            }
            return Ok(k);
        }
        Ok(k) => KeyError::KekMismatch {
            found: vigil_format::hex(&k.id()),
            expected: vigil_format::hex(&expected),
        },
        Err(e) => e,
    };
    // Under systemd the first try read the unit-start copy; a rotation since
    // then sealed a newer KEK into the file itself.
    if sealer.has_loaded_copy() {
        if let Ok(k) = sealer.unseal_file(Slot::Current) {
            if k.id() == expected {
                return Ok(k);
            }
        }
    }
    if sealer.exists(Slot::Next) {
        let _lock = KeysLock::acquire(db)?;
        if sealer.exists(Slot::Next) {
            if let Ok(k) = sealer.unseal(Slot::Next) {
                if k.id() == expected {
                    sealer.promote_next()?;
                    tracing::warn!(kek = %vigil_format::hex(&expected), "finished an interrupted key rotation");
                    return Ok(k);
                }
            }
        } else if let Ok(k) = sealer.unseal_file(Slot::Current) {
            // Another process finished it meanwhile.
            if k.id() == expected {
                return Ok(k);
            }
        }
    }
    Err(first_err)
}

fn try_keys_lock(db: &Path) -> Result<KeysLock, KeyError> {
    let p = KeysLock::path(db);
    let f = File::create(&p).map_err(|source| KeyError::Io {
        path: p.clone(),
        source,
    })?;
    f.try_lock().map_err(|_| KeyError::Keyring("keys lock busy".into()))?;
    Ok(KeysLock(f))
}

/// The open keyring: the unsealed KEK, a cache of unwrapped data keys, and
/// its own connection to the database.
pub struct Keyring {
    db_path: PathBuf,
    index: Mutex<Index>,
    sealer: KekSealer,
    kek: Mutex<Kek>,
    cache: Mutex<HashMap<KeyId, DataKey>>,
    actor: String,
}

impl Keyring {
    /// Opens the keyring in `db` and unseals its KEK (finishing an
    /// interrupted rotation). Fails closed: no KEK, no keyring.
    pub fn open(db: &Path, sealer: KekSealer, actor: &str) -> Result<Self, KeyError> {
        let index = Index::open(db).map_err(|e| KeyError::Keyring(e.to_string()))?;
        rows::enable_secure_delete(index.conn())?;
        let row = keyring_row(&index)?.ok_or(KeyError::NotInitialised)?;
        let kek = unseal_matching(db, &sealer, row.kek_id)?;
        if sealer.is_development() {
            tracing::warn!(
                key_file = %sealer.path(Slot::Current).display(),
                "DEVELOPMENT KEY SOURCE: the key-encryption key is a plain file, not sealed by a TPM; \
                 do not use this on a deployed box"
            );
        }
        Ok(Keyring {
            db_path: db.to_path_buf(),
            index: Mutex::new(index),
            sealer,
            kek: Mutex::new(kek),
            cache: Mutex::new(HashMap::new()),
            actor: actor.to_string(),
        })
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn sealer(&self) -> &KekSealer {
        &self.sealer
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Runs `f` with the keyring's database connection.
    pub fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T, KeyError>) -> Result<T, KeyError> {
        let mut idx = locked(&self.index)?;
        f(&mut idx)
    }

    fn kek_id(&self) -> Result<[u8; 8], KeyError> {
        Ok(locked(&self.kek)?.id())
    }

    /// Re-reads the keyring's KEK id and, if another process rotated the
    /// KEK, unseals the new one.
    fn refresh_kek(&self, expected: [u8; 8]) -> Result<(), KeyError> {
        if self.kek_id()? == expected {
            return Ok(());
        }
        let k = unseal_matching(&self.db_path, &self.sealer, expected)?;
        tracing::info!(kek = %vigil_format::hex(&expected), "the key-encryption key was rotated; reloaded");
        *locked(&self.kek)? = k;
        Ok(())
    }

    fn unwrap_row(
        &self,
        id: KeyId,
        purpose: &str,
        scope: &str,
        kek_id: [u8; 8],
        nonce: &[u8],
        wrapped: &[u8],
    ) -> Result<DataKey, KeyError> {
        self.refresh_kek(kek_id)?;
        let kek = locked(&self.kek)?;
        unwrap_dek(&kek, id, purpose, scope, nonce, wrapped)
    }

    fn cache_put(&self, k: &DataKey) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(k.id(), k.clone());
        }
    }

    fn cache_get(&self, id: &KeyId) -> Option<DataKey> {
        self.cache.lock().ok().and_then(|c| c.get(id).cloned())
    }

    fn cache_drop(&self, id: &KeyId) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(id);
        }
    }

    /// The active key of `scope`, created (wrapped under the current KEK) if
    /// there is none.
    pub fn active_key(
        &self,
        purpose: Purpose,
        scope: &str,
        camera_id: Option<i64>,
        day: Option<&str>,
    ) -> Result<DataKey, KeyError> {
        for _ in 0..3 {
            let row = self.with_index(|idx| Ok(rows::active_key(idx.conn(), scope)?))?;
            if let Some(r) = row {
                let id = key_id_of(&r.id)?;
                if let Some(k) = self.cache_get(&id) {
                    return Ok(k);
                }
                let k = self.unwrap_row(id, purpose.as_str(), scope, kek_id_of(&r.kek_id)?, &r.nonce, &r.wrapped)?;
                self.cache_put(&k);
                return Ok(k);
            }
            match self.create_key(purpose, scope, camera_id, day) {
                Ok(Some(k)) => return Ok(k),
                Ok(None) => continue, // lost a race or the KEK rotated: look again
                Err(e) => return Err(e),
            }
        }
        Err(KeyError::Keyring(format!("could not create a data key for {scope}")))
    }

    /// Inserts a new active key for `scope` in one transaction that checks the
    /// KEK it is wrapped under is still the keyring's. `None`: try again.
    fn create_key(
        &self,
        purpose: Purpose,
        scope: &str,
        camera_id: Option<i64>,
        day: Option<&str>,
    ) -> Result<Option<DataKey>, KeyError> {
        let dek = DataKey::new(KeyId(random_bytes::<8>()?), random_bytes::<32>()?);
        let mut idx = locked(&self.index)?;
        let tx = rows::Tx::begin(&mut idx)?;
        let current = keyring_kek_id(&tx)?;
        let kek = locked(&self.kek)?;
        if kek.id() != current {
            drop(kek);
            drop(tx);
            drop(idx);
            self.refresh_kek(current)?;
            return Ok(None);
        }
        if tx.has_active_key(scope)? {
            return Ok(None);
        }
        insert_wrapped(&tx, &kek, &dek, purpose, scope, camera_id, day)?;
        tx.commit()?;
        drop(kek);
        self.cache_put(&dek);
        tracing::info!(key = %dek.id(), scope, "new data key");
        Ok(Some(dek))
    }

    /// Takes in a recording key from elsewhere (a replica restored with the
    /// recovery key), wrapped under the current KEK, so that the recordings
    /// it opens can be read here; it never becomes a camera's active key.
    /// Returns false when the keyring has it already.
    pub fn adopt_recording_key(&self, dek: &DataKey, camera_id: i64, day: &str) -> Result<bool, KeyError> {
        if self.lookup(&dek.id())?.is_some() {
            return Ok(false);
        }
        let scope = format!("restored:{}", vigil_format::hex(&dek.id().0));
        let mut idx = locked(&self.index)?;
        let tx = rows::Tx::begin(&mut idx)?;
        let current = keyring_kek_id(&tx)?;
        let kek = locked(&self.kek)?;
        if kek.id() != current {
            return Err(KeyError::Keyring(
                "the key-encryption key is being rotated; try again".into(),
            ));
        }
        insert_wrapped(&tx, &kek, dek, Purpose::Recording, &scope, Some(camera_id), Some(day))?;
        tx.commit()?;
        drop(kek);
        self.cache_put(dek);
        Ok(true)
    }

    /// The data key `id`, if the keyring still has it.
    pub fn lookup(&self, id: &KeyId) -> Result<Option<DataKey>, KeyError> {
        let row = self.with_index(|idx| Ok(rows::data_key(idx.conn(), id.0.as_slice())?))?;
        let Some(WrappedKeyRow {
            purpose,
            scope,
            kek_id,
            nonce,
            wrapped,
            ..
        }) = row
        else {
            // Shredded (perhaps by another process): forget it here too.
            self.cache_drop(id);
            return Ok(None);
        };
        if let Some(k) = self.cache_get(id) {
            return Ok(Some(k));
        }
        let k = self.unwrap_row(*id, &purpose, &scope, kek_id_of(&kek_id)?, &nonce, &wrapped)?;
        self.cache_put(&k);
        Ok(Some(k))
    }

    /// Forgets cached copies of keys (after shredding them).
    pub fn forget(&self, ids: &[KeyId]) {
        ids.iter().for_each(|id| self.cache_drop(id));
    }

    /// Destroys recording keys whose recordings are all gone (deleted by
    /// retention or by hand), except today's and yesterday's, which a
    /// recording may still be about to use. Returns the keys destroyed.
    pub fn prune_unused(&self, now_ns: i64) -> Result<Vec<KeyId>, KeyError> {
        let keep_from = utc_day(now_ns - 86_400_000_000_000);
        let actor = self.actor.clone();
        let ids = self.with_index(|idx| {
            let tx = rows::Tx::begin(idx)?;
            // A key created in the last hour may be about to get its first
            // recording (an import of old footage): never pruned.
            let ids = tx.unused_recording_keys(&keep_from, now_ns - 3_600_000_000_000)?;
            for id in &ids {
                tx.delete_data_key(id)?;
            }
            if !ids.is_empty() {
                tx.audit(
                    &actor,
                    "keys.prune",
                    &format!("{} data key(s)", ids.len()),
                    Outcome::Ok,
                    "no recording uses them any more",
                )?;
            }
            tx.commit()?;
            ids.iter().map(|v| key_id_of(v)).collect::<Result<Vec<_>, _>>()
        })?;
        self.forget(&ids);
        Ok(ids)
    }

    /// A new KEK: sealed into `.next`, every DEK rewrapped and the keyring
    /// row replaced in one transaction, then `.next` becomes current. A crash
    /// at any point leaves the old or the new KEK working (see `open`).
    pub fn rotate_kek(&self) -> Result<RotateReport, KeyError> {
        let _lock = KeysLock::acquire(&self.db_path)?;
        let row = self
            .with_index(|idx| keyring_row(idx))?
            .ok_or(KeyError::NotInitialised)?;
        self.refresh_kek(row.kek_id)?;
        let old_id = row.kek_id;
        let new = Kek::generate()?;
        let new_id = new.id();
        let escrow = recovery::escrow(&new, &row.recovery_pub)?;
        let t0 = std::time::Instant::now();
        self.sealer.discard_next()?;
        self.sealer.seal(&new, Slot::Next)?;
        if self.sealer.unseal(Slot::Next)?.id() != new_id {
            return Err(KeyError::Seal("the new key did not unseal to the same key".into()));
        }
        let seal_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = std::time::Instant::now();
        let rewrapped = {
            let mut idx = locked(&self.index)?;
            let old = locked(&self.kek)?;
            let tx = rows::Tx::begin(&mut idx)?;
            if keyring_kek_id(&tx)? != old_id {
                return Err(KeyError::Keyring(
                    "the keyring changed during rotation; try again".into(),
                ));
            }
            let rows = tx.data_keys()?;
            for r in &rows {
                let id = key_id_of(&r.id)?;
                if kek_id_of(&r.kek_id)? != old_id {
                    return Err(KeyError::Keyring(format!(
                        "data key {id} is wrapped under an unknown key-encryption key"
                    )));
                }
                let dek = unwrap_dek(&old, id, &r.purpose, &r.scope, &r.nonce, &r.wrapped)?;
                let (n2, w2) = wrap_dek(&new, &dek, &r.purpose, &r.scope)?;
                tx.rewrap_data_key(id.0.as_slice(), new_id.as_slice(), n2.as_slice(), &w2)?;
            }
            let now = crate::base::clock::now_ns();
            tx.rotate_kek(&RotatedKek {
                kek_id: new_id.as_slice(),
                now_ns: now,
                escrow: &escrow,
                sealing: &self.sealer.describe(),
                pcrs: self.sealer.pcrs(),
            })?;
            tx.audit(
                &self.actor,
                "keys.rotate-kek",
                &vigil_format::hex(&new_id),
                Outcome::Ok,
                &format!(
                    "from {} ; {} data keys rewrapped",
                    vigil_format::hex(&old_id),
                    rows.len()
                ),
            )?;
            tx.commit()?;
            rows.len()
        };
        let rewrap_ms = t1.elapsed().as_secs_f64() * 1e3;
        self.sealer.promote_next()?;
        *locked(&self.kek)? = new;
        // The old wrapped forms linger in the WAL until a checkpoint.
        let _ = self.with_index(checkpoint_truncate);
        Ok(RotateReport {
            old_kek_id: old_id,
            new_kek_id: new_id,
            generation: row.kek_generation + 1,
            rewrapped,
            seal_ms,
            rewrap_ms,
        })
    }
}

impl KeyLookup for Keyring {
    fn data_key(&self, id: &KeyId) -> Result<Option<DataKey>, KeyUnavailable> {
        Ok(self.lookup(id)?)
    }
    fn recording_key(&self, camera_id: i64, wall_ns: i64) -> Result<DataKey, KeyUnavailable> {
        let (scope, day) = recording_scope(camera_id, wall_ns);
        Ok(self.active_key(Purpose::Recording, &scope, Some(camera_id), Some(&day))?)
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`, retried while readers hold old pages
/// (bounded: 100 x 50 ms). Returns whether the WAL was emptied.
pub fn checkpoint_truncate(idx: &mut Index) -> Result<bool, KeyError> {
    for _ in 0..100 {
        if rows::checkpoint_truncate_once(idx.conn())? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(false)
}

/// Re-seals the KEK after a board swap or a wiped TPM: the recovery key
/// opens the escrowed KEK, which is sealed again with the configured sealer.
pub fn recover(db: &Path, sealer: &KekSealer, recovery_key: &RecoveryKey, actor: &str) -> Result<[u8; 8], KeyError> {
    let _lock = KeysLock::acquire(db)?;
    let index = Index::open(db).map_err(|e| KeyError::Keyring(e.to_string()))?;
    let row = keyring_row(&index)?.ok_or(KeyError::NotInitialised)?;
    let kek = match recovery_key.open_escrow(&row.recovery_pub, &row.kek_id, &row.escrow) {
        Ok(k) => k,
        Err(e) => {
            audit::append(
                index.conn(),
                actor,
                "keys.recover",
                &vigil_format::hex(&row.kek_id),
                Outcome::Denied,
                &e.to_string(),
            )?;
            return Err(e);
        }
    };
    sealer.discard_next()?;
    sealer.seal(&kek, Slot::Current)?;
    if sealer.unseal(Slot::Current)?.id() != row.kek_id {
        return Err(KeyError::Seal(
            "the re-sealed key did not unseal to the same key".into(),
        ));
    }
    rows::set_sealing(index.conn(), &sealer.describe(), sealer.pcrs())?;
    audit::append(
        index.conn(),
        actor,
        "keys.recover",
        &vigil_format::hex(&row.kek_id),
        Outcome::Ok,
        &format!("re-sealed: {}", sealer.describe()),
    )?;
    Ok(row.kek_id)
}

/// `keys status`: everything that can be said without unsealing.
#[derive(Debug)]
pub struct Status {
    pub keyring: Option<KeyringRow>,
    pub recording_keys: i64,
    pub secrets_keys: i64,
    pub retired_keys: i64,
    pub oldest_ns: Option<i64>,
    pub newest_ns: Option<i64>,
    pub pending_jobs: Vec<(KeyId, String)>,
}

pub fn status(index: &Index) -> Result<Status, KeyError> {
    let keyring = keyring_row(index)?;
    let counts = rows::key_counts(index.conn())?;
    let jobs = rows::key_jobs(index.conn())?;
    let mut pending_jobs = Vec::new();
    for (id, reason) in jobs {
        pending_jobs.push((key_id_of(&id)?, reason));
    }
    Ok(Status {
        keyring,
        recording_keys: counts.recording_keys,
        secrets_keys: counts.secrets_keys,
        retired_keys: counts.retired_keys,
        oldest_ns: counts.oldest_ns,
        newest_ns: counts.newest_ns,
        pending_jobs,
    })
}

#[cfg(test)]
pub mod tests_support {
    use super::*;
    use crate::config::{KeySourceConfig, Origin};

    pub fn file_sealer(dir: &Path) -> KekSealer {
        KekSealer::new(KeySourceConfig::File {
            path: dir.join("kek.key"),
            origin: Origin {
                file: "t".into(),
                line: 1,
                key: "keys.file".into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::file_sealer;
    use super::*;

    /// A temporary directory with an initialised keyring (development KEK file).
    fn initialised() -> (tempfile::TempDir, PathBuf, KekSealer) {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("v.db");
        let sealer = file_sealer(d.path());
        init(&db, &sealer, "t").unwrap();
        (d, db, sealer)
    }

    #[test]
    fn keys_per_camera_per_day_survive_rotation_and_recovery() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("v.db");
        let sealer = file_sealer(d.path());
        assert!(matches!(
            Keyring::open(&db, sealer.clone(), "t"),
            Err(KeyError::NotInitialised)
        ));
        let rep = init(&db, &sealer, "t").unwrap();
        assert!(matches!(init(&db, &sealer, "t"), Err(KeyError::AlreadyInitialised(_))));
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        let day1 = 1_700_000_000_000_000_000;
        let a = kr.recording_key(1, day1).unwrap();
        assert_eq!(kr.recording_key(1, day1 + 1_000_000_000).unwrap().id(), a.id());
        let b = kr.recording_key(1, day1 + 86_400_000_000_000).unwrap();
        let c = kr.recording_key(2, day1).unwrap();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), c.id());

        let r = kr.rotate_kek().unwrap();
        assert_eq!(r.rewrapped, 3);
        assert_ne!(r.new_kek_id, rep.kek_id);
        drop(kr);
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        assert_eq!(kr.lookup(&a.id()).unwrap().unwrap().bytes(), a.bytes());

        // The sealed KEK is lost (a wiped TPM): the recovery key restores it,
        // even though it was escrowed before the rotation.
        std::fs::remove_file(sealer.path(Slot::Current)).unwrap();
        drop(kr);
        assert!(Keyring::open(&db, sealer.clone(), "t").is_err());
        let wrong = RecoveryKey::generate().unwrap();
        assert!(matches!(recover(&db, &sealer, &wrong, "t"), Err(KeyError::Recovery(_))));
        recover(&db, &sealer, &rep.recovery_key, "t").unwrap();
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        assert_eq!(kr.lookup(&c.id()).unwrap().unwrap().bytes(), c.bytes());
    }

    #[test]
    fn an_interrupted_rotation_is_finished_or_discarded() {
        let (_d, db, sealer) = initialised();
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        let a = kr.recording_key(1, 0).unwrap();
        // Crash after sealing .next, before the commit: .next is discarded.
        sealer.seal(&Kek::generate().unwrap(), Slot::Next).unwrap();
        drop(kr);
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        assert!(!sealer.exists(Slot::Next));
        assert!(kr.lookup(&a.id()).unwrap().is_some());
        // Crash after the commit, before the rename: .next is promoted.
        let cur = std::fs::read(sealer.path(Slot::Current)).unwrap();
        kr.rotate_kek().unwrap();
        std::fs::rename(sealer.path(Slot::Current), sealer.path(Slot::Next)).unwrap();
        std::fs::write(sealer.path(Slot::Current), cur).unwrap();
        drop(kr);
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        assert!(!sealer.exists(Slot::Next));
        assert_eq!(kr.lookup(&a.id()).unwrap().unwrap().bytes(), a.bytes());
    }

    #[test]
    fn a_running_keyring_follows_a_rotation_made_by_another_process() {
        let (_d, db, sealer) = initialised();
        let daemon = Keyring::open(&db, sealer.clone(), "daemon").unwrap();
        let cli = Keyring::open(&db, sealer, "cli").unwrap();
        let before = daemon.recording_key(1, 0).unwrap();
        cli.rotate_kek().unwrap();
        // A key the CLI creates under the new KEK, and a new key the daemon
        // creates: both work in the daemon, which still held the old KEK.
        let by_cli = cli.recording_key(2, 0).unwrap();
        assert_eq!(daemon.lookup(&by_cli.id()).unwrap().unwrap().bytes(), by_cli.bytes());
        let by_daemon = daemon.recording_key(3, 0).unwrap();
        assert_eq!(cli.lookup(&by_daemon.id()).unwrap().unwrap().bytes(), by_daemon.bytes());
        assert_eq!(daemon.recording_key(1, 0).unwrap().id(), before.id());
    }

    #[test]
    fn keys_without_recordings_are_pruned_after_their_day() {
        let (_d, db, sealer) = initialised();
        let kr = Keyring::open(&db, sealer, "t").unwrap();
        let day = 86_400_000_000_000i64;
        let now = crate::base::clock::now_ns();
        let old = kr.recording_key(1, now - 5 * day).unwrap();
        let recent = kr.recording_key(1, now - day).unwrap();
        let today = kr.recording_key(1, now).unwrap();
        // Just created: kept for an hour whatever its day.
        assert!(kr.prune_unused(now).unwrap().is_empty());
        kr.with_index(|i| {
            i.conn()
                .execute("UPDATE data_key SET created_ns = ?1", [now - 2 * 3_600_000_000_000])?;
            Ok(())
        })
        .unwrap();
        let pruned = kr.prune_unused(now).unwrap();
        assert_eq!(pruned, vec![old.id()]);
        assert!(kr.lookup(&old.id()).unwrap().is_none());
        assert!(kr.lookup(&recent.id()).unwrap().is_some());
        assert!(kr.lookup(&today.id()).unwrap().is_some());
    }

    #[test]
    fn a_moved_or_edited_row_does_not_unwrap() {
        let (_d, db, sealer) = initialised();
        let kr = Keyring::open(&db, sealer.clone(), "t").unwrap();
        let a = kr.recording_key(1, 0).unwrap();
        drop(kr);
        let idx = Index::open(&db).unwrap();
        idx.conn()
            .execute("UPDATE data_key SET scope = 'camera:2:1970-01-01'", [])
            .unwrap();
        drop(idx);
        let kr = Keyring::open(&db, sealer, "t").unwrap();
        assert!(matches!(kr.lookup(&a.id()), Err(KeyError::Unwrap(_))));
    }
}
