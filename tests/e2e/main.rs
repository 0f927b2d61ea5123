//! The end-to-end tests: one test binary, one module per area. Each test
//! starts its own GStreamer RTSP camera(s), its own `vigil` (and swtpm,
//! Chromium, tmpfs...) through the fixtures in `vigil_e2e` (tests/src/lib.rs),
//! in its own temporary directory, on free loopback ports.
//!
//! All modules run in this one process, `--test-threads` at a time (3 in
//! scripts/test), so tests of different areas now overlap: the ones that
//! load the CPU and the ones that assert wall-clock bounds of a few seconds
//! take the gate in [`common`] so that they never run side by side.
//! `cargo test -p vigil-e2e --test e2e -- keys::` runs one area.

mod common;

mod api;
mod audio;
mod audit;
mod clock_step;
mod config_errors;
mod disk_full;
mod evidence;
mod fixity;
mod import;
mod keys;
mod management;
mod playback;
mod provision;
mod recording;
mod resilience;
mod retention;
mod rollover;
mod secrets;
mod storage_trouble;
mod substreams;
mod systemd_unit;
mod tamper;
mod ui;
mod v4l2;
mod watchdog;
