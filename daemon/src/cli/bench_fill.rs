//! `vigil bench-fill` (hidden, for scripts/bench): an archive of many
//! one-minute recordings (index rows and one empty file each, ending now)
//! for the start-up and query figures at scale. Not footage: `vigil
//! verify` and fixity would report every file, which is why only the bench
//! makes one.

use std::path::Path;

use super::{load_config, Failure};
use crate::db::recordings::SyntheticRecording;
use crate::db::Index;
use crate::storage::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 200_000)]
    recordings: usize,
    #[arg(long, default_value_t = 8)]
    cameras: usize,
    /// Camera names are this prefix and a number from 1.
    #[arg(long, default_value = "cam")]
    prefix: String,
}

pub fn run(config_path: &Path, args: Args) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let mut storage = Storage::new(&config.storage_dir);
    storage.ensure().map_err(anyhow::Error::from)?;
    let mut index = Index::open(&config.db_path).map_err(anyhow::Error::from)?;
    let cameras = args.cameras.max(1);
    let names: Vec<String> = (1..=cameras).map(|c| format!("{}{c}", args.prefix)).collect();
    let ids: Vec<i64> = names
        .iter()
        .map(|n| index.camera_id(n))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::from)?;
    for n in &names {
        std::fs::create_dir_all(storage.dir().join(format!("fill-{n}"))).map_err(anyhow::Error::from)?;
    }
    let minute = 60_000_000_000i64;
    let per_camera = args.recordings.div_ceil(cameras) as i64;
    let start0 = crate::base::clock::now_ns() - per_camera * minute;
    let t = std::time::Instant::now();
    let mut rows = Vec::with_capacity(10_000);
    for i in 0..args.recordings {
        let cam = i % cameras;
        let start = start0 + (i / cameras) as i64 * minute;
        let file_name = format!("fill-{}/{i:08}.vseg", names[cam]);
        std::fs::File::create(storage.path_of(&file_name)).map_err(anyhow::Error::from)?;
        rows.push(SyntheticRecording {
            camera_id: ids[cam],
            file_name,
            file_id: (i as u128 | 1 << 100).to_le_bytes().to_vec(),
            start_wall_ns: start,
            end_wall_ns: start + minute,
        });
        if rows.len() == rows.capacity() || i + 1 == args.recordings {
            index.insert_synthetic_recordings(&rows).map_err(anyhow::Error::from)?;
            rows.clear();
        }
    }
    println!(
        "filled {} recordings for {cameras} cameras ({} days of 1-minute recordings each) in {:.1} s",
        args.recordings,
        per_camera / 1440,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
