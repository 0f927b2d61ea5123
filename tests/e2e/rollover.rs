//! Acceptance: recording crosses a UTC day boundary (simulated with
//! libfaketime from 23:59:50) without a gap; the new day's recordings are
//! sealed under a new data key.

use std::time::Duration;

use vigil_e2e::*;

#[test]
fn recording_crosses_a_day_rollover_without_a_gap() {
    let lib = libfaketime().expect("libfaketime (scripts/test installs faketime)");
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        4,
    );
    // Only the daemon's wall clock is simulated; its timers run on real time.
    v.set_env("LD_PRELOAD", &lib);
    v.set_env("FAKETIME", "@2026-11-22 23:59:50");
    v.set_env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    v.set_env("TZ", "UTC");
    v.start();
    assert!(
        v.wait_state("c", "streaming", Duration::from_secs(20)).is_some(),
        "{}",
        v.log()
    );
    let after_midnight = wait_for(Duration::from_secs(60), || {
        let r = v.recordings();
        (r.iter()
            .filter(|r| r.state == "complete" && r.start.starts_with("2026-11-23"))
            .count()
            >= 2)
            .then_some(())
    });
    assert!(
        after_midnight.is_some(),
        "no recordings after midnight: {:?}\n{}",
        v.recordings(),
        v.log()
    );
    assert!(v.stop());

    let recs: Vec<Rec> = v.recordings().into_iter().filter(|r| r.state == "complete").collect();
    let day1: Vec<&Rec> = recs.iter().filter(|r| r.start.starts_with("2026-11-22")).collect();
    let day2: Vec<&Rec> = recs.iter().filter(|r| r.start.starts_with("2026-11-23")).collect();
    assert!(!day1.is_empty() && !day2.is_empty(), "{recs:?}");
    assert!(day1.iter().all(|r| r.key == day1[0].key), "one key per camera per day");
    assert!(day2.iter().all(|r| r.key == day2[0].key));
    assert_ne!(day1[0].key, day2[0].key, "a new day, a new data key");
    // Each recording starts exactly where the previous one ended.
    for w in recs.windows(2) {
        let gap = epoch_secs(&w[1].start) - epoch_secs(&w[0].end);
        assert!(
            gap.abs() < 0.002,
            "gap of {gap} s between recordings {} and {}",
            w[0].id,
            w[1].id
        );
    }
    // One export across midnight holds every frame, evenly spaced.
    assert_one_export_holds_every_frame(&v, "c", &recs, &v.path("midnight.mp4"), "across midnight");
    let st = String::from_utf8_lossy(&v.cli(&["keys", "status"]).stdout).to_string();
    assert!(st.contains("data keys: 2 recording"), "{st}");
}
