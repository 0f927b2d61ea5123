//! Acceptance for the management API against the running daemon: users
//! deleted, demoted and given a one-time password by an admin (the last
//! enabled admin stays; an admin cannot act on themself), the audit log
//! filtered, the playback timeline, the storage figures, and camera URLs
//! listed without credentials.

use std::time::Duration;

use serde_json::Value;
use vigil_e2e::*;

const ADMIN_PW: &str = "admin password 2026";
const USER_PW: &str = "a user password 2026";
/// A vigil.toml camera whose URL carries a user and a password in its
/// query (nothing answers on port 9: it never records).
const SECRET_URL: &str = "rtsp://127.0.0.1:9/x?user=bob&password=hunter22&channel=2";

struct Site {
    _cam: Camera,
    v: Vigil,
    port: u16,
}

impl Site {
    fn api(&self) -> Api {
        Api { port: self.port }
    }

    /// Logs in; (status, the session when 200).
    fn login(&self, name: &str, password: &str) -> (u16, Option<Session>) {
        self.api().login(self.v.dir.path(), name, password, None)
    }

    fn session(&self, name: &str, password: &str) -> Session {
        let (code, s) = self.login(name, password);
        s.unwrap_or_else(|| panic!("{name} logs in: {code}"))
    }

    fn call(&self, s: &Session, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.api().call(s, method, path, body)
    }

    fn add_user(&self, name: &str, role: &str) {
        self.v.add_user(name, role, USER_PW);
    }
}

fn json(b: &str) -> Value {
    serde_json::from_str(b).unwrap_or_default()
}

/// A daemon recording camera `cam` in 2 s segments, with the camera of
/// [`SECRET_URL`], the API on, the admin's password changed to `ADMIN_PW`.
fn start() -> Site {
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[
            Cam {
                name: "cam",
                url: cam.url("/h264"),
            },
            Cam {
                name: "hidden",
                url: SECRET_URL.to_string(),
            },
        ],
        2,
    );
    v.enable_http("");
    v.start();
    let port = v.https_port();
    let otp = v.first_admin_password();
    let b = Site { _cam: cam, v, port };
    let s = b.session("admin", &otp);
    let body = format!(r#"{{"old_password":"{otp}","new_password":"{ADMIN_PW}"}}"#);
    assert_eq!(b.call(&s, "POST", "/api/v1/me/password", Some(&body)).0, 200);
    b
}

#[test]
fn users_are_managed_and_the_last_admin_stays() {
    let b = start();
    b.add_user("viewer1", "viewer");
    b.add_user("operator1", "operator");
    b.add_user("gone", "viewer");
    let admin = b.session("admin", ADMIN_PW);
    let viewer = b.session("viewer1", USER_PW);
    let operator = b.session("operator1", USER_PW);

    // Viewers and operators may use none of the new admin routes.
    let admin_only: [(&str, &str, Option<&str>); 4] = [
        ("DELETE", "/api/v1/users/gone", None),
        ("POST", "/api/v1/users/gone/role", Some(r#"{"role":"admin"}"#)),
        (
            "POST",
            "/api/v1/users/gone/password",
            Some(r#"{"password":"a one-time password 1"}"#),
        ),
        ("DELETE", "/api/v1/cameras/hidden/recordings", None),
    ];
    for (method, path, body) in admin_only {
        for (who, s) in [("viewer", &viewer), ("operator", &operator)] {
            assert_eq!(b.call(s, method, path, body).0, 403, "{method} {path} as {who}");
        }
    }

    // The only admin cannot be demoted, disabled or deleted, by anyone.
    for (method, path, body) in [
        ("POST", "/api/v1/users/admin/role", Some(r#"{"role":"viewer"}"#)),
        ("POST", "/api/v1/users/admin/disable", None),
        ("DELETE", "/api/v1/users/admin", None),
    ] {
        let (code, text) = b.call(&admin, method, path, body);
        assert_eq!(code, 409, "{method} {path}: {text}");
    }
    // With a second admin, an admin still cannot delete or demote themself...
    assert_eq!(
        b.call(
            &admin,
            "POST",
            "/api/v1/users/operator1/role",
            Some(r#"{"role":"admin"}"#)
        )
        .0,
        200
    );
    let (code, text) = b.call(&admin, "DELETE", "/api/v1/users/admin", None);
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("yourself"), "{text}");
    assert_eq!(
        b.call(&admin, "POST", "/api/v1/users/admin/role", Some(r#"{"role":"viewer"}"#))
            .0,
        409
    );
    // ...and the new role applies to the live session at its next request.
    assert_eq!(b.call(&operator, "GET", "/api/v1/users", None).0, 200, "now an admin");
    assert_eq!(
        b.call(
            &admin,
            "POST",
            "/api/v1/users/operator1/role",
            Some(r#"{"role":"operator"}"#)
        )
        .0,
        200
    );
    assert_eq!(
        b.call(&operator, "GET", "/api/v1/users", None).0,
        403,
        "an operator again"
    );
    assert_eq!(
        b.call(&admin, "POST", "/api/v1/users/viewer1/role", Some(r#"{"role":"boss"}"#))
            .0,
        400
    );

    // A reset password is one-time: the sessions end, the next login must change it.
    let reset = r#"{"password":"a one-time password 1"}"#;
    assert_eq!(
        b.call(&admin, "POST", "/api/v1/users/viewer1/password", Some(reset)).0,
        200
    );
    assert_eq!(b.call(&viewer, "GET", "/api/v1/me", None).0, 401, "sessions ended");
    assert_eq!(b.login("viewer1", USER_PW).0, 401, "the old password is gone");
    let (code, body) = curl(
        b.port,
        "POST",
        "/api/v1/login",
        &[],
        Some(r#"{"name":"viewer1","password":"a one-time password 1"}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(json(&body)["must_change_password"], true, "{body}");
    let viewer = b.session("viewer1", "a one-time password 1");
    assert_eq!(b.call(&viewer, "GET", "/api/v1/cameras", None).0, 403);

    // A deleted user's session stops working at once.
    let gone = b.session("gone", USER_PW);
    assert_eq!(b.call(&gone, "GET", "/api/v1/me", None).0, 200);
    assert_eq!(b.call(&admin, "DELETE", "/api/v1/users/gone", None).0, 200);
    assert_eq!(b.call(&gone, "GET", "/api/v1/me", None).0, 401);
    assert_eq!(b.call(&admin, "DELETE", "/api/v1/users/gone", None).0, 404);
    assert_eq!(b.login("gone", USER_PW).0, 401);

    // The audit log, filtered by action prefix, newest first.
    let (code, body) = b.call(&admin, "GET", "/api/v1/audit?action=user.", None);
    assert_eq!(code, 200, "{body}");
    let entries = json(&body);
    let entries = entries.as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{body}");
    for e in &entries {
        assert!(e["action"].as_str().unwrap_or_default().starts_with("user."), "{e}");
    }
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["user.delete", "user.role", "user.password.reset"] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
    assert_eq!(actions[0], "user.delete", "newest first: {actions:?}");
    let ids: Vec<i64> = entries.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let (_, body) = b.call(&admin, "GET", "/api/v1/audit?actor=user:admin&action=user.delete", None);
    let only = json(&body);
    assert_eq!(only.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(only[0]["target"], "gone");
    assert_eq!(b.call(&admin, "GET", "/api/v1/audit?since=yesterday", None).0, 400);
}

#[test]
fn timeline_storage_and_the_camera_list() {
    let b = start();
    b.add_user("viewer1", "viewer");
    let viewer = b.session("viewer1", USER_PW);
    let admin = b.session("admin", ADMIN_PW);
    // A few 2 s segments.
    assert!(
        wait_for(Duration::from_secs(30), || (b.v.recordings().len() >= 3).then_some(())).is_some(),
        "{}",
        b.v.log()
    );

    // The timeline: the recording camera's spans, merged (segments follow
    // each other without gaps), within the window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let (start, end) = (rfc3339(now - 3600.0), rfc3339(now + 60.0));
    let (code, body) = b.call(
        &viewer,
        "GET",
        &format!("/api/v1/timeline?start={start}&end={end}"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let rows = json(&body);
    let cam = rows
        .as_array()
        .and_then(|r| r.iter().find(|c| c["camera"] == "cam"))
        .cloned()
        .unwrap_or_else(|| panic!("cam on the timeline: {body}"));
    assert_eq!(cam["codec"], "h264");
    let spans = cam["spans"].as_array().cloned().unwrap_or_default();
    assert!(
        !spans.is_empty() && spans.len() < b.v.recordings().len(),
        "merged: {body}"
    );
    for s in &spans {
        let (s0, s1) = (
            epoch_secs(s["start"].as_str().unwrap_or_default()),
            epoch_secs(s["end"].as_str().unwrap_or_default()),
        );
        assert!(s0 < s1 && s0 >= now - 3600.0 - 1.0, "{s}");
    }
    assert_eq!(b.call(&viewer, "GET", "/api/v1/timeline", None).0, 400);

    // The storage figures.
    let (code, body) = b.call(&viewer, "GET", "/api/v1/storage", None);
    assert_eq!(code, 200, "{body}");
    let s = json(&body);
    for k in ["total_bytes", "free_bytes", "recordings_bytes", "floor_bytes"] {
        assert!(s[k].as_u64().is_some(), "{k}: {body}");
    }
    assert!(s["recordings_bytes"].as_u64().unwrap_or(0) > 0, "{body}");
    let days = s["days"].as_array().cloned().unwrap_or_default();
    assert_eq!(days.len(), 14, "{body}");
    let recorded: u64 = days.iter().filter_map(|d| d["bytes"].as_u64()).sum();
    assert!(recorded > 0, "{body}");
    assert_eq!(days[13]["day"].as_str().map(str::len), Some(10), "{body}");
    // Null before the first full UTC day (a number if the test crossed midnight).
    let estimate = &s["retained_days_estimate"];
    assert!(estimate.is_null() || estimate.is_number(), "{body}");
    assert!(s["oldest_recording"].is_string(), "{body}");

    // The camera list: codec, last recording, and no credentials in a URL.
    let (code, list) = b.call(&viewer, "GET", "/api/v1/cameras", None);
    assert_eq!(code, 200, "{list}");
    assert!(!list.contains("hunter22") && !list.contains("bob"), "{list}");
    let cams = json(&list);
    let find = |n: &str| {
        cams.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == n))
            .cloned()
            .unwrap_or_default()
    };
    let hidden = find("hidden");
    // Only admins see a URL, and even they not its login (an edit that
    // leaves the URL out keeps the stored one).
    assert!(hidden.get("url").is_some_and(Value::is_null), "{list}");
    let (_, admin_list) = b.call(&admin, "GET", "/api/v1/cameras", None);
    assert!(
        !admin_list.contains("hunter22") && !admin_list.contains("bob"),
        "{admin_list}"
    );
    let shown = json(&admin_list)
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "hidden"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(shown["url"], "rtsp://127.0.0.1:9/x?...", "{admin_list}");
    assert_eq!(shown["url_redacted"], true, "{admin_list}");
    assert_eq!(hidden["archived"], false);
    assert!(hidden["last_recording"].is_null());
    let cam = find("cam");
    assert_eq!(cam["codec"], "h264", "{list}");
    assert_eq!(cam["archived"], false);
    assert!(cam["last_recording"]["fps"].as_f64().unwrap_or(0.0) > 0.0, "{list}");
    assert!(cam["last_recording"]["bitrate_bps"].as_u64().unwrap_or(0) > 0, "{list}");
    assert!(cam["last_recording"]["end"].is_string(), "{list}");

    // A configured camera's recordings are not deleted as an archive.
    assert_eq!(b.call(&admin, "DELETE", "/api/v1/cameras/cam/recordings", None).0, 409);
    assert_eq!(
        b.call(&admin, "DELETE", "/api/v1/cameras/nothing-here/recordings", None)
            .0,
        404
    );
}
