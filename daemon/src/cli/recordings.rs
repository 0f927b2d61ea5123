//! `vigil recordings`: the recordings table (id, camera, start, end, frames,
//! bytes, state, data key).

use std::path::Path;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    camera: Option<String>,
}

pub fn run(config_path: &Path, Args { camera }: Args) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let index = open_index(&config)?;
    println!(
        "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  {:<9} data key",
        "id", "camera", "start", "end", "frames", "bytes", "state"
    );
    for r in index.recordings(camera.as_deref())? {
        println!(
            "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  {:<9} {}",
            r.id,
            r.camera,
            cli_time::format_ns(r.start_wall_ns),
            cli_time::format_ns(r.end_wall_ns()),
            r.frames,
            r.bytes,
            r.state,
            vigil_format::hex(&r.key_id)
        );
    }
    Ok(())
}
