//! What an admin does to another user: delete them, change their role,
//! reset their password to a one-time one, disable them. Two rules hold for
//! each: the last enabled admin cannot be disabled, demoted or deleted
//! ([`UserError::LastAdmin`]), and an admin cannot do it to themself
//! ([`UserError::NotYourself`]: the caller's user id is compared, so an
//! admin's own API token counts as the admin). The check and the change run in one
//! IMMEDIATE transaction, so two admins demoting each other at once cannot
//! both succeed. Each change writes its audit entry in that transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::base::clock::Clock;
use crate::db::audit::{self, Outcome};
use crate::db::users::{check_new_password, hash_password, in_transaction, Role, User, UserError};
use crate::db::users::{remove_second_factor, user_from_row, USER_COLUMNS};
use crate::db::Index;

/// The user `name`, read inside the transaction.
fn user_in(conn: &Connection, name: &str) -> Result<User, UserError> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM user WHERE name = ?1"),
        [name],
        user_from_row,
    )
    .optional()?
    .map(|(u, _)| u)
    .ok_or_else(|| UserError::NoSuchUser(name.to_string()))
}

/// Refuses when the caller (`actor_id`: the user behind the session or the
/// owner of the API token; None for the CLI) is `user` itself (`verb` says
/// what was refused).
fn not_yourself(actor_id: Option<i64>, user: &User, verb: &'static str) -> Result<(), UserError> {
    match actor_id {
        Some(me) if me == user.id => Err(UserError::NotYourself(verb)),
        _ => Ok(()),
    }
}

/// Refuses when `user` is an enabled admin and no other enabled admin exists.
fn not_last_admin(conn: &Connection, user: &User) -> Result<(), UserError> {
    if user.role != Role::Admin || user.disabled {
        return Ok(());
    }
    let others: i64 = conn.query_row(
        "SELECT count(*) FROM user WHERE role = 'admin' AND disabled = 0 AND id != ?1",
        [user.id],
        |r| r.get(0),
    )?;
    if others == 0 {
        return Err(UserError::LastAdmin);
    }
    Ok(())
}

/// Deletes a user; their sessions, API tokens and second factor (the TOTP
/// seed and any enrolment in progress) go with them, in the same
/// transaction, so a later user of the same name inherits none of it.
/// Audited as `user.delete`.
pub fn delete_user(idx: &Index, actor: &str, actor_id: Option<i64>, name: &str) -> Result<(), UserError> {
    in_transaction(idx, |tx| {
        let u = user_in(tx, name)?;
        not_yourself(actor_id, &u, "delete")?;
        not_last_admin(tx, &u)?;
        tx.execute("DELETE FROM session WHERE user_id = ?1", [u.id])?;
        tx.execute("DELETE FROM api_token WHERE user_id = ?1", [u.id])?;
        tx.execute("DELETE FROM user WHERE id = ?1", [u.id])?;
        audit::append(tx, actor, "user.delete", name, Outcome::Ok, u.role.as_str())?;
        remove_second_factor(tx, actor, name)?;
        Ok(())
    })
}

/// Changes a user's role; live sessions and tokens get it at their next
/// request (both re-read the user). Audited as `user.role`, detail "old ->
/// new".
pub fn set_role(
    idx: &Index,
    actor: &str,
    actor_id: Option<i64>,
    name: &str,
    role: Role,
    clock: &dyn Clock,
) -> Result<(), UserError> {
    in_transaction(idx, |tx| {
        let u = user_in(tx, name)?;
        if role < u.role {
            not_yourself(actor_id, &u, "demote")?;
            not_last_admin(tx, &u)?;
        }
        tx.execute(
            "UPDATE user SET role = ?2, updated_ns = ?3 WHERE id = ?1",
            params![u.id, role.as_str(), clock.wall_ns()],
        )?;
        let detail = format!("{} -> {}", u.role.as_str(), role.as_str());
        audit::append(tx, actor, "user.role", name, Outcome::Ok, &detail)?;
        Ok(())
    })
}

/// An admin sets a one-time password for a user: it must be changed at the
/// next login, and every session of the user ends. Audited as
/// `user.password.reset`.
pub fn reset_password(
    idx: &Index,
    actor: &str,
    name: &str,
    password: &str,
    clock: &dyn Clock,
) -> Result<(), UserError> {
    check_new_password(password)?;
    let hash = hash_password(password)?;
    in_transaction(idx, |tx| {
        let u = user_in(tx, name)?;
        tx.execute(
            "UPDATE user SET password_hash = ?2, must_change_password = 1, updated_ns = ?3 WHERE id = ?1",
            params![u.id, hash, clock.wall_ns()],
        )?;
        tx.execute("DELETE FROM session WHERE user_id = ?1", [u.id])?;
        audit::append(
            tx,
            actor,
            "user.password.reset",
            name,
            Outcome::Ok,
            "one-time password; to be changed at next login",
        )?;
        Ok(())
    })
}

/// Disables a user (ending their sessions) under both rules, audited as
/// `user.disable`. (`users::set_disabled` is the unchecked form the CLI
/// and the fail-closed paths use.)
pub fn disable_checked(
    idx: &Index,
    actor: &str,
    actor_id: Option<i64>,
    name: &str,
    clock: &dyn Clock,
) -> Result<(), UserError> {
    in_transaction(idx, |tx| {
        let u = user_in(tx, name)?;
        not_yourself(actor_id, &u, "disable")?;
        not_last_admin(tx, &u)?;
        tx.execute(
            "UPDATE user SET disabled = 1, updated_ns = ?2 WHERE id = ?1",
            params![u.id, clock.wall_ns()],
        )?;
        tx.execute("DELETE FROM session WHERE user_id = ?1", [u.id])?;
        audit::append(tx, actor, "user.disable", name, Outcome::Ok, "")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::users::{add, create_session, find, session};

    fn sys() -> &'static dyn Clock {
        &crate::base::clock::SystemClock
    }

    /// The user id of `name`, as a caller's `user_id`.
    fn me(idx: &Index, name: &str) -> Option<i64> {
        find(idx, name).unwrap().map(|(u, _)| u.id)
    }

    const PW: &str = "a long enough password";

    fn index() -> (tempfile::TempDir, Index) {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        (d, idx)
    }

    #[test]
    fn the_last_enabled_admin_stays() {
        let (_d, idx) = index();
        add(&idx, "cli:t", "a", Role::Admin, PW, false, sys()).unwrap();
        add(&idx, "cli:t", "v", Role::Viewer, PW, false, sys()).unwrap();
        for r in [
            set_role(&idx, "cli:t", None, "a", Role::Operator, sys()),
            disable_checked(&idx, "cli:t", None, "a", sys()),
            delete_user(&idx, "cli:t", None, "a"),
        ] {
            assert!(matches!(r, Err(UserError::LastAdmin)), "{r:?}");
        }
        assert_eq!(find(&idx, "a").unwrap().unwrap().0.role, Role::Admin);
        // A disabled second admin does not count.
        add(&idx, "cli:t", "b", Role::Admin, PW, false, sys()).unwrap();
        crate::db::users::set_disabled(&idx, "cli:t", "b", true, sys()).unwrap();
        assert!(matches!(
            delete_user(&idx, "cli:t", None, "a"),
            Err(UserError::LastAdmin)
        ));
        crate::db::users::set_disabled(&idx, "cli:t", "b", false, sys()).unwrap();
        // Promoting is always allowed; then a demotion is.
        set_role(&idx, "user:a", me(&idx, "a"), "v", Role::Admin, sys()).unwrap();
        set_role(&idx, "user:a", me(&idx, "a"), "v", Role::Viewer, sys()).unwrap();
        set_role(&idx, "user:a", me(&idx, "a"), "b", Role::Operator, sys()).unwrap();
        assert_eq!(find(&idx, "b").unwrap().unwrap().0.role, Role::Operator);
    }

    #[test]
    fn an_admin_cannot_act_on_themself() {
        let (_d, idx) = index();
        add(&idx, "cli:t", "a", Role::Admin, PW, false, sys()).unwrap();
        add(&idx, "cli:t", "b", Role::Admin, PW, false, sys()).unwrap();
        assert!(matches!(
            delete_user(&idx, "user:a", me(&idx, "a"), "a"),
            Err(UserError::NotYourself("delete"))
        ));
        assert!(matches!(
            set_role(&idx, "user:a", me(&idx, "a"), "a", Role::Viewer, sys()),
            Err(UserError::NotYourself("demote"))
        ));
        assert!(matches!(
            disable_checked(&idx, "user:a", me(&idx, "a"), "a", sys()),
            Err(UserError::NotYourself("disable"))
        ));
        assert_eq!(
            UserError::NotYourself("delete").to_string(),
            "you cannot delete yourself"
        );
        delete_user(&idx, "user:a", me(&idx, "a"), "b").unwrap();
        assert!(find(&idx, "b").unwrap().is_none());
    }

    #[test]
    fn two_admins_demoting_each_other_at_once_cannot_both_succeed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("v.db");
        let idx = Index::open(&path).unwrap();
        add(&idx, "cli:t", "a", Role::Admin, PW, false, sys()).unwrap();
        add(&idx, "cli:t", "b", Role::Admin, PW, false, sys()).unwrap();
        drop(idx);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let run = |actor: &'static str, target: &'static str| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let idx = Index::open(&path).unwrap();
                barrier.wait();
                set_role(&idx, actor, me(&idx, &actor[5..]), target, Role::Viewer, sys())
            })
        };
        let (x, y) = (run("user:a", "b"), run("user:b", "a"));
        let results = [x.join().unwrap(), y.join().unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(UserError::LastAdmin))));
        let idx = Index::open(&path).unwrap();
        let admins = crate::db::users::list(&idx)
            .unwrap()
            .into_iter()
            .filter(|u| u.role == Role::Admin)
            .count();
        assert_eq!(admins, 1);
    }

    #[test]
    fn deleting_or_resetting_a_user_ends_their_sessions() {
        let (_d, idx) = index();
        add(&idx, "cli:t", "a", Role::Admin, PW, false, sys()).unwrap();
        let id = add(&idx, "cli:t", "v", Role::Viewer, PW, false, sys()).unwrap();
        let (cookie, _) = create_session(&idx, id, "t", sys()).unwrap();
        reset_password(&idx, "user:a", "v", "a one-time password", sys()).unwrap();
        assert!(session(&idx, &cookie, sys()).unwrap().is_none());
        let (u, _) = find(&idx, "v").unwrap().unwrap();
        assert!(u.must_change_password);
        assert!(crate::db::users::check_password(&idx, "v", "a one-time password")
            .unwrap()
            .is_some());
        let (cookie, _) = create_session(&idx, id, "t", sys()).unwrap();
        delete_user(&idx, "user:a", me(&idx, "a"), "v").unwrap();
        assert!(session(&idx, &cookie, sys()).unwrap().is_none());
        let actions: Vec<String> = audit::tail(idx.conn(), 2)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {}", e.actor, e.action, e.target))
            .collect();
        assert_eq!(actions, ["user:a user.password.reset v", "user:a user.delete v"]);
        assert!(matches!(
            delete_user(&idx, "user:a", me(&idx, "a"), "v"),
            Err(UserError::NoSuchUser(_))
        ));
    }

    #[test]
    fn an_admins_own_api_token_cannot_act_on_them() {
        let (_d, idx) = index();
        add(&idx, "cli:t", "a", Role::Admin, PW, false, sys()).unwrap();
        add(&idx, "cli:t", "b", Role::Admin, PW, false, sys()).unwrap();
        let token = "token:a-laptop";
        assert!(matches!(
            delete_user(&idx, token, me(&idx, "a"), "a"),
            Err(UserError::NotYourself("delete"))
        ));
        assert!(matches!(
            set_role(&idx, token, me(&idx, "a"), "a", Role::Viewer, sys()),
            Err(UserError::NotYourself("demote"))
        ));
        assert!(matches!(
            disable_checked(&idx, token, me(&idx, "a"), "a", sys()),
            Err(UserError::NotYourself("disable"))
        ));
        assert!(find(&idx, "a").unwrap().is_some());
        // A token of another admin may.
        disable_checked(&idx, "token:b-ci", me(&idx, "b"), "a", sys()).unwrap();
    }

    fn put_secret(idx: &Index, name: &str) {
        idx.conn()
            .execute(
                "INSERT INTO secret (name, version, key_id, nonce, value, created_ns, updated_ns) \
                 VALUES (?1, 1, x'00', x'00', x'00', 0, 0)",
                [name],
            )
            .unwrap();
    }

    fn has_secret(idx: &Index, name: &str) -> bool {
        crate::db::secrets::exists(idx.conn(), name).unwrap()
    }

    #[test]
    fn a_deleted_users_second_factor_goes_with_them() {
        let (_d, idx) = index();
        add(&idx, "cli:t", "a", Role::Admin, PW, false, sys()).unwrap();
        add(&idx, "cli:t", "v", Role::Viewer, PW, false, sys()).unwrap();
        put_secret(&idx, "totp.v");
        put_secret(&idx, "totp-pending.v");
        put_secret(&idx, "totp.a");
        delete_user(&idx, "user:a", me(&idx, "a"), "v").unwrap();
        assert!(!has_secret(&idx, "totp.v"));
        assert!(!has_secret(&idx, "totp-pending.v"));
        assert!(has_secret(&idx, "totp.a"), "another user's stays");
        // A leftover (e.g. from before this fix) is not inherited by a new user of that name.
        put_secret(&idx, "totp.v");
        put_secret(&idx, "totp-pending.v");
        add(&idx, "user:a", "v", Role::Viewer, PW, false, sys()).unwrap();
        assert!(!has_secret(&idx, "totp.v"));
        assert!(!has_secret(&idx, "totp-pending.v"));
        assert_eq!(crate::db::users::totp_pending_secret_name("v"), "totp-pending.v");
        assert_eq!(crate::db::users::totp_secret_name("v"), "totp.v");
    }
}
