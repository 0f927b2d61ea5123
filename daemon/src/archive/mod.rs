//! The archive layer: jobs over recordings already written. Retention frees
//! space and honours legal holds; fixity re-hashes ciphertext; rekey
//! re-encrypts or crypto-shreds; verify authenticates every chunk.

pub mod camera_archive;
pub mod fixity;
pub mod rekey;
pub mod retention;
pub mod verify;
