//! Turns a camera's frames into recordings: chunks cut at each key frame,
//! ~1 s of media or 128 KiB, one recording per `segment_seconds` (rotated at
//! the first key frame after), survives timestamp discontinuities without
//! losing a frame.
//! A camera's audio, when it is recorded, goes into the same file after each
//! chunk (`recorder_audio`).
//!
//! Durability: chunks reach the page cache as they are cut (a killed daemon
//! loses none of them); at the end of each GOP (or, with
//! `sync_interval_seconds`, the first GOP end after that long) the volume is
//! synced through the recorders' shared group commit
//! ([`crate::storage::sync_group`]) and the chunks' index rows are then
//! committed together. A power cut loses at most what came after the last sync.
//!
//! Runs on its own thread per camera (blocking file and SQLite I/O), fed by
//! the camera's ingest task over a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::base::clock::Clocks;
use crate::db::{ns_to_ticks, ticks_to_ns, ChunkRow, Index, NewRecording};
use crate::keys::{self, KeyLookup};
use crate::storage::recorder_audio::AudioState;
use crate::storage::Storage;
use vigil_format::media::{AudioFrame, AudioParams, Frame, StreamParams};
use vigil_format::vseg::{self, Chunk, FrameMeta, Header, SegmentWriter, StreamInfo};

#[derive(Debug)]
pub enum Event {
    /// Frames in arrival order. Ingest sends a batch when a key frame arrives
    /// (so the chunk it closes is written at once) or after 250 ms: a few
    /// thread wake-ups a second instead of one per frame.
    Frames(Vec<Frame>),
    /// The connection ended: close the open recording.
    Disconnected,
    /// Camera state for the index (`connecting`, `streaming`, `offline`).
    State { state: &'static str, error: Option<String> },
    /// The session records audio like this (sent before its first frame):
    /// recordings started from now on get an audio track.
    AudioParams(Arc<AudioParams>),
    /// Audio frames in arrival order, sent before the video batch they came with.
    Audio(Vec<AudioFrame>),
    /// The camera's clock minus this box's, in ms (RTCP sender reports):
    /// stored as its drift, which raises or clears `camera.clock_drift`.
    ClockDrift(i64),
}

/// A chunk is cut once its frames hold this much, whatever the GOP: the
/// chunk a camera is gathering is its largest buffer (128 KiB and a frame,
/// or the largest key frame, instead of ~0.5 MB for a 1 s chunk at
/// 4 Mbit/s), and it is still in the cache when it is sealed and hashed. A
/// chunk is one record and one index row: 128 KiB keeps both to a few per
/// camera-second.
const MAX_CHUNK_BYTES: usize = 128 * 1024;
/// Most frames in a chunk (room for their table is kept in front of the
/// gathered data; ~1 s of media is far fewer at any real frame rate).
const MAX_CHUNK_FRAMES: usize = 512;
/// Room kept in front of a chunk's data for its head.
const HEAD_ROOM: usize = Chunk::head_len(MAX_CHUNK_FRAMES);
/// A forward jump larger than this between frames is a discontinuity.
const MAX_FORWARD_JUMP: Duration = Duration::from_secs(5);
/// A camera that sends no key frame is still synced this long after its
/// sync interval (a GOP longer than this, or a broken stream).
const MAX_UNSYNCED: Duration = Duration::from_secs(10);

pub struct RecorderConfig {
    pub camera_id: i64,
    pub camera: String,
    pub segment_duration: Duration,
    /// Sync at the first GOP end this long after the last sync (zero: at
    /// every GOP end).
    pub sync_interval: Duration,
    /// Importing a file: the wall-clock time of its first key frame. Wall
    /// times then follow media time instead of the clock.
    pub import_start_wall_ns: Option<i64>,
    /// Every wall-clock and monotonic read the recorder makes
    /// ([`crate::base::clock::system`] outside tests).
    pub clock: Clocks,
    /// Raise `camera.offline` when the camera stops streaming for this
    /// long (ns), and `recording.gap` for a hole between recordings longer
    /// than that (None: no alert, e.g. when importing).
    pub offline_alert_after_ns: Option<i64>,
    pub gap_alert_after_ns: Option<i64>,
}

struct OpenRecording {
    id: i64,
    writer: SegmentWriter,
    start_pts: i64,
    start_wall_ns: i64,
    timescale: u32,
    key_id: [u8; 8],
    /// The recording's audio track, if it has one.
    audio: Option<Arc<AudioParams>>,
}

struct Held {
    pts: i64,
    key: bool,
    data: Vec<u8>,
}

/// The chunk being gathered: each frame's data is copied in as it comes
/// (and the frame's own buffer freed), behind [`HEAD_ROOM`] bytes kept for
/// the chunk's head, so the chunk is sealed and written from this one
/// buffer: no second copy of a chunk in memory, no extra pass over it.
#[derive(Default)]
struct Pending {
    first_pts: i64,
    frames: Vec<FrameMeta>,
    /// HEAD_ROOM bytes, then the frames' data (empty when no frame is held).
    buf: Vec<u8>,
    duration: i64,
}

impl Pending {
    fn push(&mut self, pts: i64, duration: u32, key: bool, data: &[u8]) {
        if self.frames.is_empty() {
            self.first_pts = pts;
            self.buf.clear();
            self.buf.resize(HEAD_ROOM, 0);
        }
        self.frames.push(FrameMeta {
            duration,
            size: data.len() as u32,
            key,
        });
        self.duration += i64::from(duration);
        self.buf.extend_from_slice(data);
    }

    /// The frames' data gathered so far.
    fn bytes(&self) -> usize {
        self.buf.len().saturating_sub(HEAD_ROOM)
    }

    /// Writes the chunk's head in front of its data; returns where the
    /// chunk's plaintext starts in `buf`.
    fn seal_ready(&mut self) -> usize {
        let head = Chunk::head_len(self.frames.len());
        if head > HEAD_ROOM {
            // Not reached (chunks are cut at MAX_CHUNK_FRAMES): make room.
            self.buf.splice(0..0, std::iter::repeat_n(0, head - HEAD_ROOM));
        }
        let start = HEAD_ROOM.saturating_sub(head);
        Chunk::write_head(self.first_pts, &self.frames, &mut self.buf[start..start + head]);
        start
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.buf.clear();
        self.duration = 0;
    }
}

/// Counters reported when the recorder stops (and used by tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct RecorderStats {
    pub frames_written: u64,
    pub frames_dropped_before_key: u64,
    pub recordings: u64,
    pub discontinuities: u64,
    pub write_errors: u64,
    /// Frames not stored because storage was failing (e.g. a full disk).
    pub frames_dropped_storage: u64,
    pub audio_samples_written: u64,
    /// Audio frames no recording took (none open, no audio track, before its start).
    pub audio_samples_dropped: u64,
}

pub struct Recorder {
    cfg: RecorderConfig,
    storage: Storage,
    index: Index,
    keys: Arc<dyn KeyLookup>,
    params: Option<Arc<StreamParams>>,
    open: Option<OpenRecording>,
    held: Option<Held>,
    pending: Pending,
    /// Rows of the chunks written to the open recording since its last
    /// sync: committed to the index after the next one.
    unsynced: Vec<ChunkRow>,
    /// When the open recording was last synced (monotonic ms).
    synced_at_ms: i64,
    audio: AudioState,
    /// Added to the camera's timestamps so that media time never goes back.
    pts_offset: i64,
    last_duration: u32,
    rotate_at_next_key: Option<&'static str>,
    /// Wall-clock end of the previous recording in this run (continuity across rotation).
    continue_wall_ns: Option<i64>,
    /// Wall-clock end of this camera's latest recording (ordering across clock steps).
    last_end_wall_ns: i64,
    /// After a storage failure: no new recording before this monotonic
    /// instant in ms (1 s, doubling to 4 s; reset by the first chunk written).
    retry_at: Option<i64>,
    write_backoff: Duration,
    /// Importing: the media time that `import_start_wall_ns` names.
    import_origin_pts: Option<i64>,
    /// The health supervisor's view of this recorder.
    beat: Option<Arc<std::sync::atomic::AtomicI64>>,
    pub stats: RecorderStats,
}

impl Recorder {
    pub fn new(
        cfg: RecorderConfig,
        storage: Storage,
        index: Index,
        keys: Arc<dyn KeyLookup>,
    ) -> Result<Self, crate::db::IndexError> {
        let last_end_wall_ns = index.last_end_wall_ns(cfg.camera_id)?.unwrap_or(i64::MIN);
        Ok(Recorder {
            cfg,
            storage,
            index,
            keys,
            params: None,
            open: None,
            held: None,
            pending: Pending::default(),
            unsynced: Vec::new(),
            synced_at_ms: 0,
            audio: AudioState::default(),
            pts_offset: 0,
            last_duration: 0,
            rotate_at_next_key: None,
            continue_wall_ns: None,
            last_end_wall_ns,
            retry_at: None,
            write_backoff: Duration::ZERO,
            import_origin_pts: None,
            beat: None,
            stats: RecorderStats::default(),
        })
    }

    /// Stamps `beat` (the clock's [`crate::base::clock::Clock::mono_ms`]) after each event handled.
    pub fn set_heartbeat(&mut self, beat: Arc<std::sync::atomic::AtomicI64>) {
        self.beat = Some(beat);
    }

    /// Runs until the channel closes; closes the open recording on the way out.
    pub fn run(mut self, mut rx: mpsc::Receiver<Event>) -> RecorderStats {
        while let Some(ev) = rx.blocking_recv() {
            self.handle(ev);
            if let Some(b) = &self.beat {
                b.store(self.cfg.clock.mono_ms(), std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.close("stopped");
        self.handle(Event::State {
            state: "stopped",
            error: None,
        });
        self.stats.audio_samples_written = self.audio.samples_written;
        self.stats.audio_samples_dropped = self.audio.samples_dropped;
        self.stats
    }

    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Frames(frames) => frames.into_iter().for_each(|f| self.frame(f)),
            Event::Disconnected => {
                self.close("camera disconnected");
                self.reset_timeline();
                self.audio.params = None;
            }
            Event::AudioParams(p) => self.audio.params = Some(p),
            Event::Audio(frames) => frames.into_iter().for_each(|f| self.audio.push(f, self.pts_offset)),
            Event::ClockDrift(ms) => {
                let now = self.cfg.clock.wall_ns();
                let source = crate::db::camera_clock::Source::Rtcp;
                if let Err(e) = crate::db::camera_clock::record(&self.index, &self.cfg.camera, ms, source, now) {
                    tracing::warn!(camera = %self.cfg.camera, "cannot store the camera's clock drift: {e}");
                }
            }
            Event::State { state, error } => {
                if let Err(e) = self.index.set_camera_state(
                    self.cfg.camera_id,
                    state,
                    self.cfg.clock.wall_ns(),
                    error.as_deref(),
                    self.cfg.offline_alert_after_ns,
                ) {
                    tracing::warn!(camera = %self.cfg.camera, "cannot store camera state: {e}");
                }
            }
        }
    }

    fn reset_timeline(&mut self) {
        self.pts_offset = 0;
        self.last_duration = 0;
        self.continue_wall_ns = None;
        self.params = None;
    }

    fn nominal_duration(&self, timescale: u32) -> u32 {
        if self.last_duration > 0 {
            self.last_duration
        } else {
            (timescale / 25).max(1)
        }
    }

    fn frame(&mut self, f: Frame) {
        if let Some(p) = f.params {
            if self.params.as_ref().is_some_and(|old| *old != p) && self.open.is_some() {
                tracing::info!(camera = %self.cfg.camera, "stream parameters changed; starting a new recording");
                self.rotate_at_next_key = Some("parameters changed");
            }
            self.params = Some(p);
        }
        let Some(params) = self.params.clone() else {
            self.stats.frames_dropped_before_key += 1;
            return;
        };
        let timescale = params.timescale;
        let mut pts = f.pts + self.pts_offset;

        // Timestamps that go back, stand still, or leap forward: re-base the
        // camera's clock so this frame follows the last one, keep the frame.
        if let Some(h) = &self.held {
            let delta = pts - h.pts;
            let max_jump = ns_to_ticks(MAX_FORWARD_JUMP.as_nanos() as i64, i64::from(timescale));
            if delta <= 0 || delta > max_jump {
                let nominal = i64::from(self.nominal_duration(timescale));
                let fixed = h.pts + nominal;
                self.pts_offset += fixed - pts;
                tracing::warn!(
                    camera = %self.cfg.camera,
                    jump_ms = delta * 1000 / i64::from(timescale),
                    "timestamp discontinuity; continuing without a gap and starting a new recording at the next key frame"
                );
                pts = fixed;
                self.stats.discontinuities += 1;
                self.rotate_at_next_key.get_or_insert("timestamp discontinuity");
            }
        }

        // The held frame's duration is now known.
        if let Some(h) = self.held.take() {
            let d = (pts - h.pts).clamp(1, i64::from(u32::MAX)) as u32;
            self.last_duration = d;
            self.pending.push(h.pts, d, h.key, &h.data);
        }

        if self.open.is_none() && !f.key {
            self.count_unstored();
            return;
        }

        // Chunk boundary: a key frame, ~1 s of media, or 128 KiB.
        if !self.pending.frames.is_empty()
            && (f.key
                || self.pending.duration >= i64::from(timescale)
                || self.pending.bytes() >= MAX_CHUNK_BYTES
                || self.pending.frames.len() >= MAX_CHUNK_FRAMES)
        {
            self.flush_chunk(false);
            self.sync_point(f.key);
        }

        if f.key {
            if let Some(open) = &self.open {
                let segment = ns_to_ticks(self.cfg.segment_duration.as_nanos() as i64, i64::from(timescale));
                let reason = if pts - open.start_pts >= segment {
                    Some("segment length reached")
                } else {
                    self.rotate_at_next_key
                };
                if let Some(reason) = reason {
                    self.finish_open(reason, true);
                }
            }
            if self.open.is_none() && self.retry_at.is_none_or(|t| self.cfg.clock.mono_ms() >= t) {
                self.rotate_at_next_key = None;
                self.start_recording(&params, pts);
            }
        }
        if self.open.is_some() {
            self.held = Some(Held {
                pts,
                key: f.key,
                data: f.data,
            });
        } else {
            self.count_unstored();
        }
    }

    /// A frame that no recording takes: storage is failing, or no key frame yet.
    fn count_unstored(&mut self) {
        if self.retry_at.is_some() {
            self.stats.frames_dropped_storage += 1;
        } else {
            self.stats.frames_dropped_before_key += 1;
        }
    }

    fn start_recording(&mut self, params: &StreamParams, pts: i64) {
        if let Some(base) = self.cfg.import_start_wall_ns {
            let origin = *self.import_origin_pts.get_or_insert(pts);
            let wall = base + ticks_to_ns(pts - origin, i64::from(params.timescale));
            match self.create_recording(params, pts, wall, self.cfg.clock.wall_ns(), false) {
                Ok(open) => {
                    self.stats.recordings += 1;
                    self.open = Some(open);
                }
                Err(e) => {
                    tracing::error!(camera = %self.cfg.camera, "cannot start a recording: {e:#}");
                    self.stats.write_errors += 1;
                    self.storage_failed();
                }
            }
            return;
        }
        let observed = self.cfg.clock.wall_ns();
        // Within one camera session a recording continues the previous one
        // in media time. The wall clock is followed only when it has moved
        // more than 5 s away (drift re-anchoring, or a clock step forward,
        // e.g. NTP correcting a wrong boot time); the recording is then
        // marked as continuing the previous one, so exports stay continuous.
        // A clock that went back never reorders recordings.
        let (start_wall_ns, continues) = match self.continue_wall_ns {
            Some(prev) if (observed - prev).abs() < 5_000_000_000 => (prev, true),
            Some(prev) if observed > prev => {
                tracing::warn!(
                    camera = %self.cfg.camera,
                    step_s = (observed - prev) / 1_000_000_000,
                    "wall clock moved forward during a continuous recording; the next recording starts at the new time \
                     and exports keep media time continuous"
                );
                (observed, true)
            }
            Some(prev) => (prev, true),
            None => (observed.max(self.last_end_wall_ns), false),
        };
        if start_wall_ns > observed + 1_000_000_000 {
            tracing::warn!(camera = %self.cfg.camera, "wall clock is behind the last recording's end; keeping recordings in order");
        }
        match self.create_recording(params, pts, start_wall_ns, observed, continues) {
            Ok(open) => {
                tracing::info!(camera = %self.cfg.camera, recording = open.id, "recording started");
                self.stats.recordings += 1;
                self.open = Some(open);
            }
            Err(e) => {
                tracing::error!(camera = %self.cfg.camera, "cannot start a recording: {e:#}");
                self.write_alert(Some(&format!(
                    "Camera {}: a new recording cannot be started, frames are not stored until it can: {e:#}",
                    self.cfg.camera
                )));
                self.storage_failed();
            }
        }
    }

    fn create_recording(
        &mut self,
        params: &StreamParams,
        pts: i64,
        start_wall_ns: i64,
        observed: i64,
        continues: bool,
    ) -> anyhow::Result<OpenRecording> {
        // A shred or re-encryption may retire and destroy the key we were
        // handed before our row names it: then the new file is discarded and
        // a fresh key taken (bounded).
        for _ in 0..3 {
            let open = self.create_recording_once(params, pts, start_wall_ns, observed, continues)?;
            let key_id = keys::KeyId(open.key_id);
            if self.keys.data_key(&key_id)?.is_some() {
                return Ok(open);
            }
            tracing::warn!(camera = %self.cfg.camera, key = %key_id, "data key destroyed while starting a recording; taking a new one");
            let _ = self.storage.delete_recording(
                &mut self.index,
                open.id,
                "key destroyed before first chunk",
                self.cfg.clock.wall_ns(),
            );
        }
        anyhow::bail!("no data key stayed available for a new recording")
    }

    fn create_recording_once(
        &mut self,
        params: &StreamParams,
        pts: i64,
        start_wall_ns: i64,
        observed: i64,
        continues: bool,
    ) -> anyhow::Result<OpenRecording> {
        // Fail closed: without a data key nothing is written.
        let key = self.keys.recording_key(self.cfg.camera_id, start_wall_ns)?;
        let file_id = keys::random_bytes::<16>()?;
        let header = Header {
            max_record_plaintext: vseg::DEFAULT_MAX_RECORD_PLAINTEXT,
            key_id: key.id(),
            file_id,
            camera_id: self.cfg.camera_id as u64,
            start_wall_ns,
            salt: keys::random_bytes::<32>()?,
        };
        let stream = StreamInfo {
            codec: params.codec,
            timescale: params.timescale,
            width: params.width,
            height: params.height,
            start_pts: pts,
            sample_entry: params.sample_entry.clone(),
            audio: self.audio.params.as_deref().cloned(),
        };
        self.audio.drop_before(pts, params.timescale);
        let file_name = self.storage.new_file_name(&self.cfg.camera, &file_id)?;
        let writer = SegmentWriter::create(&self.storage.path_of(&file_name), &header, &key, &stream)?;
        let id = self.index.insert_recording(&NewRecording {
            camera_id: self.cfg.camera_id,
            file_name: &file_name,
            file_id: &file_id,
            key_id: &key.id().0,
            codec: params.codec.name(),
            start_wall_ns,
            observed_wall_ns: observed,
            timescale: i64::from(params.timescale),
            start_pts: pts,
            bytes: writer.len() as i64,
            gap_alert_after_ns: self.cfg.gap_alert_after_ns,
            continues_previous: continues,
        })?;
        self.synced_at_ms = self.cfg.clock.mono_ms();
        Ok(OpenRecording {
            id,
            writer,
            start_pts: pts,
            start_wall_ns,
            timescale: params.timescale,
            key_id: key.id().0,
            audio: self.audio.params.clone(),
        })
    }

    /// Writes the pending frames as a chunk, then the held audio that plays
    /// before the chunk's end (all of it when `all_audio`: the recording closes).
    fn flush_chunk(&mut self, all_audio: bool) {
        if self.pending.frames.is_empty() {
            return;
        }
        let Some(open) = self.open.as_mut() else {
            self.pending.clear();
            return;
        };
        let start = self.pending.seal_ready();
        let frames = self.pending.frames.len() as u32;
        let key_frame = self.pending.frames.first().is_some_and(|f| f.key);
        let audio_until = (!all_audio).then_some(self.pending.first_pts + self.pending.duration);
        let audio = &mut self.audio;
        let result = open
            .writer
            .append_chunk_from(&mut self.pending.buf, start, frames, self.pending.duration)
            .map_err(anyhow::Error::from)
            .map(|pos| {
                self.unsynced.push(ChunkRow {
                    idx: pos.index as i64,
                    offset: pos.offset as i64,
                    len: pos.len as i64,
                    first_pts: self.pending.first_pts,
                    duration: self.pending.duration,
                    frames: i64::from(frames),
                    key_frame,
                });
            })
            .and_then(|()| {
                if open.audio.is_some() {
                    audio.write(&mut open.writer, audio_until)?;
                }
                Ok(())
            });
        match result {
            Ok(()) => {
                self.stats.frames_written += u64::from(frames);
                if self.retry_at.take().is_some() {
                    self.write_backoff = Duration::ZERO;
                    tracing::info!(camera = %self.cfg.camera, "storage is writable again; recording resumed");
                    self.write_alert(None);
                }
            }
            Err(e) => {
                let id = open.id;
                self.pending.clear();
                self.write_failed(id, &e);
                return;
            }
        }
        self.pending.clear();
    }

    /// Syncs the open recording and commits its chunks' rows when due: at
    /// a GOP's end (`gop_end`) once the sync interval has passed, or
    /// [`MAX_UNSYNCED`] after it whatever the stream does.
    fn sync_point(&mut self, gop_end: bool) {
        let Some(open) = self.open.as_ref() else { return };
        if self.unsynced.is_empty() {
            return;
        }
        let since = self.cfg.clock.mono_ms() - self.synced_at_ms;
        let interval = self.cfg.sync_interval.as_millis() as i64;
        if !(gop_end && since >= interval) && since < interval + MAX_UNSYNCED.as_millis() as i64 {
            return;
        }
        let (id, len) = (open.id, open.writer.len() as i64);
        let result = match self.storage.sync() {
            Ok(true) => Ok(()),
            // The group's sync cannot vouch for this file: its own fdatasync.
            Ok(false) => self
                .open
                .as_mut()
                .map_or(Ok(()), |o| o.writer.sync().map_err(anyhow::Error::from)),
            Err(e) => Err(anyhow::Error::from(e)),
        }
        .and_then(|()| {
            self.index
                .add_chunks(id, &self.unsynced, len)
                .map_err(anyhow::Error::from)
        });
        match result {
            Ok(()) => {
                self.unsynced.clear();
                self.synced_at_ms = self.cfg.clock.mono_ms();
            }
            Err(e) => self.write_failed(id, &e),
        }
    }

    /// A write or sync of recording `id` failed: it is closed with what its
    /// file holds, and recording pauses until a write succeeds.
    fn write_failed(&mut self, id: i64, e: &anyhow::Error) {
        tracing::error!(camera = %self.cfg.camera, recording = id, "write failed, closing the recording: {e:#}");
        let message = format!(
            "Camera {}: writing recording {id} failed, recording is paused until a write succeeds: {e:#}",
            self.cfg.camera
        );
        self.abandon_open();
        self.write_alert(Some(&message));
        self.storage_failed();
    }

    /// Raises (Some) or clears (None) this camera's `storage.write_failed` alert.
    fn write_alert(&self, problem: Option<&str>) {
        if self.cfg.offline_alert_after_ns.is_none() {
            return;
        }
        let r = crate::db::alerts::set_now(
            self.index.conn(),
            crate::db::alerts::Kind::StorageWriteFailed,
            &self.cfg.camera,
            problem,
            self.cfg.clock.wall_ns(),
        );
        if let Err(e) = r {
            tracing::warn!(camera = %self.cfg.camera, "cannot store the write-failure alert: {e}");
        }
    }

    /// Counts a storage failure and holds off new recordings for a while, so a
    /// full or failing disk does not get a new, empty recording every GOP.
    fn storage_failed(&mut self) {
        self.stats.write_errors += 1;
        // Wake retention: an emergency prune may free space before the retry.
        self.storage.alarm().raise();
        // Capped at 4 s so recording resumes within seconds of space returning.
        self.write_backoff = (self.write_backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(4));
        self.retry_at = Some(self.cfg.clock.mono_ms() + self.write_backoff.as_millis() as i64);
        tracing::warn!(
            camera = %self.cfg.camera,
            retry_in_s = self.write_backoff.as_secs(),
            "storage failing; frames are not being stored until a retry succeeds"
        );
    }

    /// After a write error: recover what is in the file (longest authenticated prefix).
    fn abandon_open(&mut self) {
        let Some(open) = self.open.take() else { return };
        drop(open.writer);
        self.held = None;
        // Recovery rebuilds the chunk rows from what the file holds.
        self.unsynced.clear();
        let row = match self.index.recording(open.id) {
            Ok(Some(r)) => r,
            _ => return,
        };
        match self.storage.recover_one(&mut self.index, &row, self.keys.as_ref()) {
            Ok(r) => {
                tracing::warn!(camera = %self.cfg.camera, recording = r.id, frames = r.frames_kept, "recording closed after an error")
            }
            Err(e) => {
                tracing::error!(camera = %self.cfg.camera, recording = open.id, "recording left for recovery at next start: {e}")
            }
        }
    }

    fn finish_open(&mut self, reason: &str, continuous: bool) {
        let Some(open) = self.open.take() else { return };
        let id = open.id;
        let unsynced = std::mem::take(&mut self.unsynced);
        let res = open.writer.finish().map_err(anyhow::Error::from).and_then(|fin| {
            let s = fin.summary;
            self.index
                .add_chunks(id, &unsynced, fin.bytes as i64)
                .map_err(anyhow::Error::from)?;
            let finish = |index: &mut Index| {
                index.finish_recording(
                    id,
                    "complete",
                    s.frames as i64,
                    i64::from(s.media_chunks),
                    s.end_pts,
                    fin.bytes as i64,
                    &fin.sha256,
                    reason,
                )
            };
            // Rotating: the next recording's row is committed (and synced)
            // a moment later, and takes this commit with it.
            if continuous {
                self.index.without_sync(finish)
            } else {
                finish(&mut self.index)
            }
            .map_err(anyhow::Error::from)
            .map(|()| s)
        });
        match res {
            Ok(s) => {
                let end_wall = open.start_wall_ns + ticks_to_ns(s.end_pts - open.start_pts, i64::from(open.timescale));
                self.last_end_wall_ns = self.last_end_wall_ns.max(end_wall);
                self.continue_wall_ns = continuous.then_some(end_wall);
                tracing::info!(camera = %self.cfg.camera, recording = id, frames = s.frames, reason, "recording finished");
            }
            Err(e) => {
                tracing::error!(camera = %self.cfg.camera, recording = id, "cannot finish recording (left for recovery): {e:#}");
                self.write_alert(Some(&format!(
                    "Camera {}: recording {id} cannot be finished (left for recovery at the next start): {e:#}",
                    self.cfg.camera
                )));
                self.storage_failed();
            }
        }
    }

    /// Writes every frame still held and closes the recording.
    pub fn close(&mut self, reason: &str) {
        if let Some(h) = self.held.take() {
            let d = self.nominal_duration(self.params.as_ref().map_or(90_000, |p| p.timescale));
            self.pending.push(h.pts, d, h.key, &h.data);
        }
        self.flush_chunk(true);
        self.finish_open(reason, false);
        self.audio.clear();
    }
}
