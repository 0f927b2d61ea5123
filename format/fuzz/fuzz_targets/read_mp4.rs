//! Hostile MP4 files for `vigil import`: the demuxer returns an error, never
//! panics, and never reads outside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("in.mp4");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok((mut f, track)) = vigil_format::mp4_demux::open(&path) {
        let mut buf = Vec::new();
        for s in track.samples.iter().take(64) {
            let _ = vigil_format::mp4_demux::read_sample(&mut f, &path, s, &mut buf);
        }
    }
});
