//! Acceptance: headless Chromium (Debian's, driven over the DevTools
//! protocol by tests/fixtures/ui_check.py) logs in with the one-time
//! password, changes it, enrols TOTP from the QR page (admins must), logs in
//! with password and TOTP,
//! sees the dashboard, watches a recording camera live, plays back a
//! recorded range from a click on its timeline bar, exports it and makes a
//! signed bundle. Screenshots are kept in target/test-artifacts/ui/. The
//! acceptance suite of issue 15 (four cameras, both screen sizes,
//! axe-core) is tests/ui/run.py, run by scripts/ui-test.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_e2e::*;

use crate::common::heavy;

#[test]
fn chromium_logs_in_with_totp_watches_live_plays_back_and_exports() {
    let _gate = heavy(); // Chromium; the live view within 2 s of real time
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "cam",
            url: cam.url("/h264"),
        }],
        4,
    );
    v.enable_http("require_mfa_for_admins = true\n");
    v.start();
    let port = v.https_port();
    let otp = v.first_admin_password();
    let recs = wait_for(Duration::from_secs(60), || {
        let r: Vec<Rec> = v.recordings().into_iter().filter(|r| r.state == "complete").collect();
        (r.len() >= 2).then_some(r)
    })
    .expect("two complete recordings");
    let pw = "chromium test password";
    let shots = workspace().join("target/test-artifacts/ui");
    let _ = std::fs::remove_dir_all(&shots);
    let mut child = Command::new("/usr/bin/python3")
        .arg(workspace().join("tests/fixtures/ui_check.py"))
        .args(["--url", &format!("https://127.0.0.1:{port}")])
        .args([
            "--user",
            "admin",
            "--one-time-password",
            &otp,
            "--password",
            pw,
            "--camera",
            "cam",
        ])
        .args(["--start", &recs[0].start, "--end", &recs[1].end])
        .arg("--shots")
        .arg(&shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("python3 tests/fixtures/ui_check.py (scripts/test installs python3-websocket and chromium)");
    let pid = child.id();
    let done = wait_for(Duration::from_secs(120), || child.try_wait().ok().flatten());
    if done.is_none() {
        // Chromium is in the driver's process group: kill the whole group.
        let _ = Command::new("kill").args(["-9", &format!("-{pid}")]).status();
    }
    let out = child.wait_with_output().expect("driver output");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(
        r["ok"],
        true,
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.log()
    );
    assert!(r["dashboard"].to_string().contains("streaming"), "{}", r["dashboard"]);
    let advanced = r["live_advanced_s"].as_f64().unwrap_or(0.0);
    assert!(advanced > 1.0, "live video advanced {advanced} s in 2 s");
    let lag = r["live_edge_lag_s"].as_f64().unwrap_or(99.0);
    assert!(
        (0.0..2.0).contains(&lag),
        "live view {lag} s behind the newest frame received"
    );
    let behind = r["live_lag_s"].as_f64().unwrap_or(99.0);
    assert!((0.0..2.0).contains(&behind), "live picture {behind} s behind real time");
    assert!(r["playback_duration_s"].as_f64().unwrap_or(0.0) > 4.0);
    assert!(r["timeline_segments"].as_u64().unwrap_or(0) >= 1);
    let seek = r["seek_error_s"].as_f64().unwrap_or(99.0);
    assert!(
        seek.abs() < 1.0,
        "a click on the timeline played {seek} s away from the instant clicked"
    );
    assert_eq!(r["export"]["status"], 200);
    assert_eq!(r["export"]["type"], "video/mp4");
    assert!(r["export"]["bytes"].as_u64().unwrap_or(0) > 10_000);
    assert!(
        r["bundle_message"].to_string().contains("SHA-256"),
        "{}",
        r["bundle_message"]
    );
    assert!(
        r["evidence_rows"].to_string().contains("Download"),
        "{}",
        r["evidence_rows"]
    );
    assert!(
        r["device_line"].to_string().contains("fingerprint"),
        "{}",
        r["device_line"]
    );
    assert_eq!(r["qr_shown"], true);
    assert_eq!(r["phone_fits"], true, "the dashboard fits a 390 px wide phone screen");
    for s in [
        "1-login.png",
        "2-enrol.png",
        "3-dashboard.png",
        "4-live.png",
        "5-playback.png",
        "6-evidence.png",
    ] {
        assert!(shots.join(s).exists(), "screenshot {s}");
    }
    let audit = String::from_utf8_lossy(&v.cli(&["audit", "tail", "-n", "40"]).stdout).to_string();
    for action in [
        "login",
        "user.password",
        "user.mfa.enable",
        "logout",
        "footage.play",
        "footage.download",
        "export.bundle",
    ] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
}
