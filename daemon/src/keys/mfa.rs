//! A web user's TOTP second factor, kept in the secrets store (`totp.<user>`;
//! an enrolment not yet confirmed as `totp-pending.<user>`): enrolling,
//! enabling and resetting it, each with its audit entry, written right after
//! the secrets store has changed (the store commits its own transaction).

use zeroize::Zeroizing;

use crate::db::audit::{self, Outcome};
use crate::db::users::{self, UserError};
use crate::keys::keyring::Keyring;
use crate::keys::secrets::{self, SecretError};
use crate::keys::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl From<KeyError> for MfaError {
    fn from(e: KeyError) -> Self {
        MfaError::Secret(SecretError::Key(e))
    }
}

impl From<rusqlite::Error> for MfaError {
    fn from(e: rusqlite::Error) -> Self {
        MfaError::User(UserError::Sql(e))
    }
}

/// The secrets-store name of a TOTP seed being enrolled (not yet confirmed).
pub fn pending_secret_name(user: &str) -> String {
    format!("totp-pending.{user}")
}

/// A seed for a new second factor (160 bits, as authenticator apps expect).
fn new_seed() -> Result<Zeroizing<[u8; 20]>, MfaError> {
    Ok(Zeroizing::new(
        crate::keys::random_bytes::<20>().map_err(|e| MfaError::Secret(SecretError::Key(e.into())))?,
    ))
}

fn record(kr: &Keyring, actor: &str, action: &str, user: &str, outcome: Outcome, detail: &str) -> Result<(), MfaError> {
    kr.with_index(|idx| Ok(audit::append(idx.conn(), actor, action, user, outcome, detail)?))?;
    Ok(())
}

/// Starts a user's own enrolment: a new seed, kept pending until a code from
/// it is confirmed (audited as `user.mfa.enrol`, "started"). Returns the seed
/// for the authenticator app.
pub fn start_enrolment(kr: &Keyring, actor: &str, user: &str) -> Result<Zeroizing<[u8; 20]>, MfaError> {
    let seed = new_seed()?;
    secrets::set(kr, &pending_secret_name(user), &seed[..], None)?;
    record(kr, actor, "user.mfa.enrol", user, Outcome::Ok, "started")?;
    Ok(seed)
}

/// How a confirmation of an enrolment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// No enrolment was started (nothing audited).
    NotStarted,
    /// The code does not match the pending seed (audited as denied).
    WrongCode,
    /// The pending seed is now the user's second factor (`user.mfa.enable`).
    Enabled,
}

/// Confirms an enrolment with a code from the pending seed, at `now_s`
/// (Unix seconds); the code's time step is then used up for `user_id`.
pub fn confirm_enrolment(
    kr: &Keyring,
    actor: &str,
    user: &str,
    user_id: Option<i64>,
    code: &str,
    now_s: i64,
) -> Result<Confirmation, MfaError> {
    let pending = pending_secret_name(user);
    if !kr.with_index(|idx| Ok(secrets::exists(idx.conn(), &pending)?))? {
        return Ok(Confirmation::NotStarted);
    }
    let seed = secrets::get(kr, &pending, "second factor enrolment")?;
    let Some(step) = crate::base::totp::verify(&seed, code, now_s, None) else {
        record(kr, actor, "user.mfa.enrol", user, Outcome::Denied, "wrong code")?;
        return Ok(Confirmation::WrongCode);
    };
    secrets::set(kr, &users::totp_secret_name(user), &seed, None)?;
    secrets::remove(kr, &pending)?;
    if let Some(id) = user_id {
        kr.with_index(|idx| users::set_totp_step(idx, id, step).map_err(|e| KeyError::Keyring(e.to_string())))?;
    }
    record(kr, actor, "user.mfa.enable", user, Outcome::Ok, "")?;
    Ok(Confirmation::Enabled)
}

/// Gives `user` a new second factor at once (the CLI, audited as
/// `user.mfa.enable`); returns the seed, to be shown once.
pub fn enable(kr: &Keyring, actor: &str, user: &str) -> Result<Zeroizing<[u8; 20]>, MfaError> {
    if kr
        .with_index(|idx| users::find(idx, user).map_err(|e| KeyError::Keyring(e.to_string())))?
        .is_none()
    {
        return Err(UserError::NoSuchUser(user.to_string()).into());
    }
    let seed = new_seed()?;
    secrets::set(kr, &users::totp_secret_name(user), &seed[..], None)?;
    record(kr, actor, "user.mfa.enable", user, Outcome::Ok, "")?;
    Ok(seed)
}

/// Removes `user`'s second factor (a lost phone), from the CLI: an error if
/// there is none; audited as `user.mfa.reset`.
pub fn reset(kr: &Keyring, actor: &str, user: &str) -> Result<(), MfaError> {
    secrets::remove(kr, &users::totp_secret_name(user))?;
    record(kr, actor, "user.mfa.reset", user, Outcome::Ok, "")
}

/// Removes `user`'s second factor, by an admin from the web UI: done too when
/// there was none; audited as `user.reset-mfa` (the web's action name).
pub fn admin_reset(kr: &Keyring, actor: &str, user: &str) -> Result<(), MfaError> {
    match secrets::remove(kr, &users::totp_secret_name(user)) {
        Ok(()) | Err(SecretError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    record(kr, actor, "user.reset-mfa", user, Outcome::Ok, "")
}
