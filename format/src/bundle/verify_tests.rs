//! Tests of the offline verifier on bundles made by hand: two files, a
//! manifest signed with a fresh Ed25519 key, as a directory and as a zip;
//! then each kind of tampering, and pins by key and by fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair};

use super::key::{fingerprint, public_key_pem};
use super::*;

const CLIP_A: &[u8] = b"first clip: not really an MP4, the verifier does not look inside";
const CLIP_B: &[u8] = b"second clip, a different length from the first";

/// A signed bundle directory in a temporary directory.
struct Made {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    public_key: [u8; 32],
}

fn range() -> Range {
    Range {
        start_utc: "2026-12-01T10:00:00Z".into(),
        end_utc: "2026-12-01T10:00:02Z".into(),
        start_ns: 1_796_119_200_000_000_000,
        end_ns: 1_796_119_202_000_000_000,
    }
}

fn make() -> Made {
    make_with(|pair| audit_head_by(pair, "vigil-test"))
}

/// [`make`] with the audit head `head` makes from the device key pair.
fn make_with(head: impl Fn(&Ed25519KeyPair) -> audit_head::AuditHead) -> Made {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut public_key = [0u8; 32];
    public_key.copy_from_slice(pair.public_key().as_ref());

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    std::fs::create_dir(&dir).unwrap();
    let mut files = Vec::new();
    for (name, data) in [("door.mp4", CLIP_A), ("yard.mp4", CLIP_B)] {
        std::fs::write(dir.join(name), data).unwrap();
        files.push(hash_reader(name, &mut &data[..]).unwrap());
    }
    let clip = |file: &str, camera: &str| Clip {
        camera_clock: None,
        file: file.into(),
        camera: camera.into(),
        actual: range(),
        frames: 50,
        source_recordings: vec![SourceRecording {
            id: 1,
            file: "r1.vseg".into(),
            key_id: "00".repeat(16),
            start_utc: range().start_utc,
            end_utc: range().end_utc,
            bytes: 1000,
            ciphertext_sha256: None,
        }],
    };
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.into(),
        image_type: "working".into(),
        export_id: 7,
        device_id: "vigil-test".into(),
        exported_utc: "2026-12-01T10:05:00Z".into(),
        exported_ns: 1_796_119_500_000_000_000,
        operator: "user:ops".into(),
        software: "vigil test".into(),
        time_sync: TimeSyncState {
            synchronised: true,
            max_error_us: 1000,
        },
        requested: range(),
        actual: range(),
        clips: vec![clip("door.mp4", "door"), clip("yard.mp4", "yard")],
        files,
        signing_key: SigningKey {
            algorithm: "Ed25519".into(),
            public_key_file: PUBLIC_KEY.into(),
            public_key_hex: crate::hex(&public_key),
            fingerprint_sha256: fingerprint(&public_key),
        },
        audit_head: Some(head(&pair)),
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    bytes.push(b'\n');
    std::fs::write(dir.join(MANIFEST), &bytes).unwrap();
    std::fs::write(dir.join(SIGNATURE), pair.sign(&bytes).as_ref()).unwrap();
    std::fs::write(dir.join(PUBLIC_KEY), public_key_pem(&public_key)).unwrap();
    Made { tmp, dir, public_key }
}

/// A signed audit head of `device_id` by `pair`.
fn audit_head_by(pair: &Ed25519KeyPair, device_id: &str) -> audit_head::AuditHead {
    let pk: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
    let hash = [9u8; 32];
    let msg = audit_head::checkpoint_message(device_id, 4, 120, &hash, 1_796_119_500_000_000_000);
    let sig: [u8; 64] = pair.sign(&msg).as_ref().try_into().unwrap();
    audit_head::AuditHead::new(
        4,
        120,
        &hash,
        "2026-12-01T10:05:00Z".into(),
        1_796_119_500_000_000_000,
        &sig,
        &pk,
    )
}

/// The same files as a zip (stored, as the daemon writes them).
fn zip_of(dir: &Path, out: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names {
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file(name.as_str(), opts).unwrap();
        zip.write_all(&std::fs::read(dir.join(&name)).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

fn texts(rep: &VerifyReport, ok: bool) -> Vec<String> {
    rep.findings
        .iter()
        .filter(|f| f.ok == ok)
        .map(|f| f.text.clone())
        .collect()
}

/// Verifies `path`, expects it to fail with exactly `expect` among its failures.
fn fails_with(path: &Path, pin: &Pin, expect: &str) -> VerifyReport {
    let rep = verify_bundle(path, pin);
    assert!(!rep.ok(), "{:?}", rep.findings);
    let failed = texts(&rep, false);
    assert!(failed.iter().any(|t| t == expect), "no \"{expect}\" in {failed:?}");
    rep
}

fn assert_intact(rep: &VerifyReport, fp: &str) {
    assert!(rep.ok(), "{:?}", rep.findings);
    let passed = texts(rep, true);
    assert!(passed.contains(&format!(
        "manifest.sig: valid Ed25519 signature of manifest.json by key {fp}"
    )));
    for (name, data) in [("door.mp4", CLIP_A), ("yard.mp4", CLIP_B)] {
        let line = format!("{name}: {} bytes, SHA-256 and SHA3-256 match the manifest", data.len());
        assert!(passed.contains(&line), "no \"{line}\" in {passed:?}");
    }
    assert!(
        passed
            .iter()
            .any(|l| l.starts_with("audit head: checkpoint 4 at entry 120")),
        "{passed:?}"
    );
    let m = rep.manifest.as_ref().unwrap();
    let cameras: Vec<&str> = m.clips.iter().map(|c| c.camera.as_str()).collect();
    assert_eq!((m.export_id, cameras), (7, vec!["door", "yard"]));
}

#[test]
fn a_clean_bundle_verifies_unpinned_and_pinned_by_key_or_fingerprint() {
    let b = make();
    let fp = fingerprint(&b.public_key);

    let rep = verify_bundle(&b.dir, &Pin::None);
    assert_intact(&rep, &fp);
    assert!(!rep.pinned);

    let rep = verify_bundle(&b.dir, &Pin::PublicKey(b.public_key));
    assert_intact(&rep, &fp);
    assert!(rep.pinned);

    // Upper case and separators are forgiven.
    let rep = verify_bundle(&b.dir, &Pin::Fingerprint(fp.to_ascii_uppercase()));
    assert_intact(&rep, &fp);
    assert!(rep.pinned);
    assert!(texts(&rep, true).contains(&format!("device key fingerprint {fp} matches the one you gave")));
}

#[test]
fn an_audit_head_signed_by_another_key_or_for_another_device_fails() {
    let rng = ring::rand::SystemRandom::new();
    let stranger = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let b = make_with(|_| audit_head_by(&stranger, "vigil-test"));
    let failed = texts(&verify_bundle(&b.dir, &Pin::PublicKey(b.public_key)), false);
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("audit head: the audit head names signing key")),
        "{failed:?}"
    );
    let b = make_with(|pair| audit_head_by(pair, "vigil-elsewhere"));
    fails_with(
        &b.dir,
        &Pin::None,
        "audit head: the audit head's signature does not verify with the device key",
    );
}

#[test]
fn a_wrong_pin_fails() {
    let b = make();
    let fp = fingerprint(&b.public_key);
    let other = [9u8; 32];
    let rep = fails_with(
        &b.dir,
        &Pin::PublicKey(other),
        &format!(
            "device-public-key.pem is not the key you gave (bundled fingerprint {fp}, yours {})",
            fingerprint(&other)
        ),
    );
    assert!(rep.pinned);
    assert!(texts(&rep, false).contains(
        &"manifest.sig: the signature does not match manifest.json: the manifest or the signature was changed".into()
    ));

    let want = "ab".repeat(32);
    let rep = fails_with(
        &b.dir,
        &Pin::Fingerprint(want.clone()),
        &format!("device key fingerprint {fp} is not the one you gave ({want}): signed by another key"),
    );
    assert!(texts(&rep, false).contains(&"manifest.sig: not checked: no trusted key".into()));
}

#[test]
fn a_changed_file_is_found() {
    let b = make();
    let mut data = CLIP_A.to_vec();
    data[3] ^= 1;
    std::fs::write(b.dir.join("door.mp4"), &data).unwrap();
    fails_with(
        &b.dir,
        &Pin::None,
        "door.mp4: CHANGED: same size but different content (hashes differ)",
    );
    std::fs::write(b.dir.join("door.mp4"), &data[1..]).unwrap();
    fails_with(
        &b.dir,
        &Pin::None,
        &format!(
            "door.mp4: CHANGED: size {} bytes, the manifest says {}",
            CLIP_A.len() - 1,
            CLIP_A.len()
        ),
    );
}

#[test]
fn a_missing_extra_or_renamed_file_is_found() {
    let b = make();
    std::fs::remove_file(b.dir.join("yard.mp4")).unwrap();
    fails_with(
        &b.dir,
        &Pin::None,
        "yard.mp4: REMOVED: listed in the manifest but not in the bundle",
    );
    std::fs::write(b.dir.join("garden.mp4"), CLIP_B).unwrap();
    let rep = fails_with(
        &b.dir,
        &Pin::None,
        "garden.mp4: RENAMED: it is yard.mp4 under another name",
    );
    assert_eq!(texts(&rep, false).len(), 1, "a rename is one finding");
    std::fs::write(b.dir.join("notes.txt"), b"added later").unwrap();
    fails_with(
        &b.dir,
        &Pin::None,
        "notes.txt: ADDED: the manifest does not list this file",
    );
    std::fs::remove_file(b.dir.join(PUBLIC_KEY)).unwrap();
    fails_with(&b.dir, &Pin::None, "device-public-key.pem: REMOVED from the bundle");
}

#[test]
fn a_changed_manifest_byte_or_truncated_signature_is_found() {
    let b = make();
    let m = b.dir.join(MANIFEST);
    let original = std::fs::read(&m).unwrap();
    let edited = String::from_utf8(original.clone())
        .unwrap()
        .replace("\"export_id\": 7", "\"export_id\": 8")
        .into_bytes();
    assert_ne!(original, edited);
    std::fs::write(&m, &edited).unwrap();
    fails_with(
        &b.dir,
        &Pin::None,
        "manifest.sig: the signature does not match manifest.json: the manifest or the signature was changed",
    );
    std::fs::write(&m, &original).unwrap();
    assert!(verify_bundle(&b.dir, &Pin::None).ok());

    let s = b.dir.join(SIGNATURE);
    let sig = std::fs::read(&s).unwrap();
    std::fs::write(&s, &sig[..63]).unwrap();
    fails_with(
        &b.dir,
        &Pin::None,
        "manifest.sig: missing or not a 64-byte Ed25519 signature (63 bytes)",
    );

    std::fs::remove_file(&m).unwrap();
    let rep = verify_bundle(&b.dir, &Pin::None);
    assert!(!rep.ok());
    assert!(rep.findings[0].text.starts_with("manifest.json: cannot read it ("));
    assert!(rep.findings[0].text.ends_with("); nothing can be checked"));
}

#[test]
fn a_zip_of_the_same_files_verifies_and_its_changes_are_found() {
    let b = make();
    let zip = b.tmp.path().join("bundle.zip");
    zip_of(&b.dir, &zip);
    let rep = verify_bundle(&zip, &Pin::PublicKey(b.public_key));
    assert_intact(&rep, &fingerprint(&b.public_key));

    // A flipped byte inside a stored entry: the zip's CRC-32 catches it first.
    let mut bytes = std::fs::read(&zip).unwrap();
    let at = bytes.windows(CLIP_A.len()).position(|w| w == CLIP_A).unwrap();
    bytes[at + 3] ^= 1;
    std::fs::write(&zip, &bytes).unwrap();
    let rep = verify_bundle(&zip, &Pin::None);
    assert!(!rep.ok());
    let failed = texts(&rep, false);
    assert!(
        failed
            .iter()
            .any(|t| t.starts_with("door.mp4: CHANGED: its bytes no longer match the zip's CRC-32")),
        "{failed:?}"
    );

    let not_zip = b.tmp.path().join("not.zip");
    std::fs::write(&not_zip, b"not a zip").unwrap();
    let rep = verify_bundle(&not_zip, &Pin::None);
    assert!(!rep.ok());
    let want = format!("cannot read the bundle {}: not a readable zip: ", not_zip.display());
    assert!(rep.findings[0].text.starts_with(&want), "{:?}", rep.findings);
}
