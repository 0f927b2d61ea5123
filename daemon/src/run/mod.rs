//! The run layer: `vigil run` itself. The daemon's start-up and shutdown, the
//! camera supervisor, the health supervisor (systemd watchdog, board LEDs and
//! hardware watchdog), and the systemd notification protocol.

pub mod cameras;
pub mod daemon;
pub mod health;
pub mod notify;
