//! Reading a recording: [`SegmentReader`] authenticates each record, scans
//! the chunk index, and reads frames back.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ring::digest;

use super::*;

/// One authenticated record.
pub struct Record {
    pub pos: RecordPos,
    pub kind: RecordKind,
    pub plaintext: Vec<u8>,
}

/// How a scan of a whole file ended.
#[derive(Debug)]
pub struct Scan {
    pub header: Header,
    pub stream: Option<StreamInfo>,
    /// Media chunk positions and their decoded first pts / frame count / key flag.
    pub chunks: Vec<ScannedChunk>,
    /// v2: audio records authenticated (each right after a media chunk).
    pub audio_records: u64,
    pub summary: Summary,
    /// The final record, if the file has one.
    pub final_kind: Option<RecordKind>,
    /// Bytes covered by authenticated records (header included).
    pub authenticated_len: u64,
    pub file_len: u64,
    pub sha256: [u8; 32],
    /// The first problem after the authenticated prefix, if any.
    pub error: Option<FormatError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedChunk {
    pub pos: RecordPos,
    pub first_pts: i64,
    pub frames: u32,
    pub duration: i64,
    pub key_frame: bool,
}

/// Reads one recording, authenticating every record it returns.
pub struct SegmentReader {
    file: File,
    path: PathBuf,
    pub(super) header: Header,
    pub(super) sealer: FileSealer,
    pub(super) file_len: u64,
    header_bytes: [u8; HEADER_LEN],
    version: u16,
    /// Whether [`SegmentReader::read_final`] authenticated the final record:
    /// the file is finished, and nothing in it may be cut short.
    finished: bool,
}

impl SegmentReader {
    /// Opens `path` and checks the header. `key_for` returns the data key for
    /// a key id, or `None` (then the error names both ids).
    pub fn open(path: &Path, keys: &dyn crate::keys::KeyLookup) -> Result<Self, FormatError> {
        let mut file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        let mut hb = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            return Err(FormatError::BadHeader {
                path: path.to_path_buf(),
                what: "file shorter than the header",
            });
        }
        file.read_exact(&mut hb).map_err(|e| FormatError::io(path, e))?;
        let header = Header::decode(path, &hb)?;
        let key = match keys.data_key(&header.key_id) {
            Ok(Some(k)) => k,
            Ok(None) => {
                return Err(FormatError::WrongKey {
                    path: path.to_path_buf(),
                    needed: header.key_id,
                })
            }
            Err(e) => {
                return Err(FormatError::KeyUnavailable {
                    path: path.to_path_buf(),
                    needed: header.key_id,
                    reason: e.to_string(),
                })
            }
        };
        let sealer = FileSealer::new(&key, &hb, &header.salt);
        Ok(SegmentReader {
            file,
            path: path.to_path_buf(),
            header,
            sealer,
            file_len,
            header_bytes: hb,
            version: version_of(&hb),
            finished: false,
        })
    }

    /// The file's format version (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Reads and authenticates the record that must be record `index` at `offset`.
    /// `buf` is reused to avoid an allocation per chunk.
    pub fn read_record_into(
        &mut self,
        index: u64,
        offset: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(RecordKind, RecordPos), FormatError> {
        let path = &self.path;
        let truncated = || FormatError::Truncated {
            path: path.clone(),
            index,
            offset,
        };
        if offset + RECORD_PREFIX_LEN as u64 > self.file_len {
            return Err(truncated());
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| FormatError::io(path, e))?;
        let mut prefix = [0u8; RECORD_PREFIX_LEN];
        self.file
            .read_exact(&mut prefix)
            .map_err(|e| FormatError::io(path, e))?;
        let ct_len = u32::from_be_bytes(arr(&prefix[..4])) as u64;
        let malformed = |what: String| FormatError::Malformed {
            path: path.clone(),
            index,
            offset,
            what,
        };
        let kind =
            RecordKind::from_u8(prefix[4]).ok_or_else(|| malformed(format!("unknown record kind {}", prefix[4])))?;
        if ct_len < TAG_LEN as u64 || ct_len > u64::from(self.header.max_record_plaintext) + TAG_LEN as u64 {
            return Err(malformed(format!("record length {ct_len} out of range")));
        }
        if offset + RECORD_PREFIX_LEN as u64 + ct_len > self.file_len {
            return Err(truncated());
        }
        buf.clear();
        buf.resize(ct_len as usize, 0);
        self.file.read_exact(buf).map_err(|e| FormatError::io(path, e))?;
        let n = self.sealer.open(index, kind, buf).ok_or(FormatError::AuthFailed {
            path: path.clone(),
            index,
            offset,
        })?;
        buf.truncate(n);
        let pos = RecordPos {
            index,
            offset,
            len: RECORD_PREFIX_LEN as u64 + ct_len,
        };
        // Structural rules of the record sequence.
        let ok = match kind {
            RecordKind::Stream => index == 0,
            RecordKind::Audio => index > 1 && self.version >= VERSION,
            _ => index > 0,
        };
        if !ok {
            return Err(malformed(format!("{kind:?} record at position {index}")));
        }
        Ok((kind, pos))
    }

    /// Reads the stream description (record 0).
    pub fn read_stream_info(&mut self) -> Result<(StreamInfo, RecordPos), FormatError> {
        let mut buf = Vec::new();
        let (_, pos) = self.read_record_into(0, HEADER_LEN as u64, &mut buf)?;
        let si = self.decode_stream(&buf).map_err(|what| FormatError::Malformed {
            path: self.path.clone(),
            index: 0,
            offset: HEADER_LEN as u64,
            what,
        })?;
        Ok((si, pos))
    }

    /// The stream record's plaintext: a v1 file has no audio track.
    fn decode_stream(&self, b: &[u8]) -> Result<StreamInfo, String> {
        let si = StreamInfo::decode(b)?;
        if si.audio.is_some() && self.version == VERSION_1 {
            return Err("an audio track in a version 1 file".into());
        }
        Ok(si)
    }

    /// The audio record that follows the media chunk at `chunk`, if there is
    /// one: its plaintext is left in `buf`. The record after a chunk is
    /// otherwise the next chunk or the final record, or, in a file still being
    /// written, not there yet (then `false` too). In a finished file (its
    /// final record read) a record cut short there is an error: a length
    /// prefix edited to run past the end must not hide the audio.
    pub fn read_audio_after(&mut self, chunk: &RecordPos, buf: &mut Vec<u8>) -> Result<bool, FormatError> {
        let (index, offset) = (chunk.index + 1, chunk.offset + chunk.len);
        if self.version == VERSION_1 || offset >= self.file_len {
            return Ok(false);
        }
        match self.read_record_into(index, offset, buf) {
            Ok((kind, _)) => Ok(kind == RecordKind::Audio),
            Err(FormatError::Truncated { .. }) if !self.finished => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads the final record, which must be the last `FINAL_RECORD_LEN` bytes
    /// of a file holding `records` records.
    pub fn read_final(&mut self, records: u64) -> Result<Summary, FormatError> {
        let index = records.saturating_sub(1);
        if self.file_len < HEADER_LEN as u64 + FINAL_RECORD_LEN {
            return Err(FormatError::MissingFinal {
                path: self.path.clone(),
                last_index: index,
            });
        }
        let offset = self.file_len - FINAL_RECORD_LEN;
        let mut buf = Vec::new();
        match self.read_record_into(index, offset, &mut buf) {
            Ok((kind, _)) if kind.is_final() => {}
            Ok(_) | Err(FormatError::AuthFailed { .. }) | Err(FormatError::Malformed { .. }) => {
                return Err(FormatError::MissingFinal {
                    path: self.path.clone(),
                    last_index: index,
                })
            }
            Err(e) => return Err(e),
        }
        let summary = Summary::decode(&buf).map_err(|what| FormatError::Malformed {
            path: self.path.clone(),
            index,
            offset,
            what,
        })?;
        self.finished = true;
        Ok(summary)
    }

    /// Authenticates every record from the start, stopping at the first
    /// problem. Never fails for content problems: they are in `Scan::error`.
    pub fn scan(&mut self) -> Result<Scan, FormatError> {
        let mut hash = digest::Context::new(&digest::SHA256);
        hash.update(&self.header_bytes);
        let mut scan = Scan {
            header: self.header.clone(),
            stream: None,
            chunks: Vec::new(),
            audio_records: 0,
            summary: Summary::default(),
            final_kind: None,
            authenticated_len: HEADER_LEN as u64,
            file_len: self.file_len,
            sha256: [0; 32],
            error: None,
        };
        let mut buf = Vec::new();
        let mut index = 0u64;
        let mut offset = HEADER_LEN as u64;
        let mut previous = None;
        loop {
            if offset == self.file_len {
                scan.error = Some(FormatError::MissingFinal {
                    path: self.path.clone(),
                    last_index: index.saturating_sub(1),
                });
                break;
            }
            let (kind, pos) = match self.read_record_into(index, offset, &mut buf) {
                Ok(r) => r,
                Err(e @ FormatError::Io { .. }) => return Err(e),
                Err(e) => {
                    scan.error = Some(e);
                    break;
                }
            };
            let malformed = |what: String| FormatError::Malformed {
                path: self.path.clone(),
                index,
                offset,
                what,
            };
            let step = match kind {
                RecordKind::Stream => self.decode_stream(&buf).map(|s| {
                    scan.summary.end_pts = s.start_pts;
                    scan.stream = Some(s);
                }),
                RecordKind::Media => Chunk::decode(&buf).map(|c| {
                    let duration = c.duration();
                    scan.chunks.push(ScannedChunk {
                        pos,
                        first_pts: c.first_pts,
                        frames: c.frames.len() as u32,
                        duration,
                        key_frame: c.frames.first().is_some_and(|f| f.key),
                    });
                    scan.summary.media_chunks += 1;
                    scan.summary.frames += c.frames.len() as u64;
                    scan.summary.end_pts = c.first_pts + duration;
                }),
                RecordKind::Audio if previous != Some(RecordKind::Media) => {
                    Err(format!("an audio record after a {previous:?} record"))
                }
                RecordKind::Audio if scan.stream.as_ref().is_none_or(|s| s.audio.is_none()) => {
                    Err("an audio record in a recording without an audio track".into())
                }
                RecordKind::Audio => AudioChunk::decode(&buf).map(|_| scan.audio_records += 1),
                RecordKind::Final | RecordKind::RecoveredFinal => Summary::decode(&buf).and_then(|s| {
                    if s == scan.summary {
                        scan.final_kind = Some(kind);
                        Ok(())
                    } else {
                        Err(format!("final record says {s:?}, records say {:?}", scan.summary))
                    }
                }),
            };
            if let Err(what) = step {
                scan.error = Some(malformed(what));
                break;
            }
            // Hash exactly the authenticated bytes.
            self.hash_range(&mut hash, offset, pos.len)?;
            offset += pos.len;
            scan.authenticated_len = offset;
            index += 1;
            previous = Some(kind);
            if scan.final_kind.is_some() {
                if offset != self.file_len {
                    scan.error = Some(FormatError::TrailingData {
                        path: self.path.clone(),
                        extra: self.file_len - offset,
                    });
                }
                break;
            }
        }
        if scan.error.is_some() && scan.authenticated_len != self.file_len {
            // The hash of the whole file, so that callers can compare it with the index.
            self.hash_range(
                &mut hash,
                scan.authenticated_len,
                self.file_len - scan.authenticated_len,
            )?;
        }
        scan.sha256 = arr(hash.finish().as_ref());
        Ok(scan)
    }

    fn hash_range(&mut self, hash: &mut digest::Context, offset: u64, len: u64) -> Result<(), FormatError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| FormatError::io(&self.path, e))?;
        let mut left = len;
        let mut b = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = left.min(b.len() as u64) as usize;
            self.file
                .read_exact(&mut b[..n])
                .map_err(|e| FormatError::io(&self.path, e))?;
            hash.update(&b[..n]);
            left -= n as u64;
        }
        Ok(())
    }
}
