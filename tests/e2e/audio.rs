//! Audio (issue 17): a GStreamer camera with AAC and another with G.711
//! A-law, recorded with `record_audio = true` for a minute. A 60 s MP4
//! export of each carries an audio stream that ffprobe reads and ffmpeg
//! decodes without an error, whose duration is within 0.1 s of the
//! video's; a signed bundle's clip carries it too. The same AAC camera on a
//! box where `record_audio` is off gives exports with no audio.

use std::process::Command;
use std::time::Duration;

use vigil_e2e::*;

/// (video seconds, audio seconds, audio codec) of an MP4, by ffprobe.
fn durations(mp4: &std::path::Path) -> (Option<f64>, Option<f64>, Option<String>) {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,duration",
            "-of",
            "json",
        ])
        .arg(mp4)
        .output()
        .expect("ffprobe");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let streams = j["streams"].as_array().cloned().unwrap_or_default();
    let of = |t: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == t)
            .and_then(|s| s["duration"].as_str()?.parse::<f64>().ok())
    };
    let codec = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .and_then(|s| s["codec_name"].as_str().map(str::to_string));
    (of("video"), of("audio"), codec)
}

/// ffmpeg decodes every stream of `mp4`: its error output (empty when clean).
fn decode_errors(mp4: &std::path::Path) -> String {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(mp4)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        o.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// RFC 3339 of a recording start plus `s` seconds.
fn plus(start: &str, s: f64) -> String {
    rfc3339(epoch_secs(start) + s)
}

#[test]
fn a_minute_of_aac_and_g711_exports_in_sync_and_record_audio_off_records_none() {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        println!("SKIPPED: ffprobe is not installed");
        return;
    }
    let aac = Camera::start(&["--audio-codec", "aac"]);
    let pcma = Camera::start(&["--audio-codec", "pcma"]);
    let mut v = Vigil::with_keys(
        &[
            Cam {
                name: "hall",
                url: aac.url("/h264"),
            },
            Cam {
                name: "gate",
                url: pcma.url("/h264"),
            },
        ],
        20,
        FILE_KEYS,
        "record_audio = true\n",
        &[],
    );
    let mut quiet = Vigil::new(
        &[Cam {
            name: "quiet",
            url: aac.url("/h264"),
        }],
        20,
    );
    v.start();
    quiet.start();
    // A minute and a bit of each, in complete recordings.
    let enough = wait_for(Duration::from_secs(110), || {
        let recs = v.recordings();
        let spans = |c: &str| {
            let mine: Vec<_> = recs.iter().filter(|r| r.camera == c && r.state == "complete").collect();
            let first = mine.first()?;
            let last = mine.last()?;
            (epoch_secs(&last.end) - epoch_secs(&first.start) >= 62.0).then(|| first.start.clone())
        };
        Some((spans("hall")?, spans("gate")?))
    });
    let (hall_start, gate_start) = enough.unwrap_or_else(|| panic!("a minute recorded: {:#?}", v.recordings()));
    let quiet_rec = wait_for(Duration::from_secs(10), || {
        quiet.recordings().into_iter().find(|r| r.state == "complete")
    })
    .expect("quiet recorded");
    assert!(v.stop(), "clean stop");
    assert!(quiet.stop(), "clean stop");

    for (camera, start, want) in [("hall", &hall_start, "aac"), ("gate", &gate_start, "pcm_alaw")] {
        let (a, b) = (plus(start, 1.0), plus(start, 61.0));
        let out = v.path(&format!("{camera}.mp4"));
        let o = v.export(camera, &a, &b, &out);
        assert!(o.status.success(), "export {camera}: {}", text(&o));
        let (video, audio, codec) = durations(&out);
        println!("{camera}: video {video:?} s, audio {audio:?} s ({codec:?})");
        let (video, audio) = (video.expect("a video stream"), audio.expect("an audio stream"));
        assert!(
            (59.0..=62.0).contains(&video),
            "{camera}: a 60 s export, video {video} s"
        );
        assert!(
            (audio - video).abs() <= 0.1,
            "{camera}: audio {audio} s vs video {video} s"
        );
        assert_eq!(codec.as_deref(), Some(want), "{camera}: the audio codec");
        assert_eq!(decode_errors(&out), "", "{camera}: ffmpeg decodes it cleanly");
    }

    // A signed bundle's clip carries the audio too.
    let bundle = v.path("bundle");
    let o = v.cli(&[
        "export",
        "--camera",
        "hall",
        "--start",
        &plus(&hall_start, 1.0),
        "--end",
        &plus(&hall_start, 11.0),
        "--bundle",
        &bundle.to_string_lossy(),
    ]);
    assert!(o.status.success(), "bundle: {}", text(&o));
    let clip = std::fs::read_dir(&bundle)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "mp4"))
        .expect("a clip in the bundle");
    let (video, audio, codec) = durations(&clip);
    assert_eq!(codec.as_deref(), Some("aac"), "the bundle's clip: {video:?} {audio:?}");
    assert!((audio.unwrap() - video.unwrap()).abs() <= 0.1, "{video:?} vs {audio:?}");

    // record_audio off: the same camera's export has no audio stream.
    let out = quiet.path("quiet.mp4");
    let o = quiet.export("quiet", &quiet_rec.start, &quiet_rec.end, &out);
    assert!(o.status.success(), "export quiet: {}", text(&o));
    let (video, audio, codec) = durations(&out);
    assert!(
        video.is_some() && audio.is_none() && codec.is_none(),
        "quiet: {video:?} {audio:?} {codec:?}"
    );
    drop((aac, pcma));
}
