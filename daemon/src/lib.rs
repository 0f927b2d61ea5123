//! Vigil: a network video recorder that keeps every recording chunk-encrypted.
//!
//! Data path: [`rtsp`] / [`v4l2`] (camera in) → [`recorder`] (frames to chunks) →
//! [`vseg`] (the on-disk format, sole owner) + [`index`] (SQLite) →
//! [`export`] / [`verify`]. See docs/ARCHITECTURE.md.

pub mod annexb;
pub mod audit;
pub mod bench;
pub mod board;
pub mod cameras;
pub mod cli_time;
pub mod config;
pub mod daemon;
pub mod device;
#[cfg(feature = "ffmpeg")]
pub mod encoder;
pub mod evidence;
pub mod export;
pub mod fixity;
pub mod health;
pub mod holds;
pub mod host;
pub mod import;
pub mod index;
pub mod keyring;
pub mod keys;
pub mod live;
pub mod mp4;
pub mod mp4_demux;
pub mod notify;
pub mod recorder;
pub mod recovery;
pub mod rekey;
pub mod retention;
pub mod rtsp;
pub mod sealing;
pub mod secrets;
pub mod storage;
pub mod totp;
pub mod users;
pub mod v4l2;
pub mod verify;
pub mod vseg;
pub mod web;
