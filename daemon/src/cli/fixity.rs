//! `vigil fixity`: the background integrity scrub, what it verified, when,
//! and every mismatch it found.

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// What was verified, when, and every mismatch found.
    Status,
}

pub fn run(config_path: &Path, Args { command }: Args) -> Result<(), Failure> {
    match command {
        Command::Status => {
            let config = load_config(config_path)?;
            let index = open_index(&config)?;
            let st = crate::db::fixity::status(index.conn()).map_err(|e| Failure::Runtime(e.into()))?;
            let when = |t: Option<i64>| t.map(cli_time::format_ns).unwrap_or_else(|| "never".into());
            println!(
                "{} recording(s): {} verified, {} not yet; oldest check {}, newest {}",
                st.recordings,
                st.verified,
                st.never_verified,
                when(st.oldest_verified_ns),
                when(st.newest_verified_ns)
            );
            let rate = config.fixity.rate_bytes_per_s as f64 / 1_048_576.0;
            println!(
                "scrub: {rate:.1} MB/s cap, a cycle every {} s",
                config.fixity.cycle.as_secs()
            );
            for f in &st.failures {
                println!(
                    "MISMATCH recording {} ({}, {}) checked {}: {}",
                    f.id,
                    f.camera,
                    f.file,
                    cli_time::format_ns(f.checked_ns),
                    f.detail
                );
            }
            if st.failures.is_empty() {
                println!("no mismatches");
                Ok(())
            } else {
                Err(Failure::Integrity(format!(
                    "{} recording(s) failed fixity",
                    st.failures.len()
                )))
            }
        }
    }
}
