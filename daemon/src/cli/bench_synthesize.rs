//! `vigil bench-synthesize` (hidden, for scripts/bench): replay a recording
//! through the recorder until `minutes` of media exist.

use std::path::Path;

use super::{load_config, load_keys, Failure};
use crate::storage::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    camera: String,
    #[arg(long)]
    source_recording: i64,
    #[arg(long, default_value_t = 60)]
    minutes: u32,
}

pub fn run(
    config_path: &Path,
    Args {
        camera,
        source_recording,
        minutes,
    }: Args,
) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let keys = load_keys(&config)?;
    let storage = Storage::new(&config.storage_dir);
    let frames = super::bench::synthesize(
        &storage,
        &config.db_path,
        keys,
        &camera,
        source_recording,
        minutes,
        config.segment_duration,
    )?;
    println!("synthesized {frames} frames ({minutes} min) for camera {camera}");
    Ok(())
}
