//! Audio end to end, with the real GStreamer test camera
//! (`tests/fixtures/rtsp_camera.py`): recorded through the real RTSP ingest
//! and recorder, exported, and checked with ffprobe and ffmpeg. Here in the
//! run layer because it drives ingest and evidence together, as
//! `run::cameras` does. Skipped (printing "SKIPPED") where the camera or
//! ffprobe cannot run.

use crate::evidence::export::{export_to_file, Archive};
use crate::storage::recorder_rig::{Rig, CAMERA, SECOND, T0};

/// The real GStreamer test camera (`tests/fixtures/rtsp_camera.py`) with an
/// audio track of `codec`, recorded for `secs` through the real RTSP ingest
/// and recorder into `rig`. None (and "SKIPPED" printed) when the camera
/// cannot run here.
fn record_real_camera(rig: &Rig, codec: &str, record_audio: bool, secs: u64) -> Option<()> {
    use std::io::BufRead;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/rtsp_camera.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = std::process::Command::new(python)
        .args([
            script,
            "--port",
            &port.to_string(),
            "--audio-codec",
            codec,
            "--size",
            "320x240",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    let ready = child
        .stdout
        .take()
        .map(|o| std::io::BufReader::new(o).read_line(&mut line).is_ok() && line.starts_with("READY"))
        .unwrap_or(false);
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        println!("SKIPPED: the GStreamer test camera does not run here");
        return None;
    }
    let cam = crate::config::CameraConfig {
        name: CAMERA.into(),
        url: format!("rtsp://127.0.0.1:{port}/h264").parse().unwrap(),
        username: None,
        password: crate::config::CameraPassword::None,
        password_origin: None,
        enabled: true,
        limits: Default::default(),
        sub_url: None,
        record_sub: false,
        sub_retention_days: None,
        record_audio,
        onvif_url: None,
    };
    let rec = rig.recorder(600);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let recorder = std::thread::spawn(move || rec.run(rx));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    rt.block_on(async {
        let task = tokio::spawn(crate::ingest::rtsp::run_camera(
            cam,
            None,
            None,
            std::time::Duration::from_secs(10),
            tx,
            stop_rx,
        ));
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
        let _ = stop.send(true);
        let _ = task.await;
    });
    let stats = recorder.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(stats.frames_written > 0, "{stats:?}");
    assert_eq!(stats.audio_samples_written > 0, record_audio, "{stats:?}");
    Some(())
}

/// Per stream of `mp4` (by codec type): (codec name, first pts, end) in seconds, from ffprobe's packets.
fn probe_streams(mp4: &std::path::Path) -> Vec<(String, String, f64, f64)> {
    let streams = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_type,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(mp4)
        .output()
        .unwrap();
    let packets = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(mp4)
        .output()
        .unwrap();
    let packets = String::from_utf8_lossy(&packets.stdout).to_string();
    String::from_utf8_lossy(&streams.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let (index, name, kind) = (f[0], f[1].to_string(), f[2].to_string());
            let (mut first, mut end) = (f64::MAX, f64::MIN);
            for p in packets.lines() {
                let v: Vec<&str> = p.split(',').collect();
                if v.len() >= 3 && v[0] == index {
                    let pts: f64 = v[1].parse().unwrap_or(f64::NAN);
                    let dur: f64 = v[2].parse().unwrap_or(0.0);
                    first = first.min(pts);
                    end = end.max(pts + dur);
                }
            }
            (kind, name, first, end)
        })
        .collect()
}

/// Records the real camera with `codec` audio for ~12 s, exports, and checks
/// with ffprobe and ffmpeg that both tracks are there, decode, start
/// together and last as long as each other (within 0.1 s).
fn real_camera_audio_export(codec: &str, ffprobe_name: &str) {
    if std::process::Command::new("ffprobe").arg("-version").output().is_err() {
        println!("SKIPPED: no ffprobe");
        return;
    }
    let rig = Rig::new(T0);
    if record_real_camera(&rig, codec, true, 12).is_none() {
        return;
    }
    let recs = rig.recordings();
    let audio = rig.stream_info(&recs[0]).audio.expect("an audio track");
    assert_eq!(audio.codec.name(), codec);
    let out = rig.dir.path().join("av.mp4");
    let index = rig.index();
    let archive = Archive {
        index: &index,
        storage: &rig.storage,
        keys: rig.keys.as_ref(),
    };
    let report = export_to_file(archive, "cli:test", CAMERA, T0 - SECOND, T0 + 60 * SECOND, &out).unwrap();
    assert!(report.audio_samples > 0 && report.frames > 200, "{report:?}");
    let streams = probe_streams(&out);
    let video = streams.iter().find(|s| s.0 == "video").expect("a video stream");
    let sound = streams.iter().find(|s| s.0 == "audio").expect("an audio stream");
    assert_eq!((video.1.as_str(), sound.1.as_str()), ("h264", ffprobe_name));
    println!("exported: {video:?}, {sound:?}");
    let (vd, ad) = (video.3 - video.2, sound.3 - sound.2);
    assert!(vd > 9.0, "video lasts {vd} s");
    assert!((vd - ad).abs() <= 0.1, "video {video:?}, audio {sound:?}");
    assert!((video.2 - sound.2).abs() <= 0.1, "video {video:?}, audio {sound:?}");
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
    assert!(
        decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}

#[test]
fn real_camera_aac_audio_is_recorded_and_exported_in_sync() {
    real_camera_audio_export("aac", "aac");
}

#[test]
fn real_camera_g711_audio_is_recorded_and_exported_in_sync() {
    real_camera_audio_export("pcma", "pcm_alaw");
}

#[test]
fn a_camera_whose_audio_is_not_recorded_has_no_audio_track() {
    let rig = Rig::new(T0);
    if record_real_camera(&rig, "pcmu", false, 3).is_none() {
        return;
    }
    for rec in rig.recordings() {
        assert_eq!(rig.stream_info(&rec).audio, None);
        let scan = rig.reader(&rec).scan().unwrap();
        assert_eq!(scan.audio_records, 0);
    }
}
