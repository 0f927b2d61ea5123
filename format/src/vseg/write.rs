//! Writing a recording: [`SegmentWriter`] appends sealed records, one per
//! chunk, and a final record. The caller decides when appended records are
//! made durable ([`SegmentWriter::sync`]); the header, the stream record and
//! the final record are always synced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest;

use super::*;
use crate::keys::DataKey;

/// Writes one recording. Created with header + stream record durable;
/// appended records reach the page cache at once (a killed process loses
/// none of them) and the disk at [`sync`](Self::sync) (a power cut loses
/// what came after the last one); [`finish`](Self::finish) syncs.
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
        w.sync()?;
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

    fn write_all_vectored(&mut self, head: &[u8], body: &[u8]) -> Result<(), FormatError> {
        let mut bufs = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
        let mut slices: &mut [std::io::IoSlice<'_>] = &mut bufs;
        while !slices.is_empty() {
            match self.file.write_vectored(slices) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(FormatError::io(&self.path, e));
                }
                Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FormatError::io(&self.path, e)),
            }
        }
        self.hash.update(head);
        self.hash.update(body);
        self.len += (head.len() + body.len()) as u64;
        Ok(())
    }

    fn write_all(&mut self, b: &[u8]) -> Result<(), FormatError> {
        self.write_all_vectored(b, &[])
    }

    /// Makes every record appended so far durable (fdatasync).
    pub fn sync(&mut self) -> Result<(), FormatError> {
        self.file.sync_data().map_err(|e| FormatError::io(&self.path, e))
    }

    /// Seals `buf` in place (it becomes ciphertext) and writes it with its
    /// prefix in one system call where the kernel takes it all.
    pub(super) fn append_record(&mut self, kind: RecordKind, buf: &mut Vec<u8>) -> Result<RecordPos, FormatError> {
        self.append_record_from(kind, buf, 0)
    }

    /// [`append_record`](Self::append_record) of `buf[start..]`.
    fn append_record_from(
        &mut self,
        kind: RecordKind,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<RecordPos, FormatError> {
        let start = start.min(buf.len());
        if buf.len() - start > self.max_plain as usize {
            return Err(FormatError::RecordTooLarge(buf.len() - start));
        }
        let index = self.next_index;
        let offset = self.len;
        self.sealer.seal_from(index, kind, buf, start);
        let body = &buf[start..];
        let mut prefix = [0u8; RECORD_PREFIX_LEN];
        prefix[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
        prefix[4] = kind as u8;
        self.write_all_vectored(&prefix, body)?;
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
        self.append_chunk_from(plaintext, 0, frames, chunk_duration)
    }

    /// [`append_chunk`](Self::append_chunk) of `buf[start..]`: a chunk
    /// gathered in place behind room kept for its head
    /// ([`Chunk::write_head`]); `buf[..start]` is not written.
    pub fn append_chunk_from(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        frames: u32,
        chunk_duration: i64,
    ) -> Result<RecordPos, FormatError> {
        let pos = self.append_record_from(RecordKind::Media, buf, start)?;
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

    /// Writes the final record, syncs the file and returns its length and SHA-256.
    pub fn finish(mut self) -> Result<Finished, FormatError> {
        let mut buf = self.summary.encode();
        self.append_record(RecordKind::Final, &mut buf)?;
        self.sync()?;
        let sha256 = arr(self.hash.finish().as_ref());
        Ok(Finished {
            bytes: self.len,
            sha256,
            summary: self.summary,
            records: self.next_index,
        })
    }
}
