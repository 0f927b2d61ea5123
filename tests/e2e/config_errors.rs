//! Acceptance: each bad config gives one clear line (file:line: key: message)
//! on stderr and exit status 2.

use vigil_e2e::*;

fn run_with(v: &Vigil, text: &str, args: &[&str]) -> (Option<i32>, String) {
    std::fs::write(&v.config, text).unwrap();
    let o = v.cli(args);
    (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string())
}

#[test]
fn bad_configs_give_one_line_and_exit_2() {
    let v = Vigil::new(
        &[Cam {
            name: "a",
            url: "rtsp://127.0.0.1:9/h264".into(),
        }],
        10,
    );
    let good = std::fs::read_to_string(&v.config).unwrap();
    let cfg = v.config.display().to_string();
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let unknown = good.replace("segment_seconds = 10", "segment_seconds = 10\nsegment_secnds = 5");
    let bad_url = good.replace("rtsp://127.0.0.1:9/h264", "rtsp//127.0.0.1/h264");
    let dup = format!("{good}\n[[camera]]\nname = \"a\"\nurl = \"rtsp://127.0.0.1:9/x\"\n");
    let bad_v4l2 = good.replace("rtsp://127.0.0.1:9/h264", "v4l2:///dev/video0?format=rgb24");
    let missing_key = good.replace("kek.key", "no-such.key");
    let bad_board = format!("{good}\n[board]\nprofile = \"toaster\"\n");
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "unknown key",
            unknown.clone(),
            line_of(&unknown, "segment_secnds"),
            "recording.segment_secnds",
        ),
        ("bad URL", bad_url.clone(), line_of(&bad_url, "rtsp//"), "camera.url"),
        (
            "bad V4L2 option",
            bad_v4l2.clone(),
            line_of(&bad_v4l2, "rgb24"),
            "camera.url",
        ),
        (
            "unknown board profile",
            bad_board.clone(),
            line_of(&bad_board, "toaster"),
            "board.profile",
        ),
        (
            "duplicate camera",
            dup.clone(),
            dup.lines()
                .collect::<Vec<_>>()
                .iter()
                .rposition(|l| l.contains("name = \"a\""))
                .unwrap()
                + 1,
            "camera.name",
        ),
        (
            "missing key file",
            missing_key.clone(),
            line_of(&missing_key, "no-such.key"),
            "keys.file",
        ),
    ];
    // Export targets inside this test's own directory, never a fixed path
    // that another test or another run could hold.
    let x_mp4 = v.path("x.mp4").to_string_lossy().to_string();
    for (what, text, line, key) in cases {
        for cmd in [
            &["run"][..],
            &["verify"],
            &[
                "export",
                "--camera",
                "a",
                "--start",
                "2026-01-01T00:00:00Z",
                "--end",
                "2026-01-01T00:01:00Z",
                "--out",
                &x_mp4,
            ],
        ] {
            let (code, err) = run_with(&v, &text, cmd);
            println!("{what} ({}): {}", cmd[0], err.trim());
            assert_eq!(code, Some(2), "{what}: exit status");
            assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
            assert!(
                err.contains(&format!("{cfg}:{line}: {key}: ")),
                "{what}: names file, line {line} and key {key}: {err}"
            );
        }
    }
    // Usage errors exit 2 too.
    std::fs::write(&v.config, &good).unwrap();
    let y_mp4 = v.path("y.mp4").to_string_lossy().to_string();
    assert_eq!(v.cli(&["export", "--camera", "a"]).status.code(), Some(2));
    assert_eq!(
        v.cli(&[
            "export",
            "--camera",
            "a",
            "--start",
            "yesterday",
            "--end",
            "now",
            "--out",
            &y_mp4
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        v.cli(&["keys", "init"]).status.code(),
        Some(2),
        "keys init refuses to overwrite"
    );
}

/// Recording on a directory that is not on a dm-crypt (LUKS2) volume is
/// refused, naming the directory and the override; with the override the
/// daemon runs and health shows a warning.
#[test]
fn an_unencrypted_recordings_volume_is_refused_without_the_override() {
    let mut v = Vigil::new(
        &[Cam {
            name: "a",
            url: "rtsp://127.0.0.1:9/h264".into(),
        }],
        10,
    );
    let good = std::fs::read_to_string(&v.config).unwrap();
    let strict = good.replace("allow_unencrypted_volume = true", "");
    assert_ne!(good, strict);
    std::fs::write(&v.config, &strict).unwrap();
    let mut child = std::process::Command::new(vigil_bin())
        .arg("--config")
        .arg(&v.config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil run");
    let status = wait_bounded(&mut child, std::time::Duration::from_secs(20)).expect("vigil run exits");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    println!("{err}");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("not a dm-crypt LUKS2 volume"), "{err}");
    assert!(err.contains("allow_unencrypted_volume = true"), "{err}");
    assert!(err.contains("refusing to record"), "{err}");
    assert!(!v.storage().join("a").exists(), "nothing was recorded");

    // With the override: it runs, and health says why it is not ideal.
    std::fs::write(&v.config, &good).unwrap();
    v.enable_http("");
    v.start();
    let port = v.https_port();
    // Anonymous readiness says only ok; the details are for a logged-in caller.
    let (code, body) = curl(port, "GET", "/health/ready", &[], None);
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let jar = v.path("jar").to_string_lossy().to_string();
    let login = format!(r#"{{"name":"admin","password":"{}"}}"#, v.first_admin_password());
    assert_eq!(curl(port, "POST", "/api/v1/login", &["-c", &jar], Some(&login)).0, 200);
    let (code, body) = curl(port, "GET", "/health/ready", &["-b", &jar], None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"storage_encrypted_volume\":false"), "{body}");
    assert!(body.contains("not a dm-crypt LUKS2 volume"), "{body}");
    assert!(v.log().contains("UNENCRYPTED VOLUME"));
    assert!(v.stop());
}
