//! `vigil import`: an existing unencrypted MP4 (H.264/H.265) goes through
//! the same recorder as camera frames, so it lands in storage chunk-encrypted
//! under the camera's data key for that day, indexed and exportable like any
//! recording. Vigil reads plaintext only from the file it is given, never
//! from its own storage.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::db::Index;
use crate::keys::KeyLookup;
use crate::storage::recorder::{Event, Recorder, RecorderConfig};
use crate::storage::Storage;
use vigil_format::media::{Frame, StreamParams};
use vigil_format::mp4_demux::{self, DemuxError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Demux(#[from] DemuxError),
    #[error("{0} is inside Vigil's storage; import reads only files from outside it")]
    InsideStorage(String),
    #[error("{0} states no creation time; give the wall-clock start with --start")]
    NoStartTime(String),
    #[error(transparent)]
    Index(#[from] crate::db::IndexError),
    #[error("storing failed after {frames} frames ({errors} write errors); see the log")]
    Storage { frames: u64, errors: u64 },
}

#[derive(Debug)]
pub struct ImportReport {
    pub frames: u64,
    pub recordings: u64,
    pub skipped_before_key: u64,
    pub start_wall_ns: i64,
    pub duration_ns: i64,
    pub codec: &'static str,
}

#[allow(clippy::too_many_arguments)]
pub fn import(
    db: &Path,
    storage: &Storage,
    keys: Arc<dyn KeyLookup>,
    actor: &str,
    camera: &str,
    file: &Path,
    start_wall_ns: Option<i64>,
    segment_duration: Duration,
) -> Result<ImportReport, ImportError> {
    if let (Ok(f), Ok(s)) = (file.canonicalize(), storage.dir().canonicalize()) {
        if f.starts_with(&s) {
            return Err(ImportError::InsideStorage(file.display().to_string()));
        }
    }
    let (mut f, track) = mp4_demux::open(file)?;
    let start = match start_wall_ns.or(track.creation_unix.map(|s| s.saturating_mul(1_000_000_000))) {
        Some(s) if s > 946_684_800_000_000_000 => s, // after 2000-01-01
        _ => return Err(ImportError::NoStartTime(file.display().to_string())),
    };
    storage.clone().ensure().map_err(|e| ImportError::Storage {
        frames: 0,
        errors: {
            tracing::error!("{e}");
            1
        },
    })?;
    let index = Index::open(db)?;
    let camera_id = index.camera_id(camera)?;
    let mut rec = Recorder::new(
        RecorderConfig {
            camera_id,
            camera: camera.to_string(),
            segment_duration,
            // The source file stays: a power cut during an import is met
            // by importing again, so syncs are few (each recording is
            // synced when it is finished).
            sync_interval: Duration::from_secs(300),
            import_start_wall_ns: Some(start),
            clock: crate::base::clock::system(),
            offline_alert_after_ns: None,
            gap_alert_after_ns: None,
        },
        storage.clone(),
        index,
        keys,
    )?;
    let params = Arc::new(StreamParams {
        codec: track.codec,
        timescale: track.timescale,
        width: track.width,
        height: track.height,
        sample_entry: track.sample_entry.clone(),
    });
    let mut first = true;
    for s in &track.samples {
        let mut data = Vec::new();
        mp4_demux::read_sample(&mut f, file, s, &mut data)?;
        rec.handle(Event::Frames(vec![Frame {
            pts: s.dts,
            key: s.key,
            data,
            params: first.then(|| params.clone()),
        }]));
        first = false;
        if rec.stats.write_errors > 0 || rec.stats.frames_dropped_storage > 0 {
            break;
        }
    }
    rec.close("imported");
    let st = rec.stats;
    if st.write_errors > 0 || st.frames_dropped_storage > 0 {
        return Err(ImportError::Storage {
            frames: st.frames_written,
            errors: st.write_errors.max(1),
        });
    }
    // Audited once the recordings are in (they were written in many transactions).
    if let Ok(index) = Index::open(db) {
        let _ = crate::db::audit::append(
            index.conn(),
            actor,
            "recording.import",
            camera,
            crate::db::audit::Outcome::Ok,
            &format!("{} ({} frames)", file.display(), st.frames_written),
        );
    }
    let last = track.samples.last().map(|s| s.dts + i64::from(s.duration)).unwrap_or(0);
    let first_key = track.samples.iter().find(|s| s.key).map(|s| s.dts).unwrap_or(0);
    Ok(ImportReport {
        frames: st.frames_written,
        recordings: st.recordings,
        skipped_before_key: st.frames_dropped_before_key,
        start_wall_ns: start,
        duration_ns: crate::db::ticks_to_ns(last - first_key, i64::from(track.timescale)),
        codec: track.codec.name(),
    })
}
