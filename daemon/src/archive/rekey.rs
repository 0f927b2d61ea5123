//! Jobs that change which data key protects footage:
//!
//! - **Re-encryption** of everything under a compromised data key: the key is
//!   retired (no new recording uses it), each recording is re-sealed into a
//!   new file under a fresh key, verified, the row swapped to it and the old
//!   file deleted; then the key is destroyed. Each step is durable and the
//!   job is recorded in `key_job`, so running it again after a `kill -9`
//!   carries on where it stopped.
//! - **Crypto-shredding** of chosen recordings: the other recordings that
//!   share their data keys are re-encrypted first (the job above), then the
//!   keys and the recordings' rows go in one transaction (secure_delete on),
//!   the WAL is checkpointed and truncated, and the files are unlinked. Copies
//!   of the files made earlier can then be decrypted by no one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::db::audit::Outcome;
use crate::db::keyring as keyring_rows;
use crate::db::{Index, RecordingRow, SwappedFile};
use crate::keys::keyring::{checkpoint_truncate, Keyring};
use crate::keys::wrap::Purpose;
use crate::keys::{random_bytes, KeyError, KeyId, KeyLookup};
use crate::storage::{Storage, StorageError};
use vigil_format::vseg::{self, FormatError, Header, SegmentReader};

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Index(#[from] crate::db::IndexError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("recording {id}: {source}")]
    Format {
        id: i64,
        #[source]
        source: FormatError,
    },
    #[error("recording {id}: the re-encrypted copy did not verify: {what}")]
    CopyFailed { id: i64, what: String },
    #[error(
        "recording {id} is still being written under this key after waiting {waited_s} s; \
         run the command again once it has closed"
    )]
    StillWriting { id: i64, waited_s: u64 },
    #[error("no data key {0} in the keyring")]
    UnknownKey(KeyId),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Secret(#[from] crate::keys::secrets::SecretError),
}

impl From<rusqlite::Error> for RekeyError {
    fn from(e: rusqlite::Error) -> Self {
        RekeyError::Key(KeyError::Sql(e))
    }
}

impl From<crate::keys::RandomError> for RekeyError {
    fn from(e: crate::keys::RandomError) -> Self {
        RekeyError::Key(e.into())
    }
}

impl From<crate::keys::KeyUnavailable> for RekeyError {
    fn from(e: crate::keys::KeyUnavailable) -> Self {
        RekeyError::Key(e.into())
    }
}

/// What a re-encryption or shred did.
#[derive(Debug, Default)]
pub struct RekeyReport {
    pub reencrypted: Vec<i64>,
    pub reencrypted_bytes: u64,
    pub shredded: Vec<i64>,
    pub shredded_bytes: u64,
    pub keys_destroyed: Vec<KeyId>,
    pub secrets_resealed: usize,
    /// Recordings a shred left alone because they are under a legal hold.
    pub held_skipped: Vec<i64>,
    /// Whether the WAL was checkpointed and truncated afterwards.
    pub wal_truncated: bool,
}

fn key_purpose(kr: &Keyring, id: &KeyId) -> Result<Option<String>, KeyError> {
    kr.with_index(|idx| Ok(keyring_rows::data_key_purpose(idx.conn(), id.0.as_slice())?))
}

/// Retires `keys` (no new recording or secret uses them) and records the job.
fn start_job(kr: &Keyring, keys: &[KeyId], reason: &str) -> Result<(), KeyError> {
    let actor = kr.actor().to_string();
    kr.with_index(|idx| {
        let tx = keyring_rows::Tx::begin(idx)?;
        for k in keys {
            tx.retire_data_key(k.0.as_slice())?;
            if tx.start_reencrypt_job(k.0.as_slice(), reason, crate::base::clock::now_ns())? {
                tx.audit(&actor, "keys.retire", &k.to_string(), Outcome::Ok, reason)?;
            }
        }
        tx.commit()?;
        Ok(())
    })
}

/// Re-seals one finished recording under the current key of its camera and
/// day, verifies the copy, swaps the row and deletes the old file.
fn reseal_recording(kr: &Keyring, storage: &Storage, index: &mut Index, rec: &RecordingRow) -> Result<u64, RekeyError> {
    let fmt = |source| RekeyError::Format { id: rec.id, source };
    let old_path = storage.path_of(&rec.file_name);
    let old_header = SegmentReader::open(&old_path, kr).map_err(fmt)?.header().clone();
    let new_key = kr.recording_key(rec.camera_id, rec.start_wall_ns)?;
    if new_key.id().0.as_slice() == rec.key_id.as_slice() {
        return Err(RekeyError::Refused(format!(
            "recording {}: its key {} is still active",
            rec.id,
            new_key.id()
        )));
    }
    let file_id = random_bytes::<16>()?;
    let header = Header {
        key_id: new_key.id(),
        file_id,
        salt: random_bytes::<32>()?,
        ..old_header
    };
    let new_name = storage.new_file_name(&rec.camera, &file_id)?;
    let new_path = storage.path_of(&new_name);
    // Until the swap commits, the copy is garbage: a crash leaves it to be collected.
    index.queue_garbage(
        &new_name,
        rec.id,
        "re-encryption in progress",
        crate::base::clock::now_ns(),
    )?;
    let finished = vseg::reseal(&old_path, kr, &new_path, &header, &new_key).map_err(fmt)?;
    let mut r = SegmentReader::open(&new_path, kr).map_err(fmt)?;
    let scan = r.scan().map_err(fmt)?;
    if let Some(e) = scan.error {
        return Err(RekeyError::CopyFailed {
            id: rec.id,
            what: e.to_string(),
        });
    }
    if scan.sha256 != finished.sha256 || scan.file_len != finished.bytes || scan.summary.frames != rec.frames as u64 {
        return Err(RekeyError::CopyFailed {
            id: rec.id,
            what: format!(
                "{} frames / {} bytes, expected {} frames",
                scan.summary.frames, scan.file_len, rec.frames
            ),
        });
    }
    let swapped = index.swap_recording_file(
        rec.id,
        &rec.key_id,
        &SwappedFile {
            file_name: &new_name,
            file_id: &file_id,
            key_id: &new_key.id().0,
            sha256: &finished.sha256,
        },
        crate::base::clock::now_ns(),
    )?;
    if !swapped {
        // Deleted or re-keyed meanwhile: the copy stays queued as garbage.
        return Ok(0);
    }
    storage.collect_garbage(index)?;
    Ok(finished.bytes)
}

/// Re-encrypts the recordings under `keys` (except `skip`), waiting up to
/// `wait` for any still being written to close.
fn reencrypt_recordings(
    kr: &Keyring,
    storage: &Storage,
    index: &mut Index,
    keys: &[KeyId],
    skip: &BTreeSet<i64>,
    wait: Duration,
    report: &mut RekeyReport,
) -> Result<(), RekeyError> {
    let deadline = Instant::now() + wait;
    for k in keys {
        // Bounded: each pass re-encrypts or waits; at most `wait` of waiting.
        loop {
            let todo: Vec<RecordingRow> = index
                .recordings_with_key(&k.0)?
                .into_iter()
                .filter(|r| !skip.contains(&r.id))
                .collect();
            if todo.is_empty() {
                break;
            }
            let mut progressed = false;
            for rec in &todo {
                if rec.state == "writing" {
                    continue;
                }
                let bytes = reseal_recording(kr, storage, index, rec)?;
                report.reencrypted.push(rec.id);
                report.reencrypted_bytes += bytes;
                progressed = true;
            }
            if !progressed {
                if Instant::now() >= deadline {
                    return Err(RekeyError::StillWriting {
                        id: todo[0].id,
                        waited_s: wait.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
    Ok(())
}

/// What [`destroy`] removes, and how the audit entry describes it.
struct Destruction<'a> {
    keys: &'a [KeyId],
    shred: &'a [RecordingRow],
    action: &'a str,
    detail: &'a str,
}

/// Destroys the keys and deletes the rows of the shredded recordings in one
/// transaction, then checkpoints the WAL and unlinks the files.
fn destroy(
    kr: &Keyring,
    storage: &Storage,
    index: &mut Index,
    d: Destruction<'_>,
    report: &mut RekeyReport,
) -> Result<(), RekeyError> {
    let Destruction {
        keys,
        shred,
        action,
        detail,
    } = d;
    let actor = kr.actor().to_string();
    kr.with_index(|idx| {
        let tx = keyring_rows::Tx::begin(idx)?;
        for rec in shred {
            tx.queue_deletion(rec.id, action, crate::base::clock::now_ns())
                .map_err(|e| KeyError::Keyring(e.to_string()))?;
        }
        for k in keys {
            let (users, secrets) = tx.key_users(k.0.as_slice())?;
            if users + secrets > 0 {
                return Err(KeyError::Keyring(format!(
                    "data key {k} still protects {users} recording(s) and {secrets} secret(s); not destroyed"
                )));
            }
            tx.delete_data_key(k.0.as_slice())?;
            tx.delete_key_job(k.0.as_slice())?;
        }
        tx.audit(
            &actor,
            action,
            &keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
            Outcome::Ok,
            detail,
        )?;
        tx.commit()?;
        Ok(())
    })?;
    kr.forget(keys);
    report.keys_destroyed.extend_from_slice(keys);
    report.wal_truncated = kr.with_index(checkpoint_truncate)?;
    // This connection's view too (it may hold the WAL open).
    let _ = checkpoint_truncate(index);
    storage.collect_garbage(index)?;
    Ok(())
}

/// Re-encrypts everything under the compromised data key `key` and destroys
/// it. Resumable: run it again after an interruption.
pub fn reencrypt(
    kr: &Keyring,
    storage: &Storage,
    key: KeyId,
    reason: &str,
    wait: Duration,
) -> Result<RekeyReport, RekeyError> {
    let mut report = RekeyReport::default();
    let purpose = key_purpose(kr, &key)?.ok_or(RekeyError::UnknownKey(key))?;
    start_job(kr, &[key], reason)?;
    let mut index = Index::open(kr.db_path())?;
    if purpose == Purpose::Secrets.as_str() {
        report.secrets_resealed = crate::keys::secrets::reseal_all(kr, &key)?;
    } else {
        reencrypt_recordings(kr, storage, &mut index, &[key], &BTreeSet::new(), wait, &mut report)?;
    }
    let detail = format!(
        "reason: {reason}; re-encrypted recordings {:?} ({} bytes), {} secret(s)",
        report.reencrypted, report.reencrypted_bytes, report.secrets_resealed
    );
    destroy(
        kr,
        storage,
        &mut index,
        Destruction {
            keys: &[key],
            shred: &[],
            action: "keys.reencrypt",
            detail: &detail,
        },
        &mut report,
    )?;
    Ok(report)
}

/// Which recordings to shred.
#[derive(Clone, Debug)]
pub enum ShredTarget {
    /// Every recording of `camera` that ends at or before `before_ns`.
    CameraBefore {
        camera: String,
        before_ns: i64,
    },
    Recording(i64),
}

/// Crypto-shreds the target recordings (see the module doc). Resumable.
/// Recordings under a legal hold are skipped (a camera-and-date shred) or
/// refused (one recording) unless `override_hold`, which is audited.
pub fn shred(
    kr: &Keyring,
    storage: &Storage,
    target: &ShredTarget,
    wait: Duration,
    override_hold: bool,
) -> Result<RekeyReport, RekeyError> {
    let mut report = RekeyReport::default();
    let mut index = Index::open(kr.db_path())?;
    let mut recs: Vec<RecordingRow> = match target {
        ShredTarget::CameraBefore { camera, before_ns } => {
            if index.find_camera_id(camera)?.is_none() {
                return Err(RekeyError::Refused(format!(
                    "no camera named \"{camera}\" in the index"
                )));
            }
            index
                .recordings(Some(camera))?
                .into_iter()
                .filter(|r| r.end_wall_ns() <= *before_ns)
                .collect()
        }
        ShredTarget::Recording(id) => match index.recording(*id)? {
            Some(r) => vec![r],
            None => return Err(RekeyError::Refused(format!("no recording {id}"))),
        },
    };
    let mut held = Vec::new();
    for r in &recs {
        if crate::db::holds::is_held(index.conn(), r.id)? {
            held.push(r.id);
        }
    }
    if !held.is_empty() {
        if override_hold {
            crate::db::audit::append(
                index.conn(),
                kr.actor(),
                "shred.override-hold",
                &format!("{target:?}"),
                crate::db::audit::Outcome::Ok,
                &format!("shredding recording(s) under legal hold: {held:?}"),
            )?;
        } else if let ShredTarget::Recording(id) = target {
            return Err(RekeyError::Refused(format!(
                "recording {id} is under a legal hold (see `vigil hold list`); an admin may shred it anyway with \
                 --override-hold, which is audited"
            )));
        } else {
            recs.retain(|r| !held.contains(&r.id));
            report.held_skipped = held;
        }
    }
    if let Some(r) = recs.iter().find(|r| r.state == "writing") {
        return Err(RekeyError::Refused(format!(
            "recording {} is still being written; shred it once it has closed",
            r.id
        )));
    }
    if recs.is_empty() {
        return Ok(report);
    }
    let mut keys = BTreeSet::new();
    for r in &recs {
        let id: [u8; 8] = r
            .key_id
            .as_slice()
            .try_into()
            .map_err(|_| RekeyError::Refused(format!("recording {} has a malformed key id", r.id)))?;
        keys.insert(KeyId(id));
    }
    let keys: Vec<KeyId> = keys.into_iter().collect();
    let ids: BTreeSet<i64> = recs.iter().map(|r| r.id).collect();
    let reason = match target {
        ShredTarget::CameraBefore { camera, before_ns } => {
            format!("shred {camera} before {}", crate::base::time::format_ns(*before_ns))
        }
        ShredTarget::Recording(id) => format!("shred recording {id}"),
    };
    start_job(kr, &keys, &reason)?;
    // The other recordings under these keys move to fresh keys first.
    reencrypt_recordings(kr, storage, &mut index, &keys, &ids, wait, &mut report)?;
    let bytes: i64 = recs.iter().map(|r| r.bytes).sum();
    let ranges: Vec<String> = recs
        .iter()
        .map(|r| {
            format!(
                "{}:{}..{}",
                r.id,
                crate::base::time::format_ns(r.start_wall_ns),
                crate::base::time::format_ns(r.end_wall_ns())
            )
        })
        .collect();
    let detail = format!(
        "{reason}; {} recording(s), {bytes} bytes: {}; siblings re-encrypted: {:?}",
        recs.len(),
        ranges.join(" "),
        report.reencrypted
    );
    destroy(
        kr,
        storage,
        &mut index,
        Destruction {
            keys: &keys,
            shred: &recs,
            action: "keys.shred",
            detail: &detail,
        },
        &mut report,
    )?;
    report.shredded = ids.into_iter().collect();
    report.shredded_bytes = bytes as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{audit, NewRecording};
    use vigil_format::vseg::{Chunk, Codec, FrameMeta, SegmentWriter, StreamInfo};

    fn record(kr: &Keyring, storage: &Storage, index: &mut Index, camera: &str, wall_ns: i64) -> (i64, Vec<u8>) {
        let cam = index.camera_id(camera).unwrap();
        let key = kr.recording_key(cam, wall_ns).unwrap();
        let file_id = random_bytes::<16>().unwrap();
        let header = Header {
            max_record_plaintext: vseg::DEFAULT_MAX_RECORD_PLAINTEXT,
            key_id: key.id(),
            file_id,
            camera_id: cam as u64,
            start_wall_ns: wall_ns,
            salt: random_bytes::<32>().unwrap(),
        };
        let si = StreamInfo {
            codec: Codec::H264,
            timescale: 90000,
            width: 64,
            height: 64,
            start_pts: 0,
            sample_entry: vec![1, 2, 3],
            audio: None,
        };
        let name = storage.new_file_name(camera, &file_id).unwrap();
        let mut w = SegmentWriter::create(&storage.path_of(&name), &header, &key, &si).unwrap();
        let id = index
            .insert_recording(&NewRecording {
                camera_id: cam,
                file_name: &name,
                file_id: &file_id,
                key_id: &key.id().0,
                codec: "h264",
                start_wall_ns: wall_ns,
                observed_wall_ns: wall_ns,
                timescale: 90000,
                start_pts: 0,
                bytes: w.len() as i64,
                gap_alert_after_ns: None,
                continues_previous: false,
            })
            .unwrap();
        let mut buf = Vec::new();
        let data = vec![0x42u8; 1000];
        Chunk::encode_into(
            0,
            &[FrameMeta {
                duration: 3000,
                size: 1000,
                key: true,
            }],
            &[&data],
            &mut buf,
        );
        w.append_chunk(&mut buf, 1, 3000).unwrap();
        let f = w.finish().unwrap();
        index
            .finish_recording(
                id,
                "complete",
                f.summary.frames as i64,
                f.summary.media_chunks as i64,
                f.summary.end_pts,
                f.bytes as i64,
                &f.sha256,
                "test",
            )
            .unwrap();
        (id, name.into_bytes())
    }

    #[test]
    fn shred_one_recording_keeps_its_siblings_readable() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("v.db");
        let sealer = crate::keys::keyring::tests_support::file_sealer(d.path());
        crate::keys::keyring::init(&db, &sealer, "t").unwrap();
        let kr = Keyring::open(&db, sealer, "t").unwrap();
        let mut storage = Storage::new(&d.path().join("rec"));
        storage.ensure().unwrap();
        let mut index = Index::open(&db).unwrap();
        let t = 1_700_000_000_000_000_000;
        let (a, a_name) = record(&kr, &storage, &mut index, "cam", t);
        let (b, _) = record(&kr, &storage, &mut index, "cam", t + 1_000_000_000);
        let a_copy = d.path().join("a-copy.vseg");
        std::fs::copy(storage.path_of(std::str::from_utf8(&a_name).unwrap()), &a_copy).unwrap();
        let rep = shred(&kr, &storage, &ShredTarget::Recording(a), Duration::from_secs(1), false).unwrap();
        assert_eq!(rep.shredded, vec![a]);
        assert_eq!(rep.reencrypted, vec![b]);
        assert!(rep.wal_truncated);
        assert!(index.recording(a).unwrap().is_none());
        let rb = index.recording(b).unwrap().unwrap();
        let mut r = SegmentReader::open(&storage.path_of(&rb.file_name), &kr).unwrap();
        assert!(r.scan().unwrap().error.is_none());
        assert!(matches!(
            SegmentReader::open(&a_copy, &kr),
            Err(FormatError::WrongKey { .. })
        ));
        let log = kr.with_index(|i| Ok(audit::tail(i.conn(), 10)?)).unwrap();
        assert!(log.iter().any(|e| e.action == "keys.shred"));
    }
}
