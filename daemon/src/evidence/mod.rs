//! The evidence layer: exports of any time range as MP4, signed evidence
//! bundles (their format and offline verifier are `vigil_format::bundle`), signed per-recording manifests, and
//! the device identity that signs them.

pub mod audit_anchor;
pub mod bundle;
#[cfg(test)]
mod bundle_tests;
pub mod device;
pub mod egress;
pub mod export;
#[cfg(test)]
mod export_tests;
pub mod manifest;
pub mod plan;
pub mod view;
