//! Fuzzes the recording reader: arbitrary bytes as a whole file (header and
//! record framing), and arbitrary bytes sealed as a record so that the
//! plaintext parsers behind authentication are reached too. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_format::keys::{DataKey, SingleKey};
use vigil_format::vseg::{self, FileSealer, Header, RecordKind, SegmentReader};


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

    // 1. The input as the body of a file with a valid header, and as a whole file.
    for bytes in [[&h[..], data].concat(), data.to_vec()] {
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut r) = SegmentReader::open(&path, &key) {
            let _ = r.scan();
        }
        let _ = vseg::recover(&path, &key);
    }

    // 2. The input sealed as records: the first byte picks the kind, the rest is plaintext.
    if let Some((&k, plain)) = data.split_first() {
        let kinds = [
            RecordKind::Stream,
            RecordKind::Media,
            RecordKind::Final,
            RecordKind::RecoveredFinal,
        ];
        let sealer = FileSealer::new(&key.current_key(), &h, &header.salt);
        let mut file = h.to_vec();
        for (i, kind) in [RecordKind::Stream, kinds[usize::from(k) % 4]].into_iter().enumerate() {
            let mut buf = plain.to_vec();
            sealer.seal(i as u64, kind, &mut buf);
            file.extend_from_slice(&(buf.len() as u32).to_be_bytes());
            file.push(kind as u8);
            file.extend_from_slice(&buf);
        }
        std::fs::write(&path, &file).unwrap();
        if let Ok(mut r) = SegmentReader::open(&path, &key) {
            let _ = r.scan();
        }
    }
});
