//! A full disk: the daemon keeps running, what was written stays valid, it
//! does not churn out an empty recording per GOP, and recording resumes by
//! itself when space returns. Needs root (mounts a small tmpfs); skipped with
//! a message otherwise.

use std::time::Duration;

use vigil_e2e::*;

use crate::common::timed;

#[test]
fn full_disk_pauses_and_resumes_without_damage() {
    let _gate = timed(); // recording resumes within 10 s of space returning
    let cam = Camera::start(&["--gop", "25", "--pattern", "snow", "--bitrate", "2000"]);
    let mut v = Vigil::new(
        &[Cam {
            name: "yard",
            url: cam.url("/h264"),
        }],
        4,
    );
    let Some(fs) = Tmpfs::mount(&v.storage(), "2m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    v.start();
    assert!(v.wait_state("yard", "streaming", Duration::from_secs(20)).is_some());
    // Everything is under a legal hold: retention may delete nothing, so
    // recording must pause (and say why) rather than prune.
    let o = v.cli(&[
        "hold",
        "add",
        "--camera",
        "yard",
        "--start",
        "2000-01-01T00:00:00Z",
        "--end",
        "2100-01-01T00:00:00Z",
        "--reason",
        "test: nothing may be pruned",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = wait_for(Duration::from_secs(30), || {
        v.log().contains("No space left on device").then_some(())
    });
    assert!(full.is_some(), "the 2 MiB disk never filled");
    let paused = wait_for(Duration::from_secs(15), || {
        v.log().contains("nothing more may be deleted").then_some(())
    });
    assert!(paused.is_some(), "no clear error that recording is paused: {}", v.log());
    std::thread::sleep(Duration::from_secs(10));
    let during = v.recordings().len();
    println!("recordings after ~10 s of a full disk: {during}");
    assert!(during <= 8, "a new recording per GOP while the disk is full: {during}");

    // Space returns: recording resumes by itself, within 10 s.
    let t = std::time::Instant::now();
    fs.resize("64m");
    let resumed = wait_for(Duration::from_secs(40), || {
        v.log().contains("recording resumed").then_some(t.elapsed())
    });
    let resumed = resumed.expect("recording did not resume");
    println!("recording resumed {:.1} s after space returned", resumed.as_secs_f64());
    assert!(resumed <= Duration::from_secs(10), "resumed only after {resumed:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(v.stop(), "vigil did not stop cleanly after a full disk");
    let recs = v.recordings();
    let last_failed = recs.iter().filter(|r| r.frames == 0).map(|r| r.id).max();
    assert!(last_failed.is_some(), "no attempt failed on the full disk: {recs:#?}");
    assert!(
        recs.iter()
            .any(|r| Some(r.id) > last_failed && r.frames >= 90 && r.state == "complete"),
        "no full recording after space returned: {recs:#?}"
    );
    let o = v.cli(&["verify"]);
    assert!(
        o.status.success(),
        "verify after a full disk: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!v.log().contains("panicked"));
}
