//! Deleting the recordings of a camera that is gone (neither in vigil.toml
//! nor managed from the web UI): everything not under a legal hold, files
//! and index rows, audited as `camera.archive.delete`. Whether the camera
//! is gone is the caller's to check; recordings being written are never
//! touched.

use crate::db::camera_archive::{queue_camera_archive, ArchiveDeletion};
use crate::db::Index;
use crate::storage::{Storage, StorageError};

/// Deletes `camera`'s unheld recordings; None when the index has no such
/// camera.
pub fn delete_camera_archive(
    storage: &Storage,
    index: &mut Index,
    actor: &str,
    camera: &str,
    now_ns: i64,
) -> Result<Option<ArchiveDeletion>, StorageError> {
    let done = queue_camera_archive(index, actor, camera, now_ns)?;
    storage.collect_garbage(index)?;
    Ok(done)
}
