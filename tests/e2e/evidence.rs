//! Evidence bundles: made from the CLI (directory and zip) and the API,
//! verified offline by `vigil verify-export` with the daemon's data out of
//! reach, cross-checked with openssl, and every kind of tampering detected.
//! Also the signed per-recording manifest and legal holds through the API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use vigil_e2e::*;

/// `vigil verify-export` run with no config, no database, no keys.
fn verify_export(bundle: &Path, extra: &[&str]) -> Output {
    Command::new(vigil_bin())
        .arg("--config")
        .arg("/nonexistent/vigil.toml")
        .arg("verify-export")
        .arg(bundle)
        .args(extra)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run vigil verify-export")
}

/// GET `path` over HTTPS with `bearer` into `out`; returns the response headers.
fn download(port: u16, path: &str, bearer: &str, out: &Path) -> String {
    let hdrs = out.with_extension("headers");
    let o = Command::new("curl")
        .args(["-sk", "-m", "30", "-D"])
        .arg(&hdrs)
        .arg("-o")
        .arg(out)
        .args(["-H", bearer])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    assert!(o.status.success(), "GET {path}: {}", text(&o));
    std::fs::read_to_string(&hdrs).unwrap_or_default()
}

/// The value of header `name` (any case) in a curl header dump.
fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// openssl's verdict on an Ed25519 signature (an independent implementation).
fn openssl_verify(pubkey: &Path, message: &Path, signature: &Path) -> Output {
    Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(pubkey)
        .arg("-rawin")
        .arg("-in")
        .arg(message)
        .arg("-sigfile")
        .arg(signature)
        .output()
        .expect("openssl")
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(st.success());
}

fn clip_of(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("bundle dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "mp4"))
        .expect("a clip in the bundle")
}

/// A tampered copy of `clean` (made by `edit`) must fail with `expect` in the report.
fn assert_detected(clean: &Path, work: &Path, name: &str, expect: &str, edit: impl FnOnce(&Path)) {
    let copy = work.join(name);
    copy_dir(clean, &copy);
    edit(&copy);
    let o = verify_export(&copy, &[]);
    let t = text(&o);
    println!("--- {name}: exit {:?}\n{t}", o.status.code());
    assert_eq!(o.status.code(), Some(1), "{name} was not detected:\n{t}");
    assert!(t.contains(expect), "{name}: the report does not say \"{expect}\":\n{t}");
    assert!(t.contains("RESULT: NOT INTACT"), "{name}:\n{t}");
}

#[test]
fn bundles_verify_offline_and_every_tampering_is_detected() {
    let cam = Camera::start(&["--gop", "25"]);
    let mut v = Vigil::new(
        &[Cam {
            name: "door",
            url: cam.url("/h264"),
        }],
        4,
    );
    v.enable_http("");
    v.start();
    assert!(v.wait_state("door", "streaming", Duration::from_secs(20)).is_some());
    let port = v.https_port();
    let enough = wait_for(Duration::from_secs(40), || {
        (v.recordings().iter().filter(|r| r.state == "complete").count() >= 3).then_some(())
    });
    assert!(enough.is_some(), "no recordings: {}", v.log());
    let recs = v.recordings();
    let start = recs[0].start.clone();
    let end = recs.iter().rfind(|r| r.state == "complete").unwrap().end.clone();

    // The device's public identity, as an investigator would get it from the box.
    let dev = v.cli(&["device"]);
    assert!(dev.status.success(), "{}", text(&dev));
    let dev_out = String::from_utf8_lossy(&dev.stdout).to_string();
    let fingerprint = dev_out
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint:"))
        .map(|s| s.trim().to_string())
        .expect("fingerprint line");
    let pem: String = dev_out
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .map(|l| format!("{l}\n"))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let pubkey = work.path().join("device.pem");
    std::fs::write(&pubkey, &pem).unwrap();

    // CLI: a directory bundle and a zip bundle, while the daemon records.
    let dir_bundle = v.path("bundle-dir");
    let o = v.cli(&[
        "export",
        "--camera",
        "door",
        "--start",
        &start,
        "--end",
        &end,
        "--bundle",
        &dir_bundle.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let zip_bundle = v.path("bundle.zip");
    let o = v.cli(&[
        "export",
        "--camera",
        "door",
        "--start",
        &start,
        "--end",
        &end,
        "--bundle",
        &zip_bundle.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let zip_sha = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("sha256 of the zip: ").map(str::to_string))
        .expect("zip sha printed");

    // API: an operator token makes one; the download carries the headers.
    let tok = v.cli(&[
        "tokens",
        "create",
        "--user",
        "admin",
        "--name",
        "investigator",
        "--role",
        "operator",
    ]);
    let token = String::from_utf8_lossy(&tok.stdout).trim().to_string();
    assert!(tok.status.success() && !token.is_empty(), "{}", text(&tok));
    let bearer = format!("Authorization: Bearer {token}");
    let body = format!(r#"{{"camera":"door","start":"{start}","end":"{end}"}}"#);
    let (code, made) = curl(port, "POST", "/api/v1/exports", &["-H", &bearer], Some(&body));
    assert_eq!(code, 201, "{made}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let id = made["id"].as_i64().unwrap();
    let api_zip = work.path().join("api.zip");
    let headers = download(port, &format!("/api/v1/exports/{id}/download"), &bearer, &api_zip);
    let sha_header = header(&headers, "x-export-sha256").expect("X-Export-SHA256");
    assert!(header(&headers, "x-export-utc").is_some(), "{headers}");
    let sum = Command::new("sha256sum").arg(&api_zip).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    assert_eq!(sum, sha_header, "X-Export-SHA256 is the zip's SHA-256");
    assert_eq!(made["sha256"].as_str(), Some(sum.as_str()));

    // The signed primary-image manifest of one recording, checked with openssl.
    let rid = recs[0].id;
    let mf = work.path().join("rec-manifest.json");
    let mh = download(port, &format!("/api/v1/recordings/{rid}/manifest"), &bearer, &mf);
    let sig_b64 = header(&mh, "x-signature-ed25519").expect("X-Signature-Ed25519");
    let sig_file = work.path().join("rec-manifest.sig");
    let dec = Command::new("base64")
        .arg("-d")
        .stdin(
            std::fs::File::open({
                let p = work.path().join("sig.b64");
                std::fs::write(&p, &sig_b64).unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    std::fs::write(&sig_file, &dec.stdout).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&mf).unwrap()).unwrap();
    assert_eq!(manifest["image_type"], "primary");
    assert_eq!(manifest["recording"]["id"].as_i64(), Some(rid));
    assert_eq!(
        manifest["recording"]["ciphertext_sha256"].as_str().map(str::len),
        Some(64)
    );
    let ossl = openssl_verify(&pubkey, &mf, &sig_file);
    assert!(
        ossl.status.success(),
        "openssl rejects the recording manifest signature: {}",
        text(&ossl)
    );

    // Holds through the API: an operator places one on the export; only an admin may release it.
    let (code, hold) = curl(
        port,
        "POST",
        "/api/v1/holds",
        &["-H", &bearer],
        Some(&format!(r#"{{"export_id":{id},"reason":"case 2026-114"}}"#)),
    );
    assert_eq!(code, 201, "{hold}");
    let hold_id = serde_json::from_str::<serde_json::Value>(&hold).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, _) = curl(
        port,
        "POST",
        &format!("/api/v1/holds/{hold_id}/release"),
        &["-H", &bearer],
        Some(r#"{"reason":"closed"}"#),
    );
    assert_eq!(code, 403, "an operator must not release a hold");
    let o = v.cli(&["keys", "shred", "--recording", &recs[0].id.to_string(), "--yes"]);
    assert!(
        !o.status.success(),
        "shredding a held recording must be refused: {}",
        text(&o)
    );
    assert!(text(&o).contains("legal hold"), "{}", text(&o));
    assert!(v.stop());

    // The data out of reach: verification runs from copies, with the
    // daemon's directory renamed away.
    let clean = work.path().join("clean");
    copy_dir(&dir_bundle, &clean);
    let clean_zip = work.path().join("clean.zip");
    std::fs::copy(&zip_bundle, &clean_zip).unwrap();
    let hidden = v.dir.path().with_extension("hidden");
    std::fs::rename(v.dir.path(), &hidden).unwrap();
    let restore = scopeguard(v.dir.path().to_path_buf(), hidden.clone());

    for (what, path, extra) in [
        ("directory", &clean, vec![]),
        (
            "directory, pinned fingerprint",
            &clean,
            vec!["--fingerprint", fingerprint.as_str()],
        ),
        ("zip", &clean_zip, vec![]),
        (
            "API zip, pinned key",
            &api_zip,
            vec!["--pubkey", pubkey.to_str().unwrap()],
        ),
    ] {
        let o = verify_export(path, &extra);
        println!("--- clean {what}\n{}", text(&o));
        // Without a pinned key: intact, origin not verified, exit 3.
        let (code, result) = if extra.is_empty() {
            (3, "RESULT: INTACT, ORIGIN NOT VERIFIED\n")
        } else {
            (0, "RESULT: INTACT\n")
        };
        assert_eq!(o.status.code(), Some(code), "clean {what}:\n{}", text(&o));
        assert!(text(&o).contains(result), "clean {what}:\n{}", text(&o));
    }
    let sum = Command::new("sha256sum").arg(&clean_zip).output().unwrap();
    assert!(String::from_utf8_lossy(&sum.stdout).starts_with(&zip_sha));
    // openssl agrees with the bundle's signature.
    let ossl = openssl_verify(
        &clean.join("device-public-key.pem"),
        &clean.join("manifest.json"),
        &clean.join("manifest.sig"),
    );
    assert!(ossl.status.success(), "openssl: {}", text(&ossl));
    // The clip is a playable MP4.
    let probe = ffprobe(&clip_of(&clean)).expect("ffprobe accepts the clip");
    assert!(probe.frames > 0);

    // Every kind of tampering.
    let w = work.path();
    assert_detected(&clean, w, "flipped-byte", "CHANGED", |d| {
        let clip = clip_of(d);
        let mut b = std::fs::read(&clip).unwrap();
        let at = b.len() / 2;
        b[at] ^= 0x01;
        std::fs::write(&clip, b).unwrap();
    });
    assert_detected(&clean, w, "edited-manifest", "signature does not match", |d| {
        let m = std::fs::read_to_string(d.join("manifest.json")).unwrap();
        let edited = m.replacen("\"operator\": \"", "\"operator\": \"someone else, ", 1);
        assert_ne!(m, edited);
        std::fs::write(d.join("manifest.json"), edited).unwrap();
    });
    let other_sig = work.path().join("other.sig");
    {
        // A real signature by the same device, of another manifest (the zip bundle's).
        let o = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('manifest.sig'))",
            ])
            .arg(&clean_zip)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stdout.len() == 64,
            "read manifest.sig from the zip"
        );
        std::fs::write(&other_sig, &o.stdout).unwrap();
    }
    assert_detected(&clean, w, "swapped-signature", "signature does not match", |d| {
        std::fs::copy(&other_sig, d.join("manifest.sig")).unwrap();
    });
    assert_detected(&clean, w, "added-file", "ADDED", |d| {
        std::fs::write(d.join("notes.txt"), b"added later").unwrap();
    });
    assert_detected(&clean, w, "removed-file", "REMOVED", |d| {
        std::fs::remove_file(clip_of(d)).unwrap();
    });
    assert_detected(&clean, w, "renamed-file", "RENAMED", |d| {
        let c = clip_of(d);
        std::fs::rename(&c, d.join("renamed.mp4")).unwrap();
    });
    // A hostile bundle: the clip replaced by a symlink to an endless device.
    assert_detected(&clean, w, "symlinked-clip", "not a regular file", |d| {
        let c = clip_of(d);
        std::fs::remove_file(&c).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &c).unwrap();
    });
    // A zip with one byte of the clip flipped.
    let bad_zip = work.path().join("bad.zip");
    let mut z = std::fs::read(&clean_zip).unwrap();
    let at = z.len() / 2;
    z[at] ^= 0x80;
    std::fs::write(&bad_zip, z).unwrap();
    let o = verify_export(&bad_zip, &[]);
    println!("--- flipped byte in the zip\n{}", text(&o));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The wrong pinned key: a valid bundle, but not from the device named.
    let o = verify_export(&clean, &["--fingerprint", &"ab".repeat(32)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not the one you gave"));
    drop(restore);
}

/// Puts the renamed daemon directory back even if an assertion fails.
struct Restore(PathBuf, PathBuf);
impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.1, &self.0);
    }
}
fn scopeguard(original: PathBuf, moved: PathBuf) -> Restore {
    Restore(original, moved)
}
