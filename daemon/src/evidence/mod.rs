//! The evidence layer: exports of any time range as MP4, signed evidence
//! bundles and their offline verifier, signed per-recording manifests, and
//! the device identity that signs them.

pub mod bundle;
pub mod bundle_verify;
pub mod device;
pub mod export;
#[cfg(test)]
mod export_tests;
pub mod manifest;
