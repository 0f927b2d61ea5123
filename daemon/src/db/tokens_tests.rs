//! Tests of [`super`]: API tokens, their owner, expiry, revocation and
//! camera sets, the hostile cases first.

use super::*;
use crate::base::clock::ManualClock;
use crate::db::camera_sets::{set_user_cameras, CameraSetError};

const T0: i64 = 1_700_000_000_000_000_000;
const PW: &str = "a long enough password";

/// An index with an admin `boss`, an operator `op` and a viewer `v`.
fn index(clock: &dyn Clock) -> (tempfile::TempDir, Index) {
    let d = tempfile::tempdir().unwrap();
    let idx = Index::open(&d.path().join("v.db")).unwrap();
    for (name, role) in [("boss", Role::Admin), ("op", Role::Operator), ("v", Role::Viewer)] {
        users::add(&idx, "cli:t", name, role, PW, false, clock).unwrap();
    }
    (d, idx)
}

fn new(owner: &str, name: &str, role: Option<Role>) -> NewToken {
    NewToken {
        owner: owner.into(),
        name: name.into(),
        role,
        expires_in_days: None,
        cameras: None,
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn audit_lines(idx: &Index, action: &str) -> Vec<String> {
    audit::tail(idx.conn(), 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| format!("{} {} {}", e.actor, e.target, e.detail))
        .collect()
}

#[test]
fn a_token_works_as_its_owner_at_most_and_is_stamped_when_used() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    let t = create(
        &idx,
        "user:op",
        new("op", "prometheus", Some(Role::Operator)),
        clock.as_ref(),
    )
    .unwrap();
    assert!(t.secret.starts_with("vigil_") && t.secret.len() == 6 + 64);
    assert_eq!(t.expires_ns, T0 + 90 * DAY_NS, "90 days by default");
    clock.advance_ms(1000);
    let c = authenticate(&idx, &t.secret, clock.as_ref()).unwrap().unwrap();
    assert_eq!(
        (c.name.as_str(), c.owner.name.as_str(), c.role),
        ("prometheus", "op", Role::Operator)
    );
    assert_eq!(c.cameras, None);
    let info = list(&idx, None).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].last_used_ns, Some(T0 + 1_000_000_000));
    assert_eq!(info[0].created_ns, T0);
    assert_eq!(info[0].owner.as_deref(), Some("op"));
    // Only the hash is stored.
    let stored: Vec<u8> = idx
        .conn()
        .query_row("SELECT token_hash FROM api_token", [], |r| r.get(0))
        .unwrap();
    assert!(!t.secret.contains(&vigil_format::hex(&stored)));
    assert!(!format!("{info:?}").contains(&t.secret[6..]), "never listed");
    // The owner demoted: the token follows at once.
    idx.conn()
        .execute("UPDATE user SET role = 'viewer' WHERE name = 'op'", [])
        .unwrap();
    let c = authenticate(&idx, &t.secret, clock.as_ref()).unwrap().unwrap();
    assert_eq!(c.role, Role::Viewer, "min(token role, owner's current role)");
    assert_eq!(
        audit_lines(&idx, "token.create"),
        ["user:op prometheus owner op, role operator, expires 2024-02-12T22:13:20Z, cameras all"]
    );
}

#[test]
fn malformed_unknown_expired_revoked_and_ownerless_tokens_are_refused() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    for text in [
        "",
        "vigil_",
        "vigil_00",
        "Bearer x",
        &format!("vigil_{}", "0".repeat(64)),
        &"a".repeat(70),
    ] {
        assert!(authenticate(&idx, text, clock.as_ref()).unwrap().is_none(), "{text:?}");
    }
    let mut short = new("v", "short", None);
    short.expires_in_days = Some(1);
    let t = create(&idx, "user:v", short, clock.as_ref()).unwrap();
    clock.advance_ms(86_400_000 - 1);
    assert!(authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_some());
    clock.advance_ms(1);
    assert!(
        authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_none(),
        "expired after exactly a day"
    );
    // Revoked.
    let t = create(&idx, "user:v", new("v", "soon revoked", None), clock.as_ref()).unwrap();
    revoke(&idx, "user:v", "soon revoked", None, clock.as_ref()).unwrap();
    assert!(authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_none());
    // Made before v7: no owner, no expiry.
    let raw = [7u8; 32];
    idx.conn()
        .execute(
            "INSERT INTO api_token (name, token_hash, role, created_ns) VALUES ('old', ?1, 'admin', 0)",
            [sha256(&raw)],
        )
        .unwrap();
    let old = format!("vigil_{}", vigil_format::hex(&raw));
    assert!(authenticate(&idx, &old, clock.as_ref()).unwrap().is_none(), "no owner");
    idx.conn()
        .execute(
            "UPDATE api_token SET user_id = (SELECT id FROM user WHERE name = 'boss') WHERE name = 'old'",
            [],
        )
        .unwrap();
    assert!(
        authenticate(&idx, &old, clock.as_ref()).unwrap().is_none(),
        "no expiry is not forever"
    );
    let listed = list(&idx, None).unwrap();
    assert_eq!(
        listed.iter().find(|t| t.name == "old").unwrap().owner.as_deref(),
        Some("boss")
    );
    assert!(listed
        .iter()
        .all(|t| t.name == "old" || t.last_used_ns.is_some() || t.revoked_ns.is_some()));
}

#[test]
fn disabling_the_owner_disables_the_token() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    let t = create(&idx, "user:v", new("v", "script", None), clock.as_ref()).unwrap();
    users::set_disabled(&idx, "user:boss", "v", true, clock.as_ref()).unwrap();
    assert!(authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_none());
    assert!(matches!(
        create(&idx, "cli:t", new("v", "another", None), clock.as_ref()),
        Err(TokenError::OwnerDisabled(_))
    ));
    users::set_disabled(&idx, "user:boss", "v", false, clock.as_ref()).unwrap();
    assert!(
        authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_some(),
        "enabled again"
    );
    // A deleted owner takes the token along.
    idx.conn().execute("PRAGMA foreign_keys = ON", []).unwrap();
    idx.conn().execute("DELETE FROM user WHERE name = 'v'", []).unwrap();
    assert!(authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_none());
}

#[test]
fn role_expiry_and_name_are_bounded() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    assert!(matches!(
        create(&idx, "user:v", new("v", "up", Some(Role::Operator)), clock.as_ref()),
        Err(TokenError::RoleAboveOwner("viewer"))
    ));
    assert!(matches!(
        create(&idx, "user:op", new("op", "up", Some(Role::Admin)), clock.as_ref()),
        Err(TokenError::RoleAboveOwner("operator"))
    ));
    for days in [0, MAX_EXPIRY_DAYS + 1, u32::MAX] {
        let mut t = new("boss", "long", None);
        t.expires_in_days = Some(days);
        assert!(
            matches!(create(&idx, "user:boss", t, clock.as_ref()), Err(TokenError::BadExpiry)),
            "{days}"
        );
    }
    let mut year = new("boss", "year", Some(Role::Admin));
    year.expires_in_days = Some(MAX_EXPIRY_DAYS);
    assert_eq!(
        create(&idx, "user:boss", year, clock.as_ref()).unwrap().expires_ns,
        T0 + 365 * DAY_NS
    );
    let long = "x".repeat(65);
    for bad in [
        "",
        "   ",
        "two\nlines",
        "tab\there",
        "bell\u{7}",
        "nel\u{85}",
        long.as_str(),
    ] {
        assert!(
            matches!(
                create(&idx, "user:boss", new("boss", bad, None), clock.as_ref()),
                Err(TokenError::BadName)
            ),
            "{bad:?}"
        );
    }
    assert!(create(
        &idx,
        "user:boss",
        new("boss", "Grafana on the NAS (read-only)", None),
        clock.as_ref()
    )
    .is_ok());
    assert!(create(&idx, "user:boss", new("boss", &"é".repeat(64), None), clock.as_ref()).is_ok());
    assert!(matches!(
        create(&idx, "user:v", new("v", "year", None), clock.as_ref()),
        Err(TokenError::Exists(_))
    ));
    assert!(matches!(
        create(&idx, "cli:t", new("nobody", "n", None), clock.as_ref()),
        Err(TokenError::NoSuchUser(_))
    ));
    assert_eq!(audit_lines(&idx, "token.create").len(), 3, "refusals write nothing");
}

#[test]
fn a_tokens_cameras_are_within_its_owners() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    set_user_cameras(&idx, "user:boss", "v", Some(names(&["door", "yard"])), clock.as_ref()).unwrap();
    let mut wide = new("v", "wide", None);
    wide.cameras = Some(names(&["door", "garage"]));
    assert!(matches!(
        create(&idx, "user:v", wide, clock.as_ref()),
        Err(TokenError::CameraNotAllowed(c)) if c == "garage"
    ));
    let mut bad = new("v", "bad", None);
    bad.cameras = Some(names(&["door\r\n"]));
    assert!(matches!(
        create(&idx, "user:v", bad, clock.as_ref()),
        Err(TokenError::CameraSet(_))
    ));
    let mut door = new("v", "door only", None);
    door.cameras = Some(names(&["door"]));
    let t_door = create(&idx, "user:v", door, clock.as_ref()).unwrap();
    let t_all = create(&idx, "user:v", new("v", "all", None), clock.as_ref()).unwrap();
    let cams = |t: &str| authenticate(&idx, t, clock.as_ref()).unwrap().unwrap().cameras;
    assert_eq!(cams(&t_door.secret), Some(names(&["door"])));
    assert_eq!(cams(&t_all.secret), Some(names(&["door", "yard"])), "the owner's set");
    // The owner narrowed later: the tokens narrow with them.
    set_user_cameras(&idx, "user:boss", "v", Some(names(&["yard"])), clock.as_ref()).unwrap();
    assert_eq!(cams(&t_door.secret), Some(vec![]), "nothing left");
    assert_eq!(cams(&t_all.secret), Some(names(&["yard"])));
    set_user_cameras(&idx, "user:boss", "v", None, clock.as_ref()).unwrap();
    assert_eq!(cams(&t_door.secret), Some(names(&["door"])));
    assert_eq!(cams(&t_all.secret), None);
    // A stored set that cannot be read allows nothing.
    idx.conn()
        .execute("UPDATE api_token SET cameras = 'garbage' WHERE name = 'all'", [])
        .unwrap();
    assert_eq!(cams(&t_all.secret), Some(vec![]));
}

#[test]
fn only_the_owner_or_an_admin_revokes_and_both_are_audited() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    let op_id = users::find(&idx, "op").unwrap().unwrap().0.id;
    let v_id = users::find(&idx, "v").unwrap().unwrap().0.id;
    let t = create(&idx, "user:op", new("op", "ci", Some(Role::Operator)), clock.as_ref()).unwrap();
    create(&idx, "user:v", new("v", "mine", None), clock.as_ref()).unwrap();
    assert!(matches!(
        revoke(&idx, "user:v", "ci", Some(v_id), clock.as_ref()),
        Err(TokenError::NoSuchToken(_))
    ));
    assert!(
        authenticate(&idx, &t.secret, clock.as_ref()).unwrap().is_some(),
        "untouched"
    );
    assert!(matches!(
        revoke(&idx, "user:v", "nope", None, clock.as_ref()),
        Err(TokenError::NoSuchToken(_))
    ));
    assert_eq!(list(&idx, Some(v_id)).unwrap().len(), 1, "a user lists their own");
    assert_eq!(list(&idx, Some(op_id)).unwrap()[0].name, "ci");
    assert_eq!(list(&idx, None).unwrap().len(), 2, "an admin lists all");
    clock.advance_ms(5);
    revoke(&idx, "user:op", "ci", Some(op_id), clock.as_ref()).unwrap();
    revoke(&idx, "user:boss", "ci", None, clock.as_ref()).unwrap();
    revoke(&idx, "user:boss", "mine", None, clock.as_ref()).unwrap();
    let listed = list(&idx, None).unwrap();
    assert!(listed.iter().all(|t| t.revoked_ns == Some(T0 + 5_000_000)));
    assert_eq!(
        audit_lines(&idx, "token.revoke"),
        ["user:op ci owner op", "user:boss mine owner v"],
        "a second revocation writes nothing"
    );
}

#[test]
fn no_token_without_its_audit_entry() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    create(&idx, "user:v", new("v", "kept", None), clock.as_ref()).unwrap();
    idx.conn()
        .execute_batch(
            "CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no audit'); END;",
        )
        .unwrap();
    assert!(create(&idx, "user:v", new("v", "lost", None), clock.as_ref()).is_err());
    assert!(revoke(&idx, "user:v", "kept", None, clock.as_ref()).is_err());
    assert!(set_user_cameras(&idx, "user:boss", "v", Some(vec![]), clock.as_ref()).is_err());
    let listed = list(&idx, None).unwrap();
    assert_eq!(listed.len(), 1, "no token without its entry");
    assert_eq!(listed[0].revoked_ns, None, "nor a revocation");
    assert_eq!(
        users::find(&idx, "v").unwrap().unwrap().0.cameras,
        None,
        "nor a camera set"
    );
}

#[test]
fn setting_a_users_camera_set_is_audited_with_it() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    set_user_cameras(&idx, "user:boss", "v", Some(names(&["yard", "door"])), clock.as_ref()).unwrap();
    let (u, _) = users::find(&idx, "v").unwrap().unwrap();
    assert_eq!(u.cameras, Some(names(&["door", "yard"])));
    assert_eq!(
        users::list(&idx)
            .unwrap()
            .iter()
            .find(|u| u.name == "v")
            .unwrap()
            .cameras,
        u.cameras
    );
    set_user_cameras(&idx, "user:boss", "v", None, clock.as_ref()).unwrap();
    assert_eq!(users::find(&idx, "v").unwrap().unwrap().0.cameras, None);
    assert!(matches!(
        set_user_cameras(&idx, "user:boss", "nobody", None, clock.as_ref()),
        Err(CameraSetError::NoSuchUser(_))
    ));
    assert!(matches!(
        set_user_cameras(&idx, "user:boss", "v", Some(names(&["a\u{7}"])), clock.as_ref()),
        Err(CameraSetError::BadCamera(_))
    ));
    assert_eq!(
        audit_lines(&idx, "user.cameras"),
        ["user:boss v door,yard", "user:boss v all"]
    );
    // A stored user set that cannot be read allows nothing.
    idx.conn()
        .execute("UPDATE user SET cameras = '[1,2]' WHERE name = 'v'", [])
        .unwrap();
    assert_eq!(users::find(&idx, "v").unwrap().unwrap().0.cameras, Some(vec![]));
}

#[test]
fn a_user_has_at_most_20_live_tokens() {
    let clock = ManualClock::new(T0);
    let (_d, idx) = index(clock.as_ref());
    for i in 0..MAX_LIVE_PER_USER {
        create(&idx, "user:v", new("v", &format!("t{i}"), None), clock.as_ref()).unwrap();
    }
    assert!(matches!(
        create(&idx, "user:v", new("v", "one more", None), clock.as_ref()),
        Err(TokenError::TooMany(_))
    ));
    assert!(create(&idx, "user:op", new("op", "another user's", None), clock.as_ref()).is_ok());
    revoke(&idx, "user:v", "t0", None, clock.as_ref()).unwrap();
    assert!(
        create(&idx, "user:v", new("v", "one more", None), clock.as_ref()).is_ok(),
        "a revoked one does not count"
    );
}
