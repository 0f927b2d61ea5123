//! `vigil users`: web users, their second factor and their camera sets
//! (API tokens: `vigil tokens`).

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_keyring, read_stdin_secret, Failure};
use crate::db::camera_sets::{self, CameraSetError};
use crate::db::user_admin;
use crate::db::{audit, Index};
use crate::keys::secrets;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Only these cameras (comma-separated; default: every camera).
        #[arg(long)]
        cameras: Option<String>,
    },
    List,
    /// Set a new password (from standard input); ends the user's sessions.
    Passwd {
        name: String,
    },
    /// Disable a user; ends their sessions and stops their API tokens.
    /// Refuses the last enabled admin unless `--force` is given.
    Disable {
        name: String,
        /// Disable even the last enabled admin (nobody can then log in to
        /// the web UI until `vigil users enable` on the box).
        #[arg(long)]
        force: bool,
    },
    /// Delete a user; their sessions and API tokens end with them (not the
    /// last enabled admin).
    Delete {
        name: String,
    },
    /// Change a user's role: viewer, operator or admin (the last enabled
    /// admin stays an admin).
    Role {
        name: String,
        role: String,
    },
    /// Set a one-time password (from standard input) that must be changed
    /// at the next login; ends the user's sessions.
    ResetPassword {
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
    /// The cameras a user (and their API tokens) may see: `all`, or a
    /// comma-separated list of camera names.
    Cameras {
        name: String,
        cameras: String,
    },
}

pub fn run(cli_config: &Path, Args { command }: Args) -> Result<(), Failure> {
    use crate::base::clock::SystemClock;
    use crate::db::users::{self, Role, UserError};
    use crate::keys::mfa::{self, MfaError};
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    let index = Index::open(&config.db_path)?;
    let fail = |e: UserError| match e {
        UserError::Sql(_) | UserError::Hash(_) | UserError::Random(_) => Failure::Runtime(e.into()),
        other => Failure::Usage(other.to_string()),
    };
    let role_of = |r: &str| Role::parse(r).ok_or_else(|| fail(UserError::BadRole(r.to_string())));
    let mfa_fail = |e: MfaError| match e {
        MfaError::User(e) => fail(e),
        MfaError::Secret(e) => Failure::from(e),
    };
    let password = |what: &str| -> Result<zeroize::Zeroizing<String>, Failure> {
        let v = read_stdin_secret(what)?;
        String::from_utf8(v.to_vec())
            .map(zeroize::Zeroizing::new)
            .map_err(|_| Failure::Usage("the password is not UTF-8 text".into()))
    };
    match command {
        Command::Add {
            name,
            role,
            no_change_required,
            cameras,
            ..
        } => {
            let role = role_of(&role)?;
            let cameras = cameras.as_deref().map(camera_list).transpose()?;
            let pw = password("the password")?;
            users::add(&index, &actor, &name, role, &pw, !no_change_required, &SystemClock).map_err(fail)?;
            if let Some(set) = cameras {
                if let Err(e) = camera_sets::set_user_cameras(&index, &actor, &name, set, &SystemClock) {
                    // Fail closed: not a user who sees every camera.
                    let _ = users::set_disabled(&index, &actor, &name, true, &SystemClock);
                    return Err(set_fail(e));
                }
            }
            println!("user {name} added ({})", role.as_str());
        }
        Command::List => {
            println!(
                "{:<24} {:<9} {:<9} {:<5} {:<11} cameras",
                "name", "role", "state", "mfa", "must-change"
            );
            for u in users::list(&index).map_err(fail)? {
                let mfa = secrets::exists(index.conn(), &users::totp_secret_name(&u.name)).unwrap_or(false);
                println!(
                    "{:<24} {:<9} {:<9} {:<5} {:<11} {}",
                    u.name,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "enabled" },
                    if mfa { "yes" } else { "no" },
                    if u.must_change_password { "yes" } else { "no" },
                    camera_sets::describe(u.cameras.as_deref())
                );
            }
        }
        Command::Passwd { name } => {
            let pw = password("the new password")?;
            users::set_password(&index, &actor, &name, &pw, "set from the CLI", &SystemClock).map_err(fail)?;
            println!("password of {name} changed; their sessions ended");
        }
        Command::Disable { name, force } => {
            match force {
                // Root's way back (and way out): no admin rule.
                true => users::set_disabled(&index, &actor, &name, true, &SystemClock),
                false => user_admin::disable_checked(&index, &actor, None, &name, &SystemClock),
            }
            .map_err(|e| match e {
                UserError::LastAdmin => Failure::Usage(format!("{e} (--force disables it anyway)")),
                other => fail(other),
            })?;
            println!("user {name} disabled; their sessions ended and their API tokens stopped working");
        }
        Command::Delete { name } => {
            user_admin::delete_user(&index, &actor, None, &name).map_err(fail)?;
            println!("user {name} deleted; their sessions and API tokens ended");
        }
        Command::Role { name, role } => {
            let role = role_of(&role)?;
            user_admin::set_role(&index, &actor, None, &name, role, &SystemClock).map_err(fail)?;
            println!("user {name} is now {}", role.as_str());
        }
        Command::ResetPassword { name } => {
            let pw = password("the one-time password")?;
            user_admin::reset_password(&index, &actor, &name, &pw, &SystemClock).map_err(fail)?;
            println!("one-time password of {name} set; it must be changed at the next login");
        }
        Command::Enable { name } => {
            users::set_disabled(&index, &actor, &name, false, &SystemClock).map_err(fail)?;
            println!("user {name} enabled");
        }
        Command::EnableMfa { name } => {
            if users::find(&index, &name).map_err(fail)?.is_none() {
                return Err(fail(UserError::NoSuchUser(name)));
            }
            let kr = open_keyring(&config, &actor)?;
            let seed = mfa::enable(&kr, &actor, &name).map_err(mfa_fail)?;
            // Shown once, for the authenticator app (the web UI shows it as a QR code).
            println!("{}", crate::base::totp::otpauth_uri("Vigil", &name, &seed[..]));
        }
        Command::ResetMfa { name } => {
            let kr = open_keyring(&config, &actor)?;
            mfa::reset(&kr, &actor, &name).map_err(mfa_fail)?;
            println!("second factor of {name} removed");
        }
        Command::Cameras { name, cameras } => {
            let set = camera_list(&cameras)?;
            let shown = camera_sets::describe(set.as_deref());
            camera_sets::set_user_cameras(&index, &actor, &name, set, &SystemClock).map_err(set_fail)?;
            println!("user {name} may see: {shown}");
        }
    }
    Ok(())
}

/// A camera set from the command line: `all` (None) or `a,b`.
fn camera_list(s: &str) -> Result<Option<Vec<String>>, Failure> {
    camera_sets::parse_list(s).map_err(|e| Failure::Usage(e.to_string()))
}

fn set_fail(e: CameraSetError) -> Failure {
    match e {
        CameraSetError::Sql(_) => Failure::Runtime(e.into()),
        other => Failure::Usage(other.to_string()),
    }
}
