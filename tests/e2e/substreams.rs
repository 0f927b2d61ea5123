//! Main and sub streams (issue 17): a camera at 1280x720 with a sub stream
//! from a second camera at 640x360, recorded (`record_sub`). Both are
//! recorded (the sub as the camera `door.sub`) at their own sizes, and live
//! view serves each with `?stream=main|sub`, saying which in `X-Vigil-Stream`.

use std::process::Command;
use std::time::Duration;

use vigil_e2e::*;

const PW: &str = "a viewer password 2026";

/// The (width, height) of the first `avc1` sample entry in an MP4.
fn avc1_size(mp4: &[u8]) -> Option<(u16, u16)> {
    let at = mp4.windows(4).position(|w| w == b"avc1")?;
    // After the type: 6 reserved, data reference index, 16 bytes of
    // pre-defined and reserved fields, then width and height.
    let wh = mp4.get(at + 4 + 24..at + 4 + 28)?;
    Some((u16::from_be_bytes([wh[0], wh[1]]), u16::from_be_bytes([wh[2], wh[3]])))
}

/// A few seconds of a live stream: (headers, body).
fn live(port: u16, jar: &std::path::Path, query: &str, dir: &std::path::Path) -> (String, Vec<u8>) {
    let body = dir.join(format!("live-{}.mp4", query.replace(['=', '&'], "-")));
    let headers = dir.join(format!("live-{}.txt", query.replace(['=', '&'], "-")));
    let _ = Command::new("curl")
        .args(["-sk", "-m", "6", "-b"])
        .arg(jar)
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .arg(format!("https://127.0.0.1:{port}/api/v1/cameras/door/live?{query}"))
        .status()
        .expect("curl");
    (
        std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

#[test]
fn main_and_sub_streams_are_recorded_and_served_live_at_their_sizes() {
    let main = Camera::start(&["--size", "1280x720"]);
    let sub = Camera::start(&["--size", "640x360"]);
    let extra = format!("sub_url = \"{}\"\nrecord_sub = true\n", sub.url("/h264"));
    let mut v = Vigil::with_keys(
        &[Cam {
            name: "door",
            url: main.url("/h264"),
        }],
        4,
        FILE_KEYS,
        &extra,
        &[],
    );
    v.enable_http("");
    v.start();
    let api = Api { port: v.https_port() };
    v.add_user("eve", "viewer", PW);
    let (code, s) = api.login(v.dir.path(), "eve", PW, None);
    assert_eq!(code, 200, "login");
    let s = s.unwrap();

    // Live: the sub stream at 640x360, the main one at 1280x720.
    for (query, said, size) in [
        ("stream=sub", "x-vigil-stream: sub", (640, 360)),
        ("stream=main", "x-vigil-stream: main", (1280, 720)),
        ("", "x-vigil-stream: main", (1280, 720)),
    ] {
        let got = wait_for(Duration::from_secs(30), || {
            let (h, b) = live(api.port, &s.jar, query, v.dir.path());
            (h.contains(said) && avc1_size(&b).is_some()).then_some((h, b))
        });
        let (h, b) = got.unwrap_or_else(|| panic!("live?{query}: no stream with \"{said}\""));
        assert!(
            h.starts_with("http/1.1 200") || h.starts_with("http/2 200"),
            "{query}: {h}"
        );
        assert_eq!(avc1_size(&b), Some(size), "live?{query}");
    }
    let (code, _) = api.call(&s, "GET", "/api/v1/cameras/door/live?stream=third", None);
    assert_eq!(code, 400, "an unknown stream");

    // The listing says the camera has a sub stream.
    let (code, list) = api.call(&s, "GET", "/api/v1/cameras", None);
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let door = list.as_array().unwrap().iter().find(|c| c["name"] == "door").unwrap();
    assert_eq!(door["sub_stream"], true, "{door}");
    assert_eq!(door["record_audio"], false);
    assert_eq!(door["onvif"], false);

    // Both streams are recorded: the sub stream as the camera door.sub.
    let recorded = wait_for(Duration::from_secs(40), || {
        let recs = v.recordings();
        let done = |c: &str| {
            recs.iter()
                .any(|r| r.camera == c && r.state == "complete" && r.frames > 10)
        };
        (done("door") && done("door.sub")).then_some(recs)
    });
    let recs = recorded.unwrap_or_else(|| panic!("both streams recorded: {:#?}", v.recordings()));
    assert!(v.stop(), "clean stop");
    for (camera, size) in [("door", (1280, 720)), ("door.sub", (640, 360))] {
        let first = recs
            .iter()
            .find(|r| r.camera == camera && r.state == "complete")
            .unwrap();
        let out = v.path(&format!("{camera}.mp4"));
        let o = v.export(camera, &first.start, &first.end, &out);
        assert!(o.status.success(), "export {camera}: {}", text(&o));
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(avc1_size(&bytes), Some(size), "the recording of {camera}");
    }
    drop((main, sub));
}
