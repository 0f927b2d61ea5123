//! `vigil cameras`: the cameras and their last known state; `cameras probe`
//! lists the V4L2 (USB/CSI) devices with their formats, sizes and frame rates;
//! `discover`, `add --onvif` and `sync-time` are ONVIF's (`cli::onvif`).

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;
use crate::run::camera_control::PtzOp;

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
    /// Finds ONVIF cameras (WS-Discovery) on the camera network, out of the
    /// interface `[onvif] discovery_interface` (or --interface) names.
    Discover {
        /// This box's IPv4 address on the camera network.
        #[arg(long, value_name = "ADDR")]
        interface: Option<String>,
        /// How long to collect answers.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=30_000))]
        wait_ms: u64,
        /// Try this login on each camera found (CREDENTIALS column).
        #[arg(long)]
        username: Option<String>,
        /// Read the password to try from standard input.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Adds an ONVIF camera: reads its main and sub stream and stores it
    /// (password in the secrets store) as a managed camera.
    Add {
        /// The camera's host[:port] or device service URL.
        #[arg(long, value_name = "ADDRESS")]
        onvif: String,
        #[arg(long)]
        username: String,
        /// Read the camera's password from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The camera's name (default: from its model and address).
        #[arg(long)]
        name: Option<String>,
        /// Record the camera's audio too.
        #[arg(long)]
        record_audio: bool,
    },
    /// Sets an ONVIF camera's clock to this box's UTC, or points it at an
    /// NTP server; prints the drift before and after.
    SyncTime {
        name: String,
        /// The NTP server (IPv4 address or DNS name).
        #[arg(long, value_name = "SERVER")]
        ntp: Option<String>,
    },
    /// Moves an ONVIF camera's head (PTZ), audited.
    Ptz {
        name: String,
        #[command(subcommand)]
        op: PtzCommand,
    },
}

#[derive(Subcommand)]
pub enum PtzCommand {
    /// Pan, tilt and zoom at these speeds (-1 to 1) until `stop`.
    Move {
        #[arg(allow_hyphen_values = true)]
        x: f64,
        #[arg(allow_hyphen_values = true)]
        y: f64,
        #[arg(allow_hyphen_values = true, default_value_t = 0.0)]
        zoom: f64,
    },
    /// Stops a move.
    Stop,
    /// Goes to a preset (its token).
    Goto { preset: String },
    /// Saves the current position as a preset named NAME; prints its token.
    SetPreset { name: String },
}

pub fn run(config_path: &Path, Args { action }: Args) -> Result<(), Failure> {
    match action {
        Some(Command::Probe { json }) => Ok(probe(json)?),
        Some(Command::Discover {
            interface,
            wait_ms,
            username,
            password_stdin,
            json,
        }) => super::onvif::discover(config_path, interface, wait_ms, username, password_stdin, json),
        Some(Command::Add {
            onvif,
            username,
            password_stdin: _,
            name,
            record_audio,
        }) => super::onvif::add(config_path, &onvif, username, name, record_audio),
        Some(Command::SyncTime { name, ntp }) => super::onvif::sync_time(config_path, &name, ntp),
        Some(Command::Ptz { name, op }) => {
            let op = match op {
                PtzCommand::Move { x, y, zoom } => PtzOp::Move { x, y, zoom },
                PtzCommand::Stop => PtzOp::Stop,
                PtzCommand::Goto { preset } => PtzOp::Goto { preset },
                PtzCommand::SetPreset { name } => PtzOp::SetPreset { name },
            };
            super::onvif::ptz(config_path, &name, op)
        }
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
