//! The per-file hashing of a bundle: size, SHA-256 and SHA3-256 of every
//! byte that passes.
//!
//! SHA-256 runs on the caller's thread (ring uses the CPU's SHA extensions
//! where there are any: about 1.5 GB/s on x86_64 with SHA-NI, and the ARMv8
//! crypto extensions on the boards). SHA3-256 has no such help and is the
//! slowest pass of a bundle by far (about 250 MB/s here), so it runs on a
//! thread of its own, fed in blocks through a bounded channel: writing or
//! verifying a bundle then costs about what its slowest single pass costs
//! instead of the sum of all of them. Blocks go back to the writer through
//! a second channel, so a long file reuses a few buffers.

use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha3::Digest;

use super::FileEntry;
use crate::hex;

/// The size of one block handed to the SHA3 thread.
const BLOCK: usize = 256 * 1024;
/// Blocks queued for the SHA3 thread: the writer waits when SHA3 falls
/// behind. With the block being hashed, the one being filled and one handed
/// back, at most 7 blocks (1.75 MiB) are alive for a file being hashed.
const IN_FLIGHT: usize = 4;

/// SHA3-256 on a thread of its own.
struct Sha3Worker {
    buf: Vec<u8>,
    to_worker: SyncSender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    handle: JoinHandle<[u8; 32]>,
}

impl Sha3Worker {
    /// None when the thread cannot be started (the caller hashes inline).
    fn start() -> Option<Self> {
        let (to_worker, blocks) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, spare) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let handle = std::thread::Builder::new()
            .name("sha3".into())
            .spawn(move || {
                let mut h = sha3::Sha3_256::new();
                while let Ok(mut b) = blocks.recv() {
                    h.update(&b);
                    b.clear();
                    let _ = give_back.try_send(b);
                }
                h.finalize().into()
            })
            .ok()?;
        Some(Sha3Worker {
            buf: Vec::with_capacity(BLOCK),
            to_worker,
            spare,
            handle,
        })
    }

    fn update(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == BLOCK {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> std::io::Result<()> {
        let next = self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(BLOCK));
        let full = std::mem::replace(&mut self.buf, next);
        self.to_worker.send(full).map_err(|_| worker_gone())
    }

    fn finish(mut self) -> std::io::Result<[u8; 32]> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        drop(self.to_worker);
        self.handle.join().map_err(|_| worker_gone())
    }
}

fn worker_gone() -> std::io::Error {
    std::io::Error::other("the SHA3-256 hashing thread stopped")
}

enum Sha3 {
    /// Only when no thread could be started.
    Inline(Box<sha3::Sha3_256>),
    Worker(Sha3Worker),
}

/// A writer that hashes (SHA-256 and SHA3-256) and counts what passes.
pub struct Hashing<W> {
    inner: W,
    sha256: ring::digest::Context,
    sha3: Sha3,
    len: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        let sha3 = match Sha3Worker::start() {
            Some(w) => Sha3::Worker(w),
            None => Sha3::Inline(Box::new(sha3::Sha3_256::new())),
        };
        Hashing {
            inner,
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            sha3,
            len: 0,
        }
    }

    /// The inner writer, and the entry of what passed under `name`. Fails
    /// only when the SHA3 thread stopped (then no digest can be trusted).
    pub fn entry(self, name: &str) -> std::io::Result<(W, FileEntry)> {
        let sha3: [u8; 32] = match self.sha3 {
            Sha3::Inline(h) => h.finalize().into(),
            Sha3::Worker(w) => w.finish()?,
        };
        let e = FileEntry {
            name: name.to_string(),
            bytes: self.len,
            sha256: hex(self.sha256.finish().as_ref()),
            sha3_256: hex(&sha3),
        };
        Ok((self.inner, e))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = &buf[..n];
        self.sha256.update(done);
        match &mut self.sha3 {
            Sha3::Inline(h) => h.update(done),
            Sha3::Worker(w) => w.update(done)?,
        }
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes a reader to its end: its size, SHA-256 and SHA3-256.
pub fn hash_reader(name: &str, r: &mut dyn Read) -> std::io::Result<FileEntry> {
    let mut h = Hashing::new(std::io::sink());
    copy_through(r, &mut h)?;
    Ok(h.entry(name)?.1)
}

/// The SHA-256 and size of a reader to its end (a whole bundle zip, whose
/// digest is SHA-256 only).
pub fn sha256_reader(r: &mut dyn Read) -> std::io::Result<([u8; 32], u64)> {
    struct Sha256(ring::digest::Context, u64);
    impl Write for Sha256 {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            self.1 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Sha256(ring::digest::Context::new(&ring::digest::SHA256), 0);
    copy_through(r, &mut h)?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(h.0.finish().as_ref());
    Ok((digest, h.1))
}

fn copy_through(r: &mut dyn Read, w: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> (String, String) {
        (
            hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref()),
            hex(&sha3::Sha3_256::digest(data)),
        )
    }

    #[test]
    fn threaded_sha3_matches_one_pass_for_every_block_boundary() {
        // Lengths around the block size and writes of odd sizes: the blocks
        // handed to the thread must cover every byte once, in order.
        let data: Vec<u8> = (0..3 * BLOCK + 777).map(|i| (i * 31 + i / 997) as u8).collect();
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, data.len()] {
            for step in [1usize << 20, BLOCK, 4093, 1] {
                if step == 1 && len > 4096 {
                    continue;
                }
                let mut h = Hashing::new(Vec::new());
                for c in data[..len].chunks(step) {
                    h.write_all(c).unwrap();
                }
                let (out, e) = h.entry("f").unwrap();
                assert_eq!(out, data[..len]);
                let (s2, s3) = reference(&data[..len]);
                assert_eq!(
                    (e.bytes, e.sha256, e.sha3_256),
                    (len as u64, s2, s3),
                    "len {len} step {step}"
                );
            }
        }
    }

    #[test]
    fn readers_agree_with_the_writer() {
        let data: Vec<u8> = (0..BLOCK * 2 + 5).map(|i| (i % 251) as u8).collect();
        let e = hash_reader("x", &mut &data[..]).unwrap();
        let (s2, s3) = reference(&data);
        assert_eq!((e.sha256, e.sha3_256, e.bytes), (s2.clone(), s3, data.len() as u64));
        let (d, n) = sha256_reader(&mut &data[..]).unwrap();
        assert_eq!((hex(&d), n), (s2, data.len() as u64));
    }
}
