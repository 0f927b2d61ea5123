//! The daemon's uploader: one thread (a single-threaded tokio runtime) that
//! queues each finished recording (`db::replication`), uploads its data key
//! wrapped to the recovery key, its ciphertext as written on disk (one PUT,
//! or a multipart upload whose id and parts are kept in the index so a
//! restart or `kill -9` resumes it), then its signed manifest, and marks it
//! done; between recordings it restates manifests whose legal holds changed,
//! uploads the newest signed audit head and judges the lag
//! (`replication.lagging`). One upload at a time, oldest first, inside the
//! schedule and under the bandwidth cap.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ring::digest;

use super::http::Throttle;
use super::objects::{self, Signed};
use super::store::{Bucket, Target};
use super::{names, ReplicaError};
use crate::config::replication::{ReplicationConfig, SECRET_NAME};
use crate::db::replication::{self as rows, Queued};
use crate::db::Index;
use crate::evidence::device::DeviceKey;
use crate::keys::keyring::Keyring;
use crate::keys::KeyId;
use crate::storage::Storage;

/// The longest one step (a recording, its key and manifest) may take,
/// beyond what the bandwidth cap makes the largest recording take.
const STEP_LIMIT: Duration = Duration::from_secs(30 * 60);
/// The largest recording the step limit allows for under a cap.
const STEP_BYTES: u64 = 4 << 30;
/// How often the queue is filled from a full scan (ids can be reused).
const FULL_SCAN: Duration = Duration::from_secs(300);

/// The uploader's counters, read by `/metrics` and the health check.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes of recordings and parts sent (a part sent again after a failure counts twice).
    pub bytes_sent: AtomicU64,
    pub recordings_uploaded: AtomicU64,
    pub errors: AtomicU64,
    /// Why the uploader cannot work at all (no secret, a bad bucket), if so.
    pub blocked: Mutex<Option<String>>,
    /// Recordings below this id are all finished and were looked at.
    enqueue_floor: std::sync::atomic::AtomicI64,
    /// When the queue was last filled from a full scan.
    full_scan: Mutex<Option<std::time::Instant>>,
}

impl Stats {
    pub fn blocked(&self) -> Option<String> {
        self.blocked.lock().ok().and_then(|b| b.clone())
    }
    fn set_blocked(&self, why: Option<String>) {
        if let Ok(mut b) = self.blocked.lock() {
            *b = why;
        }
    }
}

/// Everything the uploader needs.
pub struct Uploader {
    pub db_path: PathBuf,
    pub storage: Storage,
    pub keyring: Arc<Keyring>,
    pub config: ReplicationConfig,
    pub keep_local: bool,
    pub stats: Arc<Stats>,
}

/// The bucket target of a configuration on this box (prefix: the device id
/// unless set).
pub fn target(config: &ReplicationConfig, device_id: &str) -> Target {
    Target {
        endpoint: config.endpoint.clone(),
        region: config.region.clone(),
        bucket: config.bucket.clone(),
        prefix: config.prefix.clone().unwrap_or_else(|| device_id.to_string()),
        access_key_id: config.access_key_id.clone(),
        virtual_host: config.virtual_host,
        ca_file: config.ca_file.clone(),
    }
}

/// Starts the uploader thread; it stops soon after `stop` is set.
pub fn spawn(u: Uploader, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("replication".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("replication: cannot start its runtime, nothing will be uploaded: {e}");
                return;
            }
        };
        rt.block_on(u.run(stop));
        rt.shutdown_timeout(Duration::from_secs(1));
    })
}

/// Sleeps `d` in steps, returning early (true) once `stop` is set.
async fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(250);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let s = left.min(step);
        tokio::time::sleep(s).await;
        left -= s;
    }
    stop.load(Ordering::Relaxed)
}

/// Returns once `stop` is set.
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What one pass of the loop found to do.
enum Step {
    Uploaded,
    Idle,
}

/// The uploader once set up.
struct Session {
    index: Index,
    bucket: Bucket,
    device: DeviceKey,
    recovery_pub: [u8; 32],
    part_size: u64,
}

impl Uploader {
    /// Queues finished recordings and judges the lag: done even while the
    /// bucket cannot be reached, so `keep_until_replicated` keeps them and
    /// the lag shows. With a schedule window, the lag counts only beyond
    /// the hours uploads are held back.
    fn keep_books(&self, index: &Index, now: i64) {
        let after = self.config.lag_alert_after_ns + self.config.schedule.closed_ns();
        let r = self
            .enqueue(index, now)
            .and_then(|()| rows::judge_lag(index.conn(), after, now).map(|_| ()));
        if let Err(e) = r {
            tracing::warn!("replication: cannot update the queue: {e}");
        }
    }

    fn enqueue(&self, index: &Index, now: i64) -> rusqlite::Result<()> {
        let full = self
            .stats
            .full_scan
            .lock()
            .map(|mut t| {
                let due = t.is_none_or(|t: std::time::Instant| t.elapsed() >= FULL_SCAN);
                if due {
                    *t = Some(std::time::Instant::now());
                }
                due
            })
            .unwrap_or(true);
        let floor = if full {
            0
        } else {
            self.stats.enqueue_floor.load(Ordering::Relaxed)
        };
        let (_, next) = rows::enqueue(index.conn(), &self.config.cameras, self.keep_local, now, floor)?;
        self.stats.enqueue_floor.store(next, Ordering::Relaxed);
        Ok(())
    }

    async fn run(self, stop: Arc<AtomicBool>) {
        let mut backoff = Duration::from_secs(1);
        let books = Index::open_existing(&self.db_path).ok();
        if let Some(idx) = &books {
            match rows::forget_uncovered(idx.conn(), &self.config.cameras) {
                Ok(n @ 1..) => tracing::info!(recordings = n, "replication: no longer waiting for cameras not listed"),
                Ok(_) => {}
                Err(e) => tracing::warn!("replication: {e}"),
            }
        }
        let session = loop {
            if let Some(idx) = &books {
                self.keep_books(idx, crate::base::clock::now_ns());
            }
            match self.set_up() {
                Ok(s) => break s,
                Err(e) => {
                    let why = format!("replication cannot start: {e}");
                    if self.stats.blocked().as_deref() != Some(why.as_str()) {
                        tracing::error!("{why}");
                    }
                    self.stats.set_blocked(Some(why));
                    if nap(Duration::from_secs(30), &stop).await {
                        return;
                    }
                }
            }
        };
        self.stats.set_blocked(None);
        tracing::info!(target = %session.bucket.describe(), "replication started");
        let mut device_uploaded = false;
        let step_limit = STEP_LIMIT
            + self
                .config
                .bandwidth_bytes_per_s
                .map(|r| Duration::from_secs(STEP_BYTES / r.max(1)))
                .unwrap_or_default();
        let mut last_judged = None::<std::time::Instant>;
        while !stop.load(Ordering::Relaxed) {
            let now = crate::base::clock::now_ns();
            if last_judged.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                last_judged = Some(std::time::Instant::now());
                self.keep_books(&session.index, now);
            }
            if !self.config.schedule.open_at(now) {
                if nap(Duration::from_secs(15), &stop).await {
                    break;
                }
                continue;
            }
            let step = async {
                if !device_uploaded {
                    self.upload_device(&session).await?;
                    device_uploaded = true;
                }
                self.step(&session, now).await
            };
            // Every request is bounded (replica::http); this bounds a whole
            // step too, so the books are kept whatever the store does.
            // A stop does not wait for an upload in flight: what was stored
            // is in the index, and the rest resumes at the next start.
            let step = tokio::select! {
                r = tokio::time::timeout(step_limit, step) => match r {
                    Ok(r) => r,
                    Err(_) => Err(ReplicaError::Store(format!(
                        "one upload step took more than {} min: the store is stalling",
                        step_limit.as_secs() / 60
                    ))),
                },
                _ = stopped(&stop) => break,
            };
            match step {
                Ok(Step::Uploaded) => backoff = Duration::from_secs(1),
                Ok(Step::Idle) => {
                    backoff = Duration::from_secs(1);
                    if nap(Duration::from_secs(2), &stop).await {
                        break;
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("replication: {e} (trying again in {} s)", backoff.as_secs());
                    if nap(backoff, &stop).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
        }
    }

    fn set_up(&self) -> Result<Session, ReplicaError> {
        let index = Index::open_existing(&self.db_path)?;
        let device = DeviceKey::load_or_create(&self.keyring, "replication")
            .map_err(|e| ReplicaError::Other(format!("the device signing key is unavailable: {e}")))?;
        let recovery_pub = crate::keys::keyring::keyring_row(&index)?
            .ok_or_else(|| ReplicaError::Other("the keyring is not initialised".into()))?
            .recovery_pub;
        let secret = crate::keys::secrets::get(&self.keyring, SECRET_NAME, "replication").map_err(|e| {
            ReplicaError::Config(format!(
                "the secret {SECRET_NAME}: {e} (set it with `vigil secrets set {SECRET_NAME}`)"
            ))
        })?;
        let secret = std::str::from_utf8(&secret)
            .map_err(|_| ReplicaError::Config(format!("the secret {SECRET_NAME} is not text")))?
            .trim()
            .to_string();
        let t = target(&self.config, &device.identity().device_id);
        let throttle = self.config.bandwidth_bytes_per_s.map(|r| Arc::new(Throttle::new(r)));
        let bucket = Bucket::open(&t, &secret, throttle)?;
        let now = crate::base::clock::now_ns();
        rows::set_target(index.conn(), "daemon", &t.describe(), self.keep_local, now)?;
        Ok(Session {
            index,
            bucket,
            device,
            recovery_pub,
            part_size: self.config.part_size,
        })
    }

    async fn put_signed(&self, s: &Session, name: &str, signed: Signed) -> Result<(), ReplicaError> {
        s.bucket.put(name, Bytes::from(signed.bytes)).await?;
        s.bucket
            .put(&names::sig(name), Bytes::from(signed.sig_hex.into_bytes()))
            .await
    }

    fn signer(s: &Session) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
        move |m| s.device.sign(m)
    }

    async fn upload_device(&self, s: &Session) -> Result<(), ReplicaError> {
        let id = s.device.identity();
        let doc = objects::device_doc(
            &id.device_id,
            &id.public_key,
            &s.recovery_pub,
            crate::base::clock::now_ns(),
        );
        let signed = objects::sign(&doc, &Self::signer(s))?;
        self.put_signed(s, names::DEVICE, signed).await
    }

    async fn step(&self, s: &Session, now: i64) -> Result<Step, ReplicaError> {
        self.enqueue(&s.index, now)?;
        if let Some(q) = rows::next_due(s.index.conn(), now)? {
            let id = q.rec.id;
            return match self.upload_recording(s, &q).await {
                Ok(()) => Ok(Step::Uploaded),
                Err(e) => {
                    // A file problem waits long (fixity raises its own alert);
                    // a store problem keeps the recording first in line.
                    let wait = match &e {
                        ReplicaError::Integrity(_) | ReplicaError::Io { .. } => 600_000_000_000,
                        _ => 0,
                    };
                    rows::mark_failed(s.index.conn(), id, q.generation, &e.to_string(), now + wait)?;
                    Err(e)
                }
            };
        }
        // Nothing waiting: restate changed holds, then the audit head.
        for (rec, holds) in rows::restatable(s.index.conn(), 16)? {
            let stem = names::recording_stem(&rec.camera, rec.start_wall_ns, rec.id);
            self.upload_manifest(s, &stem, &rec, &holds).await?;
            rows::restated(s.index.conn(), rec.id, &rows::hold_ids(&holds))?;
            tracing::info!(
                recording = rec.id,
                holds = holds.len(),
                "replication: manifest restated its legal holds"
            );
        }
        self.upload_audit_head(s).await?;
        Ok(Step::Idle)
    }

    async fn upload_audit_head(&self, s: &Session) -> Result<(), ReplicaError> {
        let Some(cp) = crate::db::audit_checkpoint::latest(s.index.conn())? else {
            return Ok(());
        };
        if rows::audit_head_uploaded(s.index.conn())? == Some(cp.entry_id) {
            return Ok(());
        }
        let Some(head) = cp.to_head() else { return Ok(()) };
        let signed = objects::sign(&head, &Self::signer(s))?;
        self.put_signed(s, names::AUDIT_HEAD, signed).await?;
        rows::record_audit_head(s.index.conn(), cp.entry_id)?;
        Ok(())
    }

    async fn upload_key(&self, s: &Session, key_id: &[u8]) -> Result<(), ReplicaError> {
        if rows::key_uploaded(s.index.conn(), key_id)? {
            return Ok(());
        }
        let id: [u8; 8] = key_id
            .try_into()
            .map_err(|_| ReplicaError::Other("a recording names a key id of the wrong length".into()))?;
        let key = self.keyring.lookup(&KeyId(id))?.ok_or_else(|| {
            ReplicaError::Other(format!("data key {} is gone from the keyring", vigil_format::hex(&id)))
        })?;
        let device_id = s.device.identity().device_id.clone();
        let wrapped = crate::keys::recovery::wrap_replica_key(&s.recovery_pub, &id, &device_id, key.bytes())?;
        let doc = objects::KeyDoc {
            format: objects::KEY_FORMAT.into(),
            device_id,
            key_id: vigil_format::hex(&id),
            wrapped_hex: vigil_format::hex(&wrapped),
            recovery_public_key_hex: vigil_format::hex(&s.recovery_pub),
        };
        let signed = objects::sign(&doc, &Self::signer(s))?;
        self.put_signed(s, &names::key(&id), signed).await?;
        rows::record_key_uploaded(s.index.conn(), key_id, crate::base::clock::now_ns())?;
        Ok(())
    }

    async fn upload_manifest(
        &self,
        s: &Session,
        stem: &str,
        rec: &crate::db::RecordingRow,
        holds: &[crate::db::holds::Hold],
    ) -> Result<(), ReplicaError> {
        let m = objects::recording_manifest(
            &s.device.identity().device_id,
            &format!("{stem}.vseg"),
            rec,
            holds,
            crate::base::clock::now_ns(),
        )?;
        let signed = objects::sign(&m, &Self::signer(s))?;
        self.put_signed(s, &format!("{stem}.json"), signed).await
    }

    async fn upload_recording(&self, s: &Session, q: &Queued) -> Result<(), ReplicaError> {
        let rec = &q.rec;
        self.upload_key(s, &rec.key_id).await?;
        let stem = names::recording_stem(&rec.camera, rec.start_wall_ns, rec.id);
        let object = format!("{stem}.vseg");
        let path = self.storage.path_of(&rec.file_name);
        let want = rec.sha256.clone().unwrap_or_default();
        let size = std::fs::metadata(&path).map_err(|e| ReplicaError::io(&path, e))?.len();
        if size != rec.bytes.max(0) as u64 {
            return Err(ReplicaError::Integrity(format!(
                "recording {} is {size} bytes on disk, the index says {}: not replicated (see `vigil verify`)",
                rec.id, rec.bytes
            )));
        }
        let already = match q.upload_id {
            // A run killed after the object was stored: it is whole (S3
            // writes are atomic), so it is not sent again; unless the file
            // changed since (re-encryption) or the target did (`resend`).
            None if !q.resend => s.bucket.head(&object).await?.is_some_and(|m| m.size == size),
            _ => false,
        };
        let mut sent = 0;
        if !already {
            if size <= s.part_size {
                let data = read_range(&path, 0, size)?;
                check_hash(rec.id, &[&data], &want)?;
                s.bucket.put(&object, data).await?;
                self.stats.bytes_sent.fetch_add(size, Ordering::Relaxed);
                sent = size;
            } else {
                sent = self.upload_parts(s, q, &object, &path, size, &want).await?;
            }
        }
        let holds = crate::db::holds::holding(s.index.conn(), rec.id)?;
        self.upload_manifest(s, &stem, rec, &holds).await?;
        let marked = rows::mark_done(
            s.index.conn(),
            rec.id,
            q.generation,
            &object,
            &rows::hold_ids(&holds),
            crate::base::clock::now_ns(),
        )?;
        if !marked {
            tracing::info!(
                recording = rec.id,
                "replication: the recording changed during its upload; it goes again"
            );
            return Ok(());
        }
        self.stats.recordings_uploaded.fetch_add(1, Ordering::Relaxed);
        tracing::info!(recording = rec.id, bytes = size, object = %object, resumed = q.upload_id.is_some(), sent_bytes = sent, "replicated");
        Ok(())
    }

    async fn upload_parts(
        &self,
        s: &Session,
        q: &Queued,
        object: &str,
        path: &std::path::Path,
        size: u64,
        want: &[u8],
    ) -> Result<u64, ReplicaError> {
        let conn = s.index.conn();
        let id = q.rec.id;
        let (upload_id, part_size) = match (&q.upload_id, q.part_size) {
            (Some(u), Some(p)) if p > 0 => (u.clone(), p as u64),
            _ => {
                let u = s.bucket.create_multipart(object).await?;
                rows::begin_multipart(conn, id, q.generation, &u, s.part_size as i64)?;
                (u, s.part_size)
            }
        };
        let done = rows::parts(conn, id)?;
        let count = size.div_ceil(part_size);
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut etags = Vec::with_capacity(count as usize);
        let mut sent = 0;
        for n in 1..=count {
            let off = (n - 1) * part_size;
            let data = read_range(path, off, part_size.min(size - off))?;
            hash.update(&data);
            if let Some((_, etag)) = done.iter().find(|(p, _)| *p as u64 == n) {
                etags.push(etag.clone());
                continue;
            }
            let len = data.len() as u64;
            match s.bucket.put_part(object, &upload_id, n as usize, data).await {
                Ok(etag) => {
                    if !rows::record_part(conn, id, q.generation, n as i64, &etag)? {
                        s.bucket.abort_multipart(object, &upload_id).await;
                        return Err(ReplicaError::Other(format!(
                            "recording {id} changed during its upload (re-encrypted?); it goes again"
                        )));
                    }
                    self.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                    sent += len;
                    etags.push(etag);
                }
                Err(e) if Bucket::is_unknown_upload(&e) => {
                    rows::forget_multipart(conn, id)?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        if hash.finish().as_ref() != want {
            s.bucket.abort_multipart(object, &upload_id).await;
            rows::forget_multipart(conn, id)?;
            return Err(hash_mismatch(id));
        }
        match s.bucket.complete_multipart(object, &upload_id, etags).await {
            Ok(()) => Ok(sent),
            Err(e) if Bucket::is_unknown_upload(&e) => {
                // Completed by a run killed before it could say so? (Not
                // when resending: the object there may be the old file's.)
                if !q.resend && s.bucket.head(object).await?.is_some_and(|m| m.size == size) {
                    return Ok(sent);
                }
                rows::forget_multipart(conn, id)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

fn hash_mismatch(id: i64) -> ReplicaError {
    ReplicaError::Integrity(format!(
        "recording {id} no longer matches the SHA-256 recorded when it was written: not replicated (see `vigil fixity status`)"
    ))
}

fn check_hash(id: i64, data: &[&[u8]], want: &[u8]) -> Result<(), ReplicaError> {
    let mut h = digest::Context::new(&digest::SHA256);
    data.iter().for_each(|d| h.update(d));
    if h.finish().as_ref() == want {
        Ok(())
    } else {
        Err(hash_mismatch(id))
    }
}

fn read_range(path: &std::path::Path, offset: u64, len: u64) -> Result<Bytes, ReplicaError> {
    let mut f = std::fs::File::open(path).map_err(|e| ReplicaError::io(path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| ReplicaError::io(path, e))?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| ReplicaError::io(path, e))?;
    if buf.len() as u64 != len {
        return Err(ReplicaError::Integrity(format!(
            "{} is shorter than the index says",
            path.display()
        )));
    }
    Ok(Bytes::from(buf))
}
