//! Test fixture for the recorder and for what reads its recordings: a
//! temporary archive (recordings directory, SQLite index, a single data key
//! or a real keyring), a manual clock, and a synthetic 25 fps H.264 camera
//! whose frames can be recognised when they are read back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::base::clock::{Clock, ManualClock};
use crate::db::{Index, RecordingRow};
use crate::keys::{DataKey, KeyLookup, SingleKey};
use crate::storage::recorder::{Event, Recorder, RecorderConfig};
use crate::storage::Storage;
use vigil_format::media::{Frame, StreamParams};
use vigil_format::vseg::{Chunk, Codec, SegmentReader, StreamInfo};

/// Media timescale of the synthetic camera.
pub(crate) const TS: u32 = 90_000;
/// One frame at 25 fps, in media ticks and in milliseconds.
pub(crate) const FRAME: i64 = 3_600;
pub(crate) const FRAME_MS: i64 = 40;
/// The wall clock at the start of most tests (2023-11-14, 22:13:20 UTC).
pub(crate) const T0: i64 = 1_700_000_000_000_000_000;
pub(crate) const SECOND: i64 = 1_000_000_000;
/// The camera every test records.
pub(crate) const CAMERA: &str = "cam";

/// A temporary archive and the clock its recorders read.
pub(crate) struct Rig {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub storage: Storage,
    pub keys: Arc<dyn KeyLookup>,
    pub clock: Arc<ManualClock>,
}

impl Rig {
    /// One data key for everything; the wall clock at `wall_ns`.
    pub fn new(wall_ns: i64) -> Rig {
        Rig::with_keys(wall_ns, |_| Arc::new(SingleKey::new(DataKey::from_bytes([7; 32]))))
    }

    /// The real keyring (a data key per camera per UTC day, a development KEK file).
    pub fn with_keyring(wall_ns: i64) -> Rig {
        Rig::with_keys(wall_ns, |dir| {
            let db = dir.join("vigil.db");
            let sealer = crate::keys::keyring::tests_support::file_sealer(dir);
            crate::keys::keyring::init(&db, &sealer, "t").unwrap();
            Arc::new(crate::keys::keyring::Keyring::open(&db, sealer, "t").unwrap())
        })
    }

    fn with_keys(wall_ns: i64, keys: impl FnOnce(&std::path::Path) -> Arc<dyn KeyLookup>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vigil.db");
        let mut storage = Storage::new(&dir.path().join("rec"));
        storage.ensure().unwrap();
        let keys = keys(dir.path());
        Rig {
            db,
            storage,
            keys,
            clock: ManualClock::new(wall_ns),
            dir,
        }
    }

    pub fn index(&self) -> Index {
        Index::open(&self.db).unwrap()
    }

    /// A recorder of [`CAMERA`] rotating every `segment_s` seconds, on the rig's clock.
    pub fn recorder(&self, segment_s: u64) -> Recorder {
        let index = self.index();
        let camera_id = index.camera_id(CAMERA).unwrap();
        Recorder::new(
            RecorderConfig {
                camera_id,
                camera: CAMERA.into(),
                segment_duration: Duration::from_secs(segment_s),
                sync_interval: std::time::Duration::ZERO,
                import_start_wall_ns: None,
                clock: self.clock.clone(),
                offline_alert_after_ns: None,
                gap_alert_after_ns: None,
            },
            self.storage.clone(),
            index,
            self.keys.clone(),
        )
        .unwrap()
    }

    /// Sends `count` frames of `cam`, one per 40 ms: each is handled at the
    /// current time, then both clocks move on by a frame.
    pub fn feed(&self, rec: &mut Recorder, cam: &mut Camera, count: u64) {
        for _ in 0..count {
            rec.handle(Event::Frames(vec![cam.next()]));
            self.clock.advance_ms(FRAME_MS);
        }
    }

    /// The camera's recordings, in wall-clock order.
    pub fn recordings(&self) -> Vec<RecordingRow> {
        self.index().recordings(Some(CAMERA)).unwrap()
    }

    /// The raw clock reading a recording started at.
    pub fn observed_wall_ns(&self, id: i64) -> i64 {
        self.index()
            .conn()
            .query_row("SELECT observed_wall_ns FROM recording WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// Every frame of a recording, read back from its file through its chunk
    /// rows (each chunk authenticated and checked against its row).
    pub fn frames_of(&self, rec: &RecordingRow) -> Vec<StoredFrame> {
        let mut reader = self.reader(rec);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for c in self.index().chunks(rec.id).unwrap() {
            reader
                .read_record_into(c.idx as u64, c.offset as u64, &mut buf)
                .unwrap();
            let chunk = Chunk::decode(&buf).unwrap();
            assert_eq!(chunk.first_pts, c.first_pts, "chunk row and chunk agree");
            assert_eq!(chunk.frames.len() as i64, c.frames);
            assert_eq!(chunk.frames.first().map(|f| f.key), Some(c.key_frame));
            for (pts, f, d) in chunk.iter() {
                out.push(StoredFrame {
                    pts,
                    key: f.key,
                    data: d.to_vec(),
                });
            }
        }
        assert_eq!(
            out.len() as i64,
            rec.frames,
            "recording {}: frame count in the index",
            rec.id
        );
        out
    }

    /// The recording's file, opened with the rig's keys.
    pub fn reader(&self, rec: &RecordingRow) -> SegmentReader {
        SegmentReader::open(&self.storage.path_of(&rec.file_name), self.keys.as_ref()).unwrap()
    }

    /// The recording's stream description, from its file.
    pub fn stream_info(&self, rec: &RecordingRow) -> StreamInfo {
        self.reader(rec).read_stream_info().unwrap().0
    }

    /// Now on the rig's wall clock.
    pub fn now(&self) -> i64 {
        self.clock.wall_ns()
    }
}

/// A frame as read back from a recording.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StoredFrame {
    pub pts: i64,
    pub key: bool,
    pub data: Vec<u8>,
}

/// H.264 stream parameters for a `width` x 48 picture (a tiny SPS and PPS).
pub(crate) fn params(width: u16) -> Arc<StreamParams> {
    let sps = [0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0x40, 0x10];
    let pps = [0x68, 0xce, 0x3c, 0x80];
    let config = vigil_format::annexb::avc_config(&sps, &pps).unwrap();
    Arc::new(StreamParams {
        codec: Codec::H264,
        timescale: TS,
        width,
        height: 48,
        sample_entry: vigil_format::mp4::avc1_sample_entry(width, 48, &config),
    })
}

/// The access unit of frame `n`: one length-prefixed NAL unit (IDR for a
/// key frame) that carries `n`, so every frame is recognisable.
pub(crate) fn payload(n: u64, key: bool) -> Vec<u8> {
    let mut d = vec![0, 0, 0, 9, if key { 0x65 } else { 0x41 }];
    d.extend_from_slice(&n.to_be_bytes());
    d
}

/// A synthetic camera: 25 fps, a key frame every `gop` frames, stream
/// parameters on its first frame (and whenever they are set again).
pub(crate) struct Camera {
    /// Frames sent so far.
    pub n: u64,
    /// The next frame's media time; a test moves it to make the camera's clock jump.
    pub pts: i64,
    /// Frames padded to this many bytes (None: the 13-byte payloads).
    pub frame_bytes: Option<usize>,
    gop: u64,
    params: Option<Arc<StreamParams>>,
}

impl Camera {
    pub fn new(gop: u64) -> Camera {
        Camera {
            n: 0,
            pts: 0,
            frame_bytes: None,
            gop,
            params: Some(params(64)),
        }
    }

    /// The next frame carries `p`.
    pub fn set_params(&mut self, p: Arc<StreamParams>) {
        self.params = Some(p);
    }

    pub fn next(&mut self) -> Frame {
        let key = self.n.is_multiple_of(self.gop);
        let mut data = payload(self.n, key);
        if let Some(n) = self.frame_bytes {
            data.resize(n, 0xA5);
        }
        let f = Frame {
            pts: self.pts,
            key,
            data,
            params: self.params.take(),
        };
        self.n += 1;
        self.pts += FRAME;
        f
    }
}

/// The payloads of frames `range` of a camera with key frames every `gop`.
pub(crate) fn payloads(range: std::ops::Range<u64>, gop: u64) -> Vec<Vec<u8>> {
    range.map(|n| payload(n, n.is_multiple_of(gop))).collect()
}
