//! `vigil recordings`: the recordings table (id, camera, start, end, frames,
//! bytes, state, data key), of every camera or one, whole or in a time range.

use std::path::Path;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    camera: Option<String>,
    /// Only recordings that overlap [start, end) (RFC 3339, e.g.
    /// 2026-12-01T08:00:00Z); both or neither.
    #[arg(long, requires = "end")]
    start: Option<String>,
    #[arg(long, requires = "start")]
    end: Option<String>,
}

pub fn run(config_path: &Path, Args { camera, start, end }: Args) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let index = open_index(&config)?;
    let rows = match (start, end) {
        (Some(start), Some(end)) => {
            let start_ns = cli_time::parse_rfc3339(&start).map_err(Failure::Usage)?;
            let end_ns = cli_time::parse_rfc3339(&end).map_err(Failure::Usage)?;
            if end_ns <= start_ns {
                return Err(Failure::Usage("--end must be after --start".into()));
            }
            let cameras = match &camera {
                Some(name) => match index.find_camera_id(name)? {
                    Some(id) => vec![id],
                    None => return Err(Failure::Usage(format!("no camera named {name:?}"))),
                },
                None => index.cameras()?.into_iter().map(|c| c.id).collect(),
            };
            let mut rows = Vec::new();
            for id in cameras {
                rows.extend(index.recordings_overlapping(id, start_ns, end_ns)?);
            }
            rows
        }
        _ => index.recordings(camera.as_deref())?,
    };
    println!(
        "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  {:<9} data key",
        "id", "camera", "start", "end", "frames", "bytes", "state"
    );
    for r in rows {
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
