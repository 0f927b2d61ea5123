//! The cameras added from the web UI (the `managed_camera` table): listed,
//! added or changed, and removed. Each change takes the `actor` who makes it
//! and writes its audit entry in the same transaction. Their passwords live
//! in the secrets store as `camera.<name>`.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::config::{CameraConfig, CameraPassword};
use crate::db::audit::{self, Outcome};
use crate::db::Index;

/// The secrets-store name of a managed camera's password.
pub fn password_secret_name(camera: &str) -> String {
    format!("camera.{camera}")
}

/// A camera added through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedCamera {
    pub name: String,
    pub url: String,
    pub username: Option<String>,
    pub has_password: bool,
    pub enabled: bool,
    /// The sub stream (rtsp, same login), from ONVIF onboarding.
    pub sub_url: Option<String>,
    /// The ONVIF device service (http), from ONVIF onboarding.
    pub onvif_url: Option<String>,
    pub record_audio: bool,
}

impl ManagedCamera {
    /// As the supervisor runs it (the URL was checked when it was stored).
    pub fn to_config(&self) -> Option<CameraConfig> {
        Some(CameraConfig {
            name: self.name.clone(),
            url: crate::config::camera_url(&self.url).ok()?,
            username: self.username.clone(),
            password: if self.has_password {
                CameraPassword::Secret {
                    name: password_secret_name(&self.name),
                    origin: crate::config::Origin {
                        file: "(web UI)".into(),
                        line: 0,
                        key: "camera.password".into(),
                    },
                }
            } else {
                CameraPassword::None
            },
            password_origin: None,
            enabled: self.enabled,
            limits: Default::default(),
            sub_url: self.sub_url.as_deref().and_then(|u| crate::config::camera_url(u).ok()),
            record_sub: false,
            sub_retention_days: None,
            record_audio: self.record_audio,
            onvif_url: self.onvif_url.as_deref().and_then(|u| url::Url::parse(u).ok()),
        })
    }
}

pub fn managed(idx: &Index) -> rusqlite::Result<Vec<ManagedCamera>> {
    let mut st = idx.conn().prepare(
        "SELECT name, url, username, has_password, enabled, sub_url, onvif_url, record_audio \
             FROM managed_camera ORDER BY name",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ManagedCamera {
            name: r.get(0)?,
            url: r.get(1)?,
            username: r.get(2)?,
            has_password: r.get(3)?,
            enabled: r.get(4)?,
            sub_url: r.get(5)?,
            onvif_url: r.get(6)?,
            record_audio: r.get(7)?,
        })
    })?;
    rows.collect()
}

pub fn find_managed(idx: &Index, name: &str) -> rusqlite::Result<Option<ManagedCamera>> {
    Ok(managed(idx)?.into_iter().find(|c| c.name == name))
}

/// Inserts or replaces a managed camera, audited as `camera.add` (when no
/// camera of that name was managed) or `camera.update`, with the URL (in
/// its [`redacted_url`] form: audit listings reach further than the camera
/// editor) and whether it is enabled as detail.
pub fn store_managed(idx: &Index, actor: &str, c: &ManagedCamera) -> rusqlite::Result<()> {
    let now = crate::base::clock::now_ns();
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    let existed = exists(&tx, &c.name)?;
    let values = params![
        c.name,
        c.url,
        c.username,
        c.has_password,
        c.enabled,
        now,
        c.sub_url,
        c.onvif_url,
        c.record_audio
    ];
    if existed {
        tx.execute(
            "UPDATE managed_camera SET url = ?2, username = ?3, has_password = ?4, enabled = ?5, updated_ns = ?6, \
             sub_url = ?7, onvif_url = ?8, record_audio = ?9 WHERE name = ?1",
            values,
        )?;
    } else {
        tx.execute(
            "INSERT INTO managed_camera (name, url, username, has_password, enabled, created_ns, updated_ns, \
             sub_url, onvif_url, record_audio) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
            values,
        )?;
    }
    audit::append(
        &tx,
        actor,
        if existed { "camera.update" } else { "camera.add" },
        &c.name,
        Outcome::Ok,
        &format!("{} (enabled: {})", redacted_url(&c.url), c.enabled),
    )?;
    tx.commit()
}

/// A camera URL as the audit log shows it: no user name or password, no
/// query, no fragment, and no path segment holding a `=` (some cameras take
/// their login in the path, as `/user=admin&password=x&channel=1`); each
/// removed part leaves a `...`. A URL that does not parse is left out whole.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "(URL not shown)".to_string();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("..."));
    }
    u.set_fragment(None);
    if !u.cannot_be_a_base() {
        // Segments kept as written (`set_path` leaves `%XX` alone, where
        // `path_segments_mut` would encode the `%` again); `=` also when
        // percent-encoded.
        let path: Vec<&str> = u
            .path()
            .split('/')
            .map(|p| {
                if p.contains('=') || p.to_ascii_lowercase().contains("%3d") {
                    "..."
                } else {
                    p
                }
            })
            .collect();
        let path = path.join("/");
        u.set_path(&path);
    }
    u.to_string()
}

fn exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM managed_camera WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .is_some())
}

/// Removes a managed camera (its recordings stay), audited as
/// `camera.delete`. False (and no entry) when there was none of that name.
pub fn delete_managed(idx: &Index, actor: &str, name: &str) -> rusqlite::Result<bool> {
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    if tx.execute("DELETE FROM managed_camera WHERE name = ?1", [name])? == 0 {
        return Ok(false);
    }
    audit::append(&tx, actor, "camera.delete", name, Outcome::Ok, "recordings kept")?;
    // Its clock is no one's concern any more: the reading and its alert go.
    crate::db::camera_clock::forget(&tx, name, crate::base::clock::now_ns())?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit_rows(idx: &Index) -> Vec<String> {
        let mut st = idx
            .conn()
            .prepare("SELECT actor, action, target, outcome, detail FROM audit_log ORDER BY id")
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok([0, 1, 2, 3, 4]
                    .iter()
                    .map(|&i| r.get::<_, String>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .join(" "))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn camera(url: &str, enabled: bool) -> ManagedCamera {
        ManagedCamera {
            name: "door".into(),
            url: url.into(),
            username: None,
            has_password: false,
            enabled,
            sub_url: None,
            onvif_url: None,
            record_audio: false,
        }
    }

    #[test]
    fn the_audit_shows_a_url_without_a_login() {
        for (url, shown) in [
            ("rtsp://192.0.2.1:554/s1", "rtsp://192.0.2.1:554/s1"),
            (
                "rtsp://192.0.2.1/user=admin&password=x&channel=1",
                "rtsp://192.0.2.1/...",
            ),
            ("rtsp://192.0.2.1/s?loginPas=x&psw=y&u=a&p=b", "rtsp://192.0.2.1/s?..."),
            ("rtsp://bob:hunter22@192.0.2.1/a/b=c/d", "rtsp://192.0.2.1/a/.../d"),
            ("v4l2:///dev/video0?width=1280", "v4l2:///dev/video0?..."),
            (
                "rtsp://192.0.2.1/user%3Dadmin%26password%3Dx/s",
                "rtsp://192.0.2.1/.../s",
            ),
            ("rtsp://192.0.2.1/a%20b/c", "rtsp://192.0.2.1/a%20b/c"),
            ("not a url", "(URL not shown)"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }

    #[test]
    fn add_update_delete_are_audited_in_their_transaction() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        store_managed(&idx, "user:a", &camera("rtsp://10.0.0.9/1", true)).unwrap();
        store_managed(&idx, "token:t", &camera("rtsp://10.0.0.9/2", false)).unwrap();
        assert_eq!(
            find_managed(&idx, "door").unwrap(),
            Some(camera("rtsp://10.0.0.9/2", false))
        );
        assert!(!delete_managed(&idx, "user:a", "other").unwrap(), "nothing to delete");
        assert!(delete_managed(&idx, "user:b", "door").unwrap());
        assert!(managed(&idx).unwrap().is_empty());
        assert_eq!(
            audit_rows(&idx),
            [
                "user:a camera.add door ok rtsp://10.0.0.9/1 (enabled: true)",
                "token:t camera.update door ok rtsp://10.0.0.9/2 (enabled: false)",
                "user:b camera.delete door ok recordings kept",
            ]
        );
        // When the audit entry cannot be written, the change is not made either.
        idx.conn()
            .execute_batch(
                "CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no audit'); END;",
            )
            .unwrap();
        assert!(store_managed(&idx, "user:a", &camera("rtsp://10.0.0.9/1", true)).is_err());
        assert!(managed(&idx).unwrap().is_empty(), "no camera without its audit entry");
        idx.conn().execute_batch("DROP TRIGGER no_audit;").unwrap();
        store_managed(&idx, "user:a", &camera("rtsp://10.0.0.9/1", true)).unwrap();
        idx.conn()
            .execute_batch(
                "CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no audit'); END;",
            )
            .unwrap();
        assert!(delete_managed(&idx, "user:a", "door").is_err());
        assert_eq!(managed(&idx).unwrap().len(), 1, "not deleted without its audit entry");
    }
}
