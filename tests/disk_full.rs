//! A full disk: the daemon keeps running, what was written stays valid, it
//! does not churn out an empty recording per GOP, and recording resumes by
//! itself when space returns. Needs root (mounts a small tmpfs); skipped with
//! a message otherwise.

use std::process::Command;
use std::time::Duration;

use vigil_e2e::*;

/// A tmpfs mounted over `dir`, unmounted when dropped (also on failure).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status();
        assert!(st.is_ok_and(|s| s.success()), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_pauses_and_resumes_without_damage() {
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
    let full = wait_for(Duration::from_secs(30), || {
        v.log().contains("No space left on device").then_some(())
    });
    assert!(full.is_some(), "the 2 MiB disk never filled");
    std::thread::sleep(Duration::from_secs(10));
    let during = v.recordings().len();
    println!("recordings after ~10 s of a full disk: {during}");
    assert!(during <= 8, "a new recording per GOP while the disk is full: {during}");

    // Space returns: recording resumes by itself.
    fs.resize("64m");
    let resumed = wait_for(Duration::from_secs(40), || {
        v.log().contains("recording resumed").then_some(())
    });
    assert!(resumed.is_some(), "recording did not resume");
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
