//! Tests of the MQTT channel against mosquitto (TLS, password file) on a
//! loopback port, checked with mosquitto_sub; skipped when not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::alerts::test_tls::{self, Pki, Proc};
use crate::alerts::{SendError, Transport};
use crate::config::alerts::ChannelConfig;

const PASSWORD: &str = "mqtt-pass-0451";

fn channel(port: u16, ca: &Path) -> ChannelConfig {
    ChannelConfig::from_json(
        "ha",
        &json!({"kind": "mqtt", "url": format!("mqtts://127.0.0.1:{port}"), "username": "vigil", "secret": "alert-ha",
            "home_assistant": true, "ca_file": ca.display().to_string()}),
    )
    .unwrap()
}

/// mosquitto_sub: `count` messages (topic and payload) within `secs`.
fn subscribe(port: u16, ca: &Path, topics: &[&str], count: usize, secs: u32) -> Command {
    let mut c = Command::new("/usr/bin/mosquitto_sub");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        "vigil",
        "-P",
        PASSWORD,
        "-v",
    ])
    .args(["-C", &count.to_string(), "-W", &secs.to_string()])
    .arg("--cafile")
    .arg(ca);
    for t in topics {
        c.args(["-t", t]);
    }
    c
}

fn lines(out: std::process::Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(t, p)| (t.to_string(), p.to_string())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_states_discovery_and_acknowledged_alerts() {
    let (Some(broker), Some(passwd), Some(_)) = (
        test_tls::tool("/usr/sbin/mosquitto"),
        test_tls::tool("/usr/bin/mosquitto_passwd"),
        test_tls::tool("/usr/bin/mosquitto_sub"),
    ) else {
        return;
    };
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("passwd");
    assert!(Command::new(&passwd)
        .args(["-b", "-c"])
        .arg(&pwfile)
        .args(["vigil", PASSWORD])
        .status()
        .unwrap()
        .success());
    let port = test_tls::free_port();
    let conf: PathBuf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\npassword_file {}\nallow_anonymous false\npersistence false\nuser root\n",
            pki.ca_path.display(),
            pki.cert_path.display(),
            pki.key_path.display(),
            pwfile.display()
        ),
    )
    .unwrap();
    let _broker = Proc(
        Command::new(&broker)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    test_tls::wait_port(port);

    let ctx = test_tls::context();
    let mut t = Transport::new(
        &channel(port, &pki.ca_path),
        Some(Zeroizing::new(PASSWORD.as_bytes().to_vec())),
        &ctx,
    )
    .unwrap();
    assert_eq!(t.kind_name(), "mqtt");
    let problems = json!({"open": 1, "alerts": [{"code": "camera.offline", "severity": "critical", "camera": "back", "message": "Camera back offline"}]});
    let cameras = vec![("front".to_string(), true), ("back".to_string(), false)];
    t.publish_states(&cameras, &problems).await.unwrap();
    let m = test_tls::message();
    t.send(&m).await.unwrap();

    // The retained topics, as an independent client sees them.
    let out = subscribe(port, &pki.ca_path, &["vigil/vigil-1a2b3c4d/#", "homeassistant/#"], 7, 5)
        .output()
        .unwrap();
    let got = lines(out);
    let find = |topic: &str| {
        got.iter()
            .find(|(t, _)| t == topic)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no {topic} in {got:?}"))
    };
    assert_eq!(find("vigil/vigil-1a2b3c4d/state"), "online");
    assert_eq!(find("vigil/vigil-1a2b3c4d/camera/front/state"), "online");
    assert_eq!(find("vigil/vigil-1a2b3c4d/camera/back/state"), "offline");
    assert_eq!(
        serde_json::from_str::<Value>(&find("vigil/vigil-1a2b3c4d/problems")).unwrap(),
        problems
    );
    let cfg: Value =
        serde_json::from_str(&find("homeassistant/binary_sensor/vigil-1a2b3c4d/front_online/config")).unwrap();
    assert_eq!(
        cfg,
        json!({"name": "front online", "unique_id": "vigil-1a2b3c4d_front_online",
            "state_topic": "vigil/vigil-1a2b3c4d/camera/front/state", "payload_on": "online", "payload_off": "offline",
            "device_class": "connectivity", "availability_topic": "vigil/vigil-1a2b3c4d/state",
            "device": {"identifiers": ["vigil-1a2b3c4d"], "name": "shop-nvr-3", "manufacturer": "Vigil", "model": "Vigil NVR"}})
    );
    let problem: Value =
        serde_json::from_str(&find("homeassistant/binary_sensor/vigil-1a2b3c4d/problem/config")).unwrap();
    assert_eq!(problem["device_class"], "problem");
    assert_eq!(
        problem["value_template"],
        "{{ 'ON' if value_json.open > 0 else 'OFF' }}"
    );

    // An alert arrives on <prefix>/alerts once the broker acknowledged it.
    let listener = subscribe(port, &pki.ca_path, &["vigil/vigil-1a2b3c4d/alerts"], 1, 8)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut listener = Proc(listener);
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.send(&m).await.unwrap();
    // A changed camera state is published (retained) right away.
    let cameras = vec![("front".to_string(), false), ("back".to_string(), false)];
    t.publish_states(&cameras, &problems).await.unwrap();
    let mut out = String::new();
    if let Some(mut so) = listener.0.stdout.take() {
        use std::io::Read;
        let _ = so.read_to_string(&mut out);
    }
    let (topic, payload) = out
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("no alert: {out:?}"));
    assert_eq!(topic, "vigil/vigil-1a2b3c4d/alerts");
    assert_eq!(serde_json::from_str::<Value>(payload).unwrap(), m.json);
    let got = lines(
        subscribe(port, &pki.ca_path, &["vigil/vigil-1a2b3c4d/camera/front/state"], 1, 3)
            .output()
            .unwrap(),
    );
    assert_eq!(got[0].1, "offline");

    // A clean stop leaves state = offline.
    drop(t);
    let mut state = String::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = lines(
            subscribe(port, &pki.ca_path, &["vigil/vigil-1a2b3c4d/state"], 1, 2)
                .output()
                .unwrap(),
        );
        state = got.first().map(|g| g.1.clone()).unwrap_or_default();
        if state == "offline" {
            break;
        }
    }
    assert_eq!(state, "offline");

    // A wrong password: refused, and the text holds no password.
    let mut t = Transport::new(
        &channel(port, &pki.ca_path),
        Some(Zeroizing::new(b"not-the-pass-99".to_vec())),
        &ctx,
    )
    .unwrap();
    let e = t.send(&m).await.unwrap_err();
    assert!(matches!(e, SendError::Rejected(_)) && !e.retry_soon(), "{e:?}");
    assert!(e.to_string().contains("refused the login"), "{e}");
    assert!(!e.to_string().contains("not-the-pass-99"), "{e}");
}
