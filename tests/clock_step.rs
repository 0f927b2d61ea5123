//! A wall-clock step of -1 h and then +1 h while recording (simulated with
//! libfaketime reading its offset from a file, so it changes at run time;
//! monotonic time stays real): recordings keep media time, stay ordered and
//! contiguous, and one export across both steps holds every frame with
//! continuous timestamps.

use std::time::Duration;

use vigil_e2e::*;

#[test]
fn wall_clock_steps_do_not_break_ordering_or_playback() {
    let lib = libfaketime().expect("libfaketime (scripts/test installs faketime)");
    let cam = Camera::start(&["--gop", "25"]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        3,
    );
    let offset = v.path("faketime-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    v.set_env("LD_PRELOAD", &lib);
    v.set_env("FAKETIME_TIMESTAMP_FILE", &offset.to_string_lossy());
    v.set_env("FAKETIME_CACHE_DURATION", "1");
    v.set_env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    v.set_env("TZ", "UTC");
    v.start();
    assert!(
        v.wait_state("c", "streaming", Duration::from_secs(20)).is_some(),
        "{}",
        v.log()
    );
    let complete = |n: usize| {
        wait_for(Duration::from_secs(40), || {
            (v.recordings().iter().filter(|r| r.state == "complete").count() >= n).then_some(())
        })
    };
    assert!(complete(3).is_some(), "{}", v.log());
    std::fs::write(&offset, "-1h\n").unwrap();
    assert!(complete(7).is_some(), "{}", v.log());
    std::fs::write(&offset, "+1h\n").unwrap();
    assert!(complete(11).is_some(), "{}", v.log());
    assert!(v.stop());
    // The clock really was stepped: the daemon logged times an hour behind.
    assert!(
        v.log().contains("wall clock is behind"),
        "the -1 h step was not seen by the daemon: {}",
        v.log()
    );

    let recs: Vec<Rec> = v.recordings().into_iter().filter(|r| r.state == "complete").collect();
    for w in recs.windows(2) {
        let gap = epoch_secs(&w[1].start) - epoch_secs(&w[0].end);
        assert!(
            gap.abs() < 0.002,
            "gap of {gap} s between recordings {} ({} to {}) and {} ({} to {})",
            w[0].id,
            w[0].start,
            w[0].end,
            w[1].id,
            w[1].start,
            w[1].end
        );
    }
    let first = recs.first().unwrap();
    let last = recs.last().unwrap();
    let span = epoch_secs(&last.end) - epoch_secs(&first.start);
    let media: f64 = recs.iter().map(|r| epoch_secs(&r.end) - epoch_secs(&r.start)).sum();
    println!(
        "{} recordings, {span:.2} s of wall time for {media:.2} s of media",
        recs.len()
    );
    assert!((span - media).abs() < 0.05, "the timeline jumped with the clock");
    let out = v.path("across-steps.mp4");
    let o = v.export("c", &first.start, &last.end, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = ffprobe(&out).expect("ffprobe accepts the export");
    let frames: i64 = recs.iter().map(|r| r.frames).sum();
    assert_eq!(p.frames as i64, frames, "every recorded frame is in the export");
    let (max_gap, increasing) = dts_continuity(&p.dts);
    assert!(
        increasing && max_gap < 0.1,
        "timestamps continuous across both steps (max gap {max_gap} s)"
    );
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
