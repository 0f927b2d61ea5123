//! The command line: the top-level [`Cli`] and its [`Command`]s, one module
//! per subcommand (its own clap arguments and a `run`), and [`Failure`], the
//! error that carries the exit status: 0 ok, 1 an integrity failure (or a
//! runtime failure), 2 a usage or configuration error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::archive::rekey;
use crate::config::Config;
use crate::db::Index;
use crate::keys::keyring::Keyring;
use crate::keys::sealing::KekSealer;
use crate::keys::secrets::SecretError;
use crate::keys::{KeyError, KeyLookup};

pub mod alerts;
pub mod audit;
pub mod bench;
pub mod bench_fill;
pub mod bench_synthesize;
pub mod bench_writer;
pub mod board;
pub mod cameras;
pub mod device;
pub mod export;
pub mod fixity;
pub mod hold;
pub mod http_routes;
pub mod import;
pub mod keys;
pub mod onvif;
pub mod provision;
pub mod recordings;
pub mod replica;
pub mod retention;
pub mod run;
pub mod secrets;
pub mod status;
pub mod tokens;
pub mod users;
pub mod verify;
pub mod verify_export;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Network video recorder with chunk-encrypted recordings"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Key management.
    Keys(keys::Args),
    /// The encrypted secrets store (camera passwords, tokens).
    Secrets(secrets::Args),
    /// Web users, their second factor and their camera sets.
    Users(users::Args),
    /// API tokens: create one for a user, list, revoke.
    Tokens(tokens::Args),
    /// The HTTPS routes and who may call them.
    #[command(hide = true)]
    HttpRoutes,
    /// The tamper-evident audit log.
    Audit(audit::Args),
    /// Alerts: what is wrong, each channel's deliveries, a test message.
    Alerts(alerts::Args),
    /// Bring an existing unencrypted MP4 (H.264/H.265) into encrypted storage.
    Import(import::Args),
    /// Record every enabled camera until SIGTERM.
    Run,
    /// List recordings: id, camera, start, end, frames, bytes, state.
    Recordings(recordings::Args),
    /// Cameras and their last known state; `cameras probe` lists the V4L2
    /// (USB/CSI) devices with their formats, sizes and frame rates.
    Cameras(cameras::Args),
    /// The box at a glance: cameras, open alerts, disk, clock, keys, HTTPS certificate fingerprint.
    Status,
    /// Export a time range as MP4 (`--out`), or as a signed evidence bundle
    /// (`--bundle DIR` or `--bundle FILE.zip`; one clip per `--camera`).
    Export(export::Args),
    /// Check an evidence bundle offline: signature, every file, nothing added
    /// or removed. Needs no device, database or key. Exit 0 if intact, 1 if not.
    VerifyExport(verify_export::Args),
    /// The device id and the public half of the device signing key.
    Device,
    /// Legal holds: what retention and shredding must keep.
    Hold(hold::Args),
    /// A box's off-box replica in S3-compatible storage, on any machine:
    /// list, verify, export an MP4 with the recovery key, restore into a new box.
    Replica(replica::Args),
    /// The background integrity scrub (re-hashes every recording's ciphertext).
    Fixity(fixity::Args),
    /// After `keys init`: make the device signing key, the HTTPS certificate
    /// and the first admin (one-time password), then print the provisioning
    /// report. Idempotent: run again, it changes nothing and reports.
    Provision(provision::Args),
    /// Board profiles: which one this machine is, or all of them.
    Board(board::Args),
    /// Run one retention pass now (the daemon runs them on its own).
    Retention(retention::Args),
    /// Authenticate every chunk and check every file against the index.
    Verify(verify::Args),
    /// Measure the recording writer (seal + write + fdatasync) throughput.
    #[command(hide = true)]
    BenchWriter(bench_writer::Args),
    /// Replay a recording through the recorder until `minutes` of media exist.
    #[command(hide = true)]
    BenchSynthesize(bench_synthesize::Args),
    /// Fill the index with many one-minute recordings (start-up at scale).
    #[command(hide = true)]
    BenchFill(bench_fill::Args),
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let config = cli.config.as_path();
    match cli.command {
        Command::Keys(args) => keys::run(config, args),
        Command::Secrets(args) => secrets::run(config, args),
        Command::Users(args) => users::run(config, args),
        Command::Tokens(args) => tokens::run(config, args),
        Command::HttpRoutes => http_routes::run(),
        Command::Audit(args) => audit::run(config, args),
        Command::Alerts(args) => alerts::run(config, args),
        Command::Import(args) => import::run(config, args),
        Command::Run => run::run(config),
        Command::Recordings(args) => recordings::run(config, args),
        Command::Cameras(args) => cameras::run(config, args),
        Command::Status => status::run(config),
        Command::Export(args) => export::run(config, args),
        Command::VerifyExport(args) => verify_export::run(args),
        Command::Device => device::run(config),
        Command::Hold(args) => hold::run(config, args),
        Command::Fixity(args) => fixity::run(config, args),
        Command::Replica(args) => replica::run(config, args),
        Command::Provision(args) => provision::run(config, args),
        Command::Board(args) => board::run(args),
        Command::Retention(args) => retention::run(config, args),
        Command::Verify(args) => verify::run(config, args),
        Command::BenchWriter(args) => bench_writer::run(args),
        Command::BenchSynthesize(args) => bench_synthesize::run(config, args),
        Command::BenchFill(args) => bench_fill::run(config, args),
    }
}

/// Why a command failed, and so the exit status: [`Failure::Usage`] 2,
/// [`Failure::Integrity`] and [`Failure::Runtime`] 1,
/// [`Failure::OriginNotVerified`] 3.
#[derive(Debug)]
pub enum Failure {
    /// A usage or configuration error.
    Usage(String),
    /// Something failed an integrity check.
    Integrity(String),
    /// Anything else that went wrong.
    Runtime(anyhow::Error),
    /// Intact, but checked only against a key it carried itself
    /// (`verify-export` without a pinned key): the origin is unproven.
    OriginNotVerified(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Integrity(m) | Failure::OriginNotVerified(m) => f.write_str(m),
            Failure::Runtime(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}
impl From<crate::db::IndexError> for Failure {
    fn from(e: crate::db::IndexError) -> Self {
        Failure::Runtime(e.into())
    }
}
impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotInitialised
            | KeyError::AlreadyInitialised(_)
            | KeyError::Exists(_)
            | KeyError::Missing(_)
            | KeyError::Malformed(_)
            | KeyError::TooOpen { .. }
            | KeyError::Recovery(_) => Failure::Usage(e.to_string()),
            other => Failure::Runtime(other.into()),
        }
    }
}
impl From<SecretError> for Failure {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Key(k) => k.into(),
            SecretError::Corrupt(_) => Failure::Integrity(e.to_string()),
            other => Failure::Usage(other.to_string()),
        }
    }
}
impl From<rekey::RekeyError> for Failure {
    fn from(e: rekey::RekeyError) -> Self {
        match e {
            rekey::RekeyError::Key(k) => k.into(),
            rekey::RekeyError::Refused(_)
            | rekey::RekeyError::UnknownKey(_)
            | rekey::RekeyError::StillWriting { .. } => Failure::Usage(e.to_string()),
            rekey::RekeyError::Format { .. } | rekey::RekeyError::CopyFailed { .. } => {
                Failure::Integrity(e.to_string())
            }
            other => Failure::Runtime(other.into()),
        }
    }
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Usage(format!("config error: {e}")))
}

/// Opens the keyring and unseals its KEK. A missing or unusable key is a
/// configuration error naming the config line; nothing is recorded or read
/// without a key (fail closed).
fn open_keyring(config: &Config, actor: &str) -> Result<Arc<Keyring>, Failure> {
    let origin = match &config.keys {
        crate::config::KeySourceConfig::File { origin, .. } => origin,
        crate::config::KeySourceConfig::Credential(c) => &c.origin,
    };
    match Keyring::open(&config.db_path, KekSealer::new(config.keys.clone()), actor) {
        Ok(k) => Ok(Arc::new(k)),
        Err(e @ (KeyError::Missing(_) | KeyError::Malformed(_) | KeyError::TooOpen { .. })) => {
            Err(Failure::Usage(format!("config error: {}", origin.error(e.to_string()))))
        }
        Err(e) => Err(e.into()),
    }
}

fn load_keys(config: &Config) -> Result<Arc<dyn KeyLookup>, Failure> {
    Ok(open_keyring(config, &crate::db::audit::cli_actor())?)
}

/// The index of an existing installation; none yet is a usage error.
fn open_index(config: &Config) -> Result<Index, Failure> {
    if !config.db_path.exists() {
        return Err(Failure::Usage(format!(
            "no index at {} (has `vigil run` ever started?)",
            config.db_path.display()
        )));
    }
    Ok(Index::open_existing(&config.db_path)?)
}

/// Standard input, without one trailing newline. Zeroed on drop.
fn read_stdin_secret(what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("type {what}, then Enter and Ctrl-D:");
    }
    let mut v = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(crate::keys::secrets::MAX_VALUE_BYTES as u64 + 2)
        .read_to_end(&mut v)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("reading {what} from standard input: {e}")))?;
    if v.ends_with(b"\n") {
        v.pop();
        if v.ends_with(b"\r") {
            v.pop();
        }
    }
    Ok(v)
}

/// An RFC 3339 time, or a bare date meaning its UTC midnight.
fn parse_date(s: &str) -> Result<i64, Failure> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    crate::base::time::parse_rfc3339(&full).map_err(Failure::Usage)
}

/// Writes `text` to a new file with mode 0600 (refuses to overwrite).
fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", path.display())))
}
