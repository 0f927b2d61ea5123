//! API tokens: a secret for scripts and integrations, sent as
//! `Authorization: Bearer vigil_<64 hex digits>`. Each token belongs to a
//! user (its owner), has a name (unique on the device), a role at most the
//! owner's, an expiry (default 90 days, at most 365), an optional camera set
//! within the owner's, and a last-used time. Only the SHA-256 of the secret
//! is stored; the secret is returned once, when the token is made.
//!
//! A token authenticates only while it is not revoked, not expired, and its
//! owner exists and is enabled; what it may do is re-read from the owner on
//! every request (the lower of the two roles, the cameras in both sets), so
//! disabling or narrowing a user narrows their tokens at once. Tokens made
//! before schema v7 have no owner and never authenticate (fail closed).
//!
//! Making and revoking a token are audited (`token.create`, `token.revoke`)
//! in the same transaction as the change.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::base::clock::Clock;
use crate::base::names::valid_free_text;
use crate::db::audit::{self, Outcome};
use crate::db::camera_sets::{self, CameraSetError};
use crate::db::users::{self, Role, User, UserError};
use crate::db::Index;
use vigil_format::keys::random_bytes;

/// The expiry of a token when none is asked for.
pub const DEFAULT_EXPIRY_DAYS: u32 = 90;
/// The longest expiry a token may have.
pub const MAX_EXPIRY_DAYS: u32 = 365;
/// At most this many live (unrevoked, unexpired) tokens per user.
pub const MAX_LIVE_PER_USER: i64 = 20;
/// The prefix of every token's text.
pub const PREFIX: &str = "vigil_";
const DAY_NS: i64 = 86_400 * 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token name is 1 to 64 characters, not all spaces, and no control characters (no line breaks or tabs)")]
    BadName,
    #[error("a token named \"{0}\" exists")]
    Exists(String),
    #[error("no token named \"{0}\"")]
    NoSuchToken(String),
    #[error("no user named \"{0}\"")]
    NoSuchUser(String),
    #[error("user \"{0}\" is disabled")]
    OwnerDisabled(String),
    #[error("a token's role is at most its owner's ({0})")]
    RoleAboveOwner(&'static str),
    #[error("user \"{0}\" has {MAX_LIVE_PER_USER} live tokens: revoke one first")]
    TooMany(String),
    #[error("a token expires in 1 to {MAX_EXPIRY_DAYS} days")]
    BadExpiry,
    #[error("camera \"{0}\" is not one its owner may see")]
    CameraNotAllowed(String),
    #[error(transparent)]
    CameraSet(#[from] CameraSetError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Random(#[from] vigil_format::keys::RandomError),
}

/// Whether `name` may name a token: 1 to 64 characters of free text.
pub fn valid_token_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.trim().is_empty() && valid_free_text(name)
}

/// What a new token is asked to be.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// The owner's user name.
    pub owner: String,
    pub name: String,
    /// None: viewer.
    pub role: Option<Role>,
    /// None: [`DEFAULT_EXPIRY_DAYS`].
    pub expires_in_days: Option<u32>,
    /// None: every camera the owner may see.
    pub cameras: Option<Vec<String>>,
}

/// A token just made: its secret, shown this once.
#[derive(Debug)]
pub struct Created {
    pub name: String,
    pub secret: zeroize::Zeroizing<String>,
    pub role: Role,
    pub expires_ns: i64,
}

/// A token as listed (never its secret or hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    /// None for a token made before tokens had owners (it never works).
    pub owner: Option<String>,
    pub role: Role,
    pub cameras: Option<Vec<String>>,
    pub created_ns: i64,
    pub expires_ns: Option<i64>,
    pub last_used_ns: Option<i64>,
    pub revoked_ns: Option<i64>,
}

/// What an accepted token may do, with its owner as they are now.
#[derive(Clone, Debug)]
pub struct TokenCaller {
    pub name: String,
    pub owner: User,
    /// The lower of the token's role and the owner's.
    pub role: Role,
    /// The cameras both the owner's set and the token's allow.
    pub cameras: Option<Vec<String>>,
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().to_vec()
}

/// The 32 secret bytes of a token's text, if it is one.
fn parse_token(text: &str) -> Option<[u8; 32]> {
    vigil_format::keys::parse_hex32(text.trim().strip_prefix(PREFIX)?)
}

fn in_transaction<T>(idx: &Index, f: impl FnOnce(&Connection) -> Result<T, TokenError>) -> Result<T, TokenError> {
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    let r = f(&tx)?;
    tx.commit()?;
    Ok(r)
}

/// Makes a token for `new.owner` (audited as `token.create`, target the
/// token's name, detail its owner, role, expiry and cameras). Refused when
/// the owner is disabled or has [`MAX_LIVE_PER_USER`] live tokens, the role
/// or a camera is beyond the owner's, or the name is taken.
pub fn create(idx: &Index, actor: &str, new: NewToken, clock: &dyn Clock) -> Result<Created, TokenError> {
    if !valid_token_name(&new.name) {
        return Err(TokenError::BadName);
    }
    let days = new.expires_in_days.unwrap_or(DEFAULT_EXPIRY_DAYS);
    if !(1..=MAX_EXPIRY_DAYS).contains(&days) {
        return Err(TokenError::BadExpiry);
    }
    let role = new.role.unwrap_or(Role::Viewer);
    let cameras = new.cameras.map(camera_sets::validate).transpose()?;
    let raw = random_bytes::<32>()?;
    let now = clock.wall_ns();
    let expires_ns = now.saturating_add(i64::from(days) * DAY_NS);
    in_transaction(idx, |tx| {
        let (owner, _) = users::find(idx, &new.owner)?.ok_or_else(|| TokenError::NoSuchUser(new.owner.clone()))?;
        if owner.disabled {
            return Err(TokenError::OwnerDisabled(owner.name));
        }
        if role > owner.role {
            return Err(TokenError::RoleAboveOwner(owner.role.as_str()));
        }
        if let (Some(mine), Some(allowed)) = (&cameras, &owner.cameras) {
            if let Some(c) = mine.iter().find(|c| !allowed.contains(c)) {
                return Err(TokenError::CameraNotAllowed(c.clone()));
            }
        }
        let live: i64 = tx.query_row(
            "SELECT count(*) FROM api_token WHERE user_id = ?1 AND revoked_ns IS NULL AND expires_ns > ?2",
            params![owner.id, now],
            |r| r.get(0),
        )?;
        if live >= MAX_LIVE_PER_USER {
            return Err(TokenError::TooMany(owner.name));
        }
        // The owner's set bounds the token at every use; an unset token set
        // stays unset, so widening the owner's set later widens the token.
        tx.execute(
            "INSERT INTO api_token (name, token_hash, role, created_ns, user_id, expires_ns, cameras) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                new.name,
                sha256(&raw),
                role.as_str(),
                now,
                owner.id,
                expires_ns,
                camera_sets::to_column(cameras.as_deref())
            ],
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => TokenError::Exists(new.name.clone()),
            _ => TokenError::Sql(e),
        })?;
        let detail = format!(
            "owner {}, role {}, expires {}, cameras {}",
            owner.name,
            role.as_str(),
            crate::base::time::format_ns(expires_ns),
            camera_sets::describe(cameras.as_deref())
        );
        audit::append(tx, actor, "token.create", &new.name, Outcome::Ok, &detail)?;
        Ok(())
    })?;
    Ok(Created {
        name: new.name,
        secret: zeroize::Zeroizing::new(format!("{PREFIX}{}", vigil_format::hex(&raw))),
        role,
        expires_ns,
    })
}

/// The caller a token's text stands for, if it is a live token of an
/// enabled user; stamps its last use. Anything else (malformed, unknown,
/// revoked, expired, ownerless, owner disabled or gone) is None.
pub fn authenticate(idx: &Index, text: &str, clock: &dyn Clock) -> Result<Option<TokenCaller>, TokenError> {
    let Some(raw) = parse_token(text) else {
        return Ok(None);
    };
    let h = sha256(&raw);
    type Row = (
        i64,
        String,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let row: Option<Row> = idx
        .conn()
        .query_row(
            "SELECT id, name, role, user_id, expires_ns, revoked_ns, cameras FROM api_token WHERE token_hash = ?1",
            [&h],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .optional()?;
    let Some((id, name, role, user_id, expires_ns, revoked_ns, cameras)) = row else {
        return Ok(None);
    };
    let now = clock.wall_ns();
    let live = revoked_ns.is_none() && expires_ns.is_some_and(|e| now < e);
    let (Some(user_id), Some(role), true) = (user_id, Role::parse(&role), live) else {
        return Ok(None);
    };
    let Some(owner) = users::by_id(idx, user_id)? else {
        return Ok(None);
    };
    if owner.disabled {
        return Ok(None);
    }
    idx.conn()
        .execute("UPDATE api_token SET last_used_ns = ?2 WHERE id = ?1", params![id, now])?;
    Ok(Some(TokenCaller {
        name,
        role: role.min(owner.role),
        cameras: camera_sets::intersect(owner.cameras.clone(), camera_sets::from_column(cameras)),
        owner,
    }))
}

/// Tokens, by name: every token (`owner` None), or those of one user.
pub fn list(idx: &Index, owner: Option<i64>) -> Result<Vec<TokenInfo>, TokenError> {
    let mut st = idx.conn().prepare(
        "SELECT t.name, u.name, t.role, t.cameras, t.created_ns, t.expires_ns, t.last_used_ns, t.revoked_ns \
         FROM api_token t LEFT JOIN user u ON u.id = t.user_id \
         WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.name",
    )?;
    let rows = st.query_map([owner], |r| {
        let role: String = r.get(2)?;
        Ok(TokenInfo {
            name: r.get(0)?,
            owner: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            cameras: camera_sets::from_column(r.get(3)?),
            created_ns: r.get(4)?,
            expires_ns: r.get(5)?,
            last_used_ns: r.get(6)?,
            revoked_ns: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes token `name` (audited as `token.revoke`, detail its owner). With
/// `only_of` Some(user id), only a token of that user: another's is
/// [`TokenError::NoSuchToken`], as if it did not exist. Revoking a revoked
/// token changes nothing and writes nothing.
pub fn revoke(idx: &Index, actor: &str, name: &str, only_of: Option<i64>, clock: &dyn Clock) -> Result<(), TokenError> {
    in_transaction(idx, |tx| {
        // id, owner id, owner name, revoked.
        type Row = (i64, Option<i64>, Option<String>, Option<i64>);
        let row: Option<Row> = tx
            .query_row(
                "SELECT t.id, t.user_id, u.name, t.revoked_ns FROM api_token t \
                 LEFT JOIN user u ON u.id = t.user_id WHERE t.name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((id, _, owner, revoked)) = row.filter(|(_, uid, _, _)| only_of.is_none() || *uid == only_of) else {
            return Err(TokenError::NoSuchToken(name.to_string()));
        };
        if revoked.is_some() {
            return Ok(());
        }
        tx.execute(
            "UPDATE api_token SET revoked_ns = ?2 WHERE id = ?1",
            params![id, clock.wall_ns()],
        )?;
        let detail = format!("owner {}", owner.as_deref().unwrap_or("none"));
        audit::append(tx, actor, "token.revoke", name, Outcome::Ok, &detail)?;
        Ok(())
    })
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
