//! Acceptance: `vigil import` brings unencrypted MP4s (progressive H.264,
//! H.265, fragmented) into encrypted storage; every frame is kept and
//! exported again; no plaintext reaches storage; bad files are refused
//! with a clear error and store nothing.

use std::process::Command;

use vigil_e2e::*;

use crate::common::heavy;

fn ffmpeg(args: &[&str], out: &std::path::Path) {
    let o = Command::new("ffmpeg")
        .args([
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
        ])
        .args(args)
        .arg(out)
        .output()
        .expect("ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn import_encrypts_every_frame_and_refuses_what_it_cannot_store_faithfully() {
    let _gate = heavy(); // ffmpeg encodes H.264 and H.265
    let v = Vigil::new(&[], 5);
    let src = v.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let h264 = [
        "-t",
        "12",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
    ];
    ffmpeg(&h264, &src.join("h264.mp4"));
    let h265 = [
        "-t",
        "8",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "bframes=0:keyint=25:log-level=error",
        "-tag:v",
        "hvc1",
        "-pix_fmt",
        "yuv420p",
    ];
    ffmpeg(&h265, &src.join("h265.mp4"));
    let mut frag = h264.to_vec();
    frag.extend(["-movflags", "frag_keyframe+empty_moov"]);
    ffmpeg(&frag, &src.join("frag.mp4"));
    ffmpeg(
        &[
            "-t", "4", "-c:v", "libx264", "-preset", "medium", "-bf", "2", "-pix_fmt", "yuv420p",
        ],
        &src.join("bframes.mp4"),
    );
    let whole = std::fs::read(src.join("h264.mp4")).unwrap();
    std::fs::write(src.join("truncated.mp4"), &whole[..whole.len() / 2]).unwrap();

    for (i, (name, frames)) in [("h264", 300usize), ("h265", 200), ("frag", 300)].iter().enumerate() {
        let start = format!("2026-11-0{}T10:00:00Z", i + 1);
        let file = src.join(format!("{name}.mp4"));
        let o = v.cli(&["import", "--camera", name, "--start", &start, &file.to_string_lossy()]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("imported {frames} frames")));
        let recs: Vec<Rec> = v.recordings().into_iter().filter(|r| r.camera == *name).collect();
        assert!(recs.len() >= 2, "{name}: split into recordings of 5 s: {recs:?}");
        let out = v.path(&format!("{name}-out.mp4"));
        let o = v.export(name, &recs[0].start, &recs.last().unwrap().end, &out);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let p = ffprobe(&out).expect("ffprobe accepts the re-export");
        assert_eq!(p.frames, *frames, "{name}: every frame comes back");
    }
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // No plaintext in storage: no 32-byte run of any source file's media.
    let sample = &whole[whole.len() / 2..whole.len() / 2 + 32];
    for f in files_under(&v.storage()) {
        assert!(
            !contains_bytes(&std::fs::read(&f).unwrap(), sample),
            "{} holds plaintext",
            f.display()
        );
    }

    let before = files_under(&v.storage()).len();
    for (name, why) in [("bframes", "B-frames"), ("truncated", "runs past the end")] {
        let file = src.join(format!("{name}.mp4"));
        let o = v.cli(&[
            "import",
            "--camera",
            "x",
            "--start",
            "2026-11-09T00:00:00Z",
            &file.to_string_lossy(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("vigil:")).collect();
        assert!(
            errors.len() == 1 && errors[0].contains(why),
            "{name}: one clear error line: {err}"
        );
    }
    // Without --start and without a creation time in the file: refused.
    let o = v.cli(&["import", "--camera", "x", &src.join("h264.mp4").to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    // Vigil's own storage is never read as plaintext.
    let own = files_under(&v.storage())[0].clone();
    let o = v.cli(&[
        "import",
        "--camera",
        "x",
        "--start",
        "2026-11-09T00:00:00Z",
        &own.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("inside Vigil's storage"));
    assert_eq!(files_under(&v.storage()).len(), before, "refused imports store nothing");
}
