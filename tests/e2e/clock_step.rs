//! A wall-clock step of -1 h and then +1 h while recording (simulated with
//! libfaketime reading its offset from a file, so it changes at run time;
//! monotonic time stays real): recordings keep media time, stay ordered and
//! contiguous, and one export across both steps holds every frame with
//! continuous timestamps (the -1 h step is absorbed; the +1 h step moves
//! the wall-clock labels forward at one recording boundary that is marked as
//! continuing the previous one).

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
    // Ordered and contiguous: the -1 h step is absorbed (recordings keep
    // media time); the +1 h step (net +2 h on the clock, e.g. NTP fixing a
    // wrong boot time) is followed by the wall-clock labels at one
    // recording boundary, which is marked as continuing the previous one.
    let mut jumps = Vec::new();
    for w in recs.windows(2) {
        let gap = epoch_secs(&w[1].start) - epoch_secs(&w[0].end);
        assert!(
            gap > -0.002,
            "recording {} starts before {} ends: out of order",
            w[1].id,
            w[0].id
        );
        if gap.abs() >= 0.002 {
            jumps.push((w[1].id, gap));
        }
    }
    println!(
        "{} recordings; wall-clock jumps between recordings: {jumps:?}",
        recs.len()
    );
    assert!(jumps.len() <= 1, "more than one jump: {jumps:?}");
    for (_, gap) in &jumps {
        assert!((gap - 3600.0).abs() < 10.0, "unexpected jump {gap} s");
    }
    let db = rusqlite::Connection::open(v.path("vigil.db")).unwrap();
    for (id, _) in &jumps {
        let cont: i64 = db
            .query_row("SELECT continues_previous FROM recording WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(cont, 1, "recording {id} after the step is not marked as continuing");
    }
    assert!(
        v.log().contains("wall clock moved forward"),
        "the +1 h step was not seen by the daemon"
    );
    assert_one_export_holds_every_frame(&v, "c", &recs, &v.path("across-steps.mp4"), "across both steps");
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
