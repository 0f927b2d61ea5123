//! Users, roles, passwords (argon2id), TOTP second factors and sessions
//! (API tokens are in [`crate::db::tokens`], camera sets in
//! [`crate::db::camera_sets`]). Session ids are 256 random bits; only their
//! SHA-256 is stored. TOTP seeds live in the encrypted secrets store
//! (`totp.<user>`). Login throttling is in [`Throttle`].
//!
//! Every change here takes the `actor` who makes it and writes its audit
//! entry in the same transaction, so both commit or neither does.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::digest;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::base::clock::Clock;
use crate::db::audit::{self, Outcome};
use crate::db::camera_sets;
use crate::db::Index;
use vigil_format::keys::random_bytes;

/// Roles, in increasing power: each has what the one before has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no user named \"{0}\"")]
    NoSuchUser(String),
    #[error("a user named \"{0}\" exists")]
    Exists(String),
    #[error("\"{0}\": a user name is 1 to 64 letters, digits, '.', '-' or '_'")]
    BadName(String),
    #[error("unknown role \"{0}\" (viewer, operator or admin)")]
    BadRole(String),
    #[error("the password must be 12 to 1024 characters")]
    WeakPassword,
    #[error("this password is too common; choose another")]
    CommonPassword,
    #[error("the new password must differ from the current one")]
    SamePassword,
    #[error("this is the last enabled admin; make another admin first")]
    LastAdmin,
    #[error("you cannot {0} yourself")]
    NotYourself(&'static str),
    #[error("cannot hand over the one-time password: {0}")]
    Deliver(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Random(#[from] vigil_format::keys::RandomError),
}

use crate::base::names::valid_user_name;

/// argon2id, in the least memory of OWASP's equivalent minimum settings
/// (Password Storage Cheat Sheet: 19 MiB and 2 passes, 12 MiB and 3,
/// 9 MiB and 4, or 7 MiB and 5, "an equal level of defense", trading RAM
/// for CPU): 7 MiB, 5 passes, 1 lane. A board with 1 GiB and a 64 MiB
/// budget for the daemon under a login flood prefers CPU to RAM. Hashes
/// made with other parameters (19 MiB before) verify with their own, which
/// the hash string carries.
fn argon2() -> Argon2<'static> {
    // These parameters are constants within argon2's limits.
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The rules a new password must meet: 12 to 1024 characters, and not on
/// the list of common passwords (compared case-insensitively).
pub fn check_new_password(pw: &str) -> Result<(), UserError> {
    if pw.chars().count() < 12 || pw.len() > 1024 {
        return Err(UserError::WeakPassword);
    }
    if crate::base::common_passwords::is_common(pw) {
        return Err(UserError::CommonPassword);
    }
    Ok(())
}

/// The argon2id hash of a new password that meets [`check_new_password`].
pub fn hash_password(pw: &str) -> Result<String, UserError> {
    check_new_password(pw)?;
    hash_unchecked(pw)
}

fn hash_unchecked(pw: &str) -> Result<String, UserError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?).map_err(|e| UserError::Hash(e.to_string()))?;
    with_hash_slot(|| {
        Ok(argon2()
            .hash_password(pw.as_bytes(), &salt)
            .map_err(|e| UserError::Hash(e.to_string()))?
            .to_string())
    })
}

/// At most this many argon2 computations at once (7 MiB and ~50 ms of a
/// core each, 150-200 ms on a Raspberry Pi 4): a login flood queues instead
/// of exhausting a small board. One: 5 to 20 logins a second is more than a
/// box's technicians need, and the daemon's memory under a login flood stays
/// within its 64 MiB budget.
const MAX_CONCURRENT_HASHES: usize = 1;
static HASHING: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());

fn with_hash_slot<T>(f: impl FnOnce() -> T) -> T {
    let (lock, cv) = &HASHING;
    let mut n = lock.lock().unwrap_or_else(|p| p.into_inner());
    while *n >= MAX_CONCURRENT_HASHES {
        n = cv.wait(n).unwrap_or_else(|p| p.into_inner());
    }
    *n += 1;
    drop(n);
    let r = f();
    let mut n = lock.lock().unwrap_or_else(|p| p.into_inner());
    *n -= 1;
    cv.notify_one();
    r
}

pub fn verify_password(hash: &str, pw: &str) -> bool {
    with_hash_slot(|| PasswordHash::new(hash).is_ok_and(|h| argon2().verify_password(pw.as_bytes(), &h).is_ok()))
}

/// A hash that no password matches, verified against when the user does not
/// exist, so that the answer takes as long either way.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_unchecked("not a password of anyone").unwrap_or_default())
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    pub disabled: bool,
    pub totp_last_step: Option<i64>,
    pub created_ns: i64,
    /// The cameras the user may see: None for every camera (see
    /// [`crate::db::camera_sets`]).
    pub cameras: Option<Vec<String>>,
}

pub(super) fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    let role: String = r.get(2)?;
    Ok((
        User {
            id: r.get(0)?,
            name: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            must_change_password: r.get(3)?,
            disabled: r.get(4)?,
            totp_last_step: r.get(5)?,
            created_ns: r.get(6)?,
            cameras: camera_sets::from_column(r.get(8)?),
        },
        r.get(7)?,
    ))
}

pub(super) const USER_COLUMNS: &str =
    "id, name, role, must_change_password, disabled, totp_last_step, created_ns, password_hash, cameras";

pub fn find(idx: &Index, name: &str) -> Result<Option<(User, String)>, UserError> {
    Ok(idx
        .conn()
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM user WHERE name = ?1"),
            [name],
            user_from_row,
        )
        .optional()?)
}

pub fn by_id(idx: &Index, id: i64) -> Result<Option<User>, UserError> {
    Ok(idx
        .conn()
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM user WHERE id = ?1"),
            [id],
            user_from_row,
        )
        .optional()?
        .map(|(u, _)| u))
}

pub fn list(idx: &Index) -> Result<Vec<User>, UserError> {
    let mut st = idx
        .conn()
        .prepare(&format!("SELECT {USER_COLUMNS} FROM user ORDER BY name"))?;
    let rows = st.query_map([], user_from_row)?;
    Ok(rows.map(|r| r.map(|(u, _)| u)).collect::<Result<_, _>>()?)
}

/// Runs `f` in one immediate transaction (a change and its audit entry).
pub(super) fn in_transaction<T>(
    idx: &Index,
    f: impl FnOnce(&Connection) -> Result<T, UserError>,
) -> Result<T, UserError> {
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    let r = f(&tx)?;
    tx.commit()?;
    Ok(r)
}

/// Adds a user (audited as `user.add`, the role as detail).
pub fn add(
    idx: &Index,
    actor: &str,
    name: &str,
    role: Role,
    password: &str,
    must_change: bool,
    clock: &dyn Clock,
) -> Result<i64, UserError> {
    insert_user(
        idx,
        actor,
        NewUser {
            name,
            role,
            password,
            must_change,
        },
        role.as_str(),
        clock,
        || Ok(()),
    )
}

/// A user about to be added.
struct NewUser<'a> {
    name: &'a str,
    role: Role,
    password: &'a str,
    must_change: bool,
}

/// Adds a user; `before_commit` runs inside the transaction, after the row
/// and its audit entry, and an error from it undoes both.
fn insert_user(
    idx: &Index,
    actor: &str,
    NewUser {
        name,
        role,
        password,
        must_change,
    }: NewUser<'_>,
    detail: &str,
    clock: &dyn Clock,
    before_commit: impl FnOnce() -> Result<(), UserError>,
) -> Result<i64, UserError> {
    if !valid_user_name(name) {
        return Err(UserError::BadName(name.to_string()));
    }
    if find(idx, name)?.is_some() {
        return Err(UserError::Exists(name.to_string()));
    }
    let hash = hash_password(password)?;
    let now = clock.wall_ns();
    in_transaction(idx, |tx| {
        tx.execute(
            "INSERT INTO user (name, role, password_hash, must_change_password, disabled, created_ns, updated_ns) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            params![name, role.as_str(), hash, must_change, now],
        )?;
        let id = tx.last_insert_rowid();
        audit::append(tx, actor, "user.add", name, Outcome::Ok, detail)?;
        // A second factor left by an earlier user of this name is not inherited.
        remove_second_factor(tx, actor, name)?;
        before_commit()?;
        Ok(id)
    })
}

/// Sets a user's password and ends their sessions (audited as
/// `user.password` with `detail`). A password equal to the current one is
/// refused ([`UserError::SamePassword`]): a one-time password cannot be kept.
pub fn set_password(
    idx: &Index,
    actor: &str,
    name: &str,
    password: &str,
    detail: &str,
    clock: &dyn Clock,
) -> Result<(), UserError> {
    check_new_password(password)?;
    let Some((_, current)) = find(idx, name)? else {
        return Err(UserError::NoSuchUser(name.to_string()));
    };
    if verify_password(&current, password) {
        return Err(UserError::SamePassword);
    }
    let hash = hash_password(password)?;
    in_transaction(idx, |tx| {
        let n = tx.execute(
            "UPDATE user SET password_hash = ?2, must_change_password = 0, updated_ns = ?3 WHERE name = ?1",
            params![name, hash, clock.wall_ns()],
        )?;
        if n == 0 {
            return Err(UserError::NoSuchUser(name.to_string()));
        }
        // A new password ends every session of that user.
        tx.execute(
            "DELETE FROM session WHERE user_id = (SELECT id FROM user WHERE name = ?1)",
            [name],
        )?;
        audit::append(tx, actor, "user.password", name, Outcome::Ok, detail)?;
        Ok(())
    })
}

/// A user changes their own password: `Ok(false)` (audited as denied) when
/// the old one is wrong; [`UserError::SamePassword`] when the new one is the
/// old one.
pub fn change_password(
    idx: &Index,
    actor: &str,
    name: &str,
    old: &str,
    new: &str,
    clock: &dyn Clock,
) -> Result<bool, UserError> {
    if check_password(idx, name, old)?.is_none() {
        audit::append(
            idx.conn(),
            actor,
            "user.password",
            name,
            Outcome::Denied,
            "wrong old password",
        )?;
        return Ok(false);
    }
    if new == old {
        return Err(UserError::SamePassword);
    }
    set_password(idx, actor, name, new, "", clock)?;
    Ok(true)
}

/// Disables (ending their sessions) or enables a user (audited as
/// `user.disable` or `user.enable`). A disabled user's API tokens stop
/// working too: a token is accepted only while its owner is enabled
/// ([`crate::db::tokens::authenticate`]).
pub fn set_disabled(idx: &Index, actor: &str, name: &str, disabled: bool, clock: &dyn Clock) -> Result<(), UserError> {
    in_transaction(idx, |tx| {
        let n = tx.execute(
            "UPDATE user SET disabled = ?2, updated_ns = ?3 WHERE name = ?1",
            params![name, disabled, clock.wall_ns()],
        )?;
        if n == 0 {
            return Err(UserError::NoSuchUser(name.to_string()));
        }
        if disabled {
            tx.execute(
                "DELETE FROM session WHERE user_id = (SELECT id FROM user WHERE name = ?1)",
                [name],
            )?;
        }
        let action = if disabled { "user.disable" } else { "user.enable" };
        audit::append(tx, actor, action, name, Outcome::Ok, "")?;
        Ok(())
    })
}

pub fn set_totp_step(idx: &Index, user_id: i64, step: i64) -> Result<bool, UserError> {
    // Only forward: a code (or an older one) used once is never accepted again.
    let n = idx.conn().execute(
        "UPDATE user SET totp_last_step = ?2 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
        params![user_id, step],
    )?;
    Ok(n == 1)
}

/// The secrets-store name of a user's TOTP seed.
pub fn totp_secret_name(user: &str) -> String {
    format!("totp.{user}")
}

/// The secrets-store name of a TOTP seed being enrolled (not yet confirmed).
pub fn totp_pending_secret_name(user: &str) -> String {
    format!("totp-pending.{user}")
}

/// Removes the secrets of `name`'s second factor (each one removed is
/// audited `secret.remove`, as the secrets store does).
pub(super) fn remove_second_factor(conn: &Connection, actor: &str, name: &str) -> Result<(), UserError> {
    for secret in [totp_secret_name(name), totp_pending_secret_name(name)] {
        if conn.execute("DELETE FROM secret WHERE name = ?1", [&secret])? > 0 {
            audit::append(conn, actor, "secret.remove", &secret, Outcome::Ok, "")?;
        }
    }
    Ok(())
}

/// When there is no user at all: an `admin` with a random one-time password
/// that must be changed at first login. The password is given once to
/// `deliver` (which writes it to a private file or prints it on the
/// console, never to the log) before the user is committed: when `deliver`
/// fails, there is no admin either, and the next start tries again. Returns
/// whether the admin was made. Audited as `user.add` with the detail
/// "`occasion`: admin with a one-time password".
pub fn ensure_first_admin(
    idx: &Index,
    actor: &str,
    occasion: &str,
    clock: &dyn Clock,
    deliver: impl FnOnce(&str) -> Result<(), String>,
) -> Result<bool, UserError> {
    let n: i64 = idx.conn().query_row("SELECT count(*) FROM user", [], |r| r.get(0))?;
    if n > 0 {
        return Ok(false);
    }
    let pw = zeroize::Zeroizing::new(crate::base::totp::base32(&random_bytes::<10>()?).to_lowercase());
    let detail = format!("{occasion}: admin with a one-time password");
    let admin = NewUser {
        name: "admin",
        role: Role::Admin,
        password: &pw,
        must_change: true,
    };
    insert_user(idx, actor, admin, &detail, clock, || {
        deliver(&pw).map_err(UserError::Deliver)
    })?;
    Ok(true)
}

fn sha256(b: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, b).as_ref().to_vec()
}

fn token_text(b: &[u8; 32]) -> String {
    vigil_format::hex(b)
}

/// Session lifetimes.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
pub const SESSION_ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone, Debug)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub created_ns: i64,
}

/// A new session: (the cookie value, the CSRF token). Only the SHA-256 of the
/// session id is stored.
pub fn create_session(
    idx: &Index,
    user_id: i64,
    client: &str,
    clock: &dyn Clock,
) -> Result<(String, String), UserError> {
    insert_session(idx.conn(), user_id, client, clock)
}

fn insert_session(
    conn: &Connection,
    user_id: i64,
    client: &str,
    clock: &dyn Clock,
) -> Result<(String, String), UserError> {
    insert_session_hashed(conn, user_id, client, clock).map(|(cookie, csrf, _)| (cookie, csrf))
}

/// A new session row: (the cookie value, the CSRF token, the stored hash).
fn insert_session_hashed(
    conn: &Connection,
    user_id: i64,
    client: &str,
    clock: &dyn Clock,
) -> Result<(String, String, Vec<u8>), UserError> {
    let id = random_bytes::<32>()?;
    let csrf = token_text(&random_bytes::<32>()?);
    let now = clock.wall_ns();
    let hash = sha256(&id);
    conn.execute(
        "INSERT INTO session (id_hash, user_id, csrf, created_ns, last_seen_ns, client) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![hash, user_id, csrf, now, client],
    )?;
    Ok((token_text(&id), csrf, hash))
}

/// At most this many sessions per user: a new login past it ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 10;

/// A successful login: a new session for `user` from `client`, audited as
/// `login` (actor `user:<name>`, detail "from <client>", and how many older
/// sessions it ended to keep the user at [`MAX_SESSIONS_PER_USER`]), all in
/// one transaction.
pub fn log_in(idx: &Index, user: &User, client: &str, clock: &dyn Clock) -> Result<(String, String), UserError> {
    in_transaction(idx, |tx| {
        let (cookie, csrf, new) = insert_session_hashed(tx, user.id, client, clock)?;
        let ended = tx.execute(
            "DELETE FROM session WHERE user_id = ?1 AND id_hash != ?2 AND id_hash NOT IN \
             (SELECT id_hash FROM session WHERE user_id = ?1 AND id_hash != ?2 \
              ORDER BY created_ns DESC, last_seen_ns DESC LIMIT ?3)",
            params![user.id, new, (MAX_SESSIONS_PER_USER - 1) as i64],
        )?;
        let detail = match ended {
            0 => format!("from {client}"),
            n => format!("from {client}; ended the oldest {n} of its sessions (at most {MAX_SESSIONS_PER_USER})"),
        };
        record_login(tx, &user.name, Outcome::Ok, &detail)?;
        Ok((cookie, csrf))
    })
}

/// A login attempt's audit entry (who tried, what happened): used for the
/// refused ones (throttled, wrong password, wrong second factor) too.
pub fn record_login(conn: &Connection, name: &str, outcome: Outcome, detail: &str) -> Result<(), UserError> {
    audit::append(conn, &format!("user:{name}"), "login", name, outcome, detail)?;
    Ok(())
}

/// An attempt refused by the throttle before anything was checked: audited
/// as denied, `action` on `name` by `actor`, detail "throttled, from <ip>".
/// `quiet`: refusals from that network since the last such entry that got
/// none of their own ([`Throttle::refusal_to_audit`]).
pub fn record_throttled(
    conn: &Connection,
    actor: &str,
    action: &str,
    name: &str,
    ip: IpAddr,
    quiet: u64,
) -> Result<(), UserError> {
    let detail = if quiet > 0 {
        format!("throttled, from {ip} ({quiet} more refused from its network since the last such entry)")
    } else {
        format!("throttled, from {ip}")
    };
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    audit::append(&tx, actor, action, name, Outcome::Denied, &detail)?;
    throttle_alerts(&tx, name, ip, quiet)?;
    tx.commit()?;
    Ok(())
}

/// A refusal raises `login.lockout` for the user if the user exists (at
/// most once a minute) and, when its network floods (refusals beyond those
/// audited one by one) or guesses names that do not exist,
/// `login.failures` for the network (at most once in 10 minutes).
fn throttle_alerts(conn: &Connection, name: &str, ip: IpAddr, quiet: u64) -> Result<(), UserError> {
    use super::alerts::{raise, raised_since, Kind, Raise};
    let now = crate::base::clock::now_ns();
    const MINUTE: i64 = 60_000_000_000;
    // Only a user who exists is locked out: names made up by a guesser
    // would each be an alert (the network's alert covers them).
    let exists = conn
        .query_row("SELECT 1 FROM user WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some();
    if exists && raised_since(conn, Kind::LoginLockout.code(), name, now - MINUTE)? == 0 {
        let m = format!("User {name} is locked out for a minute after repeated wrong passwords or codes (from {ip})");
        raise(conn, &Raise::new(Kind::LoginLockout, name, &m), now)?;
    }
    let net = crate::base::network::Network::of(ip).to_string();
    if (quiet > 0 || !exists) && raised_since(conn, Kind::LoginFailures.code(), &net, now - 10 * MINUTE)? == 0 {
        let m = format!(
            "Repeated failed logins from {net}: more than {} refused in a minute, the latest for user {name}",
            crate::db::throttle::REFUSALS_AUDITED
        );
        raise(conn, &Raise::new(Kind::LoginFailures, &net, &m), now)?;
    }
    Ok(())
}

/// Ends the session of `cookie` (if any), audited as `logout` of `actor`.
pub fn log_out(idx: &Index, actor: &str, cookie: Option<&str>) -> Result<(), UserError> {
    in_transaction(idx, |tx| {
        if let Some(raw) = cookie.and_then(parse_token) {
            tx.execute("DELETE FROM session WHERE id_hash = ?1", [sha256(&raw)])?;
        }
        audit::append(tx, actor, "logout", actor, Outcome::Ok, "")?;
        Ok(())
    })
}

/// The session of a cookie value, if it is live (not idle for 30 min, not
/// older than 12 h, user enabled); touches it.
pub fn session(idx: &Index, cookie: &str, clock: &dyn Clock) -> Result<Option<Session>, UserError> {
    let Some(raw) = parse_token(cookie) else {
        return Ok(None);
    };
    let h = sha256(&raw);
    let row: Option<(i64, String, i64, i64)> = idx
        .conn()
        .query_row(
            "SELECT user_id, csrf, created_ns, last_seen_ns FROM session WHERE id_hash = ?1",
            [&h],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((user_id, csrf, created, seen)) = row else {
        return Ok(None);
    };
    let now = clock.wall_ns();
    let expired = now - seen > SESSION_IDLE.as_nanos() as i64 || now - created > SESSION_ABSOLUTE.as_nanos() as i64;
    let user = by_id(idx, user_id)?;
    match user {
        Some(u) if !expired && !u.disabled => {
            idx.conn().execute(
                "UPDATE session SET last_seen_ns = ?2 WHERE id_hash = ?1",
                params![h, now],
            )?;
            Ok(Some(Session {
                user: u,
                csrf,
                created_ns: created,
            }))
        }
        _ => {
            idx.conn().execute("DELETE FROM session WHERE id_hash = ?1", [&h])?;
            Ok(None)
        }
    }
}

pub fn revoke_session(idx: &Index, cookie: &str) -> Result<(), UserError> {
    if let Some(raw) = parse_token(cookie) {
        idx.conn()
            .execute("DELETE FROM session WHERE id_hash = ?1", [sha256(&raw)])?;
    }
    Ok(())
}

fn parse_token(s: &str) -> Option<[u8; 32]> {
    vigil_format::keys::parse_hex32(s.trim())
}

/// Whether `hash` was made with today's argon2 parameters ([`argon2`]).
fn has_current_parameters(hash: &str) -> bool {
    let now = argon2();
    let now = now.params();
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Params::try_from(&h)
            .is_ok_and(|p| (p.m_cost(), p.t_cost(), p.p_cost()) == (now.m_cost(), now.t_cost(), now.p_cost()))
    })
}

/// A right password whose hash has older parameters (19 MiB before) is
/// hashed again with today's, so that its next login costs what a new
/// password's does. Only when the stored hash is still the one checked (a
/// password changed meanwhile stays changed); a failure leaves the old,
/// still valid hash.
fn rehash(idx: &Index, name: &str, old: &str, password: &str) {
    if let Ok(new) = hash_unchecked(password) {
        let _ = idx.conn().execute(
            "UPDATE user SET password_hash = ?3 WHERE name = ?1 AND password_hash = ?2",
            rusqlite::params![name, old, new],
        );
    }
}

/// Checks a password login; `Ok(Some(user))` only for the right password of
/// an enabled user. Takes as long for an unknown user.
pub fn check_password(idx: &Index, name: &str, password: &str) -> Result<Option<User>, UserError> {
    match find(idx, name)? {
        Some((u, hash)) => {
            let ok = verify_password(&hash, password) && !u.disabled;
            if ok && !has_current_parameters(&hash) {
                rehash(idx, name, &hash, password);
            }
            Ok(ok.then_some(u))
        }
        None => {
            let _ = verify_password(dummy_hash(), password);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;

    fn sys() -> &'static dyn Clock {
        &crate::base::clock::SystemClock
    }

    #[test]
    fn passwords_sessions_tokens() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let mut pw = String::new();
        assert!(ensure_first_admin(&idx, "daemon", "first start", sys(), |p| {
            pw = p.to_string();
            Ok(())
        })
        .unwrap());
        assert!(!ensure_first_admin(&idx, "daemon", "first start", sys(), |_| panic!("a second admin")).unwrap());
        let admin = check_password(&idx, "admin", &pw).unwrap().unwrap();
        assert!(admin.must_change_password && admin.role == Role::Admin);
        assert!(check_password(&idx, "admin", "wrong password!").unwrap().is_none());
        assert!(matches!(
            add(&idx, "cli:t", "v", Role::Viewer, "short", false, sys()),
            Err(UserError::WeakPassword)
        ));
        add(&idx, "cli:t", "v", Role::Viewer, "a long enough password", false, sys()).unwrap();
        let (cookie, csrf) = create_session(&idx, admin.id, "127.0.0.1", sys()).unwrap();
        let s = session(&idx, &cookie, sys()).unwrap().unwrap();
        assert_eq!((s.user.name.as_str(), s.csrf.as_str()), ("admin", csrf.as_str()));
        let stored: Vec<u8> = idx
            .conn()
            .query_row("SELECT id_hash FROM session", [], |r| r.get(0))
            .unwrap();
        assert!(!vigil_format::hex(&stored).contains(&cookie), "only the hash is stored");
        revoke_session(&idx, &cookie).unwrap();
        assert!(session(&idx, &cookie, sys()).unwrap().is_none());
        set_disabled(&idx, "cli:t", "v", true, sys()).unwrap();
        assert!(check_password(&idx, "v", "a long enough password").unwrap().is_none());
    }

    #[test]
    fn a_hash_with_older_parameters_is_redone_at_the_next_right_login() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let pw = "a long enough password";
        add(&idx, "cli:t", "v", Role::Viewer, pw, false, sys()).unwrap();
        // A hash as made before (19 MiB, 2 passes).
        let old_params = Params::new(19 * 1024, 2, 1, None).unwrap();
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let old = Argon2::new(Algorithm::Argon2id, Version::V0x13, old_params)
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string();
        let stored = |idx: &Index| -> String {
            idx.conn()
                .query_row("SELECT password_hash FROM user WHERE name = 'v'", [], |r| r.get(0))
                .unwrap()
        };
        idx.conn()
            .execute("UPDATE user SET password_hash = ?1 WHERE name = 'v'", [&old])
            .unwrap();
        assert!(!has_current_parameters(&old));
        assert!(check_password(&idx, "v", "not the password!").unwrap().is_none());
        assert_eq!(stored(&idx), old, "a wrong password changes nothing");
        assert!(
            check_password(&idx, "v", pw).unwrap().is_some(),
            "the old hash still verifies"
        );
        let new = stored(&idx);
        assert!(
            new != old && has_current_parameters(&new) && new.contains("m=7168,t=5,p=1"),
            "{new}"
        );
        assert!(check_password(&idx, "v", pw).unwrap().is_some());
        assert_eq!(stored(&idx), new, "a current hash is kept");
    }

    const T0: i64 = 1_700_000_000_000_000_000;
    const MINUTE_MS: i64 = 60_000;

    /// An index with one viewer `v`; its id.
    fn index_with_viewer(clock: &dyn Clock) -> (tempfile::TempDir, Index, i64) {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let id = add(&idx, "cli:t", "v", Role::Viewer, "a long enough password", false, clock).unwrap();
        (d, idx, id)
    }

    fn session_count(idx: &Index) -> i64 {
        idx.conn()
            .query_row("SELECT count(*) FROM session", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_session_ends_after_30_minutes_idle() {
        let clock = ManualClock::new(T0);
        let (_d, idx, id) = index_with_viewer(clock.as_ref());
        let (cookie, _) = create_session(&idx, id, "t", clock.as_ref()).unwrap();
        let created: i64 = idx
            .conn()
            .query_row("SELECT created_ns FROM session", [], |r| r.get(0))
            .unwrap();
        assert_eq!(created, T0, "created at the clock's wall time");
        clock.advance_ms(30 * MINUTE_MS);
        let s = session(&idx, &cookie, clock.as_ref()).unwrap();
        assert_eq!(s.map(|s| s.created_ns), Some(T0), "idle for exactly 30 min: still live");
        clock.advance_ms(30 * MINUTE_MS);
        assert!(
            session(&idx, &cookie, clock.as_ref()).unwrap().is_some(),
            "the lookup before touched it"
        );
        clock.advance_ms(30 * MINUTE_MS + 1);
        assert!(
            session(&idx, &cookie, clock.as_ref()).unwrap().is_none(),
            "idle for 30 min"
        );
        assert_eq!(session_count(&idx), 0, "an expired session is deleted");
        clock.set_wall_ns(T0);
        assert!(
            session(&idx, &cookie, clock.as_ref()).unwrap().is_none(),
            "and stays gone"
        );
    }

    #[test]
    fn an_active_session_ends_after_12_hours() {
        let clock = ManualClock::new(T0);
        let (_d, idx, id) = index_with_viewer(clock.as_ref());
        let (cookie, _) = create_session(&idx, id, "t", clock.as_ref()).unwrap();
        // Used every 20 minutes: never idle for long.
        for _ in 0..(12 * 3) {
            clock.advance_ms(20 * MINUTE_MS);
            assert!(session(&idx, &cookie, clock.as_ref()).unwrap().is_some());
        }
        clock.advance_ms(1);
        assert!(
            session(&idx, &cookie, clock.as_ref()).unwrap().is_none(),
            "older than 12 h, though active"
        );
        assert_eq!(session_count(&idx), 0);
    }

    /// Expiry is measured on the wall clock (the session rows outlive the
    /// process, so there is no monotonic time to measure them by). What a
    /// wall-clock step back does today, asserted as it is.
    #[test]
    fn wall_clock_steps_back_and_sessions_today() {
        let clock = ManualClock::new(T0);
        let (_d, idx, id) = index_with_viewer(clock.as_ref());
        let hour_ns = 3_600_000_000_000i64;

        // An expired session that was looked up (and so deleted) stays gone.
        let (gone, _) = create_session(&idx, id, "t", clock.as_ref()).unwrap();
        clock.advance_ms(31 * MINUTE_MS);
        assert!(session(&idx, &gone, clock.as_ref()).unwrap().is_none());
        clock.set_wall_ns(T0);
        assert!(session(&idx, &gone, clock.as_ref()).unwrap().is_none());

        // An expired session not looked up before the step back is live again.
        let (idle, _) = create_session(&idx, id, "t", clock.as_ref()).unwrap();
        clock.set_wall_ns(T0 + hour_ns);
        clock.set_wall_ns(T0);
        assert!(
            session(&idx, &idle, clock.as_ref()).unwrap().is_some(),
            "today: not yet deleted, so a step back revives it"
        );

        // A step back lengthens the absolute limit by the step.
        let (long, _) = create_session(&idx, id, "t", clock.as_ref()).unwrap();
        clock.set_wall_ns(T0 - 6 * hour_ns);
        for _ in 0..(18 * 3) {
            clock.set_wall_ns(clock.wall_ns() + 20 * MINUTE_MS * 1_000_000);
            assert!(session(&idx, &long, clock.as_ref()).unwrap().is_some());
        }
        assert_eq!(clock.wall_ns(), T0 + 12 * hour_ns, "18 h of use, all accepted");
        clock.set_wall_ns(T0 + 12 * hour_ns + 1);
        assert!(
            session(&idx, &long, clock.as_ref()).unwrap().is_none(),
            "12 h after creation"
        );
    }

    fn audit_rows(idx: &Index) -> Vec<(String, String, String, String, String)> {
        let mut st = idx
            .conn()
            .prepare("SELECT actor, action, target, outcome, detail FROM audit_log ORDER BY id")
            .unwrap();
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn user_add_writes_its_audit_entry_in_the_same_transaction() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        add(
            &idx,
            "user:boss",
            "v",
            Role::Operator,
            "a long enough password",
            false,
            sys(),
        )
        .unwrap();
        let row = |a: &str, t: &str, o: &str, det: &str| (a.into(), "user.add".into(), t.into(), o.into(), det.into());
        assert_eq!(audit_rows(&idx), vec![row("user:boss", "v", "ok", "operator")]);
        // A refused add writes nothing.
        assert!(matches!(
            add(
                &idx,
                "user:boss",
                "v",
                Role::Viewer,
                "a long enough password",
                false,
                sys()
            ),
            Err(UserError::Exists(_))
        ));
        assert_eq!(audit_rows(&idx).len(), 1);
        // When the audit entry cannot be written, the user is not added either.
        idx.conn()
            .execute_batch(
                "CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no audit'); END;",
            )
            .unwrap();
        assert!(add(
            &idx,
            "user:boss",
            "w",
            Role::Viewer,
            "a long enough password",
            false,
            sys()
        )
        .is_err());
        assert!(find(&idx, "w").unwrap().is_none(), "no user without its audit entry");
        assert!(set_disabled(&idx, "user:boss", "v", true, sys()).is_err());
        assert!(!find(&idx, "v").unwrap().unwrap().0.disabled, "nor a change");
        idx.conn().execute_batch("DROP TRIGGER no_audit;").unwrap();
        assert_eq!(audit_rows(&idx).len(), 1);
        // The first admin: the caller's actor and occasion.
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        assert!(ensure_first_admin(&idx, "daemon", "first start", sys(), |_| Ok(())).unwrap());
        assert_eq!(
            audit_rows(&idx),
            vec![row(
                "daemon",
                "admin",
                "ok",
                "first start: admin with a one-time password"
            )]
        );
    }

    #[test]
    fn logins_and_logouts_are_audited() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        add(&idx, "cli:t", "v", Role::Viewer, "a long enough password", false, sys()).unwrap();
        let (u, _) = find(&idx, "v").unwrap().unwrap();
        let (cookie, _) = log_in(&idx, &u, "10.0.0.1", sys()).unwrap();
        assert!(session(&idx, &cookie, sys()).unwrap().is_some());
        record_login(idx.conn(), "v", Outcome::Denied, "no TOTP code").unwrap();
        log_out(&idx, "user:v", Some(&cookie)).unwrap();
        assert!(session(&idx, &cookie, sys()).unwrap().is_none());
        assert!(!change_password(&idx, "user:v", "v", "not the password", "a new long password", sys()).unwrap());
        assert!(change_password(
            &idx,
            "user:v",
            "v",
            "a long enough password",
            "a new long password",
            sys()
        )
        .unwrap());
        let rows: Vec<_> = audit_rows(&idx)
            .into_iter()
            .skip(1)
            .map(|(a, act, t, o, det)| format!("{a} {act} {t} {o} {det}"))
            .collect();
        assert_eq!(
            rows,
            [
                "user:v login v ok from 10.0.0.1",
                "user:v login v denied no TOTP code",
                "user:v logout user:v ok ",
                "user:v user.password v denied wrong old password",
                "user:v user.password v ok ",
            ]
        );
    }

    #[test]
    fn the_eleventh_login_ends_the_oldest_session() {
        let clock = ManualClock::new(T0);
        let (_d, idx, _) = index_with_viewer(clock.as_ref());
        let (u, _) = find(&idx, "v").unwrap().unwrap();
        let mut cookies = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_USER {
            cookies.push(log_in(&idx, &u, "10.0.0.1", clock.as_ref()).unwrap().0);
            clock.advance_ms(1000);
        }
        assert_eq!(session_count(&idx), 10);
        let (newest, _) = log_in(&idx, &u, "10.0.0.2", clock.as_ref()).unwrap();
        assert_eq!(session_count(&idx), 10, "at most 10");
        assert!(
            session(&idx, &cookies[0], clock.as_ref()).unwrap().is_none(),
            "the oldest ended"
        );
        for c in cookies.iter().skip(1).chain([&newest]) {
            assert!(session(&idx, c, clock.as_ref()).unwrap().is_some());
        }
        let last = audit_rows(&idx).pop().unwrap();
        assert_eq!(
            last.4, "from 10.0.0.2; ended the oldest 1 of its sessions (at most 10)",
            "said in the login's audit entry"
        );
        // Logins in the same nanosecond: the new session is never the one ended.
        for _ in 0..5 {
            let (c, _) = log_in(&idx, &u, "10.0.0.3", clock.as_ref()).unwrap();
            assert!(session(&idx, &c, clock.as_ref()).unwrap().is_some());
            assert_eq!(session_count(&idx), 10);
        }
    }

    #[test]
    fn a_one_time_password_cannot_be_kept() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let mut otp = String::new();
        ensure_first_admin(&idx, "daemon", "first start", sys(), |p| {
            otp = p.to_string();
            Ok(())
        })
        .unwrap();
        assert!(matches!(
            change_password(&idx, "user:admin", "admin", &otp, &otp, sys()),
            Err(UserError::SamePassword)
        ));
        assert!(matches!(
            set_password(&idx, "cli:t", "admin", &otp, "set from the CLI", sys()),
            Err(UserError::SamePassword)
        ));
        let (u, _) = find(&idx, "admin").unwrap().unwrap();
        assert!(u.must_change_password, "still to be changed");
        assert!(check_password(&idx, "admin", &otp).unwrap().is_some());
        // Common passwords are refused, whatever their case.
        for common in ["password1234", "Password1234", "QWERTYUIOP123"] {
            assert!(
                matches!(
                    change_password(&idx, "user:admin", "admin", &otp, common, sys()),
                    Err(UserError::CommonPassword)
                ),
                "{common}"
            );
        }
        assert!(matches!(
            add(&idx, "cli:t", "w", Role::Viewer, "administrator", false, sys()),
            Err(UserError::CommonPassword)
        ));
        assert!(change_password(&idx, "user:admin", "admin", &otp, "a password of my own", sys()).unwrap());
        assert!(
            check_password(&idx, "admin", &otp).unwrap().is_none(),
            "the one-time password is gone"
        );
        assert!(!find(&idx, "admin").unwrap().unwrap().0.must_change_password);
        assert!(matches!(
            set_password(
                &idx,
                "cli:t",
                "admin",
                "a password of my own",
                "set from the CLI",
                sys()
            ),
            Err(UserError::SamePassword)
        ));
        assert_eq!(
            UserError::CommonPassword.to_string(),
            "this password is too common; choose another"
        );
    }

    #[test]
    fn no_first_admin_when_its_password_cannot_be_handed_over() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let r = ensure_first_admin(&idx, "daemon", "first start", sys(), |_| Err("disk full".into()));
        assert!(matches!(r, Err(UserError::Deliver(ref e)) if e == "disk full"));
        assert!(find(&idx, "admin").unwrap().is_none(), "no admin nobody can log in as");
        assert!(audit_rows(&idx).is_empty(), "nor its audit entry");
        assert!(ensure_first_admin(&idx, "daemon", "first start", sys(), |_| Ok(())).unwrap());
    }
}
