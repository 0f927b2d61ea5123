//! One box's prefix in an S3-compatible bucket, through object_store's
//! Amazon S3 client over [`super::http::Transport`]: single PUTs and
//! multipart uploads, each body (each part) sent with its SHA-256 in
//! `x-amz-checksum-sha256` for the server to verify, and reads.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::http::{Throttle, Transport};
use super::ReplicaError;

/// Where a bucket is and how to reach it.
#[derive(Clone, Debug)]
pub struct Target {
    pub endpoint: url::Url,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key_id: String,
    pub virtual_host: bool,
    pub ca_file: Option<std::path::PathBuf>,
}

impl Target {
    /// `endpoint/bucket/prefix`, as audited and shown.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint.as_str().trim_end_matches('/'),
            self.bucket,
            self.prefix
        )
    }
}

/// A box's prefix in a bucket.
#[derive(Debug)]
pub struct Bucket {
    s3: AmazonS3,
    prefix: String,
    what: String,
}

fn store_err(what: &str, action: &str, e: object_store::Error) -> ReplicaError {
    match &e {
        object_store::Error::NotFound { .. } => ReplicaError::Missing(format!("{action} at {what}: not found")),
        other => ReplicaError::Store(format!(
            "{action} at {what}: {}",
            crate::base::text::one_line(&other.to_string(), 400)
        )),
    }
}

impl Bucket {
    /// `throttle` caps the upload rate of every request through this bucket.
    pub fn open(t: &Target, secret_access_key: &str, throttle: Option<Arc<Throttle>>) -> Result<Bucket, ReplicaError> {
        let tls = crate::alerts::http_client::tls_config(t.ca_file.as_deref(), &[b"http/1.1"])
            .map_err(|e| ReplicaError::Config(e.to_string()))?;
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
        };
        let s3 = AmazonS3Builder::new()
            .with_endpoint(t.endpoint.as_str().trim_end_matches('/'))
            .with_allow_http(t.endpoint.scheme() == "http")
            .with_region(&t.region)
            .with_bucket_name(&t.bucket)
            .with_access_key_id(&t.access_key_id)
            .with_secret_access_key(secret_access_key)
            .with_virtual_hosted_style_request(t.virtual_host)
            .with_checksum_algorithm(Checksum::SHA256)
            .with_retry(retry)
            .with_http_connector(Transport::new(tls, throttle))
            .build()
            .map_err(|e| ReplicaError::Config(format!("the bucket settings are not usable: {e}")))?;
        Ok(Bucket {
            s3,
            prefix: t.prefix.trim_matches('/').to_string(),
            what: t.describe(),
        })
    }

    pub fn describe(&self) -> &str {
        &self.what
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.prefix))
    }

    /// The name under the prefix of a listed object.
    pub fn relative<'a>(&self, p: &'a Path) -> &'a str {
        let s = p.as_ref();
        s.strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(s)
    }

    /// One PUT, its SHA-256 checked by the server.
    pub async fn put(&self, name: &str, data: Bytes) -> Result<(), ReplicaError> {
        self.s3
            .put(&self.path(name), PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(|e| store_err(&self.what, &format!("uploading {name}"), e))
    }

    /// Starts reading an object; None if there is none.
    async fn start_get(&self, name: &str) -> Result<Option<object_store::GetResult>, ReplicaError> {
        match self.s3.get(&self.path(name)).await {
            Ok(r) => Ok(Some(r)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(&self.what, &format!("reading {name}"), e)),
        }
    }

    /// The object, or None if there is none; one larger than `max` bytes is
    /// refused before it is read (a bucket cannot make this box run out of memory).
    pub async fn get(&self, name: &str, max: u64) -> Result<Option<Bytes>, ReplicaError> {
        let Some(r) = self.start_get(name).await? else {
            return Ok(None);
        };
        if r.meta.size > max {
            return Err(ReplicaError::Integrity(format!(
                "{name}: {} bytes, more than the {max} such an object may have",
                r.meta.size
            )));
        }
        r.bytes()
            .await
            .map(Some)
            .map_err(|e| store_err(&self.what, &format!("reading {name}"), e))
    }

    /// Streams an object into `dest` (created new), stopping past `max`
    /// bytes. Returns its SHA-256 and length, or None if there is none.
    pub async fn download(
        &self,
        name: &str,
        dest: &std::path::Path,
        max: u64,
    ) -> Result<Option<([u8; 32], u64)>, ReplicaError> {
        let Some(r) = self.start_get(name).await? else {
            return Ok(None);
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| ReplicaError::io(dest, e))?;
        let got = self.hash_stream(name, r, max, Some((&mut f, dest))).await?;
        f.sync_all().map_err(|e| ReplicaError::io(dest, e))?;
        Ok(Some(got))
    }

    /// The SHA-256 and length of an object, read as a stream.
    pub async fn sha256_of(&self, name: &str) -> Result<Option<([u8; 32], u64)>, ReplicaError> {
        let Some(r) = self.start_get(name).await? else {
            return Ok(None);
        };
        self.hash_stream(name, r, u64::MAX, None).await.map(Some)
    }

    /// Reads an answer's body chunk by chunk into a SHA-256 (and `sink`),
    /// refusing more than `max` bytes.
    async fn hash_stream(
        &self,
        name: &str,
        r: object_store::GetResult,
        max: u64,
        mut sink: Option<(&mut std::fs::File, &std::path::Path)>,
    ) -> Result<([u8; 32], u64), ReplicaError> {
        use futures::StreamExt;
        use std::io::Write;
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        let mut n = 0u64;
        let mut stream = r.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_err(&self.what, &format!("reading {name}"), e))?;
            n += chunk.len() as u64;
            if n > max {
                return Err(ReplicaError::Integrity(format!(
                    "{name}: longer than its signed manifest says"
                )));
            }
            h.update(&chunk);
            if let Some((f, path)) = sink.as_mut() {
                f.write_all(&chunk).map_err(|e| ReplicaError::io(path, e))?;
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(h.finish().as_ref());
        Ok((out, n))
    }

    pub async fn head(&self, name: &str) -> Result<Option<ObjectMeta>, ReplicaError> {
        match self.s3.head(&self.path(name)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(&self.what, &format!("looking up {name}"), e)),
        }
    }

    /// Every object under `dir` (relative to the prefix), at most `limit`.
    pub async fn list(&self, dir: &str, limit: usize) -> Result<Vec<ObjectMeta>, ReplicaError> {
        use futures::StreamExt;
        let base = if dir.is_empty() {
            Path::from(self.prefix.as_str())
        } else {
            self.path(dir)
        };
        let mut stream = self.s3.list(Some(&base));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let m = item.map_err(|e| store_err(&self.what, &format!("listing {dir}"), e))?;
            out.push(m);
            if out.len() > limit {
                return Err(ReplicaError::Other(format!(
                    "more than {limit} objects under {}/{dir}: narrow the listing",
                    self.what
                )));
            }
        }
        Ok(out)
    }

    pub async fn create_multipart(&self, name: &str) -> Result<String, ReplicaError> {
        self.s3
            .create_multipart(&self.path(name))
            .await
            .map_err(|e| store_err(&self.what, &format!("starting the upload of {name}"), e))
    }

    /// Uploads part `part_no` (from 1); returns its id to complete with.
    pub async fn put_part(
        &self,
        name: &str,
        upload_id: &str,
        part_no: usize,
        data: Bytes,
    ) -> Result<String, ReplicaError> {
        self.s3
            .put_part(
                &self.path(name),
                &upload_id.to_string(),
                part_no.saturating_sub(1),
                PutPayload::from_bytes(data),
            )
            .await
            .map(|p| p.content_id)
            .map_err(|e| store_err(&self.what, &format!("uploading part {part_no} of {name}"), e))
    }

    pub async fn complete_multipart(
        &self,
        name: &str,
        upload_id: &str,
        parts: Vec<String>,
    ) -> Result<(), ReplicaError> {
        let parts = parts.into_iter().map(|content_id| PartId { content_id }).collect();
        self.s3
            .complete_multipart(&self.path(name), &upload_id.to_string(), parts)
            .await
            .map(|_| ())
            .map_err(|e| store_err(&self.what, &format!("completing the upload of {name}"), e))
    }

    pub async fn abort_multipart(&self, name: &str, upload_id: &str) {
        let _ = self.s3.abort_multipart(&self.path(name), &upload_id.to_string()).await;
    }

    /// Whether an error means the bucket no longer knows the upload id (404).
    pub fn is_unknown_upload(e: &ReplicaError) -> bool {
        matches!(e, ReplicaError::Missing(_))
    }
}
