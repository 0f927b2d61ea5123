//! The ONVIF client end to end against the camera simulator
//! (`tests/onvif/sim.py`), when it and lxml are there: otherwise the test
//! prints SKIPPED and passes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// The simulator, killed by its PID when dropped.
struct Sim {
    child: Child,
    port: u16,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sim_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/onvif/sim.py")
}

/// A Python 3 with lxml (the one on PATH, else the system's), if any.
fn python_with_lxml() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import lxml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn sim_python() -> Option<&'static str> {
    if !sim_path().exists() {
        println!("SKIPPED: no {}", sim_path().display());
        return None;
    }
    let py = python_with_lxml();
    if py.is_none() {
        println!("SKIPPED: python3 with lxml is not installed");
    }
    py
}

fn start_sim(python: &str, name: &str, extra: &[&str]) -> Sim {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(python)
        .arg(sim_path())
        .args([
            "--port",
            &port.to_string(),
            "--name",
            name,
            "--user",
            "admin",
            "--password",
            "pw",
        ])
        .args([
            "--main-uri",
            "rtsp://127.0.0.1:8554/main",
            "--sub-uri",
            "rtsp://127.0.0.1:8554/sub",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let sim = Sim { child, port };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the simulator did not print READY");
        if line.starts_with("READY") {
            return sim;
        }
    }
}

/// A plain HTTP/1.0 request to the simulator's test control.
fn control(port: u16, method: &str, path: &str) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[test]
fn the_client_talks_to_the_simulator() {
    let Some(python) = sim_python() else {
        return;
    };
    let sim = start_sim(
        python,
        "front",
        &["--clock-offset", "30", "--discovery", "--serial", "SN1"],
    );
    let url = Url::parse(&format!("http://127.0.0.1:{}/onvif/device_service", sim.port)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = Device::new(url.clone(), Some("admin".into()), Some(Zeroizing::new("pw".into())));
        let info = d.information().await.unwrap();
        assert_eq!((info.manufacturer.as_str(), info.serial.as_str()), ("Vigil Sim", "SN1"));
        let clock = d.clock().await.unwrap();
        assert!((clock.drift_ms - 30_000).abs() < 1_500, "{clock:?}");

        let profiles = d.profiles().await.unwrap();
        let (main, sub) = choose_streams(&profiles).unwrap();
        assert_eq!((main.token.as_str(), main.width, main.height), ("main", 1280, 720));
        assert_eq!(main.stream_uri.unwrap().as_str(), "rtsp://127.0.0.1:8554/main");
        assert_eq!(sub.unwrap().stream_uri.unwrap().as_str(), "rtsp://127.0.0.1:8554/sub");

        let ptz = d.ptz("main");
        ptz.continuous_move(0.5, 0.0, 0.0).await.unwrap();
        ptz.stop().await.unwrap();
        let preset = ptz.set_preset("door").await.unwrap();
        ptz.goto_preset(&preset).await.unwrap();
        assert!(ptz.presets().await.unwrap().iter().any(|(t, _)| t == &preset));
        let log = control(sim.port, "GET", "/control/log");
        let ops: Vec<&str> = log["ptz"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["op"].as_str())
            .collect();
        assert_eq!(ops, ["ContinuousMove", "Stop", "SetPreset", "GotoPreset"]);

        let pp = d.create_pull_point().await.unwrap();
        let port = sim.port;
        let fired = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(300));
            control(port, "POST", "/control/event?kind=motion&state=true")
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            got = pp.pull(Duration::from_secs(5), 10).await.unwrap();
            if !got.is_empty() {
                break;
            }
        }
        let fired = fired.await.unwrap();
        assert_eq!((got[0].kind, got[0].state), ("motion", true), "{got:?}");
        let utc = crate::base::time::parse_rfc3339(fired["utc"].as_str().unwrap()).unwrap() / 1_000_000;
        assert!((got[0].utc_ms - utc).abs() < 1000, "the camera's time of the event");
        pp.renew().await.unwrap();
        pp.unsubscribe().await.unwrap();

        d.set_clock_utc(crate::base::clock::now_ns() / 1_000_000).await.unwrap();
        assert!(d.clock().await.unwrap().drift_ms.abs() < 1_500);

        let wrong = Device::new(url.clone(), Some("admin".into()), Some(Zeroizing::new("nope".into())));
        assert!(matches!(wrong.information().await, Err(OnvifError::NotAuthorized)));

        match discovery::probe(std::net::Ipv4Addr::LOCALHOST, Duration::from_millis(1500)).await {
            Ok(found) => assert!(found.iter().any(|f| f.xaddr == url && f.name == "front"), "{found:?}"),
            // qemu-aarch64 (user mode, scripts/arm-test) does not emulate the
            // multicast socket options; a board's kernel has them.
            Err(OnvifError::Unreachable(e)) if e.contains("os error 92") && cfg!(target_arch = "aarch64") => {
                println!("SKIPPED discovery: {e} (multicast socket options not emulated here)")
            }
            Err(e) => panic!("discovery: {e}"),
        }
    });
}
