//! Acceptance for the key hierarchy, against a real software TPM (swtpm
//! behind tpm2-abrmd) and real systemd-creds: sealing and PCR policy,
//! recovery after a wiped TPM, KEK rotation under `kill -9`, and
//! crypto-shredding.

use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::heavy;

fn complete(v: &Vigil) -> Vec<Rec> {
    v.recordings().into_iter().filter(|r| r.state == "complete").collect()
}

/// Records until `n` recordings are complete (bounded), then stops the daemon.
fn record_n(v: &mut Vigil, camera: &str, n: usize) -> Vec<Rec> {
    v.start();
    assert!(
        v.wait_state(camera, "streaming", Duration::from_secs(20)).is_some(),
        "camera never streamed:\n{}",
        v.log()
    );
    let got = wait_for(Duration::from_secs(60), || (complete(v).len() >= n).then_some(()));
    assert!(got.is_some(), "fewer than {n} recordings:\n{}", v.log());
    assert!(v.stop(), "daemon did not stop cleanly");
    complete(v)
}

/// One H.264 camera, 2 s recordings, the KEK sealed by `tpm` without a PCR policy.
fn one_camera_sealed(cam: &Camera, tpm: &Swtpm) -> Vigil {
    let cams = [Cam {
        name: "c",
        url: cam.url("/h264"),
    }];
    Vigil::sealed(&cams, 2, tpm, "", "")
}

fn verify_all(v: &Vigil) -> String {
    let o = v.cli(&["verify"]);
    assert!(o.status.success(), "verify failed: {}", text(&o));
    text(&o)
}

#[test]
fn tpm_sealed_kek_records_and_a_pcr_mismatch_is_refused_by_name() {
    let cam = Camera::start(&[]);
    let mut tpm = Swtpm::start();
    tpm.extend(7, 0xaa); // the "boot" measurement the seal is bound to
    let mut v = Vigil::sealed(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        2,
        &tpm,
        "7",
        "",
    );

    let cred = std::fs::read(v.path("kek.cred")).unwrap();
    assert!(
        !contains_bytes(&cred, b"vigil-kek-v1"),
        "the credential is sealed, not plain"
    );
    let st = text(&v.cli(&["keys", "status", "--check"]));
    assert!(
        st.contains("systemd credential") && st.contains("PCR policy: PCR 7"),
        "{st}"
    );
    assert!(st.contains("unseal: ok"), "{st}");

    let recs = record_n(&mut v, "c", 2);
    assert!(
        !v.log().contains("DEVELOPMENT KEY SOURCE"),
        "a sealed key is not a development key"
    );
    verify_all(&v);
    let o = v.export("c", &recs[0].start, &recs[1].end, &v.path("a.mp4"));
    assert!(o.status.success(), "export: {}", text(&o));

    // A different boot (PCR 7 changed): refused, and the error names PCR 7.
    tpm.extend(7, 0xbb);
    let o = v.cli(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o);
    assert!(
        err.contains("PCR") && err.contains('7') && err.contains("does not match"),
        "{err}"
    );
    assert!(!v
        .path("recordings")
        .read_dir()
        .unwrap()
        .any(|e| e.unwrap().path().ends_with("b.mp4")));
    let o = v.cli(&["run"]);
    assert_eq!(o.status.code(), Some(1), "the daemon refuses to start: {}", text(&o));

    // The same boot again (a reboot resets PCRs; the same measurement): works.
    tpm.restart();
    tpm.extend(7, 0xaa);
    verify_all(&v);

    // Under systemd, LoadCredentialEncrypted= unseals at unit start and vigil
    // reads $CREDENTIALS_DIRECTORY: it then needs no TPM access of its own.
    let creds = v.path("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let load_credential = || {
        let o = std::process::Command::new("systemd-creds")
            .args(["decrypt", "--name=vigil-kek"])
            .arg(format!("--tpm2-device={}", tpm.tcti()))
            .arg(v.path("kek.cred"))
            .arg(creds.join("vigil-kek"))
            .env("DBUS_SESSION_BUS_ADDRESS", tpm.bus_address())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    load_credential();
    // A rotation after the unit started leaves systemd's copy stale: vigil
    // then unseals the newer sealed file itself.
    let o = v.cli(&["keys", "rotate-kek"]);
    assert!(o.status.success(), "{}", text(&o));
    let creds_env = creds.to_string_lossy().to_string();
    let o = v.cli_with_env(&["verify"], &[("CREDENTIALS_DIRECTORY", &creds_env)]);
    assert!(
        o.status.success(),
        "a stale unit-start copy after a rotation: {}",
        text(&o)
    );
    let _ = std::fs::remove_file(creds.join("vigil-kek"));
    load_credential();
    tpm.wipe();
    assert_eq!(
        v.cli(&["verify"]).status.code(),
        Some(1),
        "no TPM, no credential: refused"
    );
    v.set_env("CREDENTIALS_DIRECTORY", &creds.to_string_lossy());
    verify_all(&v);
}

#[test]
fn recovery_key_restores_every_recording_after_the_tpm_is_wiped() {
    let cam = Camera::start(&[]);
    let mut tpm = Swtpm::start();
    let mut v = one_camera_sealed(&cam, &tpm);
    let recs = record_n(&mut v, "c", 3);

    tpm.wipe();
    let o = v.cli(&["verify"]);
    assert_eq!(o.status.code(), Some(1), "no TPM key, no access: {}", text(&o));

    // A typo is named by group; a valid but foreign recovery key is refused.
    let mut typo: Vec<char> = v.recovery_key.chars().collect();
    typo[7] = if typo[7] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    let o = v.cli_stdin(&["keys", "recover"], typo.as_bytes());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("group 2"), "{}", text(&o));
    let other = Vigil::new(&[], 2);
    let o = v.cli_stdin(&["keys", "recover"], other.recovery_key.as_bytes());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("not the recovery key of this keyring"),
        "{}",
        text(&o)
    );

    let o = v.cli_stdin(
        &["keys", "recover"],
        format!("{}\n", v.recovery_key.to_lowercase()).as_bytes(),
    );
    assert!(o.status.success(), "recover: {}", text(&o));
    let out = verify_all(&v);
    assert!(
        out.contains(&format!("{} ok", recs.len())) || out.contains(" ok,"),
        "{out}"
    );
    for r in &recs {
        let o = v.export("c", &r.start, &r.end, &v.path(&format!("r{}.mp4", r.id)));
        assert!(o.status.success(), "export {}: {}", r.id, text(&o));
    }
    let audit = text(&v.cli(&["audit", "tail", "-n", "50"]));
    assert!(audit.contains("keys.recover") && audit.contains("denied"), "{audit}");
    assert!(v.cli(&["audit", "verify"]).status.success());
}

/// A small deterministic generator for kill moments (seed printed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn rotate_kek_with_10000_data_keys_survives_kill9_at_random_moments() {
    let _gate = heavy(); // 10 000 data keys rewrapped 21 times
    let cam = Camera::start(&[]);
    let tpm = Swtpm::start();
    let mut v = one_camera_sealed(&cam, &tpm);
    let recs = record_n(&mut v, "c", 2);
    let o = v.cli(&["keys", "bench-fill", "--count", "10000"]);
    assert!(o.status.success(), "{}", text(&o));

    // One full rotation, timed, to place the kills inside it.
    let t = Instant::now();
    let o = v.cli(&["keys", "rotate-kek"]);
    assert!(o.status.success(), "{}", text(&o));
    let full = t.elapsed();
    println!(
        "rotate-kek, 10000 data keys, whole command: {full:?}: {}",
        text(&o).trim()
    );
    assert!(text(&o).contains("10001 data keys rewrapped") || text(&o).contains("data keys rewrapped"));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    println!("kill moments seed {seed}");
    let mut rng = Lcg(seed);
    let window_us = (full.as_micros() as u64).max(1000) * 12 / 10;
    let mut completed = 0;
    for trial in 0..20 {
        let at = Duration::from_micros(rng.next() % window_us);
        let mut child = v.spawn_cli(&["keys", "rotate-kek"]);
        std::thread::sleep(at);
        let finished = matches!(child.try_wait(), Ok(Some(_)));
        kill_and_wait(&mut child);
        completed += usize::from(finished);
        // Let an orphaned systemd-creds finish (bounded) before the next step.
        std::thread::sleep(Duration::from_millis(50));
        let o = v.cli(&["verify"]);
        assert!(
            o.status.success(),
            "trial {trial} (kill after {at:?}): recordings no longer decrypt: {}",
            text(&o)
        );
        let st = text(&v.cli(&["keys", "status", "--check"]));
        assert!(st.contains("unseal: ok"), "trial {trial}: {st}");
    }
    println!("20 trials, {completed} rotations had finished before the kill");
    for r in &recs {
        let o = v.export("c", &r.start, &r.end, &v.path("x.mp4"));
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn shred_leaves_no_key_and_earlier_copies_do_not_decrypt() {
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        2,
    );
    v.start();
    assert!(v.wait_state("c", "streaming", Duration::from_secs(20)).is_some());
    assert!(wait_for(Duration::from_secs(60), || (complete(&v).len() >= 3).then_some(())).is_some());
    // Shred one recording while the daemon keeps recording under the same
    // day's key: the key is retired, the others move to a fresh key.
    let recs = complete(&v);
    let victim = &recs[0];
    let victim_file = files_under(&v.storage())
        .into_iter()
        .find(|p| {
            let o = v.cli(&["verify", "--file", &p.to_string_lossy()]);
            o.status.success() && text(&o).contains(&victim.key)
        })
        .expect("a file under the victim's key");
    let copies = v.path("copies");
    std::fs::create_dir_all(&copies).unwrap();
    for (i, f) in files_under(&v.storage()).iter().enumerate() {
        std::fs::copy(f, copies.join(format!("{i}.vseg"))).unwrap();
    }
    let wrapped = wrapped_key(&v, &victim.key);

    let dry = v.cli(&["keys", "shred", "--recording", &victim.id.to_string()]);
    assert!(text(&dry).contains("would shred 1 recording"), "{}", text(&dry));
    let o = v.cli(&["keys", "shred", "--recording", &victim.id.to_string(), "--yes"]);
    assert!(o.status.success(), "shred: {}", text(&o));
    assert!(text(&o).contains("checkpointed and truncated"), "{}", text(&o));
    assert!(v.recordings().iter().all(|r| r.id != victim.id));
    assert!(
        v.recordings().iter().all(|r| r.key != victim.key),
        "no recording is left under the shredded key"
    );

    // No copy made before decrypts (the victim's nor its siblings' old files).
    let mut undecryptable = 0;
    for f in files_under(&copies) {
        let o = v.cli(&["verify", "--file", &f.to_string_lossy()]);
        if !o.status.success() {
            assert!(text(&o).contains("does not have"), "{}", text(&o));
            undecryptable += 1;
        }
    }
    assert!(undecryptable >= 1);
    assert!(!victim_file.exists());
    // Neither the database nor its WAL holds the wrapped key bytes.
    for f in ["vigil.db", "vigil.db-wal"] {
        let b = std::fs::read(v.path(f)).unwrap_or_default();
        assert!(!contains_bytes(&b, &wrapped), "{f} still holds the wrapped data key");
    }
    assert!(v.stop());
    verify_all(&v);

    // A whole camera before a date, then the audit chain.
    let before = rfc3339(epoch_secs(&v.recordings().last().unwrap().end) + 1.0);
    let o = v.cli(&["keys", "shred", "--camera", "c", "--before", &before, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(v.recordings().is_empty(), "{:?}", v.recordings());
    assert!(files_under(&v.storage()).is_empty());
    let audit = text(&v.cli(&["audit", "tail", "-n", "100"]));
    assert_eq!(audit.matches("keys.shred").count(), 2, "{audit}");
    assert!(v.cli(&["audit", "verify"]).status.success());
}

/// The wrapped form of data key `key_hex`, read from the database.
fn wrapped_key(v: &Vigil, key_hex: &str) -> Vec<u8> {
    let c = rusqlite::Connection::open(v.path("vigil.db")).unwrap();
    let id: Vec<u8> = (0..key_hex.len() / 2)
        .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    c.query_row("SELECT wrapped FROM data_key WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

#[test]
fn reencrypting_a_compromised_key_resumes_after_kill9() {
    let _gate = heavy(); // up to 60 re-encryption runs, each verified
    let cam = Camera::start(&[]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        1,
    );
    let recs = record_n(&mut v, "c", 8);
    let key = recs[0].key.clone();
    let before: Vec<i64> = recs.iter().filter(|r| r.key == key).map(|r| r.id).collect();

    // Interrupt the job at growing moments; after each kill everything
    // still verifies, and a rerun carries on. Stop once a run completes.
    let mut interrupted_mid_job = 0;
    let mut done = false;
    for trial in 0..60u64 {
        let mut child = v.spawn_cli(&["keys", "reencrypt", "--key", &key, "--reason", "test"]);
        std::thread::sleep(Duration::from_millis(2 + 2 * trial));
        let finished = matches!(child.try_wait(), Ok(Some(s)) if s.success());
        kill_and_wait(&mut child);
        let o = v.cli(&["verify"]);
        assert!(o.status.success(), "trial {trial}: {}", text(&o));
        let st = text(&v.cli(&["keys", "status"]));
        if st.contains("pending re-encryption") {
            let moved = v
                .recordings()
                .iter()
                .filter(|r| before.contains(&r.id) && r.key != key)
                .count();
            if moved > 0 && moved < before.len() {
                interrupted_mid_job += 1;
            }
        } else if finished || v.recordings().iter().all(|r| r.key != key) {
            done = true;
            break;
        }
    }
    if !done {
        let o = v.cli(&["keys", "reencrypt", "--key", &key, "--reason", "test"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    println!("interrupted part-way through {interrupted_mid_job} time(s)");
    assert!(interrupted_mid_job >= 1, "no kill landed inside the job");
    let after = v.recordings();
    for id in &before {
        let r = after.iter().find(|r| r.id == *id).expect("every recording kept");
        assert_ne!(r.key, key, "recording {id} still under the compromised key");
    }
    let out = verify_all(&v);
    assert!(!out.contains("FAIL"), "{out}");
    let st = text(&v.cli(&["keys", "status"]));
    assert!(!st.contains("pending"), "{st}");
}
