//! `vigil verify`: authenticate every chunk and check every file against the
//! index, or authenticate one loose recording file.

use std::path::{Path, PathBuf};

use super::{load_config, load_keys, open_index, Failure};
use crate::archive::verify;
use crate::storage::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    camera: Option<String>,
    /// Authenticate one loose recording file instead (e.g. a copy).
    #[arg(long, conflicts_with = "camera")]
    file: Option<PathBuf>,
}

pub fn run(config_path: &Path, Args { camera, file }: Args) -> Result<(), Failure> {
    match file {
        Some(file) => {
            let config = load_config(config_path)?;
            let keys = load_keys(&config)?;
            match verify::verify_file(&file, keys.as_ref()) {
                Ok(line) => {
                    println!("{line}");
                    Ok(())
                }
                Err(e) => Err(Failure::Integrity(e)),
            }
        }
        None => {
            let config = load_config(config_path)?;
            let keys = load_keys(&config)?;
            let index = open_index(&config)?;
            let storage = Storage::new(&config.storage_dir);
            let rep = verify::verify(&index, &storage, keys.as_ref(), camera.as_deref())?;
            for f in &rep.failures {
                println!("FAIL {f}");
            }
            println!(
                "verified {} recording(s): {} ok, {} in progress (prefix ok), {} failure(s)",
                rep.recordings,
                rep.ok,
                rep.in_progress,
                rep.failures.len()
            );
            if rep.failures.is_empty() {
                Ok(())
            } else {
                Err(Failure::Integrity(format!("{} failure(s)", rep.failures.len())))
            }
        }
    }
}
