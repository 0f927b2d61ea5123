//! Camera sets: the cameras a user or an API token may see. Stored in the
//! `cameras` column of `user` and `api_token`: NULL for every camera, else a
//! JSON array of camera names. A stored set that cannot be read counts as
//! the empty set (fail closed: no camera rather than every camera).
//!
//! Setting a user's set is audited as `user.cameras` in the same
//! transaction.

use rusqlite::{params, TransactionBehavior};

use crate::base::clock::Clock;
use crate::base::names::valid_camera_name;
use crate::db::audit::{self, Outcome};
use crate::db::Index;

/// At most this many cameras in one set.
pub const MAX_CAMERAS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CameraSetError {
    #[error("\"{0}\": a camera name is 1 to 64 letters, digits, '-' or '_'")]
    BadCamera(String),
    #[error("a camera set holds at most {MAX_CAMERAS} cameras")]
    TooMany,
    #[error("no user named \"{0}\"")]
    NoSuchUser(String),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// A set as given (a request, the command line): every name checked,
/// duplicates dropped, sorted.
pub fn validate(names: Vec<String>) -> Result<Vec<String>, CameraSetError> {
    if names.len() > MAX_CAMERAS {
        return Err(CameraSetError::TooMany);
    }
    if let Some(bad) = names.iter().find(|n| !valid_camera_name(n)) {
        return Err(CameraSetError::BadCamera(bad.clone()));
    }
    let mut names = names;
    names.sort();
    names.dedup();
    Ok(names)
}

/// A comma-separated list (the command line): `a,b`; `all` is every camera
/// (None). Empty items are ignored.
pub fn parse_list(s: &str) -> Result<Option<Vec<String>>, CameraSetError> {
    if s.trim() == "all" {
        return Ok(None);
    }
    let names = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    validate(names).map(Some)
}

/// The stored column: None (NULL) for every camera. Unreadable JSON, or
/// anything but an array of valid names, is the empty set.
pub fn from_column(text: Option<String>) -> Option<Vec<String>> {
    let text = text?;
    let parsed: Option<Vec<String>> = serde_json::from_str(&text).ok();
    Some(parsed.and_then(|v| validate(v).ok()).unwrap_or_default())
}

/// The column value of a set.
pub fn to_column(set: Option<&[String]>) -> Option<String> {
    set.map(|s| serde_json::Value::from(s.to_vec()).to_string())
}

/// What two sets both allow (None is every camera).
pub fn intersect(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a.into_iter().filter(|c| b.contains(c)).collect()),
    }
}

/// A set as the audit log and the command line print it.
pub fn describe(set: Option<&[String]>) -> String {
    match set {
        None => "all".to_string(),
        Some([]) => "none".to_string(),
        Some(s) => s.join(","),
    }
}

/// Sets the cameras user `name` may see (None: every camera), audited as
/// `user.cameras` (the set as detail) in the same transaction. Takes effect
/// at once for their sessions and tokens (both read it on every request).
pub fn set_user_cameras(
    idx: &Index,
    actor: &str,
    name: &str,
    cameras: Option<Vec<String>>,
    clock: &dyn Clock,
) -> Result<(), CameraSetError> {
    let cameras = cameras.map(validate).transpose()?;
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE user SET cameras = ?2, updated_ns = ?3 WHERE name = ?1",
        params![name, to_column(cameras.as_deref()), clock.wall_ns()],
    )?;
    if n == 0 {
        return Err(CameraSetError::NoSuchUser(name.to_string()));
    }
    audit::append(
        &tx,
        actor,
        "user.cameras",
        name,
        Outcome::Ok,
        &describe(cameras.as_deref()),
    )?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sets_are_checked_sorted_and_deduplicated() {
        assert_eq!(validate(names(&["b", "a", "b"])).unwrap(), names(&["a", "b"]));
        assert!(matches!(
            validate(names(&["ok", "bad\nname"])),
            Err(CameraSetError::BadCamera(_))
        ));
        assert!(matches!(validate(names(&["../x"])), Err(CameraSetError::BadCamera(_))));
        let many: Vec<String> = (0..=MAX_CAMERAS).map(|i| format!("c{i}")).collect();
        assert!(matches!(validate(many), Err(CameraSetError::TooMany)));
        assert_eq!(parse_list("all").unwrap(), None);
        assert_eq!(parse_list("door, yard,").unwrap(), Some(names(&["door", "yard"])));
        assert_eq!(parse_list("").unwrap(), Some(vec![]));
        assert!(parse_list("door,ya rd").is_err());
    }

    #[test]
    fn an_unreadable_stored_set_is_the_empty_set() {
        assert_eq!(from_column(None), None);
        assert_eq!(from_column(Some(r#"["a","b"]"#.into())), Some(names(&["a", "b"])));
        assert_eq!(from_column(Some("not json".into())), Some(vec![]));
        assert_eq!(from_column(Some(r#"{"a":1}"#.into())), Some(vec![]));
        assert_eq!(from_column(Some(r#"["a","b\nc"]"#.into())), Some(vec![]));
        let col = to_column(Some(&names(&["a"]))).unwrap();
        assert_eq!(from_column(Some(col)), Some(names(&["a"])));
        assert_eq!(to_column(None), None);
    }

    #[test]
    fn intersection_narrows_and_none_is_everything() {
        assert_eq!(intersect(None, None), None);
        assert_eq!(intersect(None, Some(names(&["a"]))), Some(names(&["a"])));
        assert_eq!(intersect(Some(names(&["a"])), None), Some(names(&["a"])));
        assert_eq!(
            intersect(Some(names(&["a", "b"])), Some(names(&["b", "c"]))),
            Some(names(&["b"]))
        );
        assert_eq!(intersect(Some(vec![]), None), Some(vec![]));
        assert_eq!(describe(None), "all");
        assert_eq!(describe(Some(&[])), "none");
        assert_eq!(describe(Some(&names(&["a", "b"]))), "a,b");
    }
}
