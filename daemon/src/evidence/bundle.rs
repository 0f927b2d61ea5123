//! Evidence bundles: signed exports of one or more cameras' footage, as a
//! directory or a zip. The format (file names, manifest types, hashing) and
//! its offline verifier are [`vigil_format::bundle`]; this writes bundles,
//! which needs the index, the export and the device signing key. The signed
//! manifest of one recording is [`crate::evidence::manifest`].
//!
//! Each camera's clip is the working image made by [`crate::evidence::export`];
//! `manifest.json` lists it with the source recordings, and the device key
//! signs the manifest's exact bytes into `manifest.sig`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::time::format_ns;
use crate::db::audit::{self, Outcome};
use crate::db::exports;
use crate::evidence::device::{DeviceError, DeviceKey};
use crate::evidence::export::{self, Archive, ExportError};
use vigil_format::bundle::{
    sha256_reader, BundleManifest, Clip, Hashing, Range, SigningKey, SourceRecording, TimeSyncState, BUNDLE_FORMAT,
    MANIFEST, PUBLIC_KEY, SIGNATURE,
};
use vigil_format::hex;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Index(#[from] crate::db::IndexError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("writing the zip: {0}")]
    Zip(String),
}

impl EvidenceError {
    pub fn is_integrity(&self) -> bool {
        matches!(self, EvidenceError::Export(e) if e.is_integrity())
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host clock's synchronisation now, as manifests record it.
pub fn time_sync_now() -> TimeSyncState {
    let t = crate::base::host::time_sync();
    TimeSyncState {
        synchronised: t.synchronised,
        max_error_us: t.max_error_us,
    }
}

fn range(start_ns: i64, end_ns: i64) -> Range {
    Range {
        start_utc: format_ns(start_ns),
        end_utc: format_ns(end_ns),
        start_ns,
        end_ns,
    }
}

pub fn software_version() -> String {
    format!("vigil {}", env!("CARGO_PKG_VERSION"))
}

/// Where a bundle goes: a new directory, or a `.zip` file.
#[derive(Clone, Debug)]
pub enum BundleTarget {
    Dir(PathBuf),
    Zip(PathBuf),
}

impl BundleTarget {
    pub fn from_path(p: &Path) -> Self {
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) {
            BundleTarget::Zip(p.to_path_buf())
        } else {
            BundleTarget::Dir(p.to_path_buf())
        }
    }
}

pub struct BundleRequest<'a> {
    pub cameras: &'a [String],
    pub start_ns: i64,
    pub end_ns: i64,
    /// Who makes it: recorded in the `export` row and the audit entry.
    pub operator: &'a str,
    /// Where the audit entry says the bundle went (the CLI's `--bundle`
    /// path); None for a bundle kept in the exports folder (the web).
    pub audit_destination: Option<&'a Path>,
    /// Keep the finished zip in this folder as `export-<id>.zip`, named in
    /// the export row (the web's exports folder): moved there in the step
    /// that finishes the row and writes the audit entry, so that an entry
    /// that says "ok" always has its file.
    pub store_in: Option<&'a Path>,
}

#[derive(Debug, Clone)]
pub struct BundleReport {
    pub export_id: i64,
    pub manifest: BundleManifest,
    pub manifest_sha256: [u8; 32],
    /// For a zip: the SHA-256 and size of the whole file.
    pub archive_sha256: Option<[u8; 32]>,
    pub archive_bytes: u64,
    pub frames: u64,
}

/// One file of the bundle being written.
trait Sink {
    fn begin(&mut self, name: &str) -> Result<Box<dyn Write + '_>, EvidenceError>;
}

struct DirSink {
    dir: PathBuf,
}

/// A file in a bundle directory: synced when done.
struct DirFile {
    w: std::io::BufWriter<std::fs::File>,
}

impl Write for DirFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.w.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        self.w.get_ref().sync_all()
    }
}

impl Sink for DirSink {
    fn begin(&mut self, name: &str) -> Result<Box<dyn Write + '_>, EvidenceError> {
        let p = self.dir.join(name);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(io_err(&p))?;
        Ok(Box::new(DirFile {
            w: std::io::BufWriter::with_capacity(256 * 1024, f),
        }))
    }
}

struct ZipSink {
    zip: zip::ZipWriter<std::io::BufWriter<std::fs::File>>,
}

impl Sink for ZipSink {
    fn begin(&mut self, name: &str) -> Result<Box<dyn Write + '_>, EvidenceError> {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true)
            .unix_permissions(0o644);
        self.zip
            .start_file(name, opts)
            .map_err(|e| EvidenceError::Zip(e.to_string()))?;
        Ok(Box::new(&mut self.zip))
    }
}

fn clip_name(camera: &str, start_ns: i64) -> String {
    let t = format_ns(start_ns).replace([':', '-'], "");
    let t = t.split('.').next().unwrap_or(&t).trim_end_matches('Z').to_string();
    format!("{camera}_{t}Z.mp4")
}

/// Writes the clips, the manifest, its signature and the public key into `sink`.
fn write_bundle(
    archive: Archive<'_>,
    device: &DeviceKey,
    req: &BundleRequest<'_>,
    export_id: i64,
    sink: &mut dyn Sink,
) -> Result<(BundleManifest, [u8; 32], u64), EvidenceError> {
    let exported_ns = crate::base::clock::now_ns();
    let mut clips = Vec::new();
    let mut files = Vec::new();
    let mut frames = 0;
    for camera in req.cameras {
        let name = clip_name(camera, req.start_ns);
        let w = sink.begin(&name)?;
        let mut h = Hashing::new(w);
        let r = export::export(archive, camera, req.start_ns, req.end_ns, &mut h, Path::new(&name))?;
        h.flush().map_err(io_err(Path::new(&name)))?;
        let (_, entry) = h.entry(&name).map_err(io_err(Path::new(&name)))?;
        let mut sources = Vec::new();
        for id in &r.recordings {
            if let Some(rec) = archive.index.recording(*id)? {
                sources.push(SourceRecording {
                    id: rec.id,
                    file: rec.file_name.clone(),
                    key_id: hex(&rec.key_id),
                    start_utc: format_ns(rec.start_wall_ns),
                    end_utc: format_ns(rec.end_wall_ns()),
                    bytes: rec.bytes,
                    ciphertext_sha256: rec.sha256.as_deref().map(hex),
                });
            }
        }
        frames += r.frames;
        let camera_clock = crate::db::camera_clock::reading(
            archive.index,
            crate::base::names::main_of_sub_stream(camera).unwrap_or(camera),
        )?
        .map(|c| vigil_format::bundle::CameraClockState {
            drift_ms: c.drift_ms,
            source: c.source.as_str().to_string(),
            measured_utc: format_ns(c.measured_ns),
        });
        clips.push(Clip {
            camera_clock,
            file: name,
            camera: camera.clone(),
            actual: range(r.first_wall_ns, r.end_wall_ns),
            frames: r.frames,
            source_recordings: sources,
        });
        files.push(entry);
    }
    let public_pem = device.identity().public_key_pem();
    {
        let mut w = sink.begin(PUBLIC_KEY)?;
        w.write_all(public_pem.as_bytes())
            .map_err(io_err(Path::new(PUBLIC_KEY)))?;
        w.flush().map_err(io_err(Path::new(PUBLIC_KEY)))?;
    }
    let actual = range(
        clips.iter().map(|c| c.actual.start_ns).min().unwrap_or(req.start_ns),
        clips.iter().map(|c| c.actual.end_ns).max().unwrap_or(req.end_ns),
    );
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.into(),
        image_type: "working".into(),
        export_id,
        device_id: device.identity().device_id.clone(),
        exported_utc: format_ns(exported_ns),
        exported_ns,
        operator: req.operator.to_string(),
        software: software_version(),
        time_sync: time_sync_now(),
        requested: range(req.start_ns, req.end_ns),
        actual,
        clips,
        files,
        signing_key: SigningKey {
            algorithm: "Ed25519".into(),
            public_key_file: PUBLIC_KEY.into(),
            public_key_hex: hex(&device.identity().public_key),
            fingerprint_sha256: device.identity().fingerprint(),
        },
        audit_head: crate::evidence::audit_anchor::signed_head(archive.index.conn(), device)?,
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| EvidenceError::Zip(e.to_string()))?;
    bytes.push(b'\n');
    let sig = device.sign(&bytes);
    for (name, data) in [(MANIFEST, &bytes[..]), (SIGNATURE, &sig[..])] {
        let mut w = sink.begin(name)?;
        w.write_all(data).map_err(io_err(Path::new(name)))?;
        w.flush().map_err(io_err(Path::new(name)))?;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    Ok((manifest, digest, frames))
}

/// Makes a signed bundle of `req` at `target` and records it in the
/// `export` table. On any error nothing is left at `target` and no row stays.
/// Audited as `export.bundle` of the operator: in the transaction that
/// finishes the row, or as failed (with the error) when it fails.
pub fn create_bundle(
    archive: Archive<'_>,
    device: &DeviceKey,
    req: &BundleRequest<'_>,
    target: &BundleTarget,
) -> Result<BundleReport, EvidenceError> {
    let conn = archive.index.conn();
    let cameras = req.cameras.join(",");
    let result = make_bundle(archive, device, req, target, &cameras);
    if let Err(e) = &result {
        let _ = audit::append(
            conn,
            req.operator,
            "export.bundle",
            &cameras,
            Outcome::Failed,
            &e.to_string(),
        );
    }
    result
}

fn make_bundle(
    archive: Archive<'_>,
    device: &DeviceKey,
    req: &BundleRequest<'_>,
    target: &BundleTarget,
    cameras: &str,
) -> Result<BundleReport, EvidenceError> {
    if req.cameras.is_empty() {
        return Err(EvidenceError::Usage("name at least one camera".into()));
    }
    if req.end_ns <= req.start_ns {
        return Err(EvidenceError::Export(ExportError::EmptyRange));
    }
    let conn = archive.index.conn();
    let export_id = exports::insert_pending(
        conn,
        crate::base::clock::now_ns(),
        req.operator,
        cameras,
        req.start_ns,
        req.end_ns,
    )?;
    let rep = match build(archive, device, req, target, export_id) {
        Ok(rep) => rep,
        Err(e) => {
            // build leaves nothing at the target on its own errors.
            let _ = exports::forget(conn, export_id);
            return Err(e);
        }
    };
    let finished = record_finished(conn, rep, req, target, export_id, cameras);
    if finished.is_err() {
        // Built but not recorded: nothing stays, as for any other failure
        // (the target did not exist, or was an empty folder, before build).
        let _ = exports::forget(conn, export_id);
        match target {
            BundleTarget::Zip(p) => {
                let _ = std::fs::remove_file(p);
            }
            BundleTarget::Dir(p) => {
                let _ = std::fs::remove_dir_all(p);
            }
        }
        if let Some(dir) = req.store_in {
            let _ = std::fs::remove_file(dir.join(kept_name(export_id)));
        }
    }
    finished
}

/// The name of a bundle kept in the exports folder.
fn kept_name(export_id: i64) -> String {
    format!("export-{export_id}.zip")
}

/// Finishes a built bundle's export row, keeps its file where asked, and
/// writes its ok entry: one IMMEDIATE transaction, so that an ok entry always
/// has its row and its file.
fn record_finished(
    conn: &rusqlite::Connection,
    rep: BundleReport,
    req: &BundleRequest<'_>,
    target: &BundleTarget,
    export_id: i64,
    cameras: &str,
) -> Result<BundleReport, EvidenceError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let digest = rep.archive_sha256.unwrap_or(rep.manifest_sha256);
    exports::finish(
        &tx,
        export_id,
        rep.archive_bytes as i64,
        &digest,
        &rep.manifest_sha256,
        rep.manifest
            .clips
            .iter()
            .flat_map(|c| c.source_recordings.iter().map(|s| s.id)),
    )?;
    let mut detail = format!(
        "export {export_id}: {} to {}, {} frames, {} bytes, sha256 {}",
        format_ns(rep.manifest.actual.start_ns),
        format_ns(rep.manifest.actual.end_ns),
        rep.frames,
        rep.archive_bytes,
        hex(&digest)
    );
    if let Some(p) = req.audit_destination {
        detail.push_str(&format!(" to {}", p.display()));
    }
    if let (Some(dir), BundleTarget::Zip(made)) = (req.store_in, target) {
        let name = kept_name(export_id);
        let kept = dir.join(&name);
        std::fs::rename(made, &kept).map_err(io_err(&kept))?;
        vigil_format::vseg::sync_dir(dir).map_err(|e| EvidenceError::Zip(e.to_string()))?;
        exports::set_file_name(&tx, export_id, &name)?;
    }
    audit::append(&tx, req.operator, "export.bundle", cameras, Outcome::Ok, &detail)?;
    tx.commit()?;
    Ok(rep)
}

/// An export's file, opened for a download.
pub enum Download {
    /// No finished export of that id has a file.
    NotFound,
    /// Its file cannot be opened.
    Gone(std::io::Error),
    Ready {
        file: std::fs::File,
        /// The file's length as it is now (the body must match it).
        bytes: i64,
        sha256: Vec<u8>,
        created_ns: i64,
    },
}

/// Opens the file of export `id` (in `dir`) for `actor` to download,
/// audited as `export.download` once it is open.
pub fn open_download(conn: &rusqlite::Connection, dir: &Path, id: i64, actor: &str) -> rusqlite::Result<Download> {
    let Some(exports::ExportFile {
        file_name: Some(name),
        sha256,
        created_ns,
        bytes,
    }) = exports::file(conn, id)?
    else {
        return Ok(Download::NotFound);
    };
    let file = match std::fs::File::open(dir.join(&name)) {
        Ok(f) => f,
        Err(e) => return Ok(Download::Gone(e)),
    };
    let bytes = file.metadata().map(|m| m.len() as i64).unwrap_or(bytes);
    audit::append(
        conn,
        actor,
        "export.download",
        &format!("export {id}"),
        Outcome::Ok,
        &format!("{bytes} bytes, sha256 {}", hex(&sha256)),
    )?;
    Ok(Download::Ready {
        file,
        bytes,
        sha256,
        created_ns,
    })
}

fn build(
    archive: Archive<'_>,
    device: &DeviceKey,
    req: &BundleRequest<'_>,
    target: &BundleTarget,
    export_id: i64,
) -> Result<BundleReport, EvidenceError> {
    match target {
        BundleTarget::Dir(dir) => {
            if dir.exists() && std::fs::read_dir(dir).map_err(io_err(dir))?.next().is_some() {
                return Err(EvidenceError::Usage(format!(
                    "{} exists and is not empty; give a new directory or a .zip",
                    dir.display()
                )));
            }
            let mut partial = dir.as_os_str().to_owned();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
            let mut sink = DirSink { dir: partial.clone() };
            let res = write_bundle(archive, device, req, export_id, &mut sink).and_then(|r| {
                vigil_format::vseg::sync_dir(&partial).map_err(|e| EvidenceError::Zip(e.to_string()))?;
                if dir.exists() {
                    std::fs::remove_dir(dir).map_err(io_err(dir))?;
                }
                std::fs::rename(&partial, dir).map_err(io_err(dir))?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = vigil_format::vseg::sync_dir(parent);
                }
                Ok(r)
            });
            if res.is_err() {
                let _ = std::fs::remove_dir_all(&partial);
            }
            let (manifest, manifest_sha256, frames) = res?;
            let archive_bytes = manifest.files.iter().map(|f| f.bytes).sum();
            Ok(BundleReport {
                export_id,
                manifest,
                manifest_sha256,
                archive_sha256: None,
                archive_bytes,
                frames,
            })
        }
        BundleTarget::Zip(path) => {
            let mut partial = path.as_os_str().to_owned();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            let res: Result<_, EvidenceError> = (|| {
                let f = std::fs::File::create(&partial).map_err(io_err(&partial))?;
                let mut sink = ZipSink {
                    zip: zip::ZipWriter::new(std::io::BufWriter::with_capacity(256 * 1024, f)),
                };
                let r = write_bundle(archive, device, req, export_id, &mut sink)?;
                let w = sink.zip.finish().map_err(|e| EvidenceError::Zip(e.to_string()))?;
                let f = w.into_inner().map_err(|e| EvidenceError::Io {
                    path: partial.clone(),
                    source: e.into_error(),
                })?;
                f.sync_all().map_err(io_err(&partial))?;
                drop(f);
                let mut f = std::fs::File::open(&partial).map_err(io_err(&partial))?;
                let whole = sha256_reader(&mut f).map_err(io_err(&partial))?;
                std::fs::rename(&partial, path).map_err(io_err(path))?;
                Ok((r, whole))
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            let ((manifest, manifest_sha256, frames), (archive_sha256, archive_bytes)) = res?;
            Ok(BundleReport {
                export_id,
                manifest,
                manifest_sha256,
                archive_sha256: Some(archive_sha256),
                archive_bytes,
                frames,
            })
        }
    }
}
