//! A web user's TOTP second factor, kept in the secrets store (`totp.<user>`;
//! an enrolment not yet confirmed as `totp-pending.<user>`): enrolling,
//! enabling and resetting it, each with its audit entry, written right after
//! the secrets store has changed (the store commits its own transaction).

use zeroize::Zeroizing;

use crate::db::audit::{self, Outcome};
use crate::db::users::{self, UserError};
use crate::db::Index;
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
    crate::db::users::totp_pending_secret_name(user)
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

/// How a start of enrolment ended.
pub enum Enrolment {
    /// A new seed, pending until a code from it is confirmed: for the
    /// authenticator app.
    Started(Zeroizing<[u8; 20]>),
    /// A second factor is enrolled, and replacing it needs the current
    /// password, which was not given (audited as denied).
    PasswordNeeded,
    /// A second factor is enrolled, and the password given is wrong
    /// (audited as denied).
    WrongPassword,
}

/// Starts a user's own enrolment: a new seed, kept pending until a code from
/// it is confirmed (audited as `user.mfa.enrol`, "started"). When the user
/// has a second factor already, replacing it needs their current
/// `password`, checked against `idx` (a stolen session cannot swap the
/// factor). The caller throttles the attempt.
pub fn start_enrolment(
    kr: &Keyring,
    idx: &Index,
    actor: &str,
    user: &str,
    password: Option<&str>,
) -> Result<Enrolment, MfaError> {
    if secrets::exists(idx.conn(), &users::totp_secret_name(user))? {
        let Some(password) = password else {
            record(
                kr,
                actor,
                "user.mfa.enrol",
                user,
                Outcome::Denied,
                "re-enrolment without the password",
            )?;
            return Ok(Enrolment::PasswordNeeded);
        };
        if users::check_password(idx, user, password)?.is_none() {
            record(
                kr,
                actor,
                "user.mfa.enrol",
                user,
                Outcome::Denied,
                "re-enrolment with a wrong password",
            )?;
            return Ok(Enrolment::WrongPassword);
        }
    }
    let seed = new_seed()?;
    secrets::set(kr, &pending_secret_name(user), &seed[..], None)?;
    record(kr, actor, "user.mfa.enrol", user, Outcome::Ok, "started")?;
    Ok(Enrolment::Started(seed))
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

/// Checks a login's second factor: `code` from `seed` at `now_s` (Unix
/// seconds, from the caller's clock), one step of skew either way, newer
/// than the user's last used step; that step is then used up. False for a
/// wrong, stale or reused code (or when the step cannot be stored).
pub fn check_login_code(idx: &Index, user: &users::User, seed: &[u8], code: &str, now_s: i64) -> bool {
    let step = crate::base::totp::verify(seed, code, now_s, user.totp_last_step);
    step.is_some_and(|s| users::set_totp_step(idx, user.id, s).unwrap_or(false))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::{Clock, ManualClock};
    use crate::base::totp::{hotp, step_of, STEP_SECONDS};

    const SEED: &[u8] = b"12345678901234567890";
    const T0_S: i64 = 1_700_000_010;

    fn code_at(unix_s: i64) -> String {
        format!("{:06}", hotp(SEED, step_of(unix_s) as u64))
    }

    /// The user as the login reads it (with its last used step).
    fn user(idx: &Index) -> users::User {
        users::find(idx, "v").unwrap().unwrap().0
    }

    fn now_s(clock: &dyn Clock) -> i64 {
        clock.wall_ns() / 1_000_000_000
    }

    #[test]
    fn replacing_a_second_factor_needs_the_password() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("v.db");
        let sealer = crate::keys::keyring::tests_support::file_sealer(d.path());
        crate::keys::keyring::init(&db, &sealer, "t").unwrap();
        let kr = Keyring::open(&db, sealer, "t").unwrap();
        let idx = Index::open(&db).unwrap();
        let clock = ManualClock::new(T0_S * 1_000_000_000);
        let pw = "a long enough password";
        users::add(&idx, "cli:t", "v", users::Role::Viewer, pw, false, clock.as_ref()).unwrap();
        // The first enrolment: no password needed.
        assert!(matches!(
            start_enrolment(&kr, &idx, "user:v", "v", None).unwrap(),
            Enrolment::Started(_)
        ));
        enable(&kr, "cli:t", "v").unwrap();
        // Enrolled: a stolen session cannot swap the factor.
        assert!(matches!(
            start_enrolment(&kr, &idx, "user:v", "v", None).unwrap(),
            Enrolment::PasswordNeeded
        ));
        assert!(matches!(
            start_enrolment(&kr, &idx, "user:v", "v", Some("not the password")).unwrap(),
            Enrolment::WrongPassword
        ));
        assert!(matches!(
            start_enrolment(&kr, &idx, "user:v", "v", Some(pw)).unwrap(),
            Enrolment::Started(_)
        ));
        let mut st = idx
            .conn()
            .prepare("SELECT outcome, detail FROM audit_log WHERE action = 'user.mfa.enrol' ORDER BY id")
            .unwrap();
        let rows: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let rows: Vec<String> = rows.into_iter().map(|(o, d)| format!("{o} {d}")).collect();
        assert_eq!(
            rows,
            [
                "ok started",
                "denied re-enrolment without the password",
                "denied re-enrolment with a wrong password",
                "ok started"
            ]
        );
    }

    #[test]
    fn a_login_code_is_valid_one_step_either_side_and_only_once() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let clock = ManualClock::new(T0_S * 1_000_000_000);
        users::add(
            &idx,
            "cli:t",
            "v",
            users::Role::Viewer,
            "a long enough password",
            false,
            clock.as_ref(),
        )
        .unwrap();
        let step_ms = STEP_SECONDS * 1000;
        // Two steps away either side: refused (and nothing used up).
        for off in [-2, 2] {
            let code = code_at(T0_S + off * STEP_SECONDS);
            assert!(
                !check_login_code(&idx, &user(&idx), SEED, &code, now_s(clock.as_ref())),
                "{off} steps"
            );
        }
        assert_eq!(user(&idx).totp_last_step, None);
        // One step behind (the phone is slow): accepted, then that step is used up.
        let behind = code_at(T0_S - STEP_SECONDS);
        assert!(check_login_code(
            &idx,
            &user(&idx),
            SEED,
            &behind,
            now_s(clock.as_ref())
        ));
        assert_eq!(user(&idx).totp_last_step, Some(step_of(T0_S) - 1));
        assert!(
            !check_login_code(&idx, &user(&idx), SEED, &behind, now_s(clock.as_ref())),
            "reused"
        );
        // The current code.
        let current = code_at(T0_S);
        assert!(check_login_code(
            &idx,
            &user(&idx),
            SEED,
            &current,
            now_s(clock.as_ref())
        ));
        assert!(
            !check_login_code(&idx, &user(&idx), SEED, &current, now_s(clock.as_ref())),
            "reused"
        );
        // One step ahead (the phone is fast): accepted once.
        let ahead = code_at(T0_S + STEP_SECONDS);
        assert!(check_login_code(&idx, &user(&idx), SEED, &ahead, now_s(clock.as_ref())));
        clock.advance_ms(step_ms);
        assert!(
            !check_login_code(&idx, &user(&idx), SEED, &ahead, now_s(clock.as_ref())),
            "reused in its own step"
        );
        // A step later still, the next code is fresh; an older one is not.
        clock.advance_ms(step_ms);
        assert!(!check_login_code(
            &idx,
            &user(&idx),
            SEED,
            &current,
            now_s(clock.as_ref())
        ));
        let next = code_at(now_s(clock.as_ref()));
        assert!(check_login_code(&idx, &user(&idx), SEED, &next, now_s(clock.as_ref())));
        // A wall-clock step back does not make a used code good again.
        clock.set_wall_ns(T0_S * 1_000_000_000);
        assert!(!check_login_code(
            &idx,
            &user(&idx),
            SEED,
            &current,
            now_s(clock.as_ref())
        ));
        assert!(!check_login_code(
            &idx,
            &user(&idx),
            SEED,
            "12345",
            now_s(clock.as_ref())
        ));
    }
}
