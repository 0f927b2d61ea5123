//! A VSEG v1 recording written by the v1 writer (before version 2 existed,
//! commit 4721638) still reads, verifies, recovers and exports exactly as
//! before. `data/v1-h264.vseg` is sealed under the data key in
//! `data/v1-h264.key` (hex): 4 chunks of 5 H.264 frames, 64x48.

use std::path::PathBuf;

use vigil_format::keys::{parse_hex32, DataKey, SingleKey};
use vigil_format::mp4;
use vigil_format::vseg::{self, Chunk, RecordKind, SegmentReader};

fn fixture() -> (PathBuf, SingleKey) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let hex = std::fs::read_to_string(dir.join("v1-h264.key")).unwrap();
    let key = SingleKey::new(DataKey::from_bytes(parse_hex32(hex.trim()).unwrap()));
    // A copy: recovery may open the file for writing.
    let tmp = tempfile::tempdir().unwrap().keep();
    let path = tmp.join("v1-h264.vseg");
    std::fs::copy(dir.join("v1-h264.vseg"), &path).unwrap();
    (path, key)
}

#[test]
fn a_v1_recording_reads_verifies_and_exports() {
    let (path, key) = fixture();
    let mut r = SegmentReader::open(&path, &key).unwrap();
    assert_eq!(r.version(), vseg::VERSION_1);
    let scan = r.scan().unwrap();
    assert!(scan.error.is_none(), "{:?}", scan.error);
    assert_eq!(scan.final_kind, Some(RecordKind::Final));
    assert_eq!((scan.summary.media_chunks, scan.summary.frames), (4, 20));
    assert_eq!(
        vigil_format::hex(&scan.sha256),
        "0a22bc088de9612ec7fca554e0666cca503094ce31f875584c65c8eae2622f03"
    );
    let si = scan.stream.clone().unwrap();
    assert_eq!(
        (si.width, si.height, si.start_pts, si.audio.is_some()),
        (64, 48, 4500, false)
    );
    assert_eq!(r.read_final(scan.chunks.len() as u64 + 2).unwrap(), scan.summary);
    assert!(!vseg::recover(&path, &key).unwrap().appended);

    // Export: the MP4 writer's init segment and one fragment per chunk.
    let mut out = mp4::init_segment(&mp4::TrackInfo {
        timescale: si.timescale,
        width: si.width,
        height: si.height,
        duration: 0,
        sample_entries: std::slice::from_ref(&si.sample_entry),
    });
    let mut buf = Vec::new();
    for (i, c) in scan.chunks.iter().enumerate() {
        assert!(!r.read_audio_after(&c.pos, &mut buf).unwrap());
        r.read_record_into(c.pos.index, c.pos.offset, &mut buf).unwrap();
        let chunk = Chunk::decode(&buf).unwrap();
        let samples: Vec<mp4::Sample> = chunk
            .frames
            .iter()
            .map(|f| mp4::Sample {
                duration: f.duration,
                size: f.size,
                key: f.key,
            })
            .collect();
        let datas: Vec<&[u8]> = chunk.iter().map(|(_, _, d)| d).collect();
        let decode = (chunk.first_pts - si.start_pts) as u64;
        mp4::write_fragment(&mut out, i as u32 + 1, decode, 1, &samples, &datas).unwrap();
    }
    let mp4_path = path.with_extension("mp4");
    std::fs::write(&mp4_path, &out).unwrap();
    let (_, track) = vigil_format::mp4_demux::open(&mp4_path).unwrap();
    assert_eq!(track.samples.len(), 20);
    assert_eq!(track.sample_entry, si.sample_entry);
}

#[test]
fn a_v1_recording_resealed_becomes_v2_and_still_reads() {
    let (path, key) = fixture();
    let new_key = SingleKey::new(DataKey::from_bytes([0x24; 32]));
    let r = SegmentReader::open(&path, &key).unwrap();
    let mut header = r.header().clone();
    header.key_id = new_key.current_key_id();
    header.salt = [0x33; 32];
    let dst = path.with_extension("v2.vseg");
    vseg::reseal(&path, &key, &dst, &header, &new_key.current_key()).unwrap();
    let mut r2 = SegmentReader::open(&dst, &new_key).unwrap();
    assert_eq!(r2.version(), vseg::VERSION);
    let scan = r2.scan().unwrap();
    assert!(scan.error.is_none(), "{:?}", scan.error);
    assert_eq!(scan.summary.frames, 20);
}
