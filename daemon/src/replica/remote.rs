//! Reading a box's replica on any machine, with no TPM and no database:
//! its identity (checked against the fingerprint the installer wrote down),
//! the signed manifests, and `verify`, which reads every object back and
//! names each one missing, altered or unsigned.

use std::collections::{BTreeMap, HashSet};

use vigil_format::bundle::audit_head::AuditHead;
use vigil_format::hex;

use super::objects::{self, DeviceDoc, KeyDoc, RecordingManifest};
use super::store::{Bucket, Target};
use super::{names, ReplicaError};

/// The most objects a listing reads: 3 per recording, so about 145 days of
/// 8 cameras with 1-minute recordings (`list --camera` reads one camera).
pub const MAX_OBJECTS: usize = 5_000_000;

/// The most a JSON object (device, manifest, key, audit head) or a
/// signature may be: a manifest with many holds is a few KiB.
pub const MAX_DOC: u64 = 1 << 20;
/// The largest recording a manifest may claim (a recording is bounded by
/// its length, minutes at most: 16 GiB is far beyond any).
pub const MAX_RECORDING: u64 = 16 << 30;

/// A box's replica, its identity checked.
pub struct Remote {
    pub bucket: Bucket,
    pub device: DeviceDoc,
    pub signing_key: [u8; 32],
}

/// The manifests that passed their checks, and what failed.
#[derive(Debug, Default)]
pub struct Listing {
    pub manifests: Vec<RecordingManifest>,
    pub problems: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub recordings: u64,
    pub bytes: u64,
    pub keys: u64,
    pub audit_head: Option<String>,
    /// One line per problem, naming the object.
    pub problems: Vec<String>,
}

impl Remote {
    pub async fn open(target: &Target, secret: &str, expect_fingerprint: Option<&str>) -> Result<Remote, ReplicaError> {
        let bucket = Bucket::open(target, secret, None)?;
        let missing = |n: &str| ReplicaError::Integrity(format!("{n} is missing under {}", bucket.describe()));
        let bytes = bucket
            .get(names::DEVICE, MAX_DOC)
            .await?
            .ok_or_else(|| missing(names::DEVICE))?;
        let sig = bucket
            .get(&names::sig(names::DEVICE), MAX_DOC)
            .await?
            .ok_or_else(|| missing(&names::sig(names::DEVICE)))?;
        let (device, signing_key) = objects::trusted_device(&bytes, &sig, expect_fingerprint)?;
        Ok(Remote {
            bucket,
            device,
            signing_key,
        })
    }

    async fn signed<T: for<'de> serde::Deserialize<'de>>(&self, name: &str) -> Result<T, ReplicaError> {
        let bytes = self
            .bucket
            .get(name, MAX_DOC)
            .await?
            .ok_or_else(|| ReplicaError::Integrity(format!("{name} is missing")))?;
        let sig = self.bucket.get(&names::sig(name), MAX_DOC).await?.ok_or_else(|| {
            ReplicaError::Integrity(format!("{} is missing (the signature of {name})", names::sig(name)))
        })?;
        objects::open_signed(name, &bytes, &sig, &self.signing_key)
    }

    /// A recording's manifest, its signature and device checked.
    pub async fn manifest(&self, name: &str) -> Result<RecordingManifest, ReplicaError> {
        let m: RecordingManifest = self.signed(name).await?;
        if m.format != objects::RECORDING_FORMAT {
            return Err(ReplicaError::Integrity(format!(
                "{name}: unknown format \"{}\"",
                m.format
            )));
        }
        if m.device_id != self.device.device_id {
            return Err(ReplicaError::Integrity(format!(
                "{name}: made by device {}, not {}",
                m.device_id, self.device.device_id
            )));
        }
        if !name.ends_with(".json") || m.object != format!("{}.vseg", name.strip_suffix(".json").unwrap_or(name)) {
            return Err(ReplicaError::Integrity(format!(
                "{name}: names the object {}, not its own",
                m.object
            )));
        }
        // The camera becomes a directory name on restore: only a real camera
        // name, and the one the object is filed under.
        let r = &m.recording;
        if !crate::base::names::valid_recorded_camera_name(&r.camera)
            || names::recording_stem(&r.camera, r.start_wall_ns, r.id) != name.strip_suffix(".json").unwrap_or(name)
        {
            return Err(ReplicaError::Integrity(format!(
                "{name}: its camera, start or id does not match where it is filed"
            )));
        }
        if r.timescale <= 0 || r.end_pts < r.start_pts || m.bytes > MAX_RECORDING {
            return Err(ReplicaError::Integrity(format!("{name}: impossible times or size")));
        }
        Ok(m)
    }

    /// A data key document, signed and for this device.
    pub async fn key_doc(&self, key_id: &str) -> Result<KeyDoc, ReplicaError> {
        let name = format!("keys/{key_id}.json");
        let k: KeyDoc = self.signed(&name).await?;
        if k.format != objects::KEY_FORMAT || k.key_id != key_id || k.device_id != self.device.device_id {
            return Err(ReplicaError::Integrity(format!(
                "{name}: does not describe key {key_id} of this device"
            )));
        }
        Ok(k)
    }

    /// The manifests of `camera` (all cameras: None), oldest first, and
    /// one line per manifest that failed its checks (left out). Each is
    /// bound to its own name (camera, day, id), so a copy under another
    /// name fails.
    pub async fn manifests(&self, camera: Option<&str>) -> Result<Listing, ReplicaError> {
        let dir = match camera {
            Some(c) => format!("recordings/{c}/"),
            None => "recordings/".into(),
        };
        let listed = self.bucket.list(dir.trim_end_matches('/'), MAX_OBJECTS).await?;
        let mut out = Listing::default();
        for m in &listed {
            let name = self.bucket.relative(&m.location).to_string();
            if name.ends_with(".json") {
                match self.manifest(&name).await {
                    Ok(m) => out.manifests.push(m),
                    Err(e) => out.problems.push(e.to_string()),
                }
            }
        }
        out.manifests
            .sort_by_key(|m| (m.recording.start_wall_ns, m.recording.id));
        Ok(out)
    }

    /// Reads every object back: each recording's ciphertext against its
    /// signed manifest (length and SHA-256), each key document, the audit
    /// head, and objects without a manifest.
    pub async fn verify(&self) -> Result<VerifyReport, ReplicaError> {
        let mut rep = VerifyReport::default();
        let listed = self.bucket.list("", MAX_OBJECTS).await?;
        let sizes: BTreeMap<String, u64> = listed
            .iter()
            .map(|m| (self.bucket.relative(&m.location).to_string(), m.size))
            .collect();
        let mut accounted: HashSet<String> = [names::DEVICE.to_string(), names::sig(names::DEVICE)].into();
        let mut keys_needed = HashSet::new();
        for name in sizes
            .keys()
            .filter(|n| n.starts_with("recordings/") && n.ends_with(".json"))
        {
            accounted.insert(name.clone());
            accounted.insert(names::sig(name));
            let m = match self.manifest(name).await {
                Ok(m) => m,
                Err(e) => {
                    rep.problems.push(e.to_string());
                    continue;
                }
            };
            accounted.insert(m.object.clone());
            keys_needed.insert(m.key_id.clone());
            rep.recordings += 1;
            match self.bucket.sha256_of(&m.object).await? {
                None => rep
                    .problems
                    .push(format!("{}: missing (its manifest {name} names it)", m.object)),
                Some((sha, len)) => {
                    rep.bytes += len;
                    if len != m.bytes {
                        rep.problems.push(format!(
                            "{}: altered: {len} bytes, the manifest says {}",
                            m.object, m.bytes
                        ));
                    } else if hex(&sha) != m.ciphertext_sha256 {
                        rep.problems.push(format!(
                            "{}: altered: SHA-256 {} does not match the signed manifest's {}",
                            m.object,
                            hex(&sha),
                            m.ciphertext_sha256
                        ));
                    }
                }
            }
        }
        for k in &keys_needed {
            let name = format!("keys/{k}.json");
            accounted.insert(name.clone());
            accounted.insert(names::sig(&name));
            match self.key_doc(k).await {
                Ok(_) => rep.keys += 1,
                Err(e) => rep.problems.push(e.to_string()),
            }
        }
        if sizes.contains_key(names::AUDIT_HEAD) {
            accounted.insert(names::AUDIT_HEAD.into());
            accounted.insert(names::sig(names::AUDIT_HEAD));
            match self.signed::<AuditHead>(names::AUDIT_HEAD).await {
                Ok(h) => match h.verify(&self.device.device_id, &self.signing_key) {
                    Ok(()) => {
                        rep.audit_head = Some(format!("checkpoint {} at entry {} signed {}", h.seq, h.entry_id, h.ts))
                    }
                    Err(e) => rep.problems.push(format!("{}: {e}", names::AUDIT_HEAD)),
                },
                Err(e) => rep.problems.push(e.to_string()),
            }
        } else {
            rep.problems.push(format!(
                "{}: missing (no signed audit head was uploaded)",
                names::AUDIT_HEAD
            ));
        }
        for name in sizes.keys() {
            if accounted.contains(name) || name.starts_with("keys/") {
                continue;
            }
            rep.problems
                .push(format!("{name}: no signed manifest accounts for this object"));
        }
        Ok(rep)
    }
}
