//! `vigil hold`: legal holds, what retention and shredding must keep.

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
    /// Place a hold on a recording, a camera's time range, or an export.
    Add {
        #[arg(long, conflicts_with_all = ["camera", "export"])]
        recording: Option<i64>,
        #[arg(long, requires_all = ["start", "end"], conflicts_with = "export")]
        camera: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        export: Option<i64>,
        /// Why (case number, request); required.
        #[arg(long)]
        reason: String,
    },
    /// Active holds (with --all, released ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Release a hold (admins). Its record stays.
    Remove {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

pub fn run(config_path: &Path, Args { command }: Args) -> Result<(), Failure> {
    use crate::db::holds::{self, HoldError, HoldTarget};
    let config = load_config(config_path)?;
    let index = open_index(&config)?;
    let actor = audit::cli_actor();
    let hold_err = |e: HoldError| match e {
        HoldError::Sql(e) => Failure::Runtime(e.into()),
        other => Failure::Usage(other.to_string()),
    };
    match command {
        Command::Add {
            recording,
            camera,
            start,
            end,
            export,
            reason,
        } => {
            let target = match (recording, camera, export) {
                (Some(id), None, None) => HoldTarget::Recording(id),
                (None, Some(camera), None) => HoldTarget::Range {
                    camera,
                    start_ns: cli_time::parse_rfc3339(start.as_deref().unwrap_or("")).map_err(Failure::Usage)?,
                    end_ns: cli_time::parse_rfc3339(end.as_deref().unwrap_or("")).map_err(Failure::Usage)?,
                },
                (None, None, Some(id)) => HoldTarget::Export(id),
                _ => {
                    return Err(Failure::Usage(
                        "give one of --recording ID, --camera NAME --start T --end T, --export ID".into(),
                    ))
                }
            };
            let id = holds::place(index.conn(), &target, &reason, &actor).map_err(hold_err)?;
            println!("hold {id} placed");
            Ok(())
        }
        Command::List { all } => {
            let list = holds::list(index.conn(), all).map_err(|e| Failure::Runtime(e.into()))?;
            if list.is_empty() {
                println!("no {}holds", if all { "" } else { "active " });
            }
            for h in list {
                let released = match (&h.released_by, h.released_ns) {
                    (Some(by), Some(t)) => format!(
                        "  RELEASED {} by {by}: {}",
                        cli_time::format_ns(t),
                        h.release_reason.as_deref().unwrap_or("")
                    ),
                    _ => String::new(),
                };
                println!(
                    "{}\t{}\tplaced {} by {}\treason: {}{released}",
                    h.id,
                    h.describe(),
                    cli_time::format_ns(h.placed_ns),
                    h.placed_by,
                    h.reason
                );
            }
            Ok(())
        }
        Command::Remove { id, reason } => {
            let h = holds::release(index.conn(), id, &reason, &actor).map_err(hold_err)?;
            println!("hold {id} released ({})", h.describe());
            Ok(())
        }
    }
}
