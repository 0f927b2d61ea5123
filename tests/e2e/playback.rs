//! Acceptance: an export plays in Chromium (H.264; Debian's Chromium has no
//! H.265 decoder, so H.265 exports are checked by ffprobe and ffmpeg only).

use std::time::Duration;

use vigil_e2e::*;

use crate::common::heavy;

#[test]
fn h264_export_plays_in_chromium() {
    let _gate = heavy(); // Chromium

    // Snow at 3 Mbit/s (~15 KB a frame): chunks are cut at 128 KiB, so most
    // do not start with a key frame, and the export must still play.
    let cam = Camera::start(&["--gop", "25", "--pattern", "snow", "--bitrate", "3000"]);
    let mut v = Vigil::recording_one("gate", cam.url("/h264"), 4);
    std::thread::sleep(Duration::from_secs(7));
    assert!(v.stop());
    let recs = v.recordings();
    let (chunks, seek_points): (i64, i64) = rusqlite::Connection::open(v.path("vigil.db"))
        .unwrap()
        .query_row("SELECT count(*), sum(key_frame) FROM chunk", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(
        chunks > 2 * seek_points,
        "chunks cut mid-GOP: {chunks} chunks, {seek_points} with a key frame"
    );
    let web = v.path("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::copy(workspace().join("tests/fixtures/play.html"), web.join("play.html")).unwrap();
    let out = web.join("clip.mp4");
    let o = v.export("gate", &recs[0].start, &recs[recs.len() - 1].end, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(recs.len() >= 2, "the clip spans recordings");

    let (_server, port) = http_server(&web);
    let dom = chromium_dom(&format!("http://127.0.0.1:{port}/play.html?src=clip.mp4"), 5000);
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_default()
        .to_string();
    println!("chromium: {result}");
    assert!(result.contains("meta 640x360"), "metadata: {result}");
    assert!(result.contains("PLAYING"), "did not play: {result}");
    assert!(!result.contains("ERROR"), "{result}");
}
