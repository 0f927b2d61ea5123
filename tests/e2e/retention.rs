//! Retention on a real, small filesystem (a 64 MiB tmpfs; skipped with a
//! message if mounting is refused): two cameras record for 5 minutes at a
//! rate that fills the disk about twice over. Free space never drops below
//! the floor, held recordings survive, the oldest unheld recordings go
//! first, every deletion is audited, and `vigil verify` passes. Then the
//! disk is filled from outside: the write fails with ENOSPC, an emergency
//! prune (respecting the hold) runs, and recording resumes within 10 s
//! without the filler being removed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::timed;

/// (available, total) bytes of the filesystem holding `p`, from df.
fn space(p: &std::path::Path) -> Option<(u64, u64)> {
    let o = Command::new("df")
        .args(["-B1", "--output=avail,size"])
        .arg(p)
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let mut w = s.lines().nth(1)?.split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

#[test]
fn retention_keeps_the_floor_and_the_holds_and_survives_enospc() {
    let _gate = timed(); // resumes within 10 s of an emergency prune
    let args = ["--gop", "25", "--pattern", "snow", "--bitrate", "1500"];
    let (cam_a, cam_b) = (Camera::start(&args), Camera::start(&args));
    let mut v = Vigil::with_keys(
        &[
            Cam {
                name: "a",
                url: cam_a.url("/h264"),
            },
            Cam {
                name: "b",
                url: cam_b.url("/h264"),
            },
        ],
        5,
        FILE_KEYS,
        "",
        &[],
    );
    let mut cfg = std::fs::read_to_string(&v.config).unwrap();
    cfg.push_str("\n[retention]\nmin_free_percent = 25\ninterval_seconds = 30\n");
    std::fs::write(&v.config, cfg).unwrap();
    let Some(_fs) = Tmpfs::mount(&v.storage(), "64m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    let (_, total) = space(&v.storage()).expect("df");
    let floor = total / 4;
    v.start();
    for c in ["a", "b"] {
        assert!(
            v.wait_state(c, "streaming", Duration::from_secs(20)).is_some(),
            "{}",
            v.log()
        );
    }

    // After ~20 s, a legal hold on camera a's first two recordings' span.
    let first = wait_for(Duration::from_secs(40), || {
        let r: Vec<Rec> = v
            .recordings()
            .into_iter()
            .filter(|r| r.camera == "a" && r.state == "complete")
            .collect();
        (r.len() >= 2).then(|| (r[0].start.clone(), r[1].end.clone()))
    });
    let (hold_start, hold_end) = first.expect("camera a recorded");
    let o = v.cli(&[
        "hold",
        "add",
        "--camera",
        "a",
        "--start",
        &hold_start,
        "--end",
        &hold_end,
        "--reason",
        "case 77",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let held: BTreeSet<i64> = v
        .recordings()
        .iter()
        .filter(|r| r.camera == "a" && r.start.as_str() < hold_end.as_str() && r.end.as_str() > hold_start.as_str())
        .map(|r| r.id)
        .collect();
    assert!(!held.is_empty());

    // Five minutes of recording, sampling free space every second.
    let t0 = Instant::now();
    let mut seen: BTreeMap<i64, Rec> = BTreeMap::new();
    let mut min_free = u64::MAX;
    let mut samples = 0;
    while t0.elapsed() < Duration::from_secs(300) {
        if let Some((avail, _)) = space(&v.storage()) {
            min_free = min_free.min(avail);
            samples += 1;
        }
        if samples % 5 == 0 {
            for r in v.recordings() {
                seen.insert(r.id, r);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for r in v.recordings() {
        seen.insert(r.id, r);
    }
    let remaining: BTreeMap<i64, Rec> = v.recordings().into_iter().map(|r| (r.id, r)).collect();
    let deleted: Vec<&Rec> = seen.values().filter(|r| !remaining.contains_key(&r.id)).collect();
    let written: i64 = seen.values().map(|r| r.bytes).sum();
    println!(
        "retention: {} recordings ({} MiB) written in 5 min on a {} MiB filesystem; {} deleted; \
         lowest free {} KiB, floor {} KiB, {samples} samples",
        seen.len(),
        written >> 20,
        total >> 20,
        deleted.len(),
        min_free >> 10,
        floor >> 10
    );
    assert!(
        written as u64 > total,
        "the cameras did not write more than the disk holds"
    );
    assert!(!deleted.is_empty(), "retention deleted nothing: {}", v.log());
    assert!(
        min_free >= floor,
        "free space fell to {min_free}, below the floor {floor}"
    );
    for id in &held {
        assert!(remaining.contains_key(id), "held recording {id} was deleted");
    }
    // Oldest first: per camera, every deleted recording is older than every
    // remaining recording that is not held.
    for cam in ["a", "b"] {
        let newest_deleted = deleted.iter().filter(|r| r.camera == cam).map(|r| r.id).max();
        let oldest_kept = remaining
            .values()
            .filter(|r| r.camera == cam && !held.contains(&r.id))
            .map(|r| r.id)
            .min();
        if let (Some(d), Some(k)) = (newest_deleted, oldest_kept) {
            assert!(d < k, "camera {cam}: recording {d} was deleted before the older {k}");
        }
    }
    let audit = String::from_utf8_lossy(&v.cli(&["audit", "tail", "-n", "1000"]).stdout).to_string();
    assert!(audit.contains("retention.delete"), "{audit}");

    // ENOSPC from outside: fill every free byte. Retention's periodic pass
    // may free space (down to the floor) before the recorders' next write
    // reaches the full disk; then the disk is filled again, as a runaway
    // process outside Vigil would, until a write fails (bounded: 30 s).
    let before_resumes = v.log().matches("recording resumed").count();
    let fill = |n: usize| {
        let filler = v.storage().join(format!("filler-{n}.bin"));
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "status=none"])
            .arg(format!("of={}", filler.display()))
            .status();
        filler
    };
    let mut fillers = vec![fill(0)];
    let (avail, _) = space(&v.storage()).unwrap();
    println!("filled from outside: {avail} bytes free");
    let t = Instant::now();
    let mut enospc = None;
    while t.elapsed() < Duration::from_secs(30) && fillers.len() < 20 {
        if v.log().contains("No space left on device") {
            enospc = Some(t.elapsed());
            break;
        }
        if space(&v.storage()).is_some_and(|(avail, _)| avail > 1 << 20) {
            println!("retention freed space before a write failed; filling again");
            fillers.push(fill(fillers.len()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(enospc.is_some(), "the full disk never failed a write: {}", v.log());
    let resumed = wait_for(Duration::from_secs(30), || {
        (v.log().matches("recording resumed").count() > before_resumes).then(|| t.elapsed())
    });
    let resumed = resumed.expect("recording did not resume after the emergency prune");
    let enospc = enospc.unwrap_or_default();
    println!(
        "ENOSPC after {:.1} s; recording resumed {:.1} s later (emergency prune, filler still there)",
        enospc.as_secs_f64(),
        (resumed.saturating_sub(enospc)).as_secs_f64()
    );
    assert!(resumed.saturating_sub(enospc) <= Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    let after: BTreeSet<i64> = v.recordings().iter().map(|r| r.id).collect();
    for id in &held {
        assert!(
            after.contains(id),
            "held recording {id} was deleted by the emergency prune"
        );
    }
    assert!(v.stop(), "vigil did not stop cleanly");
    for filler in &fillers {
        let _ = std::fs::remove_file(filler);
    }
    let o = v.cli(&["verify"]);
    assert!(
        o.status.success(),
        "verify after retention and ENOSPC: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!v.log().contains("panicked"));
}
