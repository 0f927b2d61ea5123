//! Acceptance for the secrets store: a camera logs in with a password kept
//! only in the encrypted store; the sentinel value appears nowhere (database,
//! WAL, log, any listing); reads and writes are audited; rotation takes
//! effect; a plaintext config password works with a warning.

use std::time::Duration;

use vigil_e2e::*;

#[test]
fn camera_password_from_the_store_never_leaks() {
    let sentinel = format!("S3ntinel-{}", std::process::id());
    let cam = Camera::start(&["--user", "vigil", "--password", &sentinel]);
    let mut v = Vigil::with_keys(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        2,
        FILE_KEYS,
        "username = \"vigil\"\npassword_secret = \"cam-c\"\n",
        &[],
    );
    // The daemon refuses to start while the named secret does not exist.
    let o = v.cli(&["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("camera.password_secret: no secret named \"cam-c\""),
        "{}",
        text(&o)
    );

    let soon = rfc3339(now_epoch() + 5.0 * 86400.0);
    let o = v.cli_stdin(
        &["secrets", "set", "cam-c", "--expires", &soon],
        format!("{sentinel}\n").as_bytes(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = v.cli_stdin(&["secrets", "set", "webhook-token"], b"another-value");
    assert!(o.status.success(), "{}", text(&o));

    v.start();
    assert!(
        v.wait_state("c", "streaming", Duration::from_secs(20)).is_some(),
        "the camera accepted the stored password:\n{}",
        v.log()
    );
    assert!(wait_for(Duration::from_secs(30), || v
        .recordings()
        .iter()
        .any(|r| r.state == "complete")
        .then_some(()))
    .is_some());
    assert!(v.stop());

    let mut listings = String::new();
    for args in [
        &["secrets", "list"][..],
        &["keys", "status"],
        &["cameras"],
        &["recordings"],
        &["audit", "tail", "-n", "100"],
    ] {
        listings.push_str(&text(&v.cli(args)));
    }
    assert!(
        listings.contains("cam-c") && listings.contains("expiring soon"),
        "{listings}"
    );
    assert!(
        listings.contains("secret.read") && listings.contains("daemon"),
        "{listings}"
    );
    let mut places = vec![
        ("listings", listings.into_bytes()),
        ("log", v.log().into_bytes()),
        ("config", std::fs::read(&v.config).unwrap()),
    ];
    for f in ["vigil.db", "vigil.db-wal"] {
        places.push((f, std::fs::read(v.path(f)).unwrap_or_default()));
    }
    for (what, bytes) in &places {
        assert!(
            !contains_bytes(bytes, sentinel.as_bytes()),
            "the secret appears in the {what}"
        );
        assert!(
            !contains_bytes(bytes, b"another-value"),
            "a secret appears in the {what}"
        );
    }
    assert!(v.cli(&["audit", "verify"]).status.success());

    // Rotation takes effect: the camera still expects the old password.
    let o = v.cli_stdin(&["secrets", "rotate", "cam-c"], b"a-new-password");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&v.cli(&["secrets", "list"])).contains(" 2 "), "version 2");
    v.start();
    let err = wait_for(Duration::from_secs(20), || {
        let o = text(&v.cli(&["cameras"]));
        (o.contains("offline") && o.contains("401")).then_some(o)
    });
    assert!(
        err.is_some(),
        "a wrong password is an offline camera with the reason:\n{}",
        v.log()
    );
    assert!(v.stop());

    // A plaintext password in the config still works, with a warning saying how to move it.
    let cfg = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        cfg.replace("password_secret = \"cam-c\"", &format!("password = \"{sentinel}\"")),
    )
    .unwrap();
    v.start();
    assert!(
        v.wait_state("c", "streaming", Duration::from_secs(20)).is_some(),
        "{}",
        v.log()
    );
    assert!(v.stop());
    let log = v.log();
    assert!(
        log.contains("plain text") && log.contains("vigil secrets set c-password"),
        "{log}"
    );
    assert!(!log.contains(&sentinel), "the plaintext password is not logged");
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
