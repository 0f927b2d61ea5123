//! `vigil export`: a time range as MP4 (`--out`), or as a signed evidence
//! bundle (`--bundle DIR` or `--bundle FILE.zip`; one clip per `--camera`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{load_config, load_keys, open_index, open_keyring, Failure};
use crate::base::time as cli_time;
use crate::db::audit;
use crate::evidence::export;
use crate::keys::KeyLookup;
use crate::storage::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, required = true)]
    camera: Vec<String>,
    /// RFC 3339, e.g. 2026-11-22T06:41:00Z
    #[arg(long)]
    start: String,
    #[arg(long)]
    end: String,
    /// Output file, or `-` to stream the MP4 to standard output.
    #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
    out: Option<PathBuf>,
    /// A signed evidence bundle: a new directory, or a path ending in .zip.
    #[arg(long)]
    bundle: Option<PathBuf>,
}

pub fn run(config_path: &Path, args: Args) -> Result<(), Failure> {
    match args {
        Args {
            camera,
            start,
            end,
            out: None,
            bundle: Some(bundle),
        } => export_bundle(config_path, &camera, &start, &end, &bundle),
        Args {
            camera,
            start,
            end,
            out: Some(out),
            ..
        } => export_mp4(config_path, camera, &start, &end, &out),
        Args { .. } => Err(Failure::Usage("give --out FILE or --bundle DIR|FILE.zip".into())),
    }
}

/// One camera's range as one MP4 file (or standard output for `-`).
fn export_mp4(config_path: &Path, camera: Vec<String>, start: &str, end: &str, out: &Path) -> Result<(), Failure> {
    let [camera] = <[String; 1]>::try_from(camera)
        .map_err(|_| Failure::Usage("an MP4 export takes one --camera; use --bundle for several".into()))?;
    let config = load_config(config_path)?;
    let start_ns = cli_time::parse_rfc3339(start).map_err(Failure::Usage)?;
    let end_ns = cli_time::parse_rfc3339(end).map_err(Failure::Usage)?;
    let keys = load_keys(&config)?;
    let index = open_index(&config)?;
    let storage = Storage::new(&config.storage_dir);
    match export::export_to_file(
        export::Archive {
            index: &index,
            storage: &storage,
            keys: keys.as_ref(),
        },
        &audit::cli_actor(),
        &camera,
        start_ns,
        end_ns,
        out,
    ) {
        Ok(r) => {
            let summary = format!(
                "exported {} frames from {} recording(s), {} to {}, {} bytes to {}",
                r.frames,
                r.recordings.len(),
                cli_time::format_ns(r.first_wall_ns),
                cli_time::format_ns(r.end_wall_ns),
                r.bytes,
                out.display()
            );
            // With `--out -` standard output carries the MP4.
            if out == Path::new("-") {
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Err(e) if e.is_integrity() => Err(Failure::Integrity(format!("export refused: {e}"))),
        Err(
            e @ (export::ExportError::UnknownCamera(_)
            | export::ExportError::NothingToExport { .. }
            | export::ExportError::EmptyRange),
        ) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}

/// A signed evidence bundle of the range, one clip per camera.
fn export_bundle(config_path: &Path, cameras: &[String], start: &str, end: &str, out: &Path) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let start_ns = cli_time::parse_rfc3339(start).map_err(Failure::Usage)?;
    let end_ns = cli_time::parse_rfc3339(end).map_err(Failure::Usage)?;
    let actor = audit::cli_actor();
    let kr = open_keyring(&config, &actor)?;
    let device = crate::evidence::device::DeviceKey::load_or_create(&kr, "sign an export")
        .map_err(|e| Failure::Runtime(e.into()))?;
    let index = open_index(&config)?;
    let storage = Storage::new(&config.storage_dir);
    let keys: Arc<dyn KeyLookup> = kr.clone();
    let archive = export::Archive {
        index: &index,
        storage: &storage,
        keys: keys.as_ref(),
    };
    let req = crate::evidence::bundle::BundleRequest {
        cameras,
        start_ns,
        end_ns,
        operator: &actor,
        audit_destination: Some(out),
        store_in: None,
    };
    let target = crate::evidence::bundle::BundleTarget::from_path(out);
    match crate::evidence::bundle::create_bundle(archive, &device, &req, &target) {
        Ok(r) => {
            println!(
                "export {}: {} frames, {} to {}, {} bytes in {}",
                r.export_id,
                r.frames,
                cli_time::format_ns(r.manifest.actual.start_ns),
                cli_time::format_ns(r.manifest.actual.end_ns),
                r.archive_bytes,
                out.display()
            );
            match r.archive_sha256 {
                Some(d) => println!("sha256 of the zip: {}", vigil_format::hex(&d)),
                None => println!("sha256 of manifest.json: {}", vigil_format::hex(&r.manifest_sha256)),
            }
            println!(
                "signed by device {} (key fingerprint {})",
                r.manifest.device_id, r.manifest.signing_key.fingerprint_sha256
            );
            Ok(())
        }
        Err(e) if e.is_integrity() => Err(Failure::Integrity(format!("export refused: {e}"))),
        Err(
            e @ (crate::evidence::bundle::EvidenceError::Usage(_)
            | crate::evidence::bundle::EvidenceError::Export(
                export::ExportError::UnknownCamera(_)
                | export::ExportError::NothingToExport { .. }
                | export::ExportError::EmptyRange,
            )),
        ) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}
