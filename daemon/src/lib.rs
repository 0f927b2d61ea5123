//! Vigil: a network video recorder that keeps every recording chunk-encrypted.
//!
//! Layers, bottom up; each imports only from the layers below it
//! (`scripts/check-layers` enforces it, docs/ARCHITECTURE.md draws it):
//! [`base`] → [`config`] → [`db`] → [`keys`] → [`storage`] →
//! [`ingest`] | [`archive`] | [`evidence`] | [`alerts`] → [`run`] → [`web`] → [`cli`].
//! The on-disk format is its own crate, `vigil_format`, below all of them.
//!
//! Data path: [`ingest`] (camera in) → [`storage::recorder`] (frames to
//! chunks) → `vigil_format::vseg` (the on-disk format, sole owner) +
//! [`db`] (SQLite) → [`evidence::export`] / [`archive::verify`].

pub mod alerts;
pub mod archive;
pub mod base;
pub mod cli;
pub mod config;
pub mod db;
pub mod evidence;
pub mod ingest;
pub mod keys;
pub mod replica;
pub mod run;
pub mod storage;
pub mod web;
