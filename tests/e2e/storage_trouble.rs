//! Storage trouble other than a full disk: the recordings filesystem turns
//! read-only (EROFS on every write) and comes back, then the volume vanishes
//! (unmounted under the daemon). The daemon never crashes, what was written
//! stays valid, recording resumes within 10 s of the filesystem becoming
//! writable, and nothing is ever written to the mount point's own
//! filesystem once the volume is gone. Needs root (mounts a tmpfs); skipped
//! with a message otherwise.

use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::timed;

fn run(cmd: &[&str]) {
    let st = Command::new(cmd[0]).args(&cmd[1..]).status();
    assert!(st.is_ok_and(|s| s.success()), "{cmd:?}");
}

#[test]
fn read_only_and_vanished_storage_never_crash_or_leak_recordings() {
    let _gate = timed(); // recording resumes within 10 s
    let cam = Camera::start(&["--gop", "25"]);
    let mut v = Vigil::new(
        &[Cam {
            name: "yard",
            url: cam.url("/h264"),
        }],
        2,
    );
    let Some(fs) = Tmpfs::mount(&v.storage(), "64m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    v.start();
    assert!(v.wait_state("yard", "streaming", Duration::from_secs(20)).is_some());
    let some = wait_for(Duration::from_secs(20), || {
        (v.recordings().iter().filter(|r| r.state == "complete").count() >= 2).then_some(())
    });
    assert!(some.is_some());

    // Read-only: a read-only bind mount over the camera's directory (the
    // open file keeps its writable mount; every new file fails with EROFS).
    let cam_dir = v.storage().join("yard");
    let d = cam_dir.to_string_lossy().to_string();
    run(&["mount", "--bind", &d, &d]);
    run(&["mount", "-o", "remount,ro,bind", &d]);
    let failing = wait_for(Duration::from_secs(20), || {
        v.log().contains("Read-only file system").then_some(())
    });
    if failing.is_none() {
        let _ = Command::new("umount").arg(&d).status();
    }
    assert!(
        failing.is_some(),
        "no write failed on a read-only filesystem: {}",
        v.log()
    );
    std::thread::sleep(Duration::from_secs(5));
    let resumes_before = v.log().matches("recording resumed").count();
    let t = Instant::now();
    run(&["umount", &d]);
    let resumed = wait_for(Duration::from_secs(30), || {
        (v.log().matches("recording resumed").count() > resumes_before).then(|| t.elapsed())
    })
    .expect("recording did not resume after the filesystem became writable");
    println!(
        "read-only: recording resumed {:.1} s after it became writable",
        resumed.as_secs_f64()
    );
    assert!(resumed <= Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    let o = v.cli(&["verify"]);
    assert!(
        o.status.success(),
        "verify after EROFS: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // The volume vanishes: the mount point's own (empty) directory shows.
    let st = Command::new("umount").arg("-l").arg(&fs.0).status();
    assert!(st.is_ok_and(|s| s.success()), "umount");
    let refused = wait_for(Duration::from_secs(20), || {
        v.log().contains("no longer mounted here").then_some(())
    });
    assert!(refused.is_some(), "no clear error for a vanished volume: {}", v.log());
    std::thread::sleep(Duration::from_secs(5));
    let leaked = files_under(&v.storage());
    assert!(
        leaked.is_empty(),
        "recordings were written to the mount point's own filesystem: {leaked:?}"
    );
    assert!(v.stop(), "vigil did not stop cleanly with its volume gone");
    assert!(!v.log().contains("panicked"));
}
