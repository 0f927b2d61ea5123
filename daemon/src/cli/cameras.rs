//! `vigil cameras`: the cameras and their last known state; `cameras probe`
//! lists the V4L2 (USB/CSI) devices with their formats, sizes and frame rates.

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Lists /dev/video* devices: driver, formats, sizes and frame rates, and
    /// which of them Vigil records in this build. Needs no config.
    Probe {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config_path: &Path, Args { action }: Args) -> Result<(), Failure> {
    match action {
        Some(Command::Probe { json }) => Ok(probe(json)?),
        None => {
            let config = load_config(config_path)?;
            let index = open_index(&config)?;
            for c in index.cameras()? {
                println!(
                    "{:<16} {:<10} since {}  {}",
                    c.name,
                    c.state,
                    cli_time::format_ns(c.state_since_ns),
                    c.last_error
                        .as_deref()
                        .map(|e| format!("last error: {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

fn probe(json: bool) -> anyhow::Result<()> {
    let devices = crate::ingest::v4l2::probe_devices();
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("no V4L2 devices (/dev/video*)");
        return Ok(());
    }
    for d in &devices {
        if let Some(e) = &d.error {
            println!("{}: cannot query: {e}", d.path);
            continue;
        }
        println!("{}: {} (driver {}, {})", d.path, d.card, d.driver, d.bus);
        if !d.capture {
            println!("    not a video capture device (metadata or output node)");
            continue;
        }
        for f in &d.formats {
            let note = match f.vigil {
                Some(v) => format!("records as {v}: v4l2://{}?format={v}", d.path),
                None if f.fourcc == "YUYV" => "raw: needs the build with --features ffmpeg".to_string(),
                None => "not recorded by Vigil".to_string(),
            };
            println!("    {} {:<28} {note}", f.fourcc, format!("({})", f.description));
            for s in &f.sizes {
                println!("        {s}");
            }
        }
    }
    if !crate::ingest::v4l2::HAS_ENCODER {
        println!("(this build has no encoder: raw formats need vigil built with --features ffmpeg)");
    }
    Ok(())
}
