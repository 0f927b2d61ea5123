//! The ingest layer: camera sources (RTSP, V4L2 with its encoder, an imported
//! MP4 file) that turn what a camera sends into frames for the recorder, the
//! supervisor that keeps a live camera connected (reconnects, states,
//! watchdog, batching), the ONVIF client (onboarding, clock, PTZ, events,
//! discovery), the live taps that show those frames to a viewer
//! as they arrive, and the H.265 → H.264 conversion for browsers.

#[cfg(feature = "ffmpeg")]
pub mod encoder;
pub mod import;
pub mod live;
pub mod onvif;
pub mod probe;
pub mod rtsp;
pub mod supervisor;
pub mod transcode;
pub mod v4l2;
