//! The ingest layer: camera sources (RTSP, V4L2 with its encoder, an imported
//! MP4 file) that turn what a camera sends into frames for the recorder, and
//! the live taps that show those frames to a viewer as they arrive.

#[cfg(feature = "ffmpeg")]
pub mod encoder;
pub mod import;
pub mod live;
pub mod rtsp;
pub mod v4l2;
