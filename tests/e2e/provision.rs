//! `vigil provision`, the daemon-side step of provisioning (after `keys
//! init`): the device signing key, the HTTPS certificate and the first admin
//! with a one-time password written to a private file, then a report.
//! Idempotent: a second run changes nothing and reports the same identity.

use std::os::unix::fs::PermissionsExt;

use vigil_e2e::*;

#[test]
fn provisioning_makes_the_identity_once_and_reports_it() {
    let mut v = Vigil::new(
        &[Cam {
            name: "a",
            url: "rtsp://127.0.0.1:9/h264".into(),
        }],
        10,
    );
    v.enable_http("");
    let pw_file = v.path("admin-password");
    let report = v.path("report.json");
    let o = v.cli(&[
        "provision",
        "--admin-password-file",
        &pw_file.to_string_lossy(),
        "--recovery-key",
        "escrow file /media/usb/recovery.txt",
        "--report",
        &report.to_string_lossy(),
    ]);
    println!("{}", text(&o));
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let device_id = r["device_id"].as_str().unwrap().to_string();
    let fp = r["signing_key_fingerprint_sha256"].as_str().unwrap().to_string();
    let cert = r["https_certificate_fingerprint_sha256"].as_str().unwrap().to_string();
    assert!(
        device_id.starts_with("vigil-") && fp.len() == 64 && cert.len() == 95,
        "{r}"
    );
    assert_eq!(r["recovery_key"], "escrow file /media/usb/recovery.txt");
    assert_eq!(r["recordings_volume_luks2"], false);
    let mode = std::fs::metadata(&pw_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pw = std::fs::read_to_string(&pw_file).unwrap().trim().to_string();
    assert!(pw.len() >= 16);
    assert!(
        !text(&o).contains(&pw),
        "the password is not printed when it goes to a file"
    );

    // Again: same identity, admin untouched, the password file not rewritten.
    let o = v.cli(&["provision", "--recovery-key", "escrow file /media/usb/recovery.txt"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&device_id) && t.contains(&fp) && t.contains(&cert), "{t}");
    assert!(t.contains("admin:                     exists"), "{t}");
    let dev = text(&v.cli(&["device"]));
    assert!(dev.contains(&fp), "{dev}");

    // The daemon starts with that identity: no second first-start admin,
    // the certificate it serves is the one reported, the password logs in.
    v.start();
    let port = v.https_port();
    assert!(!v.log().contains("FIRST START"), "{}", v.log());
    assert!(v.log().contains(&cert), "the daemon serves another certificate");
    let body = format!(r#"{{"name":"admin","password":"{pw}"}}"#);
    let (code, b) = curl(port, "POST", "/api/v1/login", &[], Some(&body));
    assert_eq!(code, 200, "{b}");
    assert!(b.contains("\"must_change_password\":true"), "{b}");
    assert!(v.stop());
    let audit = text(&v.cli(&["audit", "tail", "-n", "50"]));
    assert!(audit.contains("device.provision"), "{audit}");
}
