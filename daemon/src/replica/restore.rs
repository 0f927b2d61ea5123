//! Footage back out of a replica with the escrowed recovery key, on any
//! machine: the data keys are opened from their key documents, each
//! recording is downloaded and checked against its signed manifest, its
//! index row is rebuilt from the manifest and the file itself, and then
//! either an MP4 is exported (from a temporary archive that is deleted
//! afterwards) or the recordings join a new box's storage, byte for byte as
//! the old box wrote them, their keys wrapped under the new box's KEK.

use std::collections::HashMap;
use std::path::Path;

use vigil_format::hex;
use vigil_format::keys::{parse_key_id, DataKey, KeyId, KeyLookup, KeyUnavailable};
use vigil_format::vseg::SegmentReader;

use super::objects::RecordingManifest;
use super::remote::Remote;
use super::ReplicaError;
use crate::db::{ChunkRow, Index, NewRecording};
use crate::keys::keyring::Keyring;
use crate::keys::recovery::RecoveryKey;
use crate::storage::Storage;

/// Data keys opened with the recovery key.
#[derive(Default)]
pub struct ReplicaKeys(HashMap<KeyId, DataKey>);

impl KeyLookup for ReplicaKeys {
    fn data_key(&self, id: &KeyId) -> Result<Option<DataKey>, KeyUnavailable> {
        Ok(self.0.get(id).cloned())
    }
    fn recording_key(&self, _camera_id: i64, _wall_ns: i64) -> Result<DataKey, KeyUnavailable> {
        Err(KeyUnavailable("a replica is read-only".into()))
    }
}

/// Opens the data keys `manifests` name with the recovery key. A key
/// document that fails its checks is a problem (its recordings cannot be
/// read); the wrong recovery key is an error.
pub async fn open_keys(
    remote: &Remote,
    recovery: &RecoveryKey,
    manifests: &[RecordingManifest],
    problems: &mut Vec<String>,
) -> Result<ReplicaKeys, ReplicaError> {
    let recovery_pub = hex(&recovery.public_key());
    if recovery_pub != remote.device.recovery_public_key_hex {
        return Err(ReplicaError::Key(crate::keys::KeyError::Recovery(format!(
            "this is not the recovery key of {} (its public key does not match the one in device.json)",
            remote.device.device_id
        ))));
    }
    let mut keys = ReplicaKeys::default();
    let mut tried = std::collections::HashSet::new();
    for m in manifests {
        let Some(id) = parse_key_id(&m.key_id) else {
            problems.push(format!("{}: bad key id", m.object));
            continue;
        };
        if !tried.insert(id) {
            continue;
        }
        let opened = async {
            let doc = remote.key_doc(&m.key_id).await?;
            let wrapped = vigil_format::unhex(doc.wrapped_hex.trim()).ok_or_else(|| {
                ReplicaError::Integrity(format!("keys/{}.json: the wrapped key is not hex", m.key_id))
            })?;
            Ok::<_, ReplicaError>(recovery.open_replica_key(&id.0, &remote.device.device_id, &wrapped)?)
        };
        match opened.await {
            Ok(bytes) => {
                keys.0.insert(id, DataKey::new(id, *bytes));
            }
            Err(e @ (ReplicaError::Store(_) | ReplicaError::Io { .. })) => return Err(e),
            Err(e) => problems.push(format!("key {}: {e}", m.key_id)),
        }
    }
    Ok(keys)
}

fn new_file_id() -> Result<[u8; 16], ReplicaError> {
    crate::keys::random_bytes::<16>().map_err(|e| ReplicaError::Other(e.to_string()))
}

/// Downloads a recording to `dest` (through `dest.partial`, fsynced), after
/// checking its length and SHA-256 against the signed manifest; streamed,
/// never longer than the manifest says.
pub async fn fetch(remote: &Remote, m: &RecordingManifest, dest: &Path) -> Result<(), ReplicaError> {
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let got = remote.bucket.download(&m.object, &partial, m.bytes).await;
    let checked = match got {
        Ok(Some((sha, len))) if len == m.bytes && hex(&sha) == m.ciphertext_sha256 => Ok(()),
        Ok(Some(_)) => Err(ReplicaError::Integrity(format!(
            "{}: altered: it does not match its signed manifest (run `vigil replica verify`)",
            m.object
        ))),
        Ok(None) => Err(ReplicaError::Integrity(format!(
            "{}: missing (its manifest names it)",
            m.object
        ))),
        Err(e) => Err(e),
    };
    let moved = checked.and_then(|()| std::fs::rename(&partial, dest).map_err(|e| ReplicaError::io(dest, e)));
    if moved.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    moved
}

/// Rebuilds the index row of a downloaded recording at `file_name` from its
/// manifest and the file's own records. Returns the new row's id.
pub fn index_recording(
    index: &mut Index,
    storage: &Storage,
    keys: &dyn KeyLookup,
    m: &RecordingManifest,
    file_name: &str,
) -> Result<i64, ReplicaError> {
    let path = storage.path_of(file_name);
    let mut reader = SegmentReader::open(&path, keys).map_err(|e| ReplicaError::Integrity(e.to_string()))?;
    let scan = reader.scan().map_err(|e| ReplicaError::Integrity(e.to_string()))?;
    if let Some(e) = scan.error {
        return Err(ReplicaError::Integrity(format!("{}: {e}", m.object)));
    }
    let r = &m.recording;
    let camera_id = index.camera_id(&r.camera)?;
    let chunks: Vec<ChunkRow> = scan.chunks.iter().map(ChunkRow::from).collect();
    let id = crate::db::replication::insert_restored(
        index,
        &crate::db::replication::Restored {
            new: NewRecording {
                camera_id,
                file_name,
                file_id: &scan.header.file_id,
                key_id: &scan.header.key_id.0,
                codec: &r.codec,
                start_wall_ns: r.start_wall_ns,
                observed_wall_ns: r.start_wall_ns,
                timescale: r.timescale,
                start_pts: r.start_pts,
                bytes: scan.file_len as i64,
                gap_alert_after_ns: None,
                continues_previous: false,
            },
            file_camera_id: scan.header.camera_id as i64,
            chunks: &chunks,
            state: if r.state == "recovered" {
                "recovered"
            } else {
                "complete"
            },
            frames: scan.summary.frames as i64,
            end_pts: scan.summary.end_pts,
            sha256: &scan.sha256,
            continues_previous: r.continues_previous,
        },
    )?;
    Ok(id)
}

/// The manifests of `camera` that overlap `[start_ns, end_ns)`; what
/// failed its checks goes to `problems`.
pub async fn in_range(
    remote: &Remote,
    camera: &str,
    start_ns: i64,
    end_ns: i64,
    problems: &mut Vec<String>,
) -> Result<Vec<RecordingManifest>, ReplicaError> {
    let listing = remote.manifests(Some(camera)).await?;
    problems.extend(listing.problems);
    Ok(listing
        .manifests
        .into_iter()
        .filter(|m| m.recording.camera == camera && m.recording.start_wall_ns < end_ns && m.end_wall_ns() > start_ns)
        .collect())
}

/// `vigil replica export`: an MP4 of `camera` from `start_ns` to `end_ns`
/// straight from the bucket, through a temporary archive under `work`.
/// A recording that fails its checks is left out and named in `problems`
/// (the caller must then say the export is incomplete).
#[allow(clippy::too_many_arguments)]
pub async fn export(
    remote: &Remote,
    recovery: &RecoveryKey,
    camera: &str,
    start_ns: i64,
    end_ns: i64,
    out: &Path,
    work: &Path,
    problems: &mut Vec<String>,
) -> Result<crate::evidence::export::ExportReport, ReplicaError> {
    let manifests = in_range(remote, camera, start_ns, end_ns, problems).await?;
    let keys = open_keys(remote, recovery, &manifests, problems).await?;
    let mut storage = Storage::new(&work.join("recordings"));
    storage.ensure().map_err(|e| ReplicaError::Other(e.to_string()))?;
    let mut index = Index::open(&work.join("replica.db"))?;
    let mut usable = 0;
    for m in &manifests {
        let file_name = storage
            .new_file_name(camera, &new_file_id()?)
            .map_err(|e| ReplicaError::Other(e.to_string()))?;
        let path = storage.path_of(&file_name);
        let got = match fetch(remote, m, &path).await {
            Ok(()) => index_recording(&mut index, &storage, &keys, m, &file_name).map(|_| ()),
            Err(e) => Err(e),
        };
        match got {
            Ok(()) => usable += 1,
            Err(
                e @ (ReplicaError::Store(_) | ReplicaError::Io { .. } | ReplicaError::Sql(_) | ReplicaError::Index(_)),
            ) => return Err(e),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                problems.push(e.to_string());
            }
        }
    }
    if usable == 0 {
        return Err(ReplicaError::Other(format!(
            "the replica has no usable recording of {camera} between those times"
        )));
    }
    let archive = crate::evidence::plan::Archive {
        index: &index,
        storage: &storage,
        keys: &keys,
    };
    crate::evidence::export::export_to_file(archive, "replica", camera, start_ns, end_ns, out)
        .map_err(|e| ReplicaError::Other(e.to_string()))
}

/// What `restore` did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    pub restored: u64,
    pub already: u64,
    pub bytes: u64,
    pub keys_adopted: u64,
    /// Recordings left out: each failed its checks (named).
    pub problems: Vec<String>,
}

/// `vigil replica restore`: every recording of the replica (or of `camera`)
/// into this box's storage and index, unless a recording with the same
/// ciphertext is here already. A recording that fails its checks is left
/// out and named. Audited (`replica.restore`).
pub async fn restore(
    remote: &Remote,
    recovery: &RecoveryKey,
    keyring: &Keyring,
    storage: &Storage,
    camera: Option<&str>,
    actor: &str,
) -> Result<RestoreReport, ReplicaError> {
    let mut rep = RestoreReport::default();
    let listing = remote.manifests(camera).await?;
    rep.problems.extend(listing.problems);
    let manifests = listing.manifests;
    let keys = open_keys(remote, recovery, &manifests, &mut rep.problems).await?;
    let mut index = Index::open_existing(keyring.db_path())?;
    let result = async {
        for m in &manifests {
            let sha = vigil_format::unhex(&m.ciphertext_sha256).unwrap_or_default();
            if crate::db::replication::recording_with_sha256(index.conn(), &sha)?.is_some() {
                rep.already += 1;
                continue;
            }
            let r = &m.recording;
            let Some(key) = parse_key_id(&m.key_id).and_then(|id| keys.0.get(&id)) else {
                rep.problems
                    .push(format!("{}: its data key could not be opened", m.object));
                continue;
            };
            let camera_id = index.camera_id(&r.camera)?;
            if keyring.adopt_recording_key(key, camera_id, &crate::keys::wrap::utc_day(r.start_wall_ns))? {
                rep.keys_adopted += 1;
            }
            let file_name = storage
                .new_file_name(&r.camera, &new_file_id()?)
                .map_err(|e| ReplicaError::Other(e.to_string()))?;
            let path = storage.path_of(&file_name);
            let got = match fetch(remote, m, &path).await {
                Ok(()) => index_recording(&mut index, storage, &keys, m, &file_name).map(|_| ()),
                Err(e) => Err(e),
            };
            match got {
                Ok(()) => {
                    rep.restored += 1;
                    rep.bytes += m.bytes;
                }
                Err(e @ ReplicaError::Integrity(_)) => {
                    let _ = std::fs::remove_file(&path);
                    rep.problems.push(e.to_string());
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
            }
        }
        Ok::<(), ReplicaError>(())
    }
    .await;
    let (outcome, detail) = match &result {
        Ok(()) if rep.problems.is_empty() => (crate::db::audit::Outcome::Ok, String::new()),
        Ok(()) => (
            crate::db::audit::Outcome::Failed,
            format!(
                "; {} recording(s) or key(s) failed their checks and were left out",
                rep.problems.len()
            ),
        ),
        Err(e) => (crate::db::audit::Outcome::Failed, format!("; stopped: {e}")),
    };
    let _ = crate::db::audit::append(
        index.conn(),
        actor,
        "replica.restore",
        &remote.device.device_id,
        outcome,
        &format!(
            "from {}: {} recording(s) restored ({} bytes), {} already here, {} key(s) adopted{detail}",
            remote.bucket.describe(),
            rep.restored,
            rep.bytes,
            rep.already,
            rep.keys_adopted
        ),
    );
    result.map(|()| rep)
}
