//! Fuzzes the recording reader: arbitrary bytes as a whole file (header and
//! record framing), and arbitrary bytes sealed as a record so that the
//! plaintext parsers behind authentication are reached too, in version 2
//! files (the writer's) with and without an audio track and in version 1
//! files. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_format::keys::{DataKey, SingleKey};
use vigil_format::vseg::{
    self, AudioCodec, AudioTrack, Chunk, Codec, FileSealer, FrameMeta, Header, RecordKind, SegmentReader, StreamInfo,
};

/// Seals `plain` as record `i` of kind `kind` onto `file`.
fn push(file: &mut Vec<u8>, sealer: &FileSealer, i: u64, kind: RecordKind, plain: &[u8]) {
    let mut buf = plain.to_vec();
    sealer.seal(i, kind, &mut buf);
    file.extend_from_slice(&(buf.len() as u32).to_be_bytes());
    file.push(kind as u8);
    file.extend_from_slice(&buf);
}

fn read(path: &std::path::Path, file: &[u8], key: &SingleKey) {
    std::fs::write(path, file).unwrap();
    if let Ok(mut r) = SegmentReader::open(path, key) {
        if let Ok(s) = r.scan() {
            let mut buf = Vec::new();
            for c in &s.chunks {
                let _ = r.read_audio_after(&c.pos, &mut buf);
            }
        }
    }
    let _ = vseg::recover(path, key);
}


fuzz_target!(|data: &[u8]| {
    let key = SingleKey::new(DataKey::from_bytes([7; 32]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.vseg");
    let header = Header {
        max_record_plaintext: vseg::DEFAULT_MAX_RECORD_PLAINTEXT,
        key_id: key.current_key_id(),
        file_id: [1; 16],
        camera_id: 1,
        start_wall_ns: 0,
        salt: [2; 32],
    };
    let h = header.encode();
    let mut h1 = h;
    h1[8..10].copy_from_slice(&vseg::VERSION_1.to_be_bytes());

    // 1. The input as the body of a file with a valid header, and as a whole file.
    for bytes in [[&h[..], data].concat(), data.to_vec()] {
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut r) = SegmentReader::open(&path, &key) {
            let _ = r.scan();
        }
        let _ = vseg::recover(&path, &key);
    }

    // 2. The input sealed as records: the first byte picks the kind and the
    // version, the rest is plaintext.
    if let Some((&k, plain)) = data.split_first() {
        let kinds = [
            RecordKind::Stream,
            RecordKind::Media,
            RecordKind::Final,
            RecordKind::RecoveredFinal,
            RecordKind::Audio,
        ];
        let hb = if k & 0x80 != 0 { h1 } else { h };
        let sealer = FileSealer::new(&key.current_key(), &hb, &header.salt);
        let mut file = hb.to_vec();
        for (i, kind) in [RecordKind::Stream, kinds[usize::from(k) % 5]].into_iter().enumerate() {
            push(&mut file, &sealer, i as u64, kind, plain);
        }
        read(&path, &file, &key);

        // 3. A v2 recording with an audio track and one media chunk, then the
        // input as its audio record (and again as the record after it).
        let sealer = FileSealer::new(&key.current_key(), &h, &header.salt);
        let si = StreamInfo {
            codec: Codec::H264,
            timescale: 90_000,
            width: 64,
            height: 48,
            start_pts: 0,
            sample_entry: vec![0; 16],
            audio: Some(AudioTrack {
                codec: [AudioCodec::Aac, AudioCodec::Pcma, AudioCodec::Pcmu][usize::from(k) % 3],
                sample_rate: 8000,
                channels: 1,
                config: if k % 3 == 0 { vec![0x15, 0x88] } else { vec![] },
            }),
        };
        let mut chunk = Vec::new();
        let meta = FrameMeta { duration: 3600, size: 4, key: true };
        Chunk::encode_into(0, &[meta], &[&[0, 0, 0, 0][..]], &mut chunk);
        let mut file = h.to_vec();
        push(&mut file, &sealer, 0, RecordKind::Stream, &si.encode());
        push(&mut file, &sealer, 1, RecordKind::Media, &chunk);
        push(&mut file, &sealer, 2, RecordKind::Audio, plain);
        if k & 0x40 != 0 {
            push(&mut file, &sealer, 3, kinds[usize::from(k) % 5], plain);
        }
        read(&path, &file, &key);
    }
});
