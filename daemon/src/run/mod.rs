//! The run layer: what `vigil run` keeps running. The camera supervisor, the
//! health supervisor (systemd watchdog, board LEDs and hardware watchdog), and
//! the systemd notification protocol. The start-up and shutdown that ties them
//! to the web server is `cli::run`.

#[cfg(test)]
mod audio_tests;
pub mod audit_anchor;
pub mod camera_control;
pub mod camera_events;
pub mod cameras;
pub mod conditions;
pub mod health;
pub mod notify;
pub mod sub_stream;
