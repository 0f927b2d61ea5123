//! Acceptance: cameras that die, come back, hang, or jump back in time; the
//! daemon killed with -9 and restarted.

use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::timed;

/// Recordings of one camera must follow each other without a gap.
fn assert_contiguous(recs: &[&Rec], what: &str) {
    for w in recs.windows(2) {
        let gap = epoch_secs(&w[1].start) - epoch_secs(&w[0].end);
        assert!(
            gap.abs() < 0.002,
            "{what}: gap of {gap:.3} s between recordings {} and {}",
            w[0].id,
            w[1].id
        );
    }
}

#[test]
fn one_camera_dies_comes_back_and_hangs_without_disturbing_the_other() {
    let _gate = timed(); // offline and back within 5 s, a hang seen within 10 s, no frame lost
    let cam_a = Camera::start(&[]);
    let mut cam_b = Camera::start(&[]);
    let mut v = Vigil::new(
        &[
            Cam {
                name: "steady",
                url: cam_a.url("/h264"),
            },
            Cam {
                name: "flaky",
                url: cam_b.url("/h264"),
            },
        ],
        4,
    );
    v.start();
    for c in ["steady", "flaky"] {
        assert!(
            v.wait_state(c, "streaming", Duration::from_secs(20)).is_some(),
            "{c} never streamed"
        );
    }
    std::thread::sleep(Duration::from_secs(3));

    // Kill flaky's server; it is noticed at once.
    cam_b.kill();
    let t = v.wait_state("flaky", "offline", Duration::from_secs(5));
    println!("server killed: flaky reported offline after {t:?}");
    assert!(t.is_some());
    std::thread::sleep(Duration::from_secs(6));

    // Back on the same port: resumes within 5 s.
    cam_b.restart();
    let back = v.wait_state("flaky", "streaming", Duration::from_secs(10));
    println!("server back: flaky streaming again after {back:?}");
    assert!(
        back.is_some_and(|d| d <= Duration::from_secs(5)),
        "flaky resumed after {back:?}"
    );
    std::thread::sleep(Duration::from_secs(3));

    // Hang it: the no-frames watchdog reports it offline within 10 s.
    cam_b.pause();
    let hung = Instant::now();
    let t = v.wait_state("flaky", "offline", Duration::from_secs(12));
    println!("server stopped (SIGSTOP): flaky reported offline after {t:?}");
    assert!(
        t.is_some_and(|d| d <= Duration::from_secs(10)),
        "hang noticed after {t:?}"
    );
    assert!(hung.elapsed() < Duration::from_secs(12));
    cam_b.resume();
    std::thread::sleep(Duration::from_secs(2));
    assert!(v.stop());

    let recs = v.recordings();
    let steady: Vec<&Rec> = recs.iter().filter(|r| r.camera == "steady").collect();
    assert!(steady.len() >= 4, "{steady:#?}");
    assert_contiguous(&steady, "steady");
    let span = epoch_secs(&steady[steady.len() - 1].end) - epoch_secs(&steady[0].start);
    let frames: i64 = steady.iter().map(|r| r.frames).sum();
    println!(
        "steady: {frames} frames over {span:.1} s ({:.2} fps)",
        frames as f64 / span
    );
    assert!(
        (frames as f64 - span * f64::from(FPS)).abs() <= 3.0,
        "steady lost frames: {frames} in {span:.1} s"
    );
    let flaky: Vec<&Rec> = recs.iter().filter(|r| r.camera == "flaky").collect();
    assert!(flaky.len() >= 2, "{flaky:#?}");
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn kill_9_then_restart_recovers_losing_at_most_the_last_gop() {
    let _gate = timed(); // at most one GOP lost to a kill at a measured moment
    let cam = Camera::start(&["--gop", "25"]);
    let mut v = Vigil::recording_one("door", cam.url("/h264"), 60);
    let first = wait_for(Duration::from_secs(10), || v.recordings().into_iter().next()).expect("a recording row");
    std::thread::sleep(Duration::from_millis(7300));
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    v.kill9();
    let expected = ((killed_at - epoch_secs(&first.start)) * f64::from(FPS)).floor() as i64;

    v.start();
    assert!(v.wait_state("door", "streaming", Duration::from_secs(20)).is_some());
    std::thread::sleep(Duration::from_secs(3));
    assert!(v.stop());
    let recs = v.recordings();
    let rec = recs
        .iter()
        .find(|r| r.id == first.id)
        .expect("interrupted recording kept");
    assert_eq!(rec.state, "recovered", "{recs:#?}");
    let lost = expected - rec.frames;
    println!(
        "kill -9 after ~{expected} frames: recovered {} frames, lost {lost} (one GOP = 25)",
        rec.frames
    );
    assert!(lost <= 25 + 2, "lost {lost} frames");
    assert!(v.log().contains("recovered an interrupted recording"));
    assert!(
        recs.iter().any(|r| r.id != first.id && r.state == "complete"),
        "recording continued after restart"
    );
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn timestamps_jumping_back_lose_no_frames_and_cause_no_reconnect() {
    let _gate = timed(); // every frame of the wall time recorded
    let cam = Camera::start(&["--seek-on-play", "--gop", "25"]);
    let mut v = Vigil::recording_one("jumpy", cam.url("/h264"), 60);
    let streaming_since = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    // Each new client's PLAY seeks the shared pipeline: our timestamps jump back.
    for _ in 0..3 {
        let st = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-read_intervals",
                "%+1",
                "-show_entries",
                "packet=pts",
                "-of",
                "csv",
            ])
            .arg(cam.url("/h264"))
            .stdout(std::process::Stdio::null())
            .status();
        assert!(st.is_ok());
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(2));
    let wall = streaming_since.elapsed().as_secs_f64();
    assert!(v.stop());
    let log = v.log();
    let jumps = log.matches("timestamp discontinuity").count();
    println!("discontinuities seen: {jumps}");
    assert!(jumps >= 1, "the fixture produced no discontinuity");
    assert!(!log.contains("camera offline"), "camera was dropped on a discontinuity");
    let recs = v.recordings();
    let mine: Vec<&Rec> = recs.iter().collect();
    assert_contiguous(&mine, "jumpy");
    let frames: i64 = mine.iter().map(|r| r.frames).sum();
    let span = epoch_secs(&mine[mine.len() - 1].end) - epoch_secs(&mine[0].start);
    println!(
        "jumpy: {frames} frames in {} recordings over {span:.1} s of media, {wall:.1} s of wall time",
        mine.len()
    );
    assert!(
        frames as f64 >= (wall - 1.0) * f64::from(FPS),
        "frames lost across the jumps: {frames} in {wall:.1} s"
    );
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stdout));
    // Export across the discontinuities plays.
    let out = v.path("jumpy.mp4");
    let o = v.export("jumpy", &mine[0].start, &mine[mine.len() - 1].end, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = ffprobe(&out).unwrap();
    assert_eq!(p.frames as i64, frames);
    assert!(dts_continuity(&p.dts).1);
}
