//! Acceptance: H.264 and H.265 cameras recorded with segment_seconds = 10,
//! a 20 s export spanning recordings plays and is continuous, nothing in the
//! storage dir is plaintext video.

use std::time::Duration;

use vigil_e2e::*;

use crate::common::heavy;

/// The parameter-set NAL units inside an exported file's avcC/hvcC.
fn parameter_sets(mp4: &[u8], boxname: &[u8; 4]) -> Vec<Vec<u8>> {
    let Some(pos) = mp4.windows(4).position(|w| w == boxname) else {
        return vec![];
    };
    let size = u32::from_be_bytes([mp4[pos - 4], mp4[pos - 3], mp4[pos - 2], mp4[pos - 1]]) as usize;
    let body = &mp4[pos + 4..pos - 4 + size];
    // Not a full parser: take every 12+ byte run that starts like a NAL header of an SPS.
    let mut out = Vec::new();
    for i in 0..body.len().saturating_sub(12) {
        let b = body[i];
        let is_sps = if boxname == b"avcC" {
            b & 0x1f == 7 && i > 0 && body[i - 1] != 0
        } else {
            (b >> 1) & 0x3f == 33
        };
        if is_sps && i >= 2 {
            let len = u16::from_be_bytes([body[i - 2], body[i - 1]]) as usize;
            if len >= 8 && i + len <= body.len() {
                out.push(body[i..i + len].to_vec());
            }
        }
    }
    out
}

#[test]
fn h264_and_h265_recorded_exported_and_nothing_in_the_clear() {
    let _gate = heavy(); // H.264 and H.265 encoded, with audio
    let cam = Camera::start(&["--audio", "--gop", "25", "--fps", "25"]);
    let mut v = Vigil::new(
        &[
            Cam {
                name: "h264cam",
                url: cam.url("/h264"),
            },
            Cam {
                name: "h265cam",
                url: cam.url("/h265"),
            },
        ],
        10,
    );
    v.start();
    assert!(
        v.wait_state("h264cam", "streaming", Duration::from_secs(20)).is_some(),
        "h264 never streamed"
    );
    assert!(
        v.wait_state("h265cam", "streaming", Duration::from_secs(20)).is_some(),
        "h265 never streamed"
    );
    std::thread::sleep(Duration::from_secs(32));
    assert!(v.stop(), "SIGTERM did not stop vigil cleanly");

    let recs = v.recordings();
    assert!(
        recs.iter().all(|r| r.state == "complete"),
        "every recording finalised on SIGTERM: {recs:#?}"
    );
    for (name, codec, tag, sps_box) in [
        ("h264cam", "h264", "avc1", b"avcC"),
        ("h265cam", "hevc", "hvc1", b"hvcC"),
    ] {
        let mine: Vec<&Rec> = recs.iter().filter(|r| r.camera == name).collect();
        assert!(mine.len() >= 3, "{name}: {} recordings", mine.len());
        let t0 = epoch_secs(&mine[0].start);
        let (start, end) = (rfc3339(t0 + 5.5), rfc3339(t0 + 25.5));
        let out = v.path(&format!("{name}.mp4"));
        let o = v.export(name, &start, &end, &out);
        assert!(
            o.status.success(),
            "export {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let said = String::from_utf8_lossy(&o.stdout).to_string();
        let spanned: usize = said
            .split(" recording(s)")
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            spanned >= 2,
            "{name}: the 20 s export spans {spanned} recording(s): {said}"
        );
        let p = ffprobe(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((p.codec.as_str(), p.tag.as_str()), (codec, tag), "{name}");
        let expected = 20 * FPS as usize;
        println!(
            "{name}: exported {} frames for 20 s at {FPS} fps (expected {expected} within one GOP of 25)",
            p.frames
        );
        assert!(
            p.frames >= expected && p.frames <= expected + 25,
            "{name}: {} frames",
            p.frames
        );
        let (gap, increasing) = dts_continuity(&p.dts);
        println!("{name}: largest gap between frames {gap:.4} s");
        assert!(
            increasing && gap < 1.5 / f64::from(FPS),
            "{name}: timestamps not continuous (gap {gap})"
        );

        // No parameter set from the stream appears anywhere in storage.
        let sets = parameter_sets(&std::fs::read(&out).unwrap(), sps_box);
        assert!(!sets.is_empty(), "{name}: found no SPS in the export to look for");
        for f in files_under(&v.storage()) {
            let b = std::fs::read(&f).unwrap();
            for s in &sets {
                assert!(!contains_bytes(&b, s), "{}: SPS in the clear", f.display());
            }
        }
    }
    for f in files_under(&v.storage()) {
        let b = std::fs::read(&f).unwrap();
        for pat in [
            &b"ftyp"[..],
            b"mdat",
            b"moov",
            b"avcC",
            b"hvcC",
            b"\x00\x00\x00\x01\x67",
            b"\x00\x00\x00\x01\x40\x01",
        ] {
            assert!(
                !contains_bytes(&b, pat),
                "{}: {:?} in the clear",
                f.display(),
                String::from_utf8_lossy(pat)
            );
        }
    }
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stdout));
    assert!(!v.log().contains("panicked"));
}
