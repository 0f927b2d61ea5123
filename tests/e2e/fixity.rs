//! Fixity: the background scrub re-hashes every recording's ciphertext. A
//! byte flipped in a stored file is reported within one scrub cycle: in
//! `vigil fixity status`, in the audit log, as an SSE-visible failure of
//! `/health/ready`, and `vigil verify` agrees.

use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::timed;

#[test]
fn a_flipped_ciphertext_byte_is_reported_within_one_scrub_cycle() {
    let _gate = timed(); // a flip detected within 10 s
    let cam = Camera::start(&["--gop", "25"]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        2,
    );
    let mut cfg = std::fs::read_to_string(&v.config).unwrap();
    cfg.push_str("\n[fixity]\nrate_mb_per_s = 20\ncycle_seconds = 3\n");
    std::fs::write(&v.config, cfg).unwrap();
    v.enable_http("");
    v.start();
    assert!(
        v.wait_state("c", "streaming", Duration::from_secs(20)).is_some(),
        "{}",
        v.log()
    );
    let port = v.https_port();
    // Recordings exist and the scrub has verified some of them.
    let verified = wait_for(Duration::from_secs(40), || {
        let o = v.cli(&["fixity", "status"]);
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        let n: i64 = t.split(" verified").next()?.rsplit(' ').next()?.parse().ok()?;
        (o.status.success() && n >= 3).then_some(t)
    });
    let verified = verified.expect("the scrub verified nothing");
    println!("{verified}");
    // Readiness details are for a logged-in caller.
    let jar = v.path("jar").to_string_lossy().to_string();
    let login = format!(r#"{{"name":"admin","password":"{}"}}"#, v.first_admin_password());
    assert_eq!(curl(port, "POST", "/api/v1/login", &["-c", &jar], Some(&login)).0, 200);
    let (code, body) = curl(port, "GET", "/health/ready", &["-b", &jar], None);
    assert_eq!(code, 200, "{body}");

    let victim = v.recordings().into_iter().find(|r| r.state == "complete").unwrap();
    let db = rusqlite::Connection::open(v.path("vigil.db")).unwrap();
    let name: String = db
        .query_row("SELECT file_name FROM recording WHERE id = ?1", [victim.id], |r| {
            r.get(0)
        })
        .unwrap();
    drop(db);
    let file = v.storage().join(name);
    let mut b = std::fs::read(&file).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x04;
    std::fs::write(&file, &b).unwrap();
    let flipped = Instant::now();

    let detected = wait_for(Duration::from_secs(30), || {
        let (code, body) = curl(port, "GET", "/health/ready", &["-b", &jar], None);
        (code == 503 && body.contains("fixity")).then(|| (flipped.elapsed(), body))
    });
    let (after, body) = detected.unwrap_or_else(|| panic!("not detected: {}", v.log()));
    println!(
        "detected {:.1} s after the flip (cycle 3 s): {body}",
        after.as_secs_f64()
    );
    assert!(after <= Duration::from_secs(10), "detection took {after:?}");
    let o = v.cli(&["fixity", "status"]);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("MISMATCH recording {}", victim.id)), "{t}");
    let audit = String::from_utf8_lossy(&v.cli(&["audit", "tail", "-n", "500"]).stdout).to_string();
    assert!(audit.contains("fixity.mismatch"), "{audit}");
    assert!(v.log().contains("FIXITY FAILURE"));
    assert!(v.stop());
    let o = v.cli(&["verify"]);
    assert!(!o.status.success(), "verify must agree with the scrub");
}
