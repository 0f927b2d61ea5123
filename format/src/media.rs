//! The media types every camera source produces and the recorder consumes:
//! a [`Frame`] in the camera's media time, and the [`StreamParams`] that
//! describe how to decode it; for a camera whose audio is recorded, its
//! [`AudioParams`] and [`AudioFrame`]s. Sources (RTSP, V4L2, an imported
//! file) depend on these, never on the writer.

use std::sync::Arc;

use crate::vseg::Codec;

/// Codec parameters of a stream, shared by every frame until they change.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamParams {
    pub codec: Codec,
    pub timescale: u32,
    pub width: u16,
    pub height: u16,
    pub sample_entry: Vec<u8>,
}

/// One encoded video frame (an access unit, length-prefixed NAL units for
/// H.264/H.265, one JPEG for MJPEG).
#[derive(Debug)]
pub struct Frame {
    /// Media time in `timescale` units (the camera's RTP timestamp, extended).
    pub pts: i64,
    pub key: bool,
    pub data: Vec<u8>,
    /// Set on the first frame and whenever the parameters change.
    pub params: Option<Arc<StreamParams>>,
}

/// How to decode a camera's audio: codec, sample rate (the audio clock),
/// channels and the AAC AudioSpecificConfig; stored as the recording's audio track.
pub type AudioParams = crate::vseg::AudioTrack;

/// One encoded audio frame (an AAC access unit, or a packet's G.711 samples).
#[derive(Debug)]
pub struct AudioFrame {
    /// Audio time in sample-rate units (the camera's RTP timestamp, extended).
    pub pts: i64,
    /// The same instant on the camera's video clock (the unit of
    /// [`Frame::pts`]), from the two streams' common start.
    pub video_pts: i64,
    /// Samples it holds (per channel).
    pub duration: u32,
    pub data: Vec<u8>,
}

/// The RFC 6381 codec string of a sample entry for Media Source Extensions:
/// `avc1.PPCCLL` for H.264, "hvc1" for H.265.
pub fn codec_string(sample_entry: &[u8]) -> String {
    if let Some(i) = sample_entry.windows(4).position(|w| w == b"avcC") {
        if let Some(b) = sample_entry.get(i + 5..i + 8) {
            return format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]);
        }
    }
    if sample_entry.windows(4).any(|w| w == b"hvcC") {
        return "hvc1".into();
    }
    "avc1.42e01e".into()
}
