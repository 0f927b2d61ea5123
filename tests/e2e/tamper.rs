//! Acceptance: each kind of tampering is found by `vigil verify` (exit 1,
//! naming the file and chunk) and refused by `vigil export`, while every other
//! recording stays intact and exportable. A wrong key file is refused too.

use std::time::Duration;

use vigil_e2e::*;

fn export(v: &Vigil, r: &Rec, out: &str) -> std::process::Output {
    let out = v.path(out);
    // Printed times are cut to milliseconds: start just inside this recording.
    let start = rfc3339(epoch_secs(&r.start) + 0.1);
    v.export(&r.camera, &start, &r.end, &out)
}

#[test]
fn tampering_is_detected_and_refused() {
    let cam = Camera::start(&["--gop", "10"]);
    let mut v = Vigil::recording_one("lobby", cam.url("/h264"), 2);
    // Enough complete recordings for one tampering each and clean ones.
    let enough = wait_for(Duration::from_secs(40), || {
        (v.recordings().iter().filter(|r| r.state == "complete").count() >= 9).then_some(())
    });
    assert!(enough.is_some());
    assert!(v.stop());
    let recs: Vec<Rec> = v.recordings();
    assert!(recs.iter().all(|r| r.state == "complete"));
    let o = v.cli(&["verify"]);
    assert!(
        o.status.success(),
        "clean verify: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    let files: Vec<std::path::PathBuf> = files_under(&v.storage());
    assert_eq!(files.len(), recs.len());
    // Map recording id -> file via the recordings order (ids ascending, one per file).
    let file_of = |r: &Rec| -> std::path::PathBuf {
        // The file name is not printed; find the file whose header start time matches the row order.
        let mut by_start: Vec<(i64, std::path::PathBuf)> = files
            .iter()
            .map(|f| {
                let b = std::fs::read(f).unwrap();
                (i64::from_be_bytes(b[50..58].try_into().unwrap()), f.clone())
            })
            .collect();
        by_start.sort();
        let pos = recs.iter().position(|x| x.id == r.id).unwrap();
        by_start[pos].1.clone()
    };
    let cases = [
        "bit flip",
        "truncated",
        "final removed",
        "chunks swapped",
        "chunk spliced",
        "header byte",
    ];
    let donor = std::fs::read(file_of(&recs[8])).unwrap();
    for (i, case) in cases.iter().enumerate() {
        let f = file_of(&recs[i + 1]);
        let mut b = std::fs::read(&f).unwrap();
        let recsz = vseg_records(&b);
        assert!(recsz.len() >= 4, "{case}: need 2+ chunks, have {recsz:?}");
        let (c1, c2) = (recsz[1], recsz[2]);
        match *case {
            "bit flip" => b[c1.0 + 40] ^= 0x04,
            "truncated" => b.truncate(b.len() - 300),
            "final removed" => b.truncate(recsz[recsz.len() - 1].0),
            "chunks swapped" => {
                let first = b[c1.0..c1.0 + c1.1].to_vec();
                let second = b[c2.0..c2.0 + c2.1].to_vec();
                b.splice(c1.0..c2.0 + c2.1, second.into_iter().chain(first));
            }
            "chunk spliced" => {
                let d = vseg_records(&donor)[1];
                b.splice(c1.0..c1.0 + c1.1, donor[d.0..d.0 + d.1].iter().copied());
            }
            "header byte" => b[60] ^= 0x01,
            _ => unreachable!(),
        }
        std::fs::write(&f, &b).unwrap();
    }

    let o = v.cli(&["verify"]);
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    println!("{report}");
    assert_eq!(o.status.code(), Some(1), "verify must exit 1");
    for (i, case) in cases.iter().enumerate() {
        let r = &recs[i + 1];
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("FAIL recording {} ", r.id)));
        assert!(line.is_some(), "{case} (recording {}) not reported", r.id);
        assert!(line.unwrap().contains(".vseg"), "failure names the file");
        let o = export(&v, r, &format!("t{i}.mp4"));
        let err = String::from_utf8_lossy(&o.stderr);
        println!("export of {case}: {}", err.trim());
        assert_eq!(o.status.code(), Some(1), "{case}: export must be refused");
        assert!(
            err.contains(&format!("recording {}", r.id)),
            "{case}: error names the recording: {err}"
        );
        assert!(!v.path(&format!("t{i}.mp4")).exists() && !v.path(&format!("t{i}.mp4.partial")).exists());
    }
    // Bit flip and splice name the chunk.
    assert!(report.contains(&format!("FAIL recording {} ", recs[1].id)) && report.contains("chunk 1 at byte"));
    for r in [&recs[0], &recs[7], &recs[8]] {
        assert!(
            !report.contains(&format!("FAIL recording {} ", r.id)),
            "clean recording {} reported",
            r.id
        );
        let o = export(&v, r, &format!("clean{}.mp4", r.id));
        assert!(
            o.status.success(),
            "clean export: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(ffprobe(&v.path(&format!("clean{}.mp4", r.id))).is_ok());
    }

    // Another box's key-encryption key: nothing verifies, nothing exports,
    // and the error says why. `keys init` will not replace the keyring.
    assert_eq!(v.cli(&["keys", "init"]).status.code(), Some(2));
    std::fs::rename(v.path("kek.key"), v.path("kek.key.right")).unwrap();
    std::fs::write(v.path("kek.key"), format!("vigil-kek-v1:{}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(v.path("kek.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = v.cli(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("belongs to another keyring"),
        "{o:?}"
    );
    let o = export(&v, &recs[0], "wrongkey.mp4");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("belongs to another keyring"));
    assert!(!v.path("wrongkey.mp4").exists());
}

#[test]
fn no_key_no_recording() {
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        2,
    );
    std::fs::remove_file(v.path("kek.key")).unwrap();
    let o = v.cli(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("keys.file") && err.contains("vigil keys init"), "{err}");
    assert!(files_under(&v.storage()).is_empty(), "nothing written without a key");
    v.kill9();
}
