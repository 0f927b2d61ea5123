//! The `vigil` command. Exit status: 0 ok, 1 an integrity failure (or a
//! runtime failure), 2 a usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use std::io::Read;

use vigil::archive::{rekey, verify};
use vigil::base::time as cli_time;
use vigil::config::Config;
use vigil::db::{audit, Index};
use vigil::evidence::export;
use vigil::keys::keyring::{self, Keyring};
use vigil::keys::recovery::RecoveryKey;
use vigil::keys::sealing::KekSealer;
use vigil::keys::secrets;
use vigil::keys::{KeyError, KeyLookup};
use vigil::storage::Storage;

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
    /// The encrypted secrets store (camera passwords, tokens).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Web users, their second factor, and API tokens.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The HTTPS routes and who may call them.
    #[command(hide = true)]
    HttpRoutes,
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Bring an existing unencrypted MP4 (H.264/H.265) into encrypted storage.
    Import {
        #[arg(long)]
        camera: String,
        /// Wall-clock time of the file's first frame (RFC 3339); default: the
        /// creation time the MP4 states.
        #[arg(long)]
        start: Option<String>,
        file: PathBuf,
    },
    /// Record every enabled camera until SIGTERM.
    Run,
    /// List recordings: id, camera, start, end, frames, bytes, state.
    Recordings {
        #[arg(long)]
        camera: Option<String>,
    },
    /// Cameras and their last known state; `cameras probe` lists the V4L2
    /// (USB/CSI) devices with their formats, sizes and frame rates.
    Cameras {
        #[command(subcommand)]
        action: Option<CamerasCmd>,
    },
    /// The box at a glance: cameras, disk, clock, keys, HTTPS certificate fingerprint.
    Status,
    /// Export a time range as MP4 (`--out`), or as a signed evidence bundle
    /// (`--bundle DIR` or `--bundle FILE.zip`; one clip per `--camera`).
    Export {
        #[arg(long, required = true)]
        camera: Vec<String>,
        /// RFC 3339, e.g. 2026-11-22T06:41:00Z
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        /// Output file, or `-` to stream the MP4 to standard output.
        #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
        out: Option<PathBuf>,
        /// A signed evidence bundle: a new directory, or a path ending in .zip.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Check an evidence bundle offline: signature, every file, nothing added
    /// or removed. Needs no device, database or key. Exit 0 if intact, 1 if not.
    VerifyExport {
        bundle: PathBuf,
        /// The device public key (PEM, from `vigil device`) to check the signature against.
        #[arg(long, conflicts_with = "fingerprint")]
        pubkey: Option<PathBuf>,
        /// The device key fingerprint (SHA-256 hex, from `vigil device`).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// The device id and the public half of the device signing key.
    Device,
    /// Legal holds: what retention and shredding must keep.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// The background integrity scrub (re-hashes every recording's ciphertext).
    Fixity {
        #[command(subcommand)]
        command: FixityCommand,
    },
    /// After `keys init`: make the device signing key, the HTTPS certificate
    /// and the first admin (one-time password), then print the provisioning
    /// report. Idempotent: run again, it changes nothing and reports.
    Provision {
        /// Write the admin's one-time password to this new file (mode 0600)
        /// instead of printing it.
        #[arg(long)]
        admin_password_file: Option<PathBuf>,
        /// Where the recovery key went (for the report), e.g. "printed" or a path.
        #[arg(long, default_value = "printed at `vigil keys init`")]
        recovery_key: String,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Board profiles: which one this machine is, or all of them.
    Board {
        #[command(subcommand)]
        command: BoardCommand,
    },
    /// Run one retention pass now (the daemon runs them on its own).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Authenticate every chunk and check every file against the index.
    Verify {
        #[arg(long)]
        camera: Option<String>,
        /// Authenticate one loose recording file instead (e.g. a copy).
        #[arg(long, conflicts_with = "camera")]
        file: Option<PathBuf>,
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
enum CamerasCmd {
    /// Lists /dev/video* devices: driver, formats, sizes and frame rates, and
    /// which of them Vigil records in this build. Needs no config.
    Probe {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum HoldCommand {
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

#[derive(Subcommand)]
enum BoardCommand {
    /// Pick the profile from the device tree or DMI; exit 1 if none matches.
    Detect {
        /// `KEY=value` lines for scripts (BOARD, STORAGE_DEVICE, CIPHER, WATCHDOG, LED_STATUS, LED_FAULT).
        #[arg(long)]
        env: bool,
        /// Use this profile instead of detecting one.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Every profile this build knows.
    List,
}

#[derive(Subcommand)]
enum FixityCommand {
    /// What was verified, when, and every mismatch found.
    Status,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Apply retention_days, max_bytes and the free-space floor now.
    Run,
    /// Time one pass over a large synthetic index (benchmark).
    #[command(hide = true)]
    Bench {
        #[arg(long, default_value_t = 100_000)]
        recordings: usize,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the key-encryption key, seal it, and print the recovery key once.
    Init {
        /// Write the recovery key to this new file (mode 0600) for escrow
        /// instead of printing it.
        #[arg(long)]
        recovery_key_file: Option<PathBuf>,
    },
    /// Show the key source, sealing, data keys and pending jobs.
    Status {
        /// Also unseal the key-encryption key to prove it works.
        #[arg(long)]
        check: bool,
    },
    /// Re-seal the key-encryption key to this TPM with the recovery key (read
    /// from standard input) after a board swap or a cleared TPM.
    Recover,
    /// Replace the key-encryption key: every data key is rewrapped in one
    /// transaction, then the new key is sealed in place of the old.
    RotateKek,
    /// Destroy the data keys of recordings, then the recordings: copies of
    /// their files made earlier become undecryptable. Other recordings that
    /// shared those keys are re-encrypted first.
    Shred {
        #[arg(long, requires = "before", conflicts_with = "recording")]
        camera: Option<String>,
        /// RFC 3339; recordings that end at or before it.
        #[arg(long)]
        before: Option<String>,
        #[arg(long)]
        recording: Option<i64>,
        /// Without it, only say what would be shredded.
        #[arg(long)]
        yes: bool,
        /// Shred recordings under a legal hold too (admins only; audited).
        #[arg(long)]
        override_hold: bool,
    },
    /// Re-encrypt everything under a compromised data key, then destroy it.
    /// Resumable: run it again after an interruption.
    Reencrypt {
        /// The data key id (16 hex digits, the last column of `vigil recordings`).
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "compromised")]
        reason: String,
    },
    /// Create data keys for benchmarks and tests.
    #[command(hide = true)]
    BenchFill {
        #[arg(long)]
        count: usize,
    },
    /// Measure data key unwrap, secret set/get and rotate-kek latency.
    #[command(hide = true)]
    Bench {
        #[arg(long, default_value_t = 1000)]
        iterations: usize,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Store a secret; the value is read from standard input (never argv).
    Set {
        name: String,
        /// RFC 3339 expiry date, shown as "expiring soon" 14 days before.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Names and metadata; never values.
    List,
    /// Replace a secret's value (from standard input, or generated).
    Rotate {
        name: String,
        /// Generate a random token of this many bytes and print it once (hex).
        #[arg(long)]
        generate: Option<usize>,
        #[arg(long)]
        expires: Option<String>,
    },
    /// Delete a secret.
    Remove { name: String },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user; the password is read from standard input.
    Add {
        #[arg(long)]
        name: String,
        /// viewer, operator or admin
        #[arg(long)]
        role: String,
        /// Required: the password comes from standard input, never argv.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Let the user keep this password (default: change at first login).
        #[arg(long)]
        no_change_required: bool,
    },
    List,
    /// Set a new password (from standard input); ends the user's sessions.
    Passwd {
        name: String,
    },
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    /// Enrol a TOTP second factor: prints the otpauth:// URI once.
    EnableMfa {
        name: String,
    },
    /// Remove the TOTP second factor (a lost phone).
    ResetMfa {
        name: String,
    },
    /// Create an API token with a role: printed once, stored hashed.
    Token {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The latest entries.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// Check the hash chain; names the first edited, deleted or reordered entry.
    Verify,
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
impl From<vigil::db::IndexError> for Failure {
    fn from(e: vigil::db::IndexError) -> Self {
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
impl From<secrets::SecretError> for Failure {
    fn from(e: secrets::SecretError) -> Self {
        match e {
            secrets::SecretError::Key(k) => k.into(),
            secrets::SecretError::Corrupt(_) => Failure::Integrity(e.to_string()),
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

/// At most two malloc arenas and a fixed mmap threshold: on a small board,
/// memory an allocator keeps is memory the page cache and the cameras do not get.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called once, first thing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Large blocks (argon2's 19 MiB, video buffers) always come from mmap
        // and go back to the system when freed, instead of the threshold
        // growing until such blocks stay in the heap for good.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
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

/// Opens the keyring and unseals its KEK. A missing or unusable key is a
/// configuration error naming the config line; nothing is recorded or read
/// without a key (fail closed).
fn open_keyring(config: &Config, actor: &str) -> Result<Arc<Keyring>, Failure> {
    let origin = match &config.keys {
        vigil::config::KeySourceConfig::File { origin, .. } => origin,
        vigil::config::KeySourceConfig::Credential(c) => &c.origin,
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
    Ok(open_keyring(config, &audit::cli_actor())?)
}

/// Standard input, without one trailing newline. Zeroed on drop.
fn read_stdin_secret(what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("type {what}, then Enter and Ctrl-D:");
    }
    let mut v = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(secrets::MAX_VALUE_BYTES as u64 + 2)
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

fn parse_date(s: &str) -> Result<i64, Failure> {
    // A bare date means its UTC midnight.
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    cli_time::parse_rfc3339(&full).map_err(Failure::Usage)
}

fn human_bytes(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} PiB")
}

fn hex(b: &[u8]) -> String {
    vigil_format::hex(b)
}

fn keys_command(cli_config: &Path, command: KeysCommand) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    let sealer = KekSealer::new(config.keys.clone());
    let storage = Storage::new(&config.storage_dir);
    match command {
        KeysCommand::Init { recovery_key_file } => {
            if let Some(p) = &recovery_key_file {
                if p.exists() {
                    return Err(Failure::Usage(format!("{} already exists", p.display())));
                }
            }
            let rep = keyring::init(&config.db_path, &sealer, &actor)?;
            if rep.replaced_stray {
                eprintln!("note: replaced a sealed key that no keyring referenced");
            }
            println!("key-encryption key {} sealed: {}", hex(&rep.kek_id), sealer.describe());
            let text = rep.recovery_key.to_display();
            match recovery_key_file {
                Some(p) => {
                    write_private(&p, &format!("{}\n", text.as_str()))?;
                    println!(
                        "recovery key written to {} (mode 0600): move it to escrow now",
                        p.display()
                    );
                }
                None => {
                    println!();
                    println!("RECOVERY KEY (shown once; Vigil keeps no copy of it):");
                    println!();
                    println!("    {}", text.as_str());
                    println!();
                    println!("Write it down and keep it apart from this box. With it, `vigil keys recover`");
                    println!("restores access to every recording after a board swap or a cleared TPM.");
                }
            }
            Ok(())
        }
        KeysCommand::Status { check } => {
            let index = Index::open(&config.db_path)?;
            let st = keyring::status(&index)?;
            println!("source: {}", sealer.describe());
            match &st.keyring {
                None => println!("keyring: not initialised (run `vigil keys init`)"),
                Some(k) => {
                    println!(
                        "key-encryption key: {} (generation {}, created {})",
                        hex(&k.kek_id),
                        k.kek_generation,
                        cli_time::format_ns(k.kek_created_ns)
                    );
                    println!("sealed as: {}", k.sealing);
                    println!(
                        "PCR policy: {}",
                        if k.pcrs.is_empty() {
                            "none".to_string()
                        } else {
                            format!("PCR {}", k.pcrs)
                        }
                    );
                    println!(
                        "last rotation: {}",
                        k.rotated_ns.map(cli_time::format_ns).unwrap_or_else(|| "never".into())
                    );
                    println!("recovery key: escrowed (public key {})", &hex(&k.recovery_pub)[..16]);
                }
            }
            println!(
                "data keys: {} recording, {} secrets, {} retired; oldest {}, newest {}",
                st.recording_keys,
                st.secrets_keys,
                st.retired_keys,
                st.oldest_ns.map(cli_time::format_ns).unwrap_or_else(|| "-".into()),
                st.newest_ns.map(cli_time::format_ns).unwrap_or_else(|| "-".into())
            );
            for (k, reason) in &st.pending_jobs {
                println!("pending re-encryption of data key {k} ({reason}): run `vigil keys reencrypt --key {k}`");
            }
            let now = vigil::base::clock::now_ns();
            for m in secrets::list_in(index.conn()).map_err(|e| Failure::Runtime(e.into()))? {
                let state = m.expiry_state(now);
                if !state.is_empty() {
                    println!(
                        "secret {}: {state} ({})",
                        m.name,
                        m.expires_ns.map(cli_time::format_ns).unwrap_or_default()
                    );
                }
            }
            if check {
                let kr = open_keyring(&config, &actor)?;
                drop(kr);
                println!("unseal: ok");
            }
            Ok(())
        }
        KeysCommand::Recover => {
            let text = read_stdin_secret("the recovery key")?;
            let text = std::str::from_utf8(&text).map_err(|_| Failure::Usage("recovery key: not text".into()))?;
            let rk = RecoveryKey::parse(text)?;
            let kek_id = keyring::recover(&config.db_path, &sealer, &rk, &actor)?;
            println!("key-encryption key {} re-sealed: {}", hex(&kek_id), sealer.describe());
            Ok(())
        }
        KeysCommand::RotateKek => {
            let kr = open_keyring(&config, &actor)?;
            let r = kr.rotate_kek()?;
            println!(
                "key-encryption key rotated: {} -> {} (generation {}); {} data keys rewrapped in {:.1} ms; sealing took {:.1} ms",
                hex(&r.old_kek_id),
                hex(&r.new_kek_id),
                r.generation,
                r.rewrapped,
                r.rewrap_ms,
                r.seal_ms
            );
            Ok(())
        }
        KeysCommand::Shred {
            camera,
            before,
            recording,
            yes,
            override_hold,
        } => {
            let target = match (camera, before, recording) {
                (Some(camera), Some(before), None) => rekey::ShredTarget::CameraBefore {
                    camera,
                    before_ns: parse_date(&before)?,
                },
                (None, None, Some(id)) => rekey::ShredTarget::Recording(id),
                _ => {
                    return Err(Failure::Usage(
                        "give --camera NAME --before DATE, or --recording ID".into(),
                    ))
                }
            };
            if !yes {
                let index = open_index(&config)?;
                let recs: Vec<_> = match &target {
                    rekey::ShredTarget::CameraBefore { camera, before_ns } => index
                        .recordings(Some(camera))?
                        .into_iter()
                        .filter(|r| r.end_wall_ns() <= *before_ns)
                        .collect(),
                    rekey::ShredTarget::Recording(id) => index.recording(*id)?.into_iter().collect(),
                };
                let bytes: i64 = recs.iter().map(|r| r.bytes).sum();
                println!(
                    "would shred {} recording(s), {bytes} bytes; nothing done (add --yes to shred; it cannot be undone)",
                    recs.len()
                );
                return Ok(());
            }
            let kr = open_keyring(&config, &actor)?;
            let wait = config.segment_duration + std::time::Duration::from_secs(30);
            let r = rekey::shred(&kr, &storage, &target, wait, override_hold)?;
            if !r.held_skipped.is_empty() {
                println!(
                    "kept {} recording(s) under legal hold: {:?} (see `vigil hold list`)",
                    r.held_skipped.len(),
                    r.held_skipped
                );
            }
            println!(
                "shredded {} recording(s) ({} bytes); destroyed {} data key(s); re-encrypted {} other recording(s); WAL {}",
                r.shredded.len(),
                r.shredded_bytes,
                r.keys_destroyed.len(),
                r.reencrypted.len(),
                if r.wal_truncated { "checkpointed and truncated" } else { "NOT yet truncated (a reader held it)" }
            );
            Ok(())
        }
        KeysCommand::Reencrypt { key, reason } => {
            let id = vigil::keys::parse_key_id(&key)
                .ok_or_else(|| Failure::Usage(format!("\"{key}\": a key id is 16 hex digits")))?;
            let kr = open_keyring(&config, &actor)?;
            let wait = config.segment_duration + std::time::Duration::from_secs(30);
            let r = rekey::reencrypt(&kr, &storage, id, &reason, wait)?;
            println!(
                "re-encrypted {} recording(s) ({} bytes) and {} secret(s); data key {id} destroyed",
                r.reencrypted.len(),
                r.reencrypted_bytes,
                r.secrets_resealed
            );
            Ok(())
        }
        KeysCommand::BenchFill { count } => {
            let kr = open_keyring(&config, &actor)?;
            let t = std::time::Instant::now();
            for i in 0..count {
                kr.active_key(keyring::Purpose::Recording, &format!("bench:{i}"), None, None)?;
            }
            println!("created {count} data keys in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            Ok(())
        }
        KeysCommand::Bench { iterations } => {
            let kr = open_keyring(&config, &actor)?;
            let r = vigil::cli::bench::keys(&kr, iterations)?;
            println!("{r}");
            Ok(())
        }
    }
}

fn secrets_command(cli_config: &Path, command: SecretsCommand) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    match command {
        SecretsCommand::Set { name, expires } => {
            if !secrets::valid_name(&name) {
                return Err(Failure::Usage(format!("\"{name}\": {}", secrets::NAME_RULE)));
            }
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let value = read_stdin_secret("the secret")?;
            let kr = open_keyring(&config, &actor)?;
            let v = secrets::set(&kr, &name, &value, expires)?;
            println!("secret {name} stored (version {v})");
            Ok(())
        }
        SecretsCommand::List => {
            let index = open_index(&config)?;
            let now = vigil::base::clock::now_ns();
            println!(
                "{:<32} {:>7}  {:<24} {:<24} {:<16} status",
                "name", "version", "updated", "expires", "key"
            );
            for m in secrets::list_in(index.conn()).map_err(|e| Failure::Runtime(e.into()))? {
                println!(
                    "{:<32} {:>7}  {:<24} {:<24} {:<16} {}",
                    m.name,
                    m.version,
                    cli_time::format_ns(m.updated_ns),
                    m.expires_ns.map(cli_time::format_ns).unwrap_or_else(|| "-".into()),
                    m.key_id,
                    m.expiry_state(now)
                );
            }
            Ok(())
        }
        SecretsCommand::Rotate {
            name,
            generate,
            expires,
        } => {
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let (value, show) = match generate {
                Some(n) if (16..=1024).contains(&n) => {
                    let mut b = zeroize::Zeroizing::new(vec![0u8; n]);
                    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                        .map_err(|_| Failure::Runtime(anyhow::anyhow!("random number generator failed")))?;
                    let h = zeroize::Zeroizing::new(hex(&b).into_bytes());
                    (h, true)
                }
                Some(_) => return Err(Failure::Usage("--generate takes 16 to 1024 bytes".into())),
                None => (read_stdin_secret("the new value")?, false),
            };
            let kr = open_keyring(&config, &actor)?;
            let v = secrets::rotate(&kr, &name, &value, expires)?;
            if show {
                // Printed once, for the operator to configure on the other side.
                println!("{}", String::from_utf8_lossy(&value));
            }
            eprintln!("secret {name} rotated (version {v})");
            Ok(())
        }
        SecretsCommand::Remove { name } => {
            let kr = open_keyring(&config, &actor)?;
            secrets::remove(&kr, &name)?;
            println!("secret {name} removed");
            Ok(())
        }
    }
}

fn users_command(cli_config: &Path, command: UsersCommand) -> Result<(), Failure> {
    use vigil::db::users::{self, Role, UserError};
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    let index = Index::open(&config.db_path)?;
    let fail = |e: UserError| match e {
        UserError::Sql(_) | UserError::Hash(_) | UserError::Random(_) => Failure::Runtime(e.into()),
        other => Failure::Usage(other.to_string()),
    };
    let role_of = |r: &str| Role::parse(r).ok_or_else(|| fail(UserError::BadRole(r.to_string())));
    let record = |action: &str, target: &str, detail: &str| {
        audit::append(index.conn(), &actor, action, target, audit::Outcome::Ok, detail)
            .map_err(|e| Failure::Runtime(e.into()))
    };
    let password = |what: &str| -> Result<zeroize::Zeroizing<String>, Failure> {
        let v = read_stdin_secret(what)?;
        String::from_utf8(v.to_vec())
            .map(zeroize::Zeroizing::new)
            .map_err(|_| Failure::Usage("the password is not UTF-8 text".into()))
    };
    match command {
        UsersCommand::Add {
            name,
            role,
            no_change_required,
            ..
        } => {
            let role = role_of(&role)?;
            let pw = password("the password")?;
            users::add(&index, &name, role, &pw, !no_change_required).map_err(fail)?;
            record("user.add", &name, role.as_str())?;
            println!("user {name} added ({})", role.as_str());
        }
        UsersCommand::List => {
            println!("{:<24} {:<9} {:<9} {:<5} must-change", "name", "role", "state", "mfa");
            for u in users::list(&index).map_err(fail)? {
                let mfa = secrets::exists(index.conn(), &users::totp_secret_name(&u.name)).unwrap_or(false);
                println!(
                    "{:<24} {:<9} {:<9} {:<5} {}",
                    u.name,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "enabled" },
                    if mfa { "yes" } else { "no" },
                    if u.must_change_password { "yes" } else { "no" }
                );
            }
        }
        UsersCommand::Passwd { name } => {
            let pw = password("the new password")?;
            users::set_password(&index, &name, &pw).map_err(fail)?;
            record("user.password", &name, "set from the CLI")?;
            println!("password of {name} changed; their sessions ended");
        }
        UsersCommand::Disable { name } => {
            users::set_disabled(&index, &name, true).map_err(fail)?;
            record("user.disable", &name, "")?;
            println!("user {name} disabled; their sessions ended");
        }
        UsersCommand::Enable { name } => {
            users::set_disabled(&index, &name, false).map_err(fail)?;
            record("user.enable", &name, "")?;
            println!("user {name} enabled");
        }
        UsersCommand::EnableMfa { name } => {
            if users::find(&index, &name).map_err(fail)?.is_none() {
                return Err(fail(UserError::NoSuchUser(name)));
            }
            let seed =
                zeroize::Zeroizing::new(vigil::keys::random_bytes::<20>().map_err(|e| Failure::Runtime(e.into()))?);
            let kr = open_keyring(&config, &actor)?;
            secrets::set(&kr, &users::totp_secret_name(&name), &seed[..], None)?;
            record("user.mfa.enable", &name, "")?;
            // Shown once, for the authenticator app (the web UI shows it as a QR code).
            println!("{}", vigil::base::totp::otpauth_uri("Vigil", &name, &seed[..]));
        }
        UsersCommand::ResetMfa { name } => {
            let kr = open_keyring(&config, &actor)?;
            secrets::remove(&kr, &users::totp_secret_name(&name))?;
            record("user.mfa.reset", &name, "")?;
            println!("second factor of {name} removed");
        }
        UsersCommand::Token { name, role } => {
            let role = role_of(&role)?;
            let t = users::create_token(&index, &name, role).map_err(fail)?;
            record("token.add", &name, role.as_str())?;
            println!("{t}");
            eprintln!(
                "API token {name} ({}): shown once; send it as `Authorization: Bearer <token>`",
                role.as_str()
            );
        }
    }
    Ok(())
}

fn audit_command(cli_config: &Path, command: AuditCommand) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let index = open_index(&config)?;
    match command {
        AuditCommand::Tail { n } => {
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
        AuditCommand::Verify => match audit::verify(index.conn()).map_err(|e| Failure::Runtime(e.into()))? {
            Ok(n) => {
                println!("audit log intact: {n} entries, hash chain verified");
                Ok(())
            }
            Err(what) => Err(Failure::Integrity(format!("audit log: {what}"))),
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
        Command::Keys { command } => keys_command(&cli.config, command),
        Command::Secrets { command } => secrets_command(&cli.config, command),
        Command::Audit { command } => audit_command(&cli.config, command),
        Command::Users { command } => users_command(&cli.config, command),
        Command::HttpRoutes => {
            for r in vigil::web::api::ROUTES {
                let access = match r.access {
                    vigil::web::api::Access::Public => "public",
                    vigil::web::api::Access::At(role) => role.as_str(),
                };
                println!("{} {} {access}", r.method, r.path);
            }
            Ok(())
        }
        Command::Import { camera, start, file } => {
            let config = load_config(&cli.config)?;
            if !vigil::keys::secrets::valid_name(&camera) || camera.contains('.') {
                return Err(Failure::Usage(format!(
                    "\"{camera}\": use 1 to 64 letters, digits, '-' or '_'"
                )));
            }
            let start = start.as_deref().map(parse_date).transpose()?;
            let keys = load_keys(&config)?;
            let storage = Storage::new(&config.storage_dir);
            match vigil::ingest::import::import(
                &config.db_path,
                &storage,
                keys,
                &camera,
                &file,
                start,
                config.segment_duration,
            ) {
                Ok(r) => {
                    println!(
                        "imported {} frames of {} ({:.1} s from {}) into {} encrypted recording(s) of camera {camera}{}",
                        r.frames,
                        r.codec,
                        r.duration_ns as f64 / 1e9,
                        cli_time::format_ns(r.start_wall_ns),
                        r.recordings,
                        if r.skipped_before_key > 0 {
                            format!("; {} frames before the first key frame skipped", r.skipped_before_key)
                        } else {
                            String::new()
                        }
                    );
                    let _ = audit::append(
                        open_index(&config)?.conn(),
                        &audit::cli_actor(),
                        "recording.import",
                        &camera,
                        audit::Outcome::Ok,
                        &format!("{} ({} frames)", file.display(), r.frames),
                    );
                    Ok(())
                }
                Err(
                    e @ (vigil::ingest::import::ImportError::Demux(_)
                    | vigil::ingest::import::ImportError::InsideStorage(_)
                    | vigil::ingest::import::ImportError::NoStartTime(_)),
                ) => Err(Failure::Usage(e.to_string())),
                Err(e) => Err(Failure::Runtime(e.into())),
            }
        }
        Command::Run => {
            let config = load_config(&cli.config)?;
            let keyring = open_keyring(&config, "daemon")?;
            match vigil::run::daemon::run(config, keyring) {
                Ok(()) => Ok(()),
                Err(e) => match e.downcast::<vigil::run::daemon::PasswordError>() {
                    Ok(p) => Err(Failure::Usage(format!("config error: {}", p.0))),
                    Err(e) => match e.downcast::<vigil::run::daemon::UnencryptedVolume>() {
                        Ok(v) => Err(Failure::Usage(v.0)),
                        Err(e) => Err(Failure::Runtime(e)),
                    },
                },
            }
        }
        Command::Recordings { camera } => {
            let config = load_config(&cli.config)?;
            let index = open_index(&config)?;
            println!(
                "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  {:<9} data key",
                "id", "camera", "start", "end", "frames", "bytes", "state"
            );
            for r in index.recordings(camera.as_deref())? {
                println!(
                    "{:>6}  {:<16} {:<24} {:<24} {:>7} {:>12}  {:<9} {}",
                    r.id,
                    r.camera,
                    cli_time::format_ns(r.start_wall_ns),
                    cli_time::format_ns(r.end_wall_ns()),
                    r.frames,
                    r.bytes,
                    r.state,
                    hex(&r.key_id)
                );
            }
            Ok(())
        }
        Command::Status => {
            let config = load_config(&cli.config)?;
            let index = open_index(&config)?;
            let cams = index.cameras()?;
            let streaming = cams.iter().filter(|c| c.state == "streaming").count();
            println!(
                "cameras: {streaming}/{} streaming",
                config.cameras.iter().filter(|c| c.enabled).count()
            );
            for c in &cams {
                println!(
                    "  {:<16} {:<10} since {}",
                    c.name,
                    c.state,
                    cli_time::format_ns(c.state_since_ns)
                );
            }
            match vigil::base::host::fs_space(&config.storage_dir) {
                Some((avail, total)) => println!(
                    "storage: {} free of {} ({:.1}%) in {}",
                    human_bytes(avail),
                    human_bytes(total),
                    avail as f64 * 100.0 / total.max(1) as f64,
                    config.storage_dir.display()
                ),
                None => println!("storage: {} is not readable", config.storage_dir.display()),
            }
            let ts = vigil::base::host::time_sync();
            println!(
                "clock: {} (max error {} ms)",
                if ts.synchronised {
                    "synchronised"
                } else {
                    "NOT synchronised"
                },
                ts.max_error_us / 1000
            );
            println!("keys: {}", KekSealer::new(config.keys.clone()).describe());
            match &config.http {
                None => println!("https: off (no [http] section)"),
                Some(http) => {
                    let fp = match &http.cert_key {
                        Some((cert, _)) => std::fs::read(cert)
                            .ok()
                            .and_then(|pem| rustls_pemfile::certs(&mut &pem[..]).next()?.ok())
                            .map(|der| vigil::web::tls::fingerprint(der.as_ref())),
                        None => open_keyring(&config, &audit::cli_actor())
                            .ok()
                            .and_then(|kr| {
                                secrets::get(&kr, vigil::web::tls::CERT_SECRET, "status: certificate fingerprint").ok()
                            })
                            .and_then(|pem| rustls_pemfile::certs(&mut &pem[..]).next()?.ok())
                            .map(|der| vigil::web::tls::fingerprint(der.as_ref())),
                    };
                    println!("https: https://{} ", http.listen);
                    println!(
                        "certificate SHA-256 fingerprint: {}",
                        fp.unwrap_or_else(|| "(not made yet: the daemon makes it at first start)".into())
                    );
                }
            }
            Ok(())
        }
        Command::Cameras {
            action: Some(CamerasCmd::Probe { json }),
        } => Ok(cameras_probe(json)?),
        Command::Cameras { action: None } => {
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
            out: None,
            bundle: Some(bundle),
        } => export_bundle(&cli.config, &camera, &start, &end, &bundle),
        Command::Export {
            camera,
            start,
            end,
            out: Some(out),
            ..
        } => {
            let [camera] = <[String; 1]>::try_from(camera)
                .map_err(|_| Failure::Usage("an MP4 export takes one --camera; use --bundle for several".into()))?;
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
                    let _ = audit::append(
                        index.conn(),
                        &audit::cli_actor(),
                        "export",
                        &camera,
                        audit::Outcome::Ok,
                        &format!(
                            "{} to {}, {} frames, {} bytes, to {}",
                            cli_time::format_ns(r.first_wall_ns),
                            cli_time::format_ns(r.end_wall_ns),
                            r.frames,
                            r.bytes,
                            out.display()
                        ),
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
        Command::Export { .. } => Err(Failure::Usage("give --out FILE or --bundle DIR|FILE.zip".into())),
        Command::VerifyExport {
            bundle,
            pubkey,
            fingerprint,
        } => verify_export(&bundle, pubkey.as_deref(), fingerprint),
        Command::Device => {
            let config = load_config(&cli.config)?;
            let kr = open_keyring(&config, &audit::cli_actor())?;
            let key = vigil::evidence::device::DeviceKey::load_or_create(&kr, "vigil device")
                .map_err(|e| Failure::Runtime(e.into()))?;
            let id = key.identity();
            println!("device id:   {}", id.device_id);
            println!("fingerprint: {}", id.fingerprint());
            print!("{}", id.public_key_pem());
            Ok(())
        }
        Command::Hold { command } => hold_command(&cli.config, command),
        Command::Fixity {
            command: FixityCommand::Status,
        } => {
            let config = load_config(&cli.config)?;
            let index = open_index(&config)?;
            let st = vigil::archive::fixity::status(index.conn()).map_err(|e| Failure::Runtime(e.into()))?;
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
        Command::Retention { command } => retention_command(&cli.config, command),
        Command::Board { command } => board_command(command),
        Command::Provision {
            admin_password_file,
            recovery_key,
            report,
        } => provision(
            &cli.config,
            admin_password_file.as_deref(),
            &recovery_key,
            report.as_deref(),
        ),
        Command::Verify { file: Some(file), .. } => {
            let config = load_config(&cli.config)?;
            let keys = load_keys(&config)?;
            match verify::verify_file(&file, keys.as_ref()) {
                Ok(line) => {
                    println!("{line}");
                    Ok(())
                }
                Err(e) => Err(Failure::Integrity(e)),
            }
        }
        Command::Verify { camera, file: None } => {
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
            let (bytes, secs) = vigil::cli::bench::seal_throughput(mib, record_kib)?;
            println!(
                "seal: {:.1} MiB as {record_kib} KiB records in {secs:.3} s = {:.1} MB/s (ring ChaCha20-Poly1305, in memory)",
                bytes as f64 / 1048576.0,
                bytes as f64 / secs / 1e6
            );
            let (bytes, secs) = vigil::cli::bench::writer_throughput(&dir, mib, record_kib)?;
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
            let frames = vigil::cli::bench::synthesize(
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

fn export_bundle(config_path: &Path, cameras: &[String], start: &str, end: &str, out: &Path) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let start_ns = cli_time::parse_rfc3339(start).map_err(Failure::Usage)?;
    let end_ns = cli_time::parse_rfc3339(end).map_err(Failure::Usage)?;
    let actor = audit::cli_actor();
    let kr = open_keyring(&config, &actor)?;
    let device = vigil::evidence::device::DeviceKey::load_or_create(&kr, "sign an export")
        .map_err(|e| Failure::Runtime(e.into()))?;
    let index = open_index(&config)?;
    let storage = Storage::new(&config.storage_dir);
    let keys: Arc<dyn KeyLookup> = kr.clone();
    let archive = export::Archive {
        index: &index,
        storage: &storage,
        keys: keys.as_ref(),
    };
    let req = vigil::evidence::bundle::BundleRequest {
        cameras,
        start_ns,
        end_ns,
        operator: &actor,
    };
    let target = vigil::evidence::bundle::BundleTarget::from_path(out);
    match vigil::evidence::bundle::create_bundle(archive, &device, &req, &target) {
        Ok(r) => {
            let digest = r.archive_sha256.unwrap_or(r.manifest_sha256);
            let _ = audit::append(
                index.conn(),
                &actor,
                "export.bundle",
                &cameras.join(","),
                audit::Outcome::Ok,
                &format!(
                    "export {}: {} to {}, {} frames, {} bytes, sha256 {} to {}",
                    r.export_id,
                    cli_time::format_ns(r.manifest.actual.start_ns),
                    cli_time::format_ns(r.manifest.actual.end_ns),
                    r.frames,
                    r.archive_bytes,
                    vigil_format::hex(&digest),
                    out.display()
                ),
            );
            println!(
                "export {}: {} frames, {} to {}, {} bytes in {}",
                r.export_id,
                r.frames,
                cli_time::format_ns(r.manifest.actual.start_ns),
                cli_time::format_ns(r.manifest.actual.end_ns),
                r.archive_bytes,
                out.display()
            );
            match r.archive_sha256 {
                Some(d) => println!("sha256 of the zip: {}", vigil_format::hex(&d)),
                None => println!("sha256 of manifest.json: {}", vigil_format::hex(&r.manifest_sha256)),
            }
            println!(
                "signed by device {} (key fingerprint {})",
                r.manifest.device_id, r.manifest.signing_key.fingerprint_sha256
            );
            Ok(())
        }
        Err(e) if e.is_integrity() => Err(Failure::Integrity(format!("export refused: {e}"))),
        Err(
            e @ (vigil::evidence::bundle::EvidenceError::Usage(_)
            | vigil::evidence::bundle::EvidenceError::Export(
                export::ExportError::UnknownCamera(_)
                | export::ExportError::NothingToExport { .. }
                | export::ExportError::EmptyRange,
            )),
        ) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}

fn verify_export(bundle: &Path, pubkey: Option<&Path>, fingerprint: Option<String>) -> Result<(), Failure> {
    use vigil::evidence::bundle::Pin;
    let pin = match (pubkey, fingerprint) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
            Pin::PublicKey(
                vigil::evidence::device::parse_public_key(&text)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?,
            )
        }
        (None, Some(f)) => {
            let hexd: String = f.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            if hexd.len() != 64 {
                return Err(Failure::Usage(format!(
                    "\"{f}\": a fingerprint is 64 hex digits (SHA-256)"
                )));
            }
            Pin::Fingerprint(hexd)
        }
        (None, None) => Pin::None,
    };
    let rep = vigil::evidence::bundle::verify_bundle(bundle, &pin);
    println!("Vigil evidence bundle: {}", bundle.display());
    if let Some(m) = &rep.manifest {
        println!("  device      {}", m.device_id);
        println!(
            "  export      {} by {} at {} ({})",
            m.export_id, m.operator, m.exported_utc, m.software
        );
        println!(
            "  clock       {} (max error {} us)",
            if m.time_sync.synchronised {
                "synchronised"
            } else {
                "NOT synchronised"
            },
            m.time_sync.max_error_us
        );
        println!("  requested   {} to {}", m.requested.start_utc, m.requested.end_utc);
        for c in &m.clips {
            println!(
                "  clip        {}: camera {}, {} to {}, {} frames, from recording(s) {:?}",
                c.file,
                c.camera,
                c.actual.start_utc,
                c.actual.end_utc,
                c.frames,
                c.source_recordings.iter().map(|r| r.id).collect::<Vec<_>>()
            );
        }
        println!("  image type  {}", m.image_type);
    }
    for f in &rep.findings {
        println!("{} {}", if f.ok { "  ok  " } else { "  FAIL" }, f.text);
    }
    if !rep.pinned {
        println!(
            "  note  the signature was checked with the key shipped in the bundle; to prove which device signed it, \
             run again with --fingerprint (from `vigil device` on the recorder) or --pubkey"
        );
    }
    if rep.ok() {
        println!("RESULT: INTACT");
        Ok(())
    } else {
        println!(
            "RESULT: NOT INTACT: {} problem(s)",
            rep.findings.iter().filter(|f| !f.ok).count()
        );
        Err(Failure::Integrity("the bundle failed verification".into()))
    }
}

fn hold_command(config_path: &Path, command: HoldCommand) -> Result<(), Failure> {
    use vigil::db::holds::{self, HoldError, HoldTarget};
    let config = load_config(config_path)?;
    let index = open_index(&config)?;
    let actor = audit::cli_actor();
    let hold_err = |e: HoldError| match e {
        HoldError::Sql(e) => Failure::Runtime(e.into()),
        other => Failure::Usage(other.to_string()),
    };
    match command {
        HoldCommand::Add {
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
        HoldCommand::List { all } => {
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
        HoldCommand::Remove { id, reason } => {
            let h = holds::release(index.conn(), id, &reason, &actor).map_err(hold_err)?;
            println!("hold {id} released ({})", h.describe());
            Ok(())
        }
    }
}

fn retention_command(config_path: &Path, command: RetentionCommand) -> Result<(), Failure> {
    match command {
        RetentionCommand::Run => {
            let config = load_config(config_path)?;
            let mut index = open_index(&config)?;
            let storage = Storage::new(&config.storage_dir);
            let dir = config.storage_dir.clone();
            let rep = vigil::archive::retention::run_pass(
                &storage,
                &mut index,
                &config.retention,
                vigil::base::clock::now_ns(),
                &move || vigil::base::host::fs_space(&dir),
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
        RetentionCommand::Bench { recordings } => {
            vigil::cli::bench::retention_pass(recordings).map_err(Failure::Runtime)
        }
    }
}

fn board_command(command: BoardCommand) -> Result<(), Failure> {
    use vigil::base::board;
    let profiles = board::profiles();
    match command {
        BoardCommand::List => {
            for p in &profiles {
                println!("{:<20} {}", p.name, p.description);
            }
            Ok(())
        }
        BoardCommand::Detect { env, profile } => {
            let id = board::identity();
            let p = match &profile {
                Some(n) => profiles
                    .iter()
                    .find(|p| &p.name == n)
                    .ok_or_else(|| Failure::Usage(format!("no board profile \"{n}\" (see `vigil board list`)")))?,
                None => board::detect(&id, &profiles).ok_or_else(|| {
                    Failure::Runtime(anyhow::anyhow!(
                        "no board profile matches this machine (device tree: {:?}, DMI vendor: {}); \
                         name one with --profile (see `vigil board list`)",
                        id.compatible,
                        id.dmi_vendor.as_deref().unwrap_or("none")
                    ))
                })?,
            };
            let aes = board::cpu_has_aes();
            let cipher = board::cipher(p, aes);
            if env {
                println!("BOARD={}", p.name);
                println!("STORAGE_DEVICE={}", p.storage_device);
                println!("CIPHER={cipher}");
                println!("WATCHDOG={}", p.watchdog);
                println!("LED_STATUS={}", p.led_status);
                println!("LED_FAULT={}", p.led_fault);
                println!("CAMERAS={}", p.cameras.join(" "));
                return Ok(());
            }
            let why = if profile.is_some() {
                "named with --profile".to_string()
            } else if let Some(c) = id.compatible.iter().find(|c| p.compatible.contains(c)) {
                format!("device tree \"{c}\"")
            } else {
                format!("DMI vendor \"{}\"", id.dmi_vendor.as_deref().unwrap_or(""))
            };
            println!("board:          {} ({}), from {why}", p.name, p.description);
            println!("storage device: {}", p.storage_device);
            println!(
                "cipher:         {cipher} (CPU AES instructions: {})",
                if aes { "yes" } else { "no" }
            );
            println!("watchdog:       {}", p.watchdog);
            println!("status LEDs:    {} / fault {}", p.led_status, p.led_fault);
            println!("cameras:        {}", p.cameras.join(", "));
            Ok(())
        }
    }
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

fn provision(
    config_path: &Path,
    admin_password_file: Option<&Path>,
    recovery_key: &str,
    report_path: Option<&Path>,
) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let actor = audit::cli_actor();
    let kr = open_keyring(&config, &actor)?;
    let index = open_index(&config)?;
    let device = vigil::evidence::device::DeviceKey::load_or_create(&kr, "provisioning")
        .map_err(|e| Failure::Runtime(e.into()))?;
    let https = match &config.http {
        Some(http) => Some(
            vigil::web::tls::server_config(http, &kr)
                .map_err(|e| Failure::Runtime(e.into()))?
                .1,
        ),
        None => None,
    };
    let admin = match vigil::db::users::ensure_first_admin(&index).map_err(|e| Failure::Runtime(e.into()))? {
        Some(pw) => {
            let _ = audit::append(
                index.conn(),
                &actor,
                "user.add",
                "admin",
                audit::Outcome::Ok,
                "provisioning: admin with a one-time password",
            );
            match admin_password_file {
                Some(p) => {
                    write_private(p, &format!("{pw}\n"))?;
                    format!("created; one-time password written to {}", p.display())
                }
                None => {
                    println!("ADMIN ONE-TIME PASSWORD (shown once; it must be changed at first login): {pw}");
                    "created; one-time password printed above".to_string()
                }
            }
        }
        None => "exists (not changed)".to_string(),
    };
    let ks = vigil::keys::keyring::status(&index).map_err(Failure::from)?;
    let kr_row = ks
        .keyring
        .ok_or_else(|| Failure::Usage("run `vigil keys init` first".into()))?;
    // The recordings directory may not exist yet: its nearest existing ancestor is on the same volume.
    let volume = config
        .storage_dir
        .ancestors()
        .find(|p| p.exists())
        .and_then(|p| vigil::base::host::volume(p).ok());
    let id = device.identity();
    let report = serde_json::json!({
        "device_id": id.device_id,
        "signing_key_fingerprint_sha256": id.fingerprint(),
        "https_certificate_fingerprint_sha256": https,
        "kek": { "id": vigil_format::hex(&kr_row.kek_id), "sealing": kr_row.sealing, "pcrs": kr_row.pcrs },
        "recovery_key": recovery_key,
        "recordings_volume": volume.as_ref().map(|v| v.describe()),
        "recordings_volume_luks2": volume.as_ref().is_some_and(|v| v.is_luks2()),
        "admin": admin,
        "software": vigil::evidence::bundle::software_version(),
    });
    let _ = audit::append(
        index.conn(),
        &actor,
        "device.provision",
        &id.device_id,
        audit::Outcome::Ok,
        &format!("signing key {}, admin {admin}", id.fingerprint()),
    );
    println!("=== Vigil provisioning report");
    println!("device id:                 {}", id.device_id);
    println!("signing key fingerprint:   {}", id.fingerprint());
    println!(
        "HTTPS certificate:         {}",
        https.as_deref().unwrap_or("none (no [http] section)")
    );
    println!(
        "key-encryption key:        {} sealed by {} (PCRs: {})",
        vigil_format::hex(&kr_row.kek_id),
        kr_row.sealing,
        if kr_row.pcrs.is_empty() {
            "none"
        } else {
            kr_row.pcrs.as_str()
        }
    );
    println!("recovery key:              {recovery_key}");
    println!(
        "recordings volume:         {}",
        volume
            .as_ref()
            .map(|v| v.describe())
            .unwrap_or_else(|| "unknown".into())
    );
    println!("admin:                     {admin}");
    if let Some(p) = report_path {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Failure::Runtime(e.into()))?;
        std::fs::write(p, format!("{text}\n")).map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
        println!("report:                    {}", p.display());
    }
    Ok(())
}

fn cameras_probe(json: bool) -> anyhow::Result<()> {
    let devices = vigil::ingest::v4l2::probe_devices();
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
    if !vigil::ingest::v4l2::HAS_ENCODER {
        println!("(this build has no encoder: raw formats need vigil built with --features ffmpeg)");
    }
    Ok(())
}
