//! `vigil keys`: the key-encryption key (init, status, recover, rotate) and
//! the data keys (shred, re-encrypt), plus the hidden key benchmarks.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{load_config, open_index, open_keyring, parse_date, read_stdin_secret, write_private, Failure};
use crate::archive::rekey;
use crate::base::time as cli_time;
use crate::db::{audit, Index};
use crate::keys::keyring;
use crate::keys::recovery::RecoveryKey;
use crate::keys::sealing::KekSealer;
use crate::keys::secrets;
use crate::storage::Storage;
use vigil_format::hex;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

pub fn run(cli_config: &Path, Args { command }: Args) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    let sealer = KekSealer::new(config.keys.clone());
    let storage = Storage::new(&config.storage_dir);
    match command {
        Command::Init { recovery_key_file } => {
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
        Command::Status { check } => {
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
                    println!(
                        "recovery key: escrowed (public key {})",
                        hex(k.recovery_pub.get(..8).unwrap_or(&k.recovery_pub))
                    );
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
            let now = crate::base::clock::now_ns();
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
        Command::Recover => {
            let text = read_stdin_secret("the recovery key")?;
            let text = std::str::from_utf8(&text).map_err(|_| Failure::Usage("recovery key: not text".into()))?;
            let rk = RecoveryKey::parse(text)?;
            let kek_id = keyring::recover(&config.db_path, &sealer, &rk, &actor)?;
            println!("key-encryption key {} re-sealed: {}", hex(&kek_id), sealer.describe());
            Ok(())
        }
        Command::RotateKek => {
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
        Command::Shred {
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
        Command::Reencrypt { key, reason } => {
            let id = crate::keys::parse_key_id(&key)
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
        Command::BenchFill { count } => {
            let kr = open_keyring(&config, &actor)?;
            let t = std::time::Instant::now();
            for i in 0..count {
                kr.active_key(crate::keys::wrap::Purpose::Recording, &format!("bench:{i}"), None, None)?;
            }
            println!("created {count} data keys in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            Ok(())
        }
        Command::Bench { iterations } => {
            let kr = open_keyring(&config, &actor)?;
            let r = crate::cli::bench::keys(&kr, iterations)?;
            println!("{r}");
            Ok(())
        }
    }
}
