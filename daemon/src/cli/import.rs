//! `vigil import`: bring an existing unencrypted MP4 (H.264/H.265) into
//! encrypted storage.

use std::path::{Path, PathBuf};

use super::{load_config, load_keys, parse_date, Failure};
use crate::base::time as cli_time;
use crate::db::audit;
use crate::ingest::import::ImportError;
use crate::storage::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    camera: String,
    /// Wall-clock time of the file's first frame (RFC 3339); default: the
    /// creation time the MP4 states.
    #[arg(long)]
    start: Option<String>,
    file: PathBuf,
}

pub fn run(config_path: &Path, Args { camera, start, file }: Args) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    if !crate::base::names::valid_secret_name(&camera) || camera.contains('.') {
        return Err(Failure::Usage(format!(
            "\"{camera}\": use 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    let start = start.as_deref().map(parse_date).transpose()?;
    let keys = load_keys(&config)?;
    let storage = Storage::new(&config.storage_dir);
    match crate::ingest::import::import(
        &config.db_path,
        &storage,
        keys,
        &audit::cli_actor(),
        &camera,
        &file,
        start,
        config.segment_duration,
    ) {
        Ok(r) => {
            println!(
                "imported {} frames of {} ({:.1} s from {}) into {} encrypted recording(s) of camera {camera}{}",
                r.frames,
                r.codec,
                r.duration_ns as f64 / 1e9,
                cli_time::format_ns(r.start_wall_ns),
                r.recordings,
                if r.skipped_before_key > 0 {
                    format!("; {} frames before the first key frame skipped", r.skipped_before_key)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Err(e @ (ImportError::Demux(_) | ImportError::InsideStorage(_) | ImportError::NoStartTime(_))) => {
            Err(Failure::Usage(e.to_string()))
        }
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}
