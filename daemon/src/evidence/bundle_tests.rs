//! Tests of bundle building: the audit entries and export rows of
//! `create_bundle`, and bundles that the offline verifier accepts.

use std::path::{Path, PathBuf};

use super::bundle::EvidenceError;
use super::bundle::{create_bundle, BundleRequest, BundleTarget};
use super::device::DeviceKey;
use super::export::{Archive, ExportError};
use crate::db::Index;
use crate::storage::recorder_rig::{Camera, Rig, CAMERA, SECOND, T0};
use vigil_format::bundle::{verify_bundle, Pin, MANIFEST};

/// A real keyring's archive with 4 s of the rig's camera (100 frames from
/// T0), and the device key made in that keyring.
fn recorded() -> (Rig, DeviceKey) {
    let rig = Rig::with_keyring(T0);
    let mut rec = rig.recorder(60);
    rig.feed(&mut rec, &mut Camera::new(25), 100);
    rec.close("stopped");
    let sealer = crate::keys::keyring::tests_support::file_sealer(rig.dir.path());
    let kr = crate::keys::keyring::Keyring::open(&rig.db, sealer, "t").unwrap();
    let device = DeviceKey::load_or_create(&kr, "test").unwrap();
    (rig, device)
}

fn archive<'a>(rig: &'a Rig, index: &'a Index) -> Archive<'a> {
    Archive {
        index,
        storage: &rig.storage,
        keys: rig.keys.as_ref(),
    }
}

/// A bundle of `cameras` from `start_ns` to `end_ns` by `user:ops`.
fn request<'a>(cameras: &'a [String], start_ns: i64, end_ns: i64, dest: Option<&'a Path>) -> BundleRequest<'a> {
    BundleRequest {
        cameras,
        start_ns,
        end_ns,
        operator: "user:ops",
        audit_destination: dest,
        store_in: None,
    }
}

fn path_of(target: &BundleTarget) -> &Path {
    match target {
        BundleTarget::Dir(p) | BundleTarget::Zip(p) => p,
    }
}

/// `path` with `.partial` appended: where a bundle is written before it is renamed.
fn partial(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// (actor, outcome, detail) of each `export.bundle` entry.
fn bundle_entries(conn: &rusqlite::Connection) -> Vec<(String, String, String)> {
    let mut st = conn
        .prepare("SELECT actor, outcome, detail FROM audit_log WHERE action = 'export.bundle' ORDER BY id")
        .unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

fn export_rows(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM export", [], |r| r.get(0)).unwrap()
}

#[test]
fn a_bundle_is_audited_with_its_export_row_in_one_transaction() {
    let (rig, device) = recorded();
    let index = rig.index();
    let archive = archive(&rig, &index);
    let cameras = [CAMERA.to_string()];
    let req = |start_ns, out| request(&cameras, start_ns, start_ns + 2 * SECOND, out);
    let zip = |n: &str| BundleTarget::Zip(rig.dir.path().join(n));

    let rep = create_bundle(
        archive,
        &device,
        &req(T0, Some(Path::new("/media/usb/b.zip"))),
        &zip("a.zip"),
    )
    .unwrap();
    let entries = bundle_entries(index.conn());
    assert_eq!(entries.len(), 1);
    let (actor, outcome, detail) = &entries[0];
    assert_eq!((actor.as_str(), outcome.as_str()), ("user:ops", "ok"));
    assert!(detail.starts_with(&format!("export {}: ", rep.export_id)), "{detail}");
    assert!(detail.ends_with(" to /media/usb/b.zip"), "{detail}");
    assert_eq!(export_rows(index.conn()), 1);

    // Nothing to export: a failed entry, no row.
    assert!(create_bundle(archive, &device, &req(T0 + 3600 * SECOND, None), &zip("b.zip")).is_err());
    let entries = bundle_entries(index.conn());
    assert_eq!((entries.len(), entries[1].1.as_str()), (2, "failed"));
    assert_eq!(export_rows(index.conn()), 1);

    // When its ok entry cannot be written, the export row is not kept either.
    index
        .conn()
        .execute_batch(
            "CREATE TEMP TRIGGER no_ok BEFORE INSERT ON audit_log WHEN NEW.outcome = 'ok' \
             BEGIN SELECT RAISE(ABORT, 'no audit'); END;",
        )
        .unwrap();
    assert!(create_bundle(archive, &device, &req(T0, None), &zip("c.zip")).is_err());
    assert_eq!(
        export_rows(index.conn()),
        1,
        "no finished export without its audit entry"
    );
    let outcomes: Vec<String> = bundle_entries(index.conn()).into_iter().map(|e| e.1).collect();
    assert_eq!(outcomes, ["ok", "failed", "failed"]);
    assert!(
        !rig.dir.path().join("c.zip").exists() && !partial(&rig.dir.path().join("c.zip")).exists(),
        "a bundle that was built but not recorded is not left behind"
    );
}

#[test]
fn a_kept_bundle_is_in_the_exports_folder_before_its_ok_entry() {
    let (rig, device) = recorded();
    let index = rig.index();
    let archive = archive(&rig, &index);
    let cameras = [CAMERA.to_string()];
    let exports = rig.dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let tmp = exports.join(".bundle-1.zip.tmp");
    let mut req = request(&cameras, T0, T0 + 2 * SECOND, None);
    req.store_in = Some(&exports);

    let rep = create_bundle(archive, &device, &req, &BundleTarget::Zip(tmp.clone())).unwrap();
    let name = format!("export-{}.zip", rep.export_id);
    assert!(!tmp.exists() && exports.join(&name).is_file());
    let kept: Option<String> = index
        .conn()
        .query_row("SELECT file_name FROM export WHERE id = ?1", [rep.export_id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kept.as_deref(), Some(name.as_str()), "the row names the kept file");
    let report = verify_bundle(&exports.join(&name), &Pin::PublicKey(device.identity().public_key));
    assert!(report.ok(), "{:?}", report.findings);

    // The move fails (the folder is gone): no ok entry, no row, no file.
    std::fs::remove_dir_all(&exports).unwrap();
    let tmp2 = rig.dir.path().join("second.zip");
    assert!(create_bundle(archive, &device, &req, &BundleTarget::Zip(tmp2.clone())).is_err());
    let outcomes: Vec<String> = bundle_entries(index.conn()).into_iter().map(|e| e.1).collect();
    assert_eq!(outcomes, ["ok", "failed"]);
    assert_eq!(export_rows(index.conn()), 1);
    assert!(!tmp2.exists());
}

#[test]
fn a_bundle_directory_and_zip_verify_offline_and_list_their_clip() {
    let (rig, device) = recorded();
    let index = rig.index();
    let archive = archive(&rig, &index);
    let cameras = [CAMERA.to_string()];
    let req = request(&cameras, T0 + SECOND, T0 + 3 * SECOND, None);
    let pin = Pin::PublicKey(device.identity().public_key);
    let dir = rig.dir.path().join("bundle");
    let zip = rig.dir.path().join("bundle.zip");
    for target in [BundleTarget::Dir(dir.clone()), BundleTarget::Zip(zip.clone())] {
        let rep = create_bundle(archive, &device, &req, &target).unwrap();
        let path = path_of(&target);
        assert!(!partial(path).exists(), "{target:?}: the partial bundle is left behind");

        let verified = verify_bundle(path, &pin);
        assert!(verified.ok(), "{target:?}: {:?}", verified.findings);
        assert!(verified.pinned);
        let m = verified.manifest.unwrap();
        assert_eq!(m.export_id, rep.export_id);
        assert_eq!(m.device_id, device.identity().device_id);
        assert_eq!(m.operator, "user:ops");
        assert_eq!((m.requested.start_ns, m.requested.end_ns), (req.start_ns, req.end_ns));
        assert_eq!(m.clips.len(), 1);
        let clip = &m.clips[0];
        assert_eq!(clip.camera, CAMERA);
        assert_eq!(clip.file, rep.manifest.clips[0].file);
        assert!(
            clip.file.starts_with("cam_") && clip.file.ends_with("Z.mp4"),
            "{}",
            clip.file
        );
        assert_eq!(clip.frames, rep.frames);
        assert!(
            clip.frames >= 50,
            "2 s at 25 fps from the key frame before: {}",
            clip.frames
        );
        assert!(!clip.source_recordings.is_empty());
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].name, clip.file);
        let found: Vec<String> = verified.findings.iter().map(|f| f.text.clone()).collect();
        assert!(
            found.contains(&format!(
                "manifest.sig: valid Ed25519 signature of manifest.json by key {}",
                device.identity().fingerprint()
            )),
            "{found:?}"
        );

        match &target {
            BundleTarget::Dir(d) => {
                // The manifest on disk is the report's manifest, as signed.
                let bytes = std::fs::read(d.join(MANIFEST)).unwrap();
                let mut expect = serde_json::to_vec_pretty(&rep.manifest).unwrap();
                expect.push(b'\n');
                assert_eq!(bytes, expect);
                let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
                assert_eq!(digest.as_ref(), rep.manifest_sha256);
                assert_eq!(rep.archive_sha256, None);
            }
            BundleTarget::Zip(z) => {
                let bytes = std::fs::read(z).unwrap();
                let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
                assert_eq!(Some(digest.as_ref()), rep.archive_sha256.as_ref().map(|d| &d[..]));
                assert_eq!(rep.archive_bytes, bytes.len() as u64);
            }
        }
    }
    assert_eq!(export_rows(index.conn()), 2);
}

#[test]
fn an_empty_range_is_refused_and_leaves_no_file() {
    let (rig, device) = recorded();
    let index = rig.index();
    let archive = archive(&rig, &index);
    let cameras = [CAMERA.to_string()];
    let req = |start_ns, end_ns| request(&cameras, start_ns, end_ns, None);
    let targets = [
        BundleTarget::Dir(rig.dir.path().join("bundle")),
        BundleTarget::Zip(rig.dir.path().join("bundle.zip")),
    ];
    for target in &targets {
        let path = path_of(target);
        // The end at or before the start.
        for (start, end) in [(T0 + SECOND, T0 + SECOND), (T0 + 2 * SECOND, T0 + SECOND)] {
            let e = create_bundle(archive, &device, &req(start, end), target).unwrap_err();
            assert!(
                matches!(e, EvidenceError::Export(ExportError::EmptyRange)),
                "{target:?}: {e}"
            );
            assert_eq!(e.to_string(), "the end of the range must be after its start");
        }
        // A range with no footage in it.
        let e = create_bundle(archive, &device, &req(T0 + 3600 * SECOND, T0 + 3601 * SECOND), target).unwrap_err();
        assert!(
            matches!(e, EvidenceError::Export(ExportError::NothingToExport { .. })),
            "{target:?}: {e}"
        );
        assert!(!e.is_integrity());
        assert!(!path.exists(), "{target:?}: a failed bundle left its target");
        assert!(
            !partial(path).exists(),
            "{target:?}: a failed bundle left its partial file"
        );
    }
    assert_eq!(export_rows(index.conn()), 0);
}
