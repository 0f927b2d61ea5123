//! The bottom layer: what every other layer may use and that uses nothing of
//! Vigil's. Clocks, RFC 3339 times, names, facts about the host and the board,
//! TOTP arithmetic, the list of common passwords, client networks, text from
//! outside made one bounded line, HTTP bodies read whole within a limit.

pub mod board;
pub mod body;
pub mod clock;
pub mod common_passwords;
pub mod host;
pub mod names;
pub mod network;
pub mod text;
pub mod time;
pub mod totp;
