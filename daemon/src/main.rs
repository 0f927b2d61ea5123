//! The `vigil` command. Exit status: 0 ok, 1 an integrity failure (or a
//! runtime failure), 2 a usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use vigil::config::{Config, KeySourceConfig};
use vigil::keys::{FileKeySource, KeyError, KeyLookup};
use vigil::{cli_time, export, index::Index, storage::Storage, verify};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Network video recorder with chunk-encrypted recordings"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = vigil::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Record every enabled camera until SIGTERM.
    Run,
    /// List recordings: id, camera, start, end, frames, bytes, state.
    Recordings {
        #[arg(long)]
        camera: Option<String>,
    },
    /// Cameras and their last known state.
    Cameras,
    /// Export a time range of one camera as MP4.
    Export {
        #[arg(long)]
        camera: String,
        /// RFC 3339, e.g. 2026-11-22T06:41:00Z
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        /// Output file, or `-` to stream the MP4 to standard output.
        #[arg(long)]
        out: PathBuf,
    },
    /// Authenticate every chunk and check every file against the index.
    Verify {
        #[arg(long)]
        camera: Option<String>,
    },
    /// Measure the recording writer (seal + write + fdatasync) throughput.
    #[command(hide = true)]
    BenchWriter {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 256)]
        mib: usize,
        #[arg(long, default_value_t = 64)]
        record_kib: usize,
    },
    /// Replay a recording through the recorder until `minutes` of media exist.
    #[command(hide = true)]
    BenchSynthesize {
        #[arg(long)]
        camera: String,
        #[arg(long)]
        source_recording: i64,
        #[arg(long, default_value_t = 60)]
        minutes: u32,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the key file (mode 0600); refuses to overwrite.
    Init,
}

enum Failure {
    Usage(String),
    Integrity(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}
impl From<vigil::index::IndexError> for Failure {
    fn from(e: vigil::index::IndexError) -> Self {
        Failure::Runtime(e.into())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("vigil: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Integrity(m)) => {
            eprintln!("vigil: integrity failure: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Usage(format!("config error: {e}")))
}

/// Loads the key source; a missing or unusable key is a configuration error
/// naming the config line, and nothing is recorded without a key (fail closed).
fn load_keys(config: &Config) -> Result<Arc<dyn KeyLookup>, Failure> {
    match &config.keys {
        KeySourceConfig::File { path, origin } => match FileKeySource::load(path) {
            Ok(k) => {
                tracing::warn!(
                    key_file = %path.display(),
                    "DEVELOPMENT KEY SOURCE: the master key is a plain file, not sealed by a TPM; do not use this on a deployed box"
                );
                Ok(Arc::new(k))
            }
            Err(e @ (KeyError::Missing(_) | KeyError::Malformed(_) | KeyError::TooOpen { .. })) => {
                Err(Failure::Usage(format!("config error: {}", origin.error(e.to_string()))))
            }
            Err(e) => Err(Failure::Runtime(e.into())),
        },
    }
}

fn open_index(config: &Config) -> Result<Index, Failure> {
    if !config.db_path.exists() {
        return Err(Failure::Usage(format!(
            "no index at {} (has `vigil run` ever started?)",
            config.db_path.display()
        )));
    }
    Ok(Index::open_existing(&config.db_path)?)
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Keys {
            command: KeysCommand::Init,
        } => {
            let config = load_config(&cli.config)?;
            let KeySourceConfig::File { path, .. } = &config.keys;
            match FileKeySource::init(path) {
                Ok(id) => {
                    println!("created key file {} (key id {id}, mode 0600)", path.display());
                    Ok(())
                }
                Err(e @ KeyError::Exists(_)) => Err(Failure::Usage(e.to_string())),
                Err(e) => Err(Failure::Runtime(e.into())),
            }
        }
        Command::Run => {
            let config = load_config(&cli.config)?;
            let keys = load_keys(&config)?;
            vigil::daemon::run(config, keys)?;
            Ok(())
        }
        Command::Recordings { camera } => {
            let config = load_config(&cli.config)?;
            let index = open_index(&config)?;
            println!(
                "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  state",
                "id", "camera", "start", "end", "frames", "bytes"
            );
            for r in index.recordings(camera.as_deref())? {
                println!(
                    "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  {}",
                    r.id,
                    r.camera,
                    cli_time::format_ns(r.start_wall_ns),
                    cli_time::format_ns(r.end_wall_ns()),
                    r.frames,
                    r.bytes,
                    r.state
                );
            }
            Ok(())
        }
        Command::Cameras => {
            let config = load_config(&cli.config)?;
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
        Command::Export {
            camera,
            start,
            end,
            out,
        } => {
            let config = load_config(&cli.config)?;
            let start_ns = cli_time::parse_rfc3339(&start).map_err(Failure::Usage)?;
            let end_ns = cli_time::parse_rfc3339(&end).map_err(Failure::Usage)?;
            let keys = load_keys(&config)?;
            let index = open_index(&config)?;
            let storage = Storage::new(&config.storage_dir);
            match export::export_to_file(
                export::Archive {
                    index: &index,
                    storage: &storage,
                    keys: keys.as_ref(),
                },
                &camera,
                start_ns,
                end_ns,
                &out,
            ) {
                Ok(r) => {
                    let summary = format!(
                        "exported {} frames from {} recording(s), {} to {}, {} bytes to {}",
                        r.frames,
                        r.recordings.len(),
                        cli_time::format_ns(r.first_wall_ns),
                        cli_time::format_ns(r.end_wall_ns),
                        r.bytes,
                        out.display()
                    );
                    // With `--out -` standard output carries the MP4.
                    if out == Path::new("-") {
                        eprintln!("{summary}");
                    } else {
                        println!("{summary}");
                    }
                    Ok(())
                }
                Err(e) if e.is_integrity() => Err(Failure::Integrity(format!("export refused: {e}"))),
                Err(
                    e @ (export::ExportError::UnknownCamera(_)
                    | export::ExportError::NothingToExport { .. }
                    | export::ExportError::EmptyRange),
                ) => Err(Failure::Usage(e.to_string())),
                Err(e) => Err(Failure::Runtime(e.into())),
            }
        }
        Command::Verify { camera } => {
            let config = load_config(&cli.config)?;
            let keys = load_keys(&config)?;
            let index = open_index(&config)?;
            let storage = Storage::new(&config.storage_dir);
            let rep = verify::verify(&index, &storage, keys.as_ref(), camera.as_deref())?;
            for f in &rep.failures {
                println!("FAIL {f}");
            }
            println!(
                "verified {} recording(s): {} ok, {} in progress (prefix ok), {} failure(s)",
                rep.recordings,
                rep.ok,
                rep.in_progress,
                rep.failures.len()
            );
            if rep.failures.is_empty() {
                Ok(())
            } else {
                Err(Failure::Integrity(format!("{} failure(s)", rep.failures.len())))
            }
        }
        Command::BenchWriter { dir, mib, record_kib } => {
            let (bytes, secs) = vigil::bench::seal_throughput(mib, record_kib)?;
            println!(
                "seal: {:.1} MiB as {record_kib} KiB records in {secs:.3} s = {:.1} MB/s (ring ChaCha20-Poly1305, in memory)",
                bytes as f64 / 1048576.0,
                bytes as f64 / secs / 1e6
            );
            let (bytes, secs) = vigil::bench::writer_throughput(&dir, mib, record_kib)?;
            println!(
                "writer: {:.1} MiB as {record_kib} KiB records in {secs:.3} s = {:.1} MB/s (seal + write + fdatasync per record)",
                bytes as f64 / 1048576.0,
                bytes as f64 / secs / 1e6
            );
            Ok(())
        }
        Command::BenchSynthesize {
            camera,
            source_recording,
            minutes,
        } => {
            let config = load_config(&cli.config)?;
            let keys = load_keys(&config)?;
            let storage = Storage::new(&config.storage_dir);
            let frames = vigil::bench::synthesize(
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
    }
}
