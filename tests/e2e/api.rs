//! Acceptance for the HTTPS API against the running daemon: TLS versions and
//! the certificate fingerprint, the RBAC matrix of every route, the
//! first-start admin, login throttling, TOTP (codes computed by Python's
//! standard library, an independent implementation), CSRF, path traversal,
//! and slow or idle clients that must not starve others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::{heavy, timed};

/// A daemon with one camera and the API on; the admin's one-time password
/// changed to `ADMIN_PW`; a viewer, an operator and an operator API token.
const ADMIN_PW: &str = "admin password 2026";
const USER_PW: &str = "a user password 2026";

struct Setup {
    _cam: Camera,
    v: Vigil,
    api: Api,
    token: String,
}

fn setup() -> Setup {
    setup_with("")
}

fn setup_with(http_extra: &str) -> Setup {
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "cam",
            url: cam.url("/h264"),
        }],
        10,
    );
    v.enable_http(http_extra);
    v.start();
    let port = v.https_port();
    let api = Api { port };
    let otp = v.first_admin_password();
    assert!(wait_for(Duration::from_secs(20), || (curl(
        port,
        "GET",
        "/health/live",
        &[],
        None
    )
    .0 == 200)
        .then_some(()))
    .is_some());
    // The one-time password works, but only to change it.
    let (code, s) = api.login(v.dir.path(), "admin", &otp, None);
    assert_eq!(code, 200);
    let s = s.unwrap();
    assert_eq!(
        api.call(&s, "GET", "/api/v1/cameras", None).0,
        403,
        "blocked until the password is changed"
    );
    let body = format!(r#"{{"old_password":"{otp}","new_password":"{ADMIN_PW}"}}"#);
    assert_eq!(api.call(&s, "POST", "/api/v1/me/password", Some(&body)).0, 200);
    assert_eq!(
        api.call(&s, "GET", "/api/v1/me", None).0,
        401,
        "a password change ends the session"
    );
    for (name, role) in [("viewer1", "viewer"), ("operator1", "operator")] {
        v.add_user(name, role, USER_PW);
    }
    let o = v.cli(&[
        "tokens",
        "create",
        "--user",
        "operator1",
        "--name",
        "automation",
        "--role",
        "operator",
    ]);
    assert!(o.status.success());
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    Setup {
        _cam: cam,
        v,
        api,
        token,
    }
}

#[test]
fn rbac_matrix_covers_every_route() {
    let Setup { _cam, v, api, token } = setup();
    let dir = v.dir.path();
    let viewer = api.login(dir, "viewer1", USER_PW, None).1.expect("viewer logs in");
    let operator = api.login(dir, "operator1", USER_PW, None).1.expect("operator logs in");
    let admin = api.login(dir, "admin", ADMIN_PW, None).1.expect("admin logs in");
    let bearer = format!("Authorization: Bearer {token}");

    // route, request path, body; expected status for anonymous, viewer, operator, admin, API token (operator).
    type Row = (&'static str, &'static str, &'static str, Option<&'static str>, [u16; 5]);
    let matrix: Vec<Row> = vec![
        (
            "GET /health/live",
            "GET",
            "/health/live",
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "GET /health/ready",
            "GET",
            "/health/ready",
            None,
            [200, 200, 200, 200, 200],
        ),
        ("GET /metrics", "GET", "/metrics", None, [401, 200, 200, 200, 200]),
        (
            "POST /api/v1/login",
            "POST",
            "/api/v1/login",
            Some(r#"{"name":"nobody","password":"wrong one"}"#),
            [401, 401, 401, 401, 401],
        ),
        ("GET /api/v1/me", "GET", "/api/v1/me", None, [401, 200, 200, 200, 200]),
        (
            "POST /api/v1/me/password",
            "POST",
            "/api/v1/me/password",
            Some(r#"{"old_password":"wrong","new_password":"whatever it is 1"}"#),
            [401, 403, 403, 403, 400],
        ),
        (
            "GET /api/v1/cameras",
            "GET",
            "/api/v1/cameras",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/cameras/{name}",
            "GET",
            "/api/v1/cameras/cam",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/cameras/{name}/view.mp4",
            "GET",
            "/api/v1/cameras/cam/view.mp4?start=2000-01-01T00:00:00Z&end=2000-01-01T00:01:00Z",
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET /api/v1/cameras/{name}/live.mp4",
            "GET",
            "/api/v1/cameras/nope/live.mp4",
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET /api/v1/cameras/{name}/live",
            "GET",
            "/api/v1/cameras/nope/live?stream=sub",
            None,
            [401, 404, 404, 404, 404],
        ),
        ("GET /", "GET", "/", None, [200, 200, 200, 200, 200]),
        ("GET /app.js", "GET", "/app.js", None, [200, 200, 200, 200, 200]),
        ("GET /app.css", "GET", "/app.css", None, [200, 200, 200, 200, 200]),
        (
            "GET /ui/{file}",
            "GET",
            "/ui/common.js",
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/cameras/{name}/view.json",
            "GET",
            "/api/v1/cameras/nope/view.json?start=2000-01-01T00:00:00Z&end=2000-01-01T00:01:00Z",
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET /api/v1/transcode",
            "GET",
            "/api/v1/transcode",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "POST /api/v1/cameras",
            "POST",
            "/api/v1/cameras",
            Some(r#"{"name":"NAME","url":"not a url"}"#),
            [401, 403, 403, 400, 403],
        ),
        (
            "PUT /api/v1/cameras/{name}",
            "PUT",
            "/api/v1/cameras/cam",
            Some(r#"{"url":"rtsp://127.0.0.1:9/x"}"#),
            [401, 403, 403, 409, 403],
        ),
        (
            "DELETE /api/v1/cameras/{name}",
            "DELETE",
            "/api/v1/cameras/cam",
            None,
            [401, 403, 403, 409, 403],
        ),
        (
            "GET /api/v1/cameras/{name}/snapshot.mp4",
            "GET",
            "/api/v1/cameras/nope/snapshot.mp4",
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "POST /api/v1/probe-camera",
            "POST",
            "/api/v1/probe-camera",
            Some(r#"{"url":"ftp://x/"}"#),
            [401, 403, 403, 400, 403],
        ),
        (
            "POST /api/v1/cameras/onvif",
            "POST",
            "/api/v1/cameras/onvif",
            Some(r#"{"address":"rtsp://x/"}"#),
            [401, 403, 403, 400, 403],
        ),
        (
            "GET /api/v1/onvif/discover",
            "GET",
            "/api/v1/onvif/discover?interface=nope",
            None,
            [401, 403, 403, 400, 403],
        ),
        (
            "GET /api/v1/events",
            "GET",
            "/api/v1/events?start=2000-01-01T00:00:00Z&end=2000-01-02T00:00:00Z",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/events",
            "GET",
            "/api/v1/events",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "POST /api/v1/cameras/{name}/ptz",
            "POST",
            "/api/v1/cameras/cam/ptz",
            Some(r#"{"op":"stop"}"#),
            [401, 403, 409, 409, 409],
        ),
        (
            "GET /api/v1/recordings",
            "GET",
            "/api/v1/recordings?camera=cam",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/alerts",
            "GET",
            "/api/v1/alerts?all=1",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/alerts/channels",
            "GET",
            "/api/v1/alerts/channels",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "PUT /api/v1/alerts/channels/{name}",
            "PUT",
            "/api/v1/alerts/channels/ops",
            Some(r#"{"kind":"webhook","url":"ftp://nowhere/"}"#),
            [401, 403, 403, 400, 403],
        ),
        (
            "DELETE /api/v1/alerts/channels/{name}",
            "DELETE",
            "/api/v1/alerts/channels/none",
            None,
            [401, 403, 403, 404, 403],
        ),
        (
            "POST /api/v1/alerts/channels/{name}/test",
            "POST",
            "/api/v1/alerts/channels/none/test",
            None,
            [401, 403, 403, 404, 403],
        ),
        (
            "GET /api/v1/users",
            "GET",
            "/api/v1/users",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "POST /api/v1/users",
            "POST",
            "/api/v1/users",
            Some(r#"{"name":"NAME","role":"viewer","password":"a new user password"}"#),
            [401, 403, 403, 201, 403],
        ),
        (
            "POST /api/v1/me/mfa",
            "POST",
            "/api/v1/me/mfa",
            None,
            [401, 200, 200, 200, 400],
        ),
        (
            "POST /api/v1/me/mfa/confirm",
            "POST",
            "/api/v1/me/mfa/confirm",
            Some(r#"{"code":"000000"}"#),
            [401, 400, 400, 400, 400],
        ),
        (
            "POST /api/v1/users/{name}/disable",
            "POST",
            "/api/v1/users/new-admin/disable",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "POST /api/v1/users/{name}/enable",
            "POST",
            "/api/v1/users/new-admin/enable",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "POST /api/v1/users/{name}/reset-mfa",
            "POST",
            "/api/v1/users/new-admin/reset-mfa",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "PUT /api/v1/users/{name}/cameras",
            "PUT",
            "/api/v1/users/new-admin/cameras",
            Some(r#"{"cameras":null}"#),
            [401, 403, 403, 200, 403],
        ),
        (
            "GET /api/v1/tokens",
            "GET",
            "/api/v1/tokens",
            None,
            [401, 200, 200, 200, 200],
        ),
        // A session makes tokens; a token cannot make more.
        (
            "POST /api/v1/tokens",
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"NAME"}"#),
            [401, 201, 201, 201, 403],
        ),
        (
            "DELETE /api/v1/tokens/{name}",
            "DELETE",
            "/api/v1/tokens/nope",
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET /api/v1/audit",
            "GET",
            "/api/v1/audit",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "GET /api/v1/audit/verify",
            "GET",
            "/api/v1/audit/verify",
            None,
            [401, 403, 403, 200, 403],
        ),
        (
            "GET /api/v1/recordings/{id}/manifest",
            "GET",
            "/api/v1/recordings/999999/manifest",
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET /api/v1/exports",
            "GET",
            "/api/v1/exports",
            None,
            [401, 403, 200, 200, 200],
        ),
        (
            "POST /api/v1/exports",
            "POST",
            "/api/v1/exports",
            Some(r#"{"camera":"cam","start":"2000-01-01T00:00:00Z","end":"2000-01-01T00:01:00Z"}"#),
            [401, 403, 404, 404, 404],
        ),
        (
            "GET /api/v1/exports/{id}/download",
            "GET",
            "/api/v1/exports/999/download",
            None,
            [401, 403, 404, 404, 404],
        ),
        (
            "GET /api/v1/holds",
            "GET",
            "/api/v1/holds",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "POST /api/v1/holds",
            "POST",
            "/api/v1/holds",
            Some(r#"{"recording_id":999999,"reason":"case 1"}"#),
            [401, 403, 404, 404, 404],
        ),
        (
            "POST /api/v1/holds/{id}/release",
            "POST",
            "/api/v1/holds/999/release",
            Some(r#"{"reason":"closed"}"#),
            [401, 403, 403, 404, 403],
        ),
        (
            "GET /api/v1/fixity",
            "GET",
            "/api/v1/fixity",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/device",
            "GET",
            "/api/v1/device",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "DELETE /api/v1/users/{name}",
            "DELETE",
            "/api/v1/users/nobody-here",
            None,
            [401, 403, 403, 404, 403],
        ),
        (
            "POST /api/v1/users/{name}/role",
            "POST",
            "/api/v1/users/nobody-here/role",
            Some(r#"{"role":"viewer"}"#),
            [401, 403, 403, 404, 403],
        ),
        (
            "POST /api/v1/users/{name}/password",
            "POST",
            "/api/v1/users/nobody-here/password",
            Some(r#"{"password":"a one-time password 1"}"#),
            [401, 403, 403, 404, 403],
        ),
        (
            "DELETE /api/v1/cameras/{name}/recordings",
            "DELETE",
            "/api/v1/cameras/cam/recordings",
            None,
            [401, 403, 403, 409, 403],
        ),
        (
            "GET /api/v1/timeline",
            "GET",
            "/api/v1/timeline?start=2000-01-01T00:00:00Z&end=2000-01-01T01:00:00Z",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET /api/v1/storage",
            "GET",
            "/api/v1/storage",
            None,
            [401, 200, 200, 200, 200],
        ),
        // Last: it ends the sessions.
        (
            "POST /api/v1/logout",
            "POST",
            "/api/v1/logout",
            None,
            [401, 200, 200, 200, 200],
        ),
    ];
    // Every route the server has, and only those, has a row.
    let listed = String::from_utf8_lossy(&v.cli(&["http-routes"]).stdout).to_string();
    let routes: Vec<String> = listed
        .lines()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    for r in &routes {
        assert!(
            matrix.iter().any(|m| m.0 == r),
            "route {r} has no row in the RBAC matrix"
        );
    }
    for m in &matrix {
        assert!(routes.iter().any(|r| r == m.0), "the matrix row {} is not a route", m.0);
    }
    // ...and is described in docs/openapi.yaml.
    let spec = std::fs::read_to_string(workspace().join("docs/openapi.yaml")).unwrap();
    for r in &routes {
        let (method, path) = r.split_once(' ').unwrap();
        let at = spec
            .find(&format!("\n  {path}:\n"))
            .unwrap_or_else(|| panic!("{path} is not in docs/openapi.yaml"));
        let section: String = spec[at + 1..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("   ") || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            section.contains(&format!("\n    {}:", method.to_lowercase()))
                || section.starts_with(&format!("    {}:", method.to_lowercase())),
            "{r} is not in docs/openapi.yaml"
        );
    }
    let mut failures = Vec::new();
    for (route, method, path, body, expect) in &matrix {
        for (i, who) in ["anonymous", "viewer", "operator", "admin", "token"].iter().enumerate() {
            let body = body.map(|b| b.replace("NAME", &format!("new-{who}")));
            let (code, text) = match i {
                0 => curl(api.port, method, path, &[], body.as_deref()),
                1 => api.call(&viewer, method, path, body.as_deref()),
                2 => api.call(&operator, method, path, body.as_deref()),
                3 => api.call(&admin, method, path, body.as_deref()),
                _ => curl(api.port, method, path, &["-H", &bearer], body.as_deref()),
            };
            if code != expect[i] {
                failures.push(format!("{route} as {who}: {code}, expected {} ({text})", expect[i]));
            }
        }
    }
    assert!(failures.is_empty(), "RBAC matrix:\n{}", failures.join("\n"));
}

#[test]
fn tls_13_only_and_the_fingerprint_matches() {
    let Setup { _cam, v, api, .. } = setup_with("plain_listen = \"127.0.0.1:0\"\nhost_name = \"vigil.test\"\n");
    let plain = v.logged_port("plain HTTP listener");
    // Plain HTTP only redirects to the same path over HTTPS, on the
    // configured host name whatever the Host header says.
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .args(["-H", "Host: evil.example"])
        .arg(format!("http://127.0.0.1:{plain}/api/v1/me?x=1"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("308 https://vigil.test:{}/api/v1/me?x=1", api.port)
    );
    let addr = format!("127.0.0.1:{}", api.port);
    let s_client = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(["s_client", "-connect", &addr])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    let t12 = s_client(&["-tls1_2"]);
    assert!(
        t12.contains("alert protocol version") || t12.contains("Cipher is (NONE)"),
        "TLS 1.2 refused: {t12}"
    );
    let t13 = s_client(&["-tls1_3", "-showcerts"]);
    assert!(t13.contains("TLSv1.3"), "{t13}");
    let pem_start = t13.find("-----BEGIN CERTIFICATE-----").expect("certificate");
    let pem_end = t13.find("-----END CERTIFICATE-----").expect("certificate end") + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(&t13.as_bytes()[pem_start..pem_end])
        .unwrap();
    let fp = String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout).to_string();
    let fp = fp.trim().rsplit('=').next().unwrap_or_default().to_string();
    assert!(fp.len() == 95, "{fp}");
    assert!(v.log().contains(&format!("fingerprint={fp}")), "the log states {fp}");
}

#[test]
fn throttling_totp_csrf_and_traversal() {
    let Setup { _cam, v, api, .. } = setup();
    let dir = v.dir.path();
    // The 6th wrong password within a minute is throttled, even when right.
    for i in 0..5 {
        assert_eq!(api.login(dir, "viewer1", "wrong password", None).0, 401, "attempt {i}");
    }
    assert_eq!(api.login(dir, "viewer1", USER_PW, None).0, 429);
    let audit = String::from_utf8_lossy(&v.cli(&["audit", "tail", "-n", "50"]).stdout).to_string();
    assert!(audit.contains("throttled"), "{audit}");

    // TOTP: required once enrolled; a code works once.
    let o = v.cli(&["users", "enable-mfa", "operator1"]);
    assert!(o.status.success());
    let uri = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(api.login(dir, "operator1", USER_PW, None).0, 401, "no code");
    assert_eq!(
        api.login(dir, "operator1", USER_PW, Some("000000")).0,
        401,
        "wrong code"
    );
    let code = python_totp(&secret);
    let (c, s) = api.login(dir, "operator1", USER_PW, Some(&code));
    assert_eq!(c, 200, "right code");
    assert_eq!(
        api.login(dir, "operator1", USER_PW, Some(&code)).0,
        401,
        "the same code again"
    );
    let s = s.unwrap();

    // A state change without (or with a wrong) CSRF token is refused.
    let (c, _) = curl(
        api.port,
        "POST",
        "/api/v1/logout",
        &["-b", &s.jar.to_string_lossy()],
        None,
    );
    assert_eq!(c, 403);
    let (c, _) = curl(
        api.port,
        "POST",
        "/api/v1/logout",
        &["-b", &s.jar.to_string_lossy(), "-H", "X-CSRF-Token: 00"],
        None,
    );
    assert_eq!(c, 403);
    assert_eq!(api.call(&s, "GET", "/api/v1/me", None).0, 200, "still logged in");

    // /metrics is Prometheus text; /health/ready fails (503) when storage is not writable.
    let (c, m) = api.call(&s, "GET", "/metrics", None);
    assert!(
        c == 200 && m.contains("# TYPE vigil_up gauge") && m.contains("vigil_up 1"),
        "{m}"
    );
    assert!(m.contains("vigil_camera_streaming{camera=\"cam\"}"), "{m}");
    let rec = v.storage();
    let moved = v.path("recordings.away");
    std::fs::rename(&rec, &moved).unwrap();
    std::fs::write(&rec, b"not a directory").unwrap();
    let (c, body) = api.call(&s, "GET", "/health/ready", None);
    let anonymous = curl(api.port, "GET", "/health/ready", &[], None);
    std::fs::remove_file(&rec).unwrap();
    std::fs::rename(&moved, &rec).unwrap();
    assert_eq!(c, 503, "{body}");
    assert!(body.contains("\"storage_writable\":false"), "{body}");
    assert_eq!(
        anonymous,
        (503, r#"{"status":"not ready"}"#.to_string()),
        "anonymous: only the verdict"
    );
    assert_eq!(curl(api.port, "GET", "/health/ready", &[], None).0, 200);

    // Path traversal in any parameter fails cleanly.
    for path in [
        "/api/v1/cameras/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/cameras/../../etc/passwd",
        "/api/v1/recordings?camera=../../etc/passwd",
        "/../../../etc/passwd",
        "/api/v1/recordings?camera=cam&start=../../x",
    ] {
        let (c, body) = api.call(&s, "GET", path, None);
        assert!([400, 404].contains(&c), "{path}: {c}");
        assert!(
            body.starts_with("{\"error\"") && !body.contains("root:"),
            "{path}: {body}"
        );
    }
    // Oversized and malformed bodies: a clear 4xx.
    let big = format!(r#"{{"name":"x","password":"{}"}}"#, "a".repeat(100_000));
    assert_eq!(curl(api.port, "POST", "/api/v1/login", &[], Some(&big)).0, 413);
    assert_eq!(curl(api.port, "POST", "/api/v1/login", &[], Some("{not json")).0, 400);
}

/// TOTP by Python's standard library (RFC 6238, SHA-1, 6 digits, 30 s).
fn python_totp(secret_b32: &str) -> String {
    let py = format!(
        "import base64,hmac,hashlib,struct,time\n\
         k=base64.b32decode('{secret_b32}'+'='*(-len('{secret_b32}')%8))\n\
         h=hmac.new(k,struct.pack('>Q',int(time.time())//30),hashlib.sha1).digest()\n\
         o=h[-1]&15\n\
         print('%06d'%((struct.unpack('>I',h[o:o+4])[0]&0x7fffffff)%1000000))"
    );
    let o = Command::new("python3").args(["-c", &py]).output().expect("python3");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn idle_and_half_sent_connections_do_not_starve_others() {
    let _gate = timed(); // a reply within 1 s beside 300 idle connections; timeouts of 5 s
    let Setup { _cam, v, api, .. } = setup_with("idle_timeout_seconds = 5\n");
    // A kept-alive connection that asks nothing more is closed after the idle timeout.
    let mut kept = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{}", api.port)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = kept
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n");
    let kept_since = Instant::now();
    // Let it connect and be answered before the flood fills this address's cap.
    std::thread::sleep(Duration::from_millis(1500));
    // 300 connections from 127.0.0.1: idle TCP, never a TLS handshake.
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", api.port)) {
            idle.push(s);
        }
    }
    // Half-sent requests over completed TLS handshakes.
    let mut half = Vec::new();
    for _ in 0..5 {
        let mut c = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{}", api.port)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _ = c
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n");
        half.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    // Another client (another address) is answered at once.
    let t = Instant::now();
    let (code, _) = curl(api.port, "GET", "/health/ready", &["--interface", "127.0.0.2"], None);
    let took = t.elapsed();
    assert_eq!(code, 200);
    assert!(
        took < Duration::from_secs(1),
        "/health/ready took {took:?} beside 300 idle connections"
    );
    // The timeouts close them: the idle ones and the half-sent requests.
    std::thread::sleep(Duration::from_secs(12));
    let mut still_open = 0;
    for s in idle.iter_mut() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        let mut b = [0u8; 1];
        if let Err(e) = s.read(&mut b) {
            if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut {
                still_open += 1;
            }
        }
    }
    assert_eq!(still_open, 0, "{still_open} idle connections were not closed");
    for mut c in half {
        let done = wait_for(Duration::from_secs(5), || c.try_wait().ok().flatten());
        assert!(
            done.is_some(),
            "a half-sent request was not closed by the header timeout"
        );
        kill_and_wait(&mut c);
    }
    let closed = wait_for(Duration::from_secs(10), || kept.try_wait().ok().flatten());
    let mut out = String::new();
    let _ = kept.stdout.take().unwrap().read_to_string(&mut out);
    assert!(closed.is_some(), "an idle kept-alive connection stayed open");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let idle_closed = kept_since.elapsed();
    assert!(idle_closed >= Duration::from_secs(4), "closed after {idle_closed:?}");
    let m = curl(api.port, "GET", "/health/live", &[], None);
    assert_eq!(m.0, 200);
    drop(v);
}

/// (status, response headers) of a request whose body goes to `out`.
fn curl_to(port: u16, path: &str, extra: &[&str], out: &std::path::Path) -> (u16, String) {
    let hdr = out.with_extension("headers");
    let o = Command::new("curl")
        .args(["-sk", "-m", "60", "-o"])
        .arg(out)
        .arg("-D")
        .arg(&hdr)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let code = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0);
    (code, std::fs::read_to_string(&hdr).unwrap_or_default().to_lowercase())
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[test]
fn view_mp4_ranges_are_exactly_the_bytes_of_the_full_download() {
    let _gate = heavy(); // ten minutes of archive synthesized, then decoded whole
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "cam",
            url: cam.url("/h264"),
        }],
        2,
    );
    v.enable_http("");
    v.start();
    let port = v.https_port();
    let _ = v.first_admin_password();
    let src = wait_for(Duration::from_secs(40), || {
        v.recordings()
            .into_iter()
            .find(|r| r.camera == "cam" && r.state == "complete")
    })
    .expect("a complete recording");
    // Ten minutes of archive, made by replaying it through the recorder.
    let o = v.cli(&[
        "bench-synthesize",
        "--camera",
        "ten",
        "--source-recording",
        &src.id.to_string(),
        "--minutes",
        "10",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs: Vec<Rec> = v.recordings().into_iter().filter(|r| r.camera == "ten").collect();
    let (start, end) = (recs[0].start.clone(), recs.last().unwrap().end.clone());
    let token = String::from_utf8_lossy(
        &v.cli(&[
            "tokens", "create", "--user", "admin", "--name", "player", "--role", "viewer",
        ])
        .stdout,
    )
    .trim()
    .to_string();
    let auth = format!("Authorization: Bearer {token}");
    let path = format!("/api/v1/cameras/ten/view.mp4?start={start}&end={end}");

    let whole_path = v.path("whole.mp4");
    let (code, h) = curl_to(port, &path, &["-H", &auth], &whole_path);
    assert_eq!(code, 200, "{h}");
    let whole = std::fs::read(&whole_path).unwrap();
    assert_eq!(header(&h, "content-length"), Some(whole.len().to_string().as_str()));
    assert_eq!(header(&h, "accept-ranges"), Some("bytes"));
    let etag = header(&h, "etag").expect("an ETag").to_string();
    let probe = ffprobe(&whole_path).expect("ffprobe accepts the view");
    let frames: i64 = recs.iter().map(|r| r.frames).sum();
    assert_eq!(probe.frames as i64, frames, "every frame of the ten minutes");
    println!("view.mp4 of 10 min: {} bytes, {} frames", whole.len(), frames);

    let n = whole.len() as u64;
    let mid = n / 2;
    for (range, from, to) in [
        (format!("bytes={mid}-{}", mid + 99_999), mid, mid + 99_999),
        ("bytes=0-2047".to_string(), 0, 2047),
        (format!("bytes=-{}", 5000), n - 5000, n - 1),
        (format!("bytes={}-", n - 1234), n - 1234, n - 1),
        (format!("bytes={}-{}", n / 3, n / 3), n / 3, n / 3),
    ] {
        let out = v.path("part.bin");
        let (code, h) = curl_to(port, &path, &["-H", &auth, "-H", &format!("Range: {range}")], &out);
        assert_eq!(code, 206, "{range}: {h}");
        assert_eq!(
            header(&h, "content-range"),
            Some(format!("bytes {from}-{to}/{n}").as_str()),
            "{range}"
        );
        assert_eq!(header(&h, "etag"), Some(etag.as_str()));
        let part = std::fs::read(&out).unwrap();
        assert!(
            part == whole[from as usize..=to as usize],
            "{range}: not the same bytes as the full download"
        );
    }
    let (code, _) = curl_to(
        port,
        &path,
        &["-H", &auth, "-H", &format!("Range: bytes={n}-")],
        &v.path("x"),
    );
    assert_eq!(code, 416);
    let (code, _) = curl_to(
        port,
        &path,
        &["-H", &auth, "-H", &format!("If-None-Match: {etag}")],
        &v.path("x"),
    );
    assert_eq!(code, 304);
    let (code, _) = curl_to(port, &path, &[], &v.path("x"));
    assert_eq!(code, 401);
    // A download (an export) needs the operator role, and is audited.
    let dl = format!("{path}&download=1");
    let (code, _) = curl_to(port, &dl, &["-H", &auth], &v.path("x"));
    assert_eq!(code, 403, "a viewer cannot export");
    let op = String::from_utf8_lossy(
        &v.cli(&[
            "tokens", "create", "--user", "admin", "--name", "op", "--role", "operator",
        ])
        .stdout,
    )
    .trim()
    .to_string();
    let (code, h) = curl_to(
        port,
        &dl,
        &["-H", &format!("Authorization: Bearer {op}")],
        &v.path("dl.mp4"),
    );
    assert_eq!(code, 200);
    assert!(
        header(&h, "content-disposition").is_some_and(|d| d.starts_with("attachment")),
        "{h}"
    );
    assert_eq!(std::fs::read(v.path("dl.mp4")).unwrap(), whole);
    let audit = String::from_utf8_lossy(&v.cli(&["audit", "tail", "-n", "20"]).stdout).to_string();
    assert!(
        audit.contains("footage.download") && audit.contains("token:op"),
        "{audit}"
    );
}

#[test]
fn server_sent_events_report_camera_changes_and_new_recordings() {
    let _gate = timed(); // offline within 5 s, back within 8 s, all inside a 14 s event stream
    let Setup {
        _cam: mut cam,
        v,
        api,
        token,
    } = setup();
    let port = api.port;
    let auth = format!("Authorization: Bearer {token}");
    let listener = std::thread::spawn(move || {
        let o = Command::new("curl")
            .args(["-skN", "-m", "14", "-H", &auth])
            .arg(format!("https://127.0.0.1:{port}/api/v1/events"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).to_string()
    });
    std::thread::sleep(Duration::from_secs(2));
    cam.kill();
    assert!(v.wait_state("cam", "offline", Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(1));
    cam.restart();
    assert!(v.wait_state("cam", "streaming", Duration::from_secs(8)).is_some());
    let out = listener.join().unwrap();
    assert!(out.starts_with(": connected"), "{out}");
    assert!(
        out.contains("event: camera\ndata: {\"camera\":\"cam\",\"error\""),
        "{out}"
    );
    assert!(out.contains("\"state\":\"offline\""), "camera down: {out}");
    assert!(out.contains("\"state\":\"streaming\""), "camera up: {out}");
    assert!(
        out.contains("event: recording\n"),
        "a new recording after the reconnect: {out}"
    );
    assert_eq!(curl(api.port, "GET", "/api/v1/events", &[], None).0, 401);
}

#[test]
fn cameras_are_tested_added_changed_and_removed_through_the_api() {
    let Setup { _cam, mut v, api, .. } = setup();
    let dir = v.dir.path().to_path_buf();
    let admin = api.login(&dir, "admin", ADMIN_PW, None).1.expect("admin logs in");
    let door = Camera::start(&["--user", "u", "--password", "door-pass-4711"]);
    let url = door.url("/h264");
    let body = |pw: &str| format!(r#"{{"name":"door","url":"{url}","username":"u","password":"{pw}"}}"#);
    let field_json = |b: &str| serde_json::from_str::<serde_json::Value>(b).unwrap_or_default();

    // The test gives a verdict only: a category of the error, or the codec and size.
    let (c, b) = api.call(&admin, "POST", "/api/v1/probe-camera", Some(&body("wrong")));
    assert_eq!(c, 200);
    let r = field_json(&b);
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"], "auth failed", "{b}");
    let nowhere = format!(r#"{{"url":"rtsp://127.0.0.1:{}/h264"}}"#, free_port());
    let r = field_json(&api.call(&admin, "POST", "/api/v1/probe-camera", Some(&nowhere)).1);
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("refused"),
        "{r}"
    );
    let (_, b) = api.call(&admin, "POST", "/api/v1/probe-camera", Some(&body("door-pass-4711")));
    let r = field_json(&b);
    assert_eq!(r["ok"], true, "{b}");
    assert_eq!(r["codec"], "h264");
    assert!(
        r["width"].as_u64().unwrap_or(0) > 0 && r["height"].as_u64().unwrap_or(0) > 0,
        "{b}"
    );
    assert!(r.get("snapshot_mp4_base64").is_none(), "a verdict only: {b}");
    let snap = dir.join("snap.mp4");

    // Bad input gets a clear 400; vigil.toml's cameras are not changed here.
    let bad = r#"{"name":"door","url":"http://x/"}"#;
    let (c, b) = api.call(&admin, "POST", "/api/v1/cameras", Some(bad));
    assert!(c == 400 && b.contains("rtsp://"), "{c} {b}");
    let cam_body = format!(r#"{{"url":"{}"}}"#, url);
    assert_eq!(api.call(&admin, "PUT", "/api/v1/cameras/cam", Some(&cam_body)).0, 409);
    assert_eq!(api.call(&admin, "DELETE", "/api/v1/cameras/cam", None).0, 409);

    // Added: it records, and its password is nowhere in the clear.
    let (c, b) = api.call(&admin, "POST", "/api/v1/cameras", Some(&body("door-pass-4711")));
    assert_eq!(c, 201, "{b}");
    assert_eq!(
        api.call(&admin, "POST", "/api/v1/cameras", Some(&body("x"))).0,
        409,
        "added twice"
    );
    assert!(
        v.wait_state("door", "streaming", Duration::from_secs(20)).is_some(),
        "{}",
        v.log()
    );
    let (c, _) = curl_to(
        api.port,
        "/api/v1/cameras/door/snapshot.mp4",
        &["-b", &admin.jar.to_string_lossy()],
        &snap,
    );
    assert_eq!(c, 200);
    assert_eq!(ffprobe(&snap).expect("snapshot").frames, 1);
    let (_, list) = api.call(&admin, "GET", "/api/v1/cameras", None);
    assert!(
        list.contains("\"source\":\"web\"") && !list.contains("door-pass-4711"),
        "{list}"
    );
    for f in ["vigil.db", "vigil.db-wal"] {
        let b = std::fs::read(v.path(f)).unwrap_or_default();
        assert!(!contains_bytes(&b, b"door-pass-4711"), "{f} holds the camera password");
    }

    // Kept across a restart (on a new ephemeral port).
    assert!(v.stop());
    v.start();
    assert!(
        v.wait_state("door", "streaming", Duration::from_secs(20)).is_some(),
        "{}",
        v.log()
    );
    let api = Api { port: v.https_port() };

    // Disabled: it stops. Removed: gone from the running set, recordings kept.
    let admin = api.login(&dir, "admin", ADMIN_PW, None).1.expect("admin logs in again");
    let off = format!(r#"{{"url":"{url}","username":"u","enabled":false}}"#);
    assert_eq!(api.call(&admin, "PUT", "/api/v1/cameras/door", Some(&off)).0, 200);
    assert!(v.wait_state("door", "stopped", Duration::from_secs(10)).is_some());
    assert_eq!(api.call(&admin, "DELETE", "/api/v1/cameras/door", None).0, 200);
    assert_eq!(api.call(&admin, "DELETE", "/api/v1/cameras/door", None).0, 404);
    let audit = String::from_utf8_lossy(&v.cli(&["audit", "tail", "-n", "100"]).stdout).to_string();
    for a in ["camera.add", "camera.update", "camera.delete"] {
        assert!(audit.contains(a), "{a}: {audit}");
    }
}
