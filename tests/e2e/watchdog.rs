//! The systemd notification protocol as systemd would see it: the test plays
//! systemd's part with its own NOTIFY_SOCKET. READY=1 comes once the daemon
//! can record and serve; WATCHDOG=1 pings come with a STATUS line ("1/1
//! cameras recording, N% free"); they stop while the database's write lock
//! cannot be had (a heartbeat goes stale) and resume after; and they stop
//! while the process is frozen (kill -STOP), which is what gets it
//! restarted by systemd's watchdog. The board's hardware watchdog is fed
//! and the status LEDs follow the same verdict.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use vigil_e2e::*;

use crate::common::timed;

/// Datagrams received within `d`, with their arrival times.
fn collect(sock: &UnixDatagram, d: Duration) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let end = Instant::now() + d;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).to_string()));
        }
    }
    out
}

fn pings(msgs: &[(Instant, String)]) -> Vec<Instant> {
    msgs.iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn ready_then_watchdog_pings_only_while_heartbeats_are_fresh() {
    let _gate = timed(); // a ping every 0.5 s; none for 3 s while unhealthy
    let cam = Camera::start(&["--gop", "25"]);
    let mut v = Vigil::new(
        &[Cam {
            name: "c",
            url: cam.url("/h264"),
        }],
        2,
    );
    // The board's watchdog and LEDs: a file standing in for /dev/watchdog
    // (the VM test has a real i6300esb) and two sysfs-style LED directories.
    let (wd, led_ok, led_fault) = (v.path("watchdog"), v.path("led-ok"), v.path("led-fault"));
    std::fs::write(&wd, b"").unwrap();
    for l in [&led_ok, &led_fault] {
        std::fs::create_dir_all(l).unwrap();
        std::fs::write(l.join("trigger"), "heartbeat").unwrap();
        std::fs::write(l.join("brightness"), "0").unwrap();
    }
    let mut cfg = std::fs::read_to_string(&v.config).unwrap();
    cfg.push_str(&format!(
        "\n[board]\nwatchdog = \"{}\"\nled_status = \"{}\"\nled_fault = \"{}\"\n",
        wd.display(),
        led_ok.display(),
        led_fault.display()
    ));
    std::fs::write(&v.config, cfg).unwrap();
    let led = |l: &std::path::Path| {
        (
            std::fs::read_to_string(l.join("trigger")).unwrap_or_default(),
            std::fs::read_to_string(l.join("brightness")).unwrap_or_default(),
        )
    };
    let path = v.path("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    v.set_env("NOTIFY_SOCKET", &path.to_string_lossy());
    v.set_env("WATCHDOG_USEC", "2000000");
    let t0 = Instant::now();
    v.start();
    let mut seen = Vec::new();
    let ready = loop {
        let m = collect(&sock, Duration::from_millis(500));
        seen.extend(m);
        if let Some((t, _)) = seen.iter().find(|(_, m)| m.contains("READY=1")) {
            break Some(*t);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break None;
        }
    };
    let ready = ready.unwrap_or_else(|| panic!("no READY=1: {seen:?}\n{}", v.log()));
    println!("READY=1 {:.2} s after start", (ready - t0).as_secs_f64());
    assert!(v.wait_state("c", "streaming", Duration::from_secs(20)).is_some());

    // Healthy: pings every ~0.5 s (a quarter of WatchdogSec), with a status line.
    let m = collect(&sock, Duration::from_secs(4));
    let p = pings(&m);
    println!("healthy: {} pings in 4 s; last: {:?}", p.len(), m.last().map(|x| &x.1));
    assert!(p.len() >= 5, "{m:?}");
    let fed = std::fs::metadata(&wd).unwrap().len();
    assert!(fed >= 5, "the hardware watchdog was fed {fed} times");
    assert_eq!(
        led(&led_ok),
        ("none".into(), "1".into()),
        "status LED on while recording"
    );
    assert_eq!(led(&led_fault).1, "0");
    assert!(
        m.iter()
            .any(|(_, s)| s.contains("STATUS=1/1 cameras recording") && s.contains("% free")),
        "{m:?}"
    );

    // The database's write lock held elsewhere for 9 s: the database
    // heartbeat fails (5 s busy timeout), so pings stop, then resume.
    let db = rusqlite::Connection::open(v.path("vigil.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let fed_before = std::fs::metadata(&wd).unwrap().len();
    let m = collect(&sock, Duration::from_secs(9));
    let fault_shown = led(&led_fault).1 == "1" && led(&led_ok).1 == "0";
    let fed_during = std::fs::metadata(&wd).unwrap().len() - fed_before;
    db.execute_batch("ROLLBACK").unwrap();
    assert!(fault_shown, "fault LED not shown while unhealthy");
    assert!(
        fed_during <= 2,
        "the hardware watchdog was fed {fed_during} times while unhealthy"
    );
    let p = pings(&m);
    let longest_gap = p
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(p.first().map(|f| *f - m.first().map(|x| x.0).unwrap_or(*f)))
        .max()
        .unwrap_or(Duration::from_secs(9));
    println!(
        "database locked 9 s: {} pings, longest silence {:.1} s",
        p.len(),
        longest_gap.as_secs_f64()
    );
    assert!(
        m.iter()
            .any(|(_, s)| s.contains("STATUS=unhealthy") && s.contains("database")),
        "{m:?}"
    );
    assert!(longest_gap >= Duration::from_secs(3), "pings went on: {m:?}");
    let m = collect(&sock, Duration::from_secs(8));
    assert!(pings(&m).len() >= 3, "pings did not resume: {m:?}");

    // Frozen: no pings at all (systemd would kill and restart it).
    let pid = v.pid().expect("daemon pid");
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status();
    let frozen = collect(&sock, Duration::from_secs(3));
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
    assert!(pings(&frozen).is_empty(), "pings while frozen: {frozen:?}");
    let m = collect(&sock, Duration::from_secs(4));
    assert!(pings(&m).len() >= 3, "pings did not resume after SIGCONT: {m:?}");

    assert!(v.stop());
    let m = collect(&sock, Duration::from_millis(500));
    assert!(m.iter().any(|(_, s)| s.contains("STOPPING=1")), "{m:?}");
    let w = std::fs::read(&wd).unwrap();
    assert_eq!(
        w.last(),
        Some(&b'V'),
        "a clean stop disarms the hardware watchdog (magic close)"
    );
    assert!(w[..w.len() - 1].iter().all(|b| *b == 0));
    assert!(!v.log().contains("panicked"));
}
