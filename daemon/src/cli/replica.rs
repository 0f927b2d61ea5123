//! `vigil replica`: a box's off-box replica, read on any machine with no
//! TPM and no database: `list`, `verify` (every object read back and
//! checked; exit 1 naming what is missing or altered), `export` (an MP4
//! straight from the bucket with the recovery key) and `restore` (into the
//! storage of the box `--config` names, after a board swap).
//!
//! The bucket comes from the flags, or from `[replication]` of `--config`
//! when `--endpoint` is not given. The secret access key comes from the
//! environment variable `VIGIL_REPLICA_SECRET_ACCESS_KEY`, or from the box's
//! secrets store when the bucket comes from its configuration.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{load_config, open_keyring, Failure};
use crate::base::time as cli_time;
use crate::keys::recovery::RecoveryKey;
use crate::replica::remote::Remote;
use crate::replica::store::Target;
use crate::replica::ReplicaError;

pub const SECRET_ENV: &str = "VIGIL_REPLICA_SECRET_ACCESS_KEY";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// The store, e.g. https://s3.example.net (default: [replication] of --config).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    #[arg(long, global = true)]
    bucket: Option<String>,
    /// The box's prefix in the bucket (its device id unless the box set one).
    #[arg(long, global = true)]
    prefix: Option<String>,
    #[arg(long, global = true)]
    access_key_id: Option<String>,
    #[arg(long, global = true, default_value = "us-east-1")]
    region: String,
    /// path (Garage, MinIO, Ceph) or virtual-host (AWS).
    #[arg(long, global = true, default_value = "path")]
    addressing: String,
    /// Allow a plain http:// endpoint.
    #[arg(long, global = true)]
    allow_http: bool,
    /// PEM roots to trust for the endpoint (default: the system's).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// The box's signing-key fingerprint (SHA-256 hex, from its provisioning
    /// report): refuse a replica signed by any other key.
    #[arg(long, global = true)]
    expect_fingerprint: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The replicated recordings: camera, start, end, frames, bytes, holds.
    List {
        #[arg(long)]
        camera: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Read every object back: each recording against its signed manifest,
    /// each key and the audit head. Exit 0 intact, 1 naming each problem.
    Verify,
    /// An MP4 of one camera's range, straight from the bucket.
    Export {
        /// The file holding the box's recovery key (from `keys init`).
        #[arg(long)]
        recovery_key_file: PathBuf,
        #[arg(long)]
        camera: String,
        /// RFC 3339.
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Bring the replica's recordings into this box (`--config`): files as
    /// the old box wrote them, keys rewrapped under this box's KEK.
    Restore {
        #[arg(long)]
        recovery_key_file: PathBuf,
        #[arg(long)]
        camera: Option<String>,
    },
}

fn failure(e: ReplicaError) -> Failure {
    match e {
        ReplicaError::Integrity(m) => Failure::Integrity(m),
        ReplicaError::Config(m) => Failure::Usage(m),
        ReplicaError::Key(k) => k.into(),
        other => Failure::Runtime(other.into()),
    }
}

/// The bucket and its secret, from the flags or from the box's configuration.
fn target(config: &Path, a: &Args) -> Result<(Target, String), Failure> {
    let env_secret = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty());
    let Some(endpoint) = &a.endpoint else {
        let cfg = load_config(config)?;
        let Some(r) = cfg.replication.clone() else {
            return Err(Failure::Usage(format!(
                "give --endpoint, --bucket, --prefix and --access-key-id (and {SECRET_ENV}), or a config with [replication]"
            )));
        };
        let kr = open_keyring(&cfg, &crate::db::audit::cli_actor())?;
        let device = crate::evidence::device::DeviceKey::load_or_create(&kr, "replica command")
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
        let mut t = crate::replica::upload::target(&r, &device.identity().device_id);
        if let Some(p) = &a.prefix {
            t.prefix = p.clone();
        }
        let secret = match env_secret {
            Some(s) => s,
            None => {
                let s = crate::keys::secrets::get(&kr, crate::config::replication::SECRET_NAME, "replica command")?;
                String::from_utf8_lossy(&s).trim().to_string()
            }
        };
        return Ok((t, secret));
    };
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| Failure::Usage(format!("--{flag} is needed with --endpoint")))
    };
    let endpoint = crate::config::replication::endpoint(endpoint, a.allow_http).map_err(Failure::Usage)?;
    let bucket = need(&a.bucket, "bucket")?;
    crate::config::replication::bucket_name(&bucket).map_err(Failure::Usage)?;
    let prefix = need(&a.prefix, "prefix")?.trim_matches('/').to_string();
    crate::config::replication::key_prefix(&prefix).map_err(Failure::Usage)?;
    let virtual_host = match a.addressing.as_str() {
        "path" => false,
        "virtual-host" => true,
        other => {
            return Err(Failure::Usage(format!(
                "--addressing {other}: give path or virtual-host"
            )))
        }
    };
    let secret =
        env_secret.ok_or_else(|| Failure::Usage(format!("set {SECRET_ENV} to the bucket's secret access key")))?;
    Ok((
        Target {
            endpoint,
            region: a.region.clone(),
            bucket,
            prefix,
            access_key_id: need(&a.access_key_id, "access-key-id")?,
            virtual_host,
            ca_file: a.ca_file.clone(),
        },
        secret,
    ))
}

fn recovery_key(path: &Path) -> Result<RecoveryKey, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    Ok(RecoveryKey::parse(text.trim())?)
}

fn camera_arg(c: Option<&str>) -> Result<(), Failure> {
    match c {
        Some(c) if !crate::base::names::valid_recorded_camera_name(c) => {
            Err(Failure::Usage(format!("--camera \"{c}\" is not a camera name")))
        }
        _ => Ok(()),
    }
}

pub fn run(config: &Path, args: Args) -> Result<(), Failure> {
    match &args.command {
        Command::List { camera, .. } | Command::Restore { camera, .. } => camera_arg(camera.as_deref())?,
        Command::Export { camera, .. } => camera_arg(Some(camera))?,
        Command::Verify => {}
    }
    if matches!(args.command, Command::Restore { .. }) && args.expect_fingerprint.is_none() {
        return Err(Failure::Usage(
            "restore writes into this box: give --expect-fingerprint (the old box's signing-key fingerprint, \
             from its provisioning report)"
                .into(),
        ));
    }
    let (target, secret) = target(config, &args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(async {
        let remote = Remote::open(&target, &secret, args.expect_fingerprint.as_deref())
            .await
            .map_err(failure)?;
        eprintln!(
            "replica of {} at {} (signing key {}{})",
            remote.device.device_id,
            remote.bucket.describe(),
            remote.device.signing_key_fingerprint_sha256,
            if args.expect_fingerprint.is_some() { ", as expected" } else { ", not pinned: give --expect-fingerprint" }
        );
        match args.command {
            Command::List { camera, json } => list(&remote, camera.as_deref(), json).await,
            Command::Verify => verify(&remote).await,
            Command::Export {
                recovery_key_file,
                camera,
                start,
                end,
                out,
            } => {
                let rk = recovery_key(&recovery_key_file)?;
                let start_ns = cli_time::parse_rfc3339(&start).map_err(Failure::Usage)?;
                let end_ns = cli_time::parse_rfc3339(&end).map_err(Failure::Usage)?;
                if end_ns <= start_ns {
                    return Err(Failure::Usage("--end must be after --start".into()));
                }
                let work = tempfile_dir(&out)?;
                let mut problems = Vec::new();
                let r = crate::replica::restore::export(
                    &remote,
                    &rk,
                    &camera,
                    start_ns,
                    end_ns,
                    &out,
                    work.path(),
                    &mut problems,
                )
                .await
                .map_err(failure)?;
                println!(
                    "exported {} frames ({} bytes) of {camera} from {} to {} to {}",
                    r.frames,
                    r.bytes,
                    crate::base::time::format_ns(r.first_wall_ns),
                    crate::base::time::format_ns(r.end_wall_ns),
                    out.display()
                );
                incomplete(&problems, "the export leaves out what failed its checks")
            }
            Command::Restore { recovery_key_file, camera } => {
                let rk = recovery_key(&recovery_key_file)?;
                let cfg = load_config(config)?;
                let actor = crate::db::audit::cli_actor();
                let kr = open_keyring(&cfg, &actor)?;
                let mut storage = crate::storage::Storage::new(&cfg.storage_dir);
                storage.ensure().map_err(|e| Failure::Runtime(e.into()))?;
                let r = crate::replica::restore::restore(&remote, &rk, &kr, &storage, camera.as_deref(), &actor)
                    .await
                    .map_err(failure)?;
                println!(
                    "restored {} recording(s) ({} bytes) into {}; {} already here; {} data key(s) rewrapped under this box's key",
                    r.restored,
                    r.bytes,
                    cfg.storage_dir.display(),
                    r.already,
                    r.keys_adopted
                );
                incomplete(&r.problems, "these were not restored")
            }
        }
    })
}

/// A scratch directory beside the output (same filesystem), removed on drop.
fn tempfile_dir(out: &Path) -> Result<TempDir, Failure> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tag = crate::keys::random_bytes::<8>().map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
    let dir = parent.join(format!(".vigil-replica-{}", vigil_format::hex(&tag)));
    // Made new: never an existing directory (or a planted link).
    std::fs::create_dir(&dir).map_err(|e| Failure::Usage(format!("{}: {e}", dir.display())))?;
    Ok(TempDir(dir))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Names each problem; exit 1 when there is any.
fn incomplete(problems: &[String], what: &str) -> Result<(), Failure> {
    if problems.is_empty() {
        return Ok(());
    }
    for p in problems {
        println!("PROBLEM: {p}");
    }
    Err(Failure::Integrity(format!(
        "{} object(s) of the replica failed their checks: {what} (run `vigil replica verify`)",
        problems.len()
    )))
}

async fn list(remote: &Remote, camera: Option<&str>, json: bool) -> Result<(), Failure> {
    let listing = remote.manifests(camera).await.map_err(failure)?;
    let ms = &listing.manifests;
    if json {
        let v = serde_json::to_string_pretty(ms).map_err(|e| Failure::Runtime(e.into()))?;
        println!("{v}");
        return incomplete(&listing.problems, "left out of the list");
    }
    println!(
        "{:<8} {:<16} {:<24} {:<24} {:>7} {:>11}  holds",
        "id", "camera", "start", "end", "frames", "bytes"
    );
    for m in ms {
        let r = &m.recording;
        println!(
            "{:<8} {:<16} {:<24} {:<24} {:>7} {:>11}  {}",
            r.id,
            r.camera,
            r.start_utc,
            r.end_utc,
            r.frames,
            m.bytes,
            m.legal_holds.len()
        );
    }
    println!(
        "{} recording(s), {} bytes",
        ms.len(),
        ms.iter().map(|m| m.bytes).sum::<u64>()
    );
    incomplete(&listing.problems, "left out of the list")
}

async fn verify(remote: &Remote) -> Result<(), Failure> {
    let rep = remote.verify().await.map_err(failure)?;
    println!(
        "checked {} recording(s) ({} bytes), {} key(s); audit head: {}",
        rep.recordings,
        rep.bytes,
        rep.keys,
        rep.audit_head.as_deref().unwrap_or("none")
    );
    if rep.problems.is_empty() {
        println!("RESULT: INTACT");
        return Ok(());
    }
    for p in &rep.problems {
        println!("PROBLEM: {p}");
    }
    Err(Failure::Integrity(format!(
        "{} problem(s) in the replica",
        rep.problems.len()
    )))
}
