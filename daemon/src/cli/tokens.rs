//! `vigil tokens`: API tokens (create for a user, list, revoke).

use std::path::Path;

use clap::Subcommand;

use super::{load_config, Failure};
use crate::base::clock::SystemClock;
use crate::base::time::format_ns;
use crate::db::camera_sets::{self, CameraSetError};
use crate::db::tokens::{self, NewToken, TokenError};
use crate::db::users::{Role, UserError};
use crate::db::{audit, Index};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a token for a user: the secret is printed once on standard
    /// output, and only its hash is stored.
    Create {
        /// The owner: the token never does more than this user may.
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// viewer (default), operator or admin; at most the owner's role.
        #[arg(long)]
        role: Option<String>,
        /// Days until it expires: 1 to 365 (default 90).
        #[arg(long)]
        expires_days: Option<u32>,
        /// Only these cameras (comma-separated; within the owner's set).
        #[arg(long)]
        cameras: Option<String>,
    },
    /// Every token: owner, role, cameras, created, expires, last used, revoked.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

/// The exit status of a token error: 2 for what the caller asked wrong.
pub(super) fn token_failure(e: TokenError) -> Failure {
    match e {
        TokenError::Sql(_)
        | TokenError::Random(_)
        | TokenError::CameraSet(CameraSetError::Sql(_))
        | TokenError::User(UserError::Sql(_) | UserError::Hash(_) | UserError::Random(_)) => Failure::Runtime(e.into()),
        other => Failure::Usage(other.to_string()),
    }
}

fn time_or(ns: Option<i64>, none: &str) -> String {
    ns.map(format_ns).unwrap_or_else(|| none.to_string())
}

pub fn run(cli_config: &Path, Args { command }: Args) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let actor = audit::cli_actor();
    let index = Index::open(&config.db_path)?;
    match command {
        Command::Create {
            user,
            name,
            role,
            expires_days,
            cameras,
        } => {
            let role = role
                .map(|r| Role::parse(&r).ok_or_else(|| Failure::Usage(UserError::BadRole(r.clone()).to_string())))
                .transpose()?;
            let cameras = match cameras {
                Some(list) => camera_sets::parse_list(&list).map_err(|e| Failure::Usage(e.to_string()))?,
                None => None,
            };
            let new = NewToken {
                owner: user.clone(),
                name,
                role,
                expires_in_days: expires_days,
                cameras,
            };
            let t = tokens::create(&index, &actor, new, &SystemClock).map_err(token_failure)?;
            println!("{}", t.secret.as_str());
            eprintln!(
                "API token {} of {user} ({}, expires {}): shown once; send it as `Authorization: Bearer <token>`",
                t.name,
                t.role.as_str(),
                format_ns(t.expires_ns)
            );
        }
        Command::List { json } => {
            let list = tokens::list(&index, None).map_err(token_failure)?;
            if json {
                let v: Vec<_> = list.iter().map(crate::web::api::tokens::token_json).collect();
                println!("{}", serde_json::Value::Array(v));
                return Ok(());
            }
            println!(
                "{:<24} {:<16} {:<9} {:<16} {:<24} {:<24} state",
                "name", "owner", "role", "cameras", "expires", "last used"
            );
            let now = crate::base::clock::now_ns();
            for t in list {
                let state = match (t.revoked_ns, t.owner.as_deref(), t.expires_ns) {
                    (Some(_), _, _) => "revoked",
                    (None, None, _) | (None, _, None) => "made before v7 (never works)",
                    (None, Some(_), Some(e)) if e <= now => "expired",
                    _ => "live",
                };
                println!(
                    "{:<24} {:<16} {:<9} {:<16} {:<24} {:<24} {state}",
                    t.name,
                    t.owner.as_deref().unwrap_or("-"),
                    t.role.as_str(),
                    camera_sets::describe(t.cameras.as_deref()),
                    time_or(t.expires_ns, "never"),
                    time_or(t.last_used_ns, "never"),
                );
            }
        }
        Command::Revoke { name } => {
            tokens::revoke(&index, &actor, &name, None, &SystemClock).map_err(token_failure)?;
            println!("token {name} revoked");
        }
    }
    Ok(())
}
