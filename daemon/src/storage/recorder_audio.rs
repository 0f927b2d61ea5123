//! A recording's audio: the camera's audio frames, held until the media
//! chunk they play against is written, then written right after it as one
//! VSEG audio record. The recording's duration and seek points stay the
//! video's; audio only rides along.

use std::sync::Arc;

use vigil_format::media::{AudioFrame, AudioParams};
use vigil_format::vseg::{AudioChunk, AudioSampleMeta, FormatError, SegmentWriter};

/// Audio held for a recording: more than this (about 10 s of 48 kHz stereo
/// AAC at a high bit rate, or a minute of G.711) while no video chunk is
/// written means the video stalled: the oldest audio goes.
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// One held audio frame, its video time already on the recorder's timeline.
struct HeldAudio {
    pts: i64,
    video_pts: i64,
    duration: u32,
    data: Vec<u8>,
}

/// The audio of a camera session and of its open recording.
#[derive(Default)]
pub(super) struct AudioState {
    /// What the session said about its audio (None: no audio recorded).
    pub params: Option<Arc<AudioParams>>,
    held: Vec<HeldAudio>,
    held_bytes: usize,
    plain: Vec<u8>,
    pub samples_written: u64,
    pub samples_dropped: u64,
}

impl AudioState {
    /// Holds `f` (when the session's audio is recorded) for the open
    /// recording, or the next one: audio may come before the key frame that
    /// starts a recording. `pts_offset` is what the recorder adds to the
    /// camera's video timestamps.
    pub fn push(&mut self, f: AudioFrame, pts_offset: i64) {
        let video_pts = f.video_pts + pts_offset;
        if self.params.is_none() || f.duration == 0 {
            self.samples_dropped += 1;
            return;
        }
        self.held_bytes += f.data.len();
        self.held.push(HeldAudio {
            pts: f.pts,
            video_pts,
            duration: f.duration,
            data: f.data,
        });
        while self.held_bytes > MAX_HELD_BYTES && !self.held.is_empty() {
            let gone = self.held.remove(0);
            self.held_bytes -= gone.data.len();
            self.samples_dropped += 1;
        }
    }

    /// Forgets held audio that ends before `start_pts` (video time, of
    /// `video_rate` ticks per second): a recording starts there. A sample
    /// that straddles the start is kept (an export cuts it at the first frame).
    pub fn drop_before(&mut self, start_pts: i64, video_rate: u32) {
        let rate = i64::from(self.params.as_ref().map_or(1, |p| p.sample_rate.max(1)));
        let n = self
            .held
            .partition_point(|a| a.video_pts + i64::from(a.duration) * i64::from(video_rate) / rate <= start_pts);
        self.held_bytes -= self.held[..n].iter().map(|a| a.data.len()).sum::<usize>();
        self.held.drain(..n);
        self.samples_dropped += n as u64;
    }

    /// Forgets held audio (the session ended, or the recording closed).
    pub fn clear(&mut self) {
        self.samples_dropped += self.held.len() as u64;
        self.held.clear();
        self.held_bytes = 0;
    }

    /// Writes the held audio that plays before `until` (video time; None:
    /// all of it) as one audio record, right after the media chunk just
    /// written. Nothing is written when nothing is held.
    pub fn write(&mut self, writer: &mut SegmentWriter, until: Option<i64>) -> Result<(), FormatError> {
        let n = match until {
            Some(end) => self.held.partition_point(|a| a.video_pts < end),
            None => self.held.len(),
        };
        if n == 0 {
            return Ok(());
        }
        let batch: Vec<HeldAudio> = self.held.drain(..n).collect();
        self.held_bytes -= batch.iter().map(|a| a.data.len()).sum::<usize>();
        // A sample lasts until the next one starts (a lost packet widens the
        // one before it); the last one its own length.
        let metas: Vec<AudioSampleMeta> = batch
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let next = batch.get(i + 1).map(|b| b.pts - a.pts);
                let duration = match next {
                    Some(d) if d > 0 && d <= i64::from(a.duration) * 8 => d as u32,
                    _ => a.duration,
                };
                AudioSampleMeta {
                    duration,
                    size: a.data.len() as u32,
                }
            })
            .collect();
        let datas: Vec<&[u8]> = batch.iter().map(|a| a.data.as_slice()).collect();
        AudioChunk::encode_into(batch[0].pts, batch[0].video_pts, &metas, &datas, &mut self.plain);
        writer.append_audio(&mut self.plain)?;
        self.samples_written += n as u64;
        Ok(())
    }
}
