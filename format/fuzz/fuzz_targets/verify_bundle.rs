//! Hostile zip files for `vigil verify-export`: the offline bundle verifier
//! reports findings, never panics, and never reads outside the zip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_format::bundle::{verify_bundle, Pin};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("bundle.zip");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = verify_bundle(&path, &Pin::None);
});
