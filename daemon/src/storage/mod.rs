//! The storage layer: the recordings directory (file naming, crash recovery
//! at start, durable deletion, reconciliation between files and index rows)
//! and the [`recorder`] that writes camera frames into it.

pub mod recorder;
mod recorder_audio;
#[cfg(test)]
pub(crate) mod recorder_rig;
#[cfg(test)]
mod recorder_tests;
pub mod sync_group;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::db::{ChunkRow, Index, IndexError, RecordingRow};
use crate::keys::KeyLookup;
use vigil_format::vseg::{self, FormatError};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("storage dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub const FILE_EXTENSION: &str = "vseg";

#[derive(Clone, Debug)]
pub struct Storage {
    dir: PathBuf,
    /// Device number of the storage dir when the daemon started: a different
    /// one later means the volume was unmounted (the mount point's own
    /// filesystem is showing), and nothing is written there.
    dev: Option<u64>,
    alarm: Arc<StorageAlarm>,
    /// One group commit for every recorder of this volume, opened at the first sync.
    sync: Arc<std::sync::OnceLock<sync_group::SyncGroup>>,
}

/// Shared between the recorders (which raise it when a write fails), the
/// retention thread (which wakes up on it and prunes at once) and health
/// (which shows why recording is paused).
#[derive(Debug, Default)]
pub struct StorageAlarm {
    raised: Mutex<bool>,
    cv: Condvar,
    paused: Mutex<Option<String>>,
}

impl StorageAlarm {
    /// A write failed (e.g. ENOSPC): wake the retention thread now.
    pub fn raise(&self) {
        if let Ok(mut r) = self.raised.lock() {
            *r = true;
            self.cv.notify_all();
        }
    }

    /// Waits up to `timeout` for [`raise`](Self::raise); true if raised.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let Ok(guard) = self.raised.lock() else {
            std::thread::sleep(timeout);
            return false;
        };
        let Ok((mut g, _)) = self.cv.wait_timeout_while(guard, timeout, |r| !*r) else {
            return false;
        };
        std::mem::take(&mut *g)
    }

    /// Why recording cannot go on (space below the floor and nothing that
    /// may be deleted), or None.
    pub fn set_paused(&self, why: Option<String>) {
        if let Ok(mut p) = self.paused.lock() {
            *p = why;
        }
    }

    pub fn paused(&self) -> Option<String> {
        self.paused.lock().ok().and_then(|p| p.clone())
    }
}

/// What start-up reconciliation found.
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// (recording id, file, frames kept, frames the index had committed, bytes cut)
    pub recovered: Vec<RecoveredRecording>,
    /// Rows whose file is gone (reported, row kept).
    pub missing_files: Vec<RecordingRow>,
    /// Files no row names (reported, file kept).
    pub orphan_files: Vec<String>,
    /// Recordings that could not be recovered (reported, left as they are).
    pub failed: Vec<(i64, String)>,
}

#[derive(Debug)]
pub struct RecoveredRecording {
    pub id: i64,
    pub file_name: String,
    pub frames_kept: u64,
    pub frames_indexed: i64,
    pub truncated_bytes: u64,
}

impl Storage {
    pub fn new(dir: &Path) -> Self {
        Storage {
            dir: dir.to_path_buf(),
            dev: None,
            alarm: Arc::default(),
            sync: Arc::default(),
        }
    }

    /// Makes everything written to the recordings volume so far durable,
    /// in one `syncfs` shared with every recorder that asks at the same
    /// time ([`sync_group`]). Ok(false): the kernel or the volume cannot
    /// vouch for that sync (before Linux 5.8, or the directory is not on
    /// the volume seen at start), so the caller must fdatasync its own file.
    pub fn sync(&self) -> Result<bool, StorageError> {
        let group = match self.sync.get() {
            Some(g) => g,
            None => {
                let g = sync_group::SyncGroup::open(&self.dir, self.dev).map_err(|e| self.io(&self.dir, e))?;
                self.sync.get_or_init(|| g)
            }
        };
        group.sync().map_err(|e| self.io(&self.dir, e))?;
        Ok(group.trusted())
    }

    /// Sync system calls the recorders' group commit has made.
    pub fn syncs(&self) -> u64 {
        self.sync.get().map_or(0, |g| g.syncs())
    }

    pub fn alarm(&self) -> &Arc<StorageAlarm> {
        &self.alarm
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, file_name: &str) -> PathBuf {
        self.dir.join(file_name)
    }

    fn io(&self, path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Makes sure the storage dir exists and is a directory, and remembers
    /// which filesystem it is on (see [`check_volume`](Self::check_volume)).
    pub fn ensure(&mut self) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        let md = std::fs::metadata(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        self.dev = Some(md.dev());
        Ok(())
    }

    /// Fails when the storage dir is gone or is no longer on the filesystem
    /// it was on at start (an unmounted volume): recording then stops
    /// instead of filling the root filesystem under the mount point.
    pub fn check_volume(&self) -> Result<(), StorageError> {
        let md = std::fs::metadata(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        match self.dev {
            Some(dev) if dev != md.dev() => Err(self.io(
                &self.dir,
                std::io::Error::other("the storage volume is no longer mounted here (device changed since start)"),
            )),
            _ => Ok(()),
        }
    }

    /// `<camera>/<file id>.vseg`, with the camera directory created durably.
    /// The storage dir itself is never created here (see `check_volume`).
    pub fn new_file_name(&self, camera: &str, file_id: &[u8; 16]) -> Result<String, StorageError> {
        self.check_volume()?;
        let cam_dir = self.dir.join(camera);
        if !cam_dir.is_dir() {
            match std::fs::create_dir(&cam_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.io(&cam_dir, e)),
            }
            vseg::sync_dir(&self.dir)?;
        }
        Ok(format!("{camera}/{}.{FILE_EXTENSION}", vigil_format::hex(file_id)))
    }

    /// Both halves of start-up reconciliation, one after the other (the
    /// daemon runs the second after it is ready). Deletes nothing.
    pub fn reconcile(&self, index: &mut Index, keys: &dyn KeyLookup) -> Result<Reconciliation, StorageError> {
        let mut rep = self.recover_interrupted(index, keys)?;
        let files = self.check_files(index)?;
        rep.missing_files.extend(files.missing_files);
        rep.orphan_files = files.orphan_files;
        Ok(rep)
    }

    /// Before recording starts: finishes interrupted deletions and recovers
    /// every recording the index still shows as being written. Its cost is
    /// bounded by the cameras (one open recording each), not by the archive.
    pub fn recover_interrupted(&self, index: &mut Index, keys: &dyn KeyLookup) -> Result<Reconciliation, StorageError> {
        let mut rep = Reconciliation::default();
        self.collect_garbage(index)?;
        for row in index.recordings_in_state("writing")? {
            let path = self.path_of(&row.file_name);
            if !path.exists() {
                rep.missing_files.push(row);
                continue;
            }
            match self.recover_one(index, &row, keys) {
                Ok(r) => rep.recovered.push(r),
                Err(e) => rep.failed.push((row.id, e.to_string())),
            }
        }
        Ok(rep)
    }

    /// Rows whose file is gone and files no row names: a walk of the whole
    /// archive (200,000 recordings take about a second), so the daemon runs
    /// it after it is ready, beside recording. Rows are read a page at a time.
    pub fn check_files(&self, index: &Index) -> Result<Reconciliation, StorageError> {
        const PAGE: i64 = 2_000;
        let mut rep = Reconciliation::default();
        let mut after = 0;
        loop {
            let page = index.recordings_page(None, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let full = page.len() as i64 == PAGE;
            for row in page {
                if row.state != "writing" && !self.path_of(&row.file_name).exists() {
                    rep.missing_files.push(row);
                }
            }
            if !full {
                break;
            }
        }
        let names = index.file_names()?;
        rep.orphan_files = self.orphans(&names)?;
        Ok(rep)
    }

    /// Recovers one interrupted recording and brings its rows in line with the file.
    pub fn recover_one(
        &self,
        index: &mut Index,
        row: &RecordingRow,
        keys: &dyn KeyLookup,
    ) -> Result<RecoveredRecording, StorageError> {
        let path = self.path_of(&row.file_name);
        let r = vseg::recover(&path, keys)?;
        let chunks: Vec<ChunkRow> = r.scan.chunks.iter().map(ChunkRow::from).collect();
        index.replace_chunks(row.id, &chunks)?;
        let s = r.finished.summary;
        index.finish_recording(
            row.id,
            "recovered",
            s.frames as i64,
            i64::from(s.media_chunks),
            s.end_pts,
            r.finished.bytes as i64,
            &r.finished.sha256,
            "crash recovery",
        )?;
        Ok(RecoveredRecording {
            id: row.id,
            file_name: row.file_name.clone(),
            frames_kept: s.frames,
            frames_indexed: row.frames,
            truncated_bytes: r.truncated_bytes,
        })
    }

    /// Files under the storage dir that no index row (or garbage row) names.
    pub fn orphans(&self, known: &HashSet<String>) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.io(&self.dir, e)),
        };
        for cam in rd.flatten() {
            let Ok(ft) = cam.file_type() else { continue };
            let cam_name = cam.file_name().to_string_lossy().to_string();
            if !ft.is_dir() {
                out.push(cam_name);
                continue;
            }
            let Ok(files) = std::fs::read_dir(cam.path()) else {
                continue;
            };
            for f in files.flatten() {
                let rel = format!("{cam_name}/{}", f.file_name().to_string_lossy());
                if !known.contains(&rel) {
                    out.push(rel);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Durable deletion: row to garbage (one transaction), unlink, fsync the
    /// directory, then forget the garbage row. Safe to crash at any step.
    pub fn delete_recording(
        &self,
        index: &mut Index,
        id: i64,
        reason: &str,
        now_ns: i64,
    ) -> Result<bool, StorageError> {
        let Some(_) = index.queue_deletion(id, reason, now_ns)? else {
            return Ok(false);
        };
        self.collect_garbage(index)?;
        Ok(true)
    }

    /// Finishes deletions queued in the garbage table: every file unlinked,
    /// each directory synced once, then the garbage rows go in one transaction.
    pub fn collect_garbage(&self, index: &mut Index) -> Result<(), StorageError> {
        let names = index.garbage()?;
        if names.is_empty() {
            return Ok(());
        }
        let mut dirs = std::collections::BTreeSet::new();
        let mut done = Vec::with_capacity(names.len());
        let mut first_err = None;
        for name in names {
            let path = self.path_of(&name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(self.io(&path, e));
                    continue;
                }
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
            done.push(name);
        }
        for dir in &dirs {
            vseg::sync_dir(dir)?;
        }
        index.forget_garbage_all(&done)?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Durable deletion of a batch for retention: in one transaction each
    /// row that may still be deleted (finished, not under a legal hold) moves
    /// to the garbage table; then the files go (see `collect_garbage`).
    /// Returns the rows deleted (rows that became held or vanished are skipped).
    pub fn delete_unheld(
        &self,
        index: &mut Index,
        ids: &[i64],
        reason: &str,
        now_ns: i64,
    ) -> Result<Vec<RecordingRow>, StorageError> {
        let deleted = index.queue_unheld_deletions(ids, reason, now_ns)?;
        self.collect_garbage(index)?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::NewRecording;
    use crate::keys::DataKey;
    use vigil_format::vseg::{Codec, Header, SegmentWriter, StreamInfo};

    type OneKey = crate::keys::SingleKey;

    fn setup() -> (tempfile::TempDir, Storage, Index, OneKey) {
        let d = tempfile::tempdir().unwrap();
        let mut storage = Storage::new(&d.path().join("rec"));
        storage.ensure().unwrap();
        let index = Index::open(&d.path().join("db/vigil.db")).unwrap();
        (d, storage, index, OneKey::new(DataKey::from_bytes([1; 32])))
    }

    /// Creates a file the way the recorder does and indexes it; leaves it unfinished.
    fn new_recording(storage: &Storage, index: &Index, k: &OneKey, n: u8) -> (i64, String) {
        let cam = index.camera_id("cam").unwrap();
        let file_id = [n; 16];
        let name = storage.new_file_name("cam", &file_id).unwrap();
        let header = Header {
            max_record_plaintext: vseg::DEFAULT_MAX_RECORD_PLAINTEXT,
            key_id: k.current_key_id(),
            file_id,
            camera_id: cam as u64,
            start_wall_ns: i64::from(n) * 1_000_000_000,
            salt: [n; 32],
        };
        let si = StreamInfo {
            codec: Codec::H264,
            timescale: 90_000,
            width: 1,
            height: 1,
            start_pts: 0,
            sample_entry: vec![1],
            audio: None,
        };
        let w = SegmentWriter::create(&storage.path_of(&name), &header, &k.current_key(), &si).unwrap();
        let id = index
            .insert_recording(&NewRecording {
                camera_id: cam,
                file_name: &name,
                file_id: &file_id,
                key_id: &k.current_key_id().0,
                codec: "h264",
                start_wall_ns: header.start_wall_ns,
                observed_wall_ns: header.start_wall_ns,
                timescale: 90_000,
                start_pts: 0,
                bytes: w.len() as i64,
                gap_alert_after_ns: None,
                continues_previous: false,
            })
            .unwrap();
        (id, name)
    }

    #[test]
    fn durable_delete_survives_a_crash_between_steps() {
        let (_d, storage, mut index, k) = setup();
        let (a, name_a) = new_recording(&storage, &index, &k, 1);
        let (b, name_b) = new_recording(&storage, &index, &k, 2);
        assert!(storage.delete_recording(&mut index, a, "test", 0).unwrap());
        assert!(!storage.path_of(&name_a).exists());
        assert!(index.recording(a).unwrap().is_none() && index.garbage().unwrap().is_empty());
        // Crash after the row moved to garbage, before the unlink: the next start finishes it.
        index.queue_deletion(b, "test", 0).unwrap();
        assert!(storage.path_of(&name_b).exists());
        let rep = storage.reconcile(&mut index, &k).unwrap();
        assert!(!storage.path_of(&name_b).exists());
        assert!(index.garbage().unwrap().is_empty());
        assert!(rep.orphan_files.is_empty() && rep.missing_files.is_empty());
    }

    #[test]
    fn reconcile_recovers_and_reports_without_deleting() {
        let (_d, storage, mut index, k) = setup();
        let (a, _) = new_recording(&storage, &index, &k, 1);
        let (b, name_b) = new_recording(&storage, &index, &k, 2);
        std::fs::remove_file(storage.path_of(&name_b)).unwrap();
        std::fs::write(storage.path_of("cam/stray.vseg"), b"x").unwrap();
        let rep = storage.reconcile(&mut index, &k).unwrap();
        assert_eq!(rep.recovered.len(), 1);
        assert_eq!(index.recording(a).unwrap().unwrap().state, "recovered");
        assert_eq!(rep.missing_files.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b]);
        assert!(index.recording(b).unwrap().is_some(), "row kept");
        assert_eq!(rep.orphan_files, vec!["cam/stray.vseg".to_string()]);
        assert!(storage.path_of("cam/stray.vseg").exists(), "orphan kept");
        // Idempotent.
        let again = storage.reconcile(&mut index, &k).unwrap();
        assert!(again.recovered.is_empty());
    }
}
