//! `vigil secrets`: the encrypted secrets store (camera passwords, tokens).

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_index, open_keyring, parse_date, read_stdin_secret, Failure};
use crate::base::time as cli_time;
use crate::db::audit;
use crate::keys::secrets;
use vigil_format::hex;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

pub fn run(cli_config: &Path, Args { command }: Args) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    match command {
        Command::Set { name, expires } => {
            if !crate::base::names::valid_secret_name(&name) {
                return Err(Failure::Usage(format!(
                    "\"{name}\": {}",
                    crate::base::names::SECRET_NAME_RULE
                )));
            }
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let value = read_stdin_secret("the secret")?;
            let kr = open_keyring(&config, &actor)?;
            let v = secrets::set(&kr, &name, &value, expires)?;
            println!("secret {name} stored (version {v})");
            Ok(())
        }
        Command::List => {
            let index = open_index(&config)?;
            let now = crate::base::clock::now_ns();
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
        Command::Rotate {
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
        Command::Remove { name } => {
            let kr = open_keyring(&config, &actor)?;
            secrets::remove(&kr, &name)?;
            println!("secret {name} removed");
            Ok(())
        }
    }
}
