//! `vigil audit`: the tamper-evident audit log (its latest entries, its hash chain).

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;
use crate::db::audit;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The latest entries.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// Check the hash chain; names the first edited, deleted or reordered entry.
    Verify,
}

pub fn run(cli_config: &Path, Args { command }: Args) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let index = open_index(&config)?;
    match command {
        Command::Tail { n } => {
            for e in audit::tail(index.conn(), n).map_err(|e| Failure::Runtime(e.into()))? {
                println!(
                    "{:>6} {} {:<16} {:<20} {:<24} {:<7} {}",
                    e.id,
                    cli_time::format_ns(e.ts_ns),
                    e.actor,
                    e.action,
                    e.target,
                    e.outcome,
                    e.detail
                );
            }
            Ok(())
        }
        Command::Verify => match audit::verify(index.conn()).map_err(|e| Failure::Runtime(e.into()))? {
            Ok(n) => {
                println!("audit log intact: {n} entries, hash chain verified");
                Ok(())
            }
            Err(what) => Err(Failure::Integrity(format!("audit log: {what}"))),
        },
    }
}
