//! `vigil retention`: one retention pass now, and its hidden benchmark.

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_index, Failure};
use crate::db::audit;
use crate::storage::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply retention_days, max_bytes and the free-space floor now.
    Run,
    /// Time one pass over a large synthetic index (benchmark).
    #[command(hide = true)]
    Bench {
        #[arg(long, default_value_t = 100_000)]
        recordings: usize,
    },
}

pub fn run(config_path: &Path, Args { command }: Args) -> Result<(), Failure> {
    match command {
        Command::Run => {
            let config = load_config(config_path)?;
            let mut index = open_index(&config)?;
            let storage = Storage::new(&config.storage_dir);
            let dir = config.storage_dir.clone();
            let rep = crate::archive::retention::run_pass(
                &storage,
                &mut index,
                &config.retention,
                crate::base::clock::now_ns(),
                &move || crate::base::host::fs_space(&dir),
                &audit::cli_actor(),
            )
            .map_err(|e| Failure::Runtime(e.into()))?;
            println!(
                "deleted {} recording(s), {} bytes; {} kept under legal hold",
                rep.deleted.len(),
                rep.bytes_freed,
                rep.held_kept
            );
            if let Some((avail, floor)) = rep.space_after {
                println!("free {avail} bytes, floor {floor}");
            }
            if rep.below_floor {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "still below the free-space floor and nothing more may be deleted"
                )));
            }
            Ok(())
        }
        Command::Bench { recordings } => crate::cli::bench::retention_pass(recordings).map_err(Failure::Runtime),
    }
}
