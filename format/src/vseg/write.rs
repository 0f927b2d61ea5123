//! Writing a recording: [`SegmentWriter`] appends sealed records, one per
//! chunk, and a final record; every chunk is made durable before its index row.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest;

use super::*;
use crate::keys::DataKey;

/// Writes one recording. Created with header + stream record durable; every
/// record is fdatasync'ed before `append_*` returns.
pub struct SegmentWriter {
    file: File,
    path: PathBuf,
    sealer: FileSealer,
    max_plain: u32,
    pub(super) next_index: u64,
    pub(super) len: u64,
    pub(super) hash: digest::Context,
    pub(super) summary: Summary,
    last_kind: Option<RecordKind>,
}

/// What a finished file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub summary: Summary,
    pub records: u64,
}

impl SegmentWriter {
    /// Creates `path` (must not exist), writes the header and the stream record,
    /// fdatasyncs the file and fsyncs its directory.
    pub fn create(path: &Path, header: &Header, key: &DataKey, stream: &StreamInfo) -> Result<Self, FormatError> {
        let mut w = Self::create_raw(path, header, key)?;
        w.summary.end_pts = stream.start_pts;
        let mut buf = stream.encode();
        w.append_record(RecordKind::Stream, &mut buf)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(w)
    }

    /// Creates `path` (must not exist) and writes the header only.
    pub(super) fn create_raw(path: &Path, header: &Header, key: &DataKey) -> Result<Self, FormatError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| FormatError::io(path, e))?;
        let hbytes = header.encode();
        let mut w = SegmentWriter {
            file,
            path: path.to_path_buf(),
            sealer: FileSealer::new(key, &hbytes, &header.salt),
            max_plain: header.max_record_plaintext,
            next_index: 0,
            len: 0,
            hash: digest::Context::new(&digest::SHA256),
            summary: Summary::default(),
            last_kind: None,
        };
        w.write_all(&hbytes)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn summary(&self) -> Summary {
        self.summary
    }

    fn write_all(&mut self, b: &[u8]) -> Result<(), FormatError> {
        self.file.write_all(b).map_err(|e| FormatError::io(&self.path, e))?;
        self.hash.update(b);
        self.len += b.len() as u64;
        Ok(())
    }

    /// Seals `buf` in place (it becomes ciphertext), writes and fdatasyncs it.
    pub(super) fn append_record(&mut self, kind: RecordKind, buf: &mut Vec<u8>) -> Result<RecordPos, FormatError> {
        if buf.len() > self.max_plain as usize {
            return Err(FormatError::RecordTooLarge(buf.len()));
        }
        let index = self.next_index;
        let offset = self.len;
        self.sealer.seal(index, kind, buf);
        let mut prefix = [0u8; RECORD_PREFIX_LEN];
        prefix[..4].copy_from_slice(&(buf.len() as u32).to_be_bytes());
        prefix[4] = kind as u8;
        self.write_all(&prefix)?;
        self.write_all(buf)?;
        self.file.sync_data().map_err(|e| FormatError::io(&self.path, e))?;
        self.next_index += 1;
        self.last_kind = Some(kind);
        Ok(RecordPos {
            index,
            offset,
            len: self.len - offset,
        })
    }

    /// Appends a media chunk. `plaintext` is built with [`Chunk::encode_into`];
    /// it is sealed in place.
    pub fn append_chunk(
        &mut self,
        plaintext: &mut Vec<u8>,
        frames: u32,
        chunk_duration: i64,
    ) -> Result<RecordPos, FormatError> {
        let pos = self.append_record(RecordKind::Media, plaintext)?;
        self.summary.media_chunks += 1;
        self.summary.frames += u64::from(frames);
        self.summary.end_pts += chunk_duration;
        Ok(pos)
    }

    /// Appends an audio record (v2), which must come right after a media
    /// chunk. `plaintext` is built with [`AudioChunk::encode_into`]; it is
    /// sealed in place.
    pub fn append_audio(&mut self, plaintext: &mut Vec<u8>) -> Result<RecordPos, FormatError> {
        if self.last_kind != Some(RecordKind::Media) {
            return Err(FormatError::Malformed {
                path: self.path.clone(),
                index: self.next_index,
                offset: self.len,
                what: "an audio record must follow a media chunk".into(),
            });
        }
        self.append_record(RecordKind::Audio, plaintext)
    }

    /// Writes the final record and returns the file's length and SHA-256.
    pub fn finish(mut self) -> Result<Finished, FormatError> {
        let mut buf = self.summary.encode();
        self.append_record(RecordKind::Final, &mut buf)?;
        let sha256 = arr(self.hash.finish().as_ref());
        Ok(Finished {
            bytes: self.len,
            sha256,
            summary: self.summary,
            records: self.next_index,
        })
    }
}
