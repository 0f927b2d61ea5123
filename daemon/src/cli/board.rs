//! `vigil board`: the board profiles, which one this machine is, or all of them.

use clap::Subcommand;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

pub fn run(Args { command }: Args) -> Result<(), Failure> {
    use crate::base::board;
    let profiles = board::profiles();
    match command {
        Command::List => {
            for p in &profiles {
                println!("{:<20} {}", p.name, p.description);
            }
            Ok(())
        }
        Command::Detect { env, profile } => {
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
