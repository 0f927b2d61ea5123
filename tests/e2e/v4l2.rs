//! A V4L2 camera whose device is missing (this host has no V4L2 devices:
//! the vivid camera is recorded in the VM tests): it is offline with the
//! device and the reason named, retried, and the RTSP camera beside it
//! records unaffected. `cameras probe` runs without a config.

use std::time::Duration;
use vigil_e2e::*;

#[test]
fn a_missing_usb_camera_is_offline_with_its_reason_and_others_record() {
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[
            Cam {
                name: "door",
                url: cam.url("/h264"),
            },
            Cam {
                name: "usb",
                url: "v4l2:///dev/video-vigil-absent?format=mjpeg&width=640&height=480&fps=15".into(),
            },
        ],
        3,
    );
    v.start();
    assert!(
        v.wait_state("door", "streaming", Duration::from_secs(20)).is_some(),
        "the RTSP camera records: {}",
        v.log()
    );
    assert!(v.wait_state("usb", "offline", Duration::from_secs(20)).is_some());
    let listing = text(&v.cli(&["cameras"]));
    let line = listing
        .lines()
        .find(|l| l.starts_with("usb"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("/dev/video-vigil-absent") && line.contains("No such file"),
        "the error names the device and the reason: {line}"
    );
    // Retried: more than one open attempt within a few seconds.
    assert!(
        wait_for(Duration::from_secs(10), || (v
            .log()
            .matches("opening V4L2 device")
            .count()
            >= 2)
            .then_some(()))
        .is_some(),
        "retried: {}",
        v.log()
    );
    assert!(
        wait_for(Duration::from_secs(20), || v
            .recordings()
            .iter()
            .any(|r| r.camera == "door")
            .then_some(()))
        .is_some(),
        "the RTSP camera has recordings"
    );
    assert!(v.stop(), "clean stop");
    let probe = v.cli(&["cameras", "probe", "--json"]);
    assert!(probe.status.success());
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("probe --json is JSON");
    assert!(json.is_array());
}
