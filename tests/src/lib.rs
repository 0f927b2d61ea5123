//! Fixtures for the end-to-end tests: a real GStreamer RTSP camera and the
//! real `vigil` binary, on loopback, each killed by PID and waited for when
//! the fixture is dropped (also when a test fails). Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const FPS: u32 = 25;

/// The workspace root (tests/..).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `vigil` binary: `$VIGIL_BIN`, or target/<profile>/vigil next to this test.
pub fn vigil_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VIGIL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("vigil");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p vigil` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` every 100 ms until it returns Some, at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Kills a child by PID and reaps it (bounded).
pub fn kill_and_wait(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        signal(child.id(), "CONT");
        let _ = child.kill();
    }
    let _ = wait_bounded(child, Duration::from_secs(10));
}

pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    wait_for(limit, || child.try_wait().ok().flatten())
}

/// A GStreamer RTSP server serving /h264 and /h265.
pub struct Camera {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Camera {
    pub fn start(args: &[&str]) -> Camera {
        let mut c = Camera {
            port: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        c.restart();
        c
    }

    /// (Re)starts the server on the same port.
    pub fn restart(&mut self) {
        if let Some(mut old) = self.child.take() {
            kill_and_wait(&mut old);
        }
        let script = workspace().join("tests/fixtures/rtsp_camera.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg("--port")
            .arg(self.port.to_string())
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/python3 rtsp_camera.py (scripts/test installs GStreamer)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(());
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(20));
        self.child = Some(child);
        assert!(ready.is_ok(), "RTSP camera on port {} did not become ready", self.port);
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_wait(&mut c);
        }
    }

    /// SIGSTOP: the camera hangs with its connections open.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "STOP");
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "CONT");
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A camera entry for the config.
pub struct Cam<'a> {
    pub name: &'a str,
    pub url: String,
}

/// A Vigil installation in a temporary directory, and its daemon.
pub struct Vigil {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// What `keys init` printed as the recovery key.
    pub recovery_key: String,
    daemon: Option<Child>,
    runs: u32,
    env: Vec<(String, String)>,
}

/// The `[keys]` section: `{dir}` is replaced by the installation directory.
pub const FILE_KEYS: &str = "source = \"file\"\nfile = \"{dir}/kek.key\"\n";

impl Vigil {
    /// Writes a config for `cams` (development key file) and runs `keys init`.
    pub fn new(cams: &[Cam<'_>], segment_seconds: u32) -> Vigil {
        Vigil::with_keys(cams, segment_seconds, FILE_KEYS, "", &[])
    }

    /// The KEK sealed by `tpm` (bound to `pcrs`, e.g. "7", or "" for none).
    pub fn sealed(cams: &[Cam<'_>], segment_seconds: u32, tpm: &Swtpm, pcrs: &str, camera_extra: &str) -> Vigil {
        let bus = tpm.bus_address();
        Vigil::with_keys(
            cams,
            segment_seconds,
            &tpm.keys_toml(pcrs),
            camera_extra,
            &[("DBUS_SESSION_BUS_ADDRESS", bus.as_str())],
        )
    }

    /// As [`Vigil::new`] with the `[keys]` section `keys` and extra lines
    /// for each `[[camera]]` (`camera_extra`).
    pub fn with_keys(
        cams: &[Cam<'_>],
        segment_seconds: u32,
        keys: &str,
        camera_extra: &str,
        env: &[(&str, &str)],
    ) -> Vigil {
        let dir = tempfile::Builder::new()
            .prefix("vigil-e2e-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let mut toml = format!(
            "[storage]\ndir = \"{}/recordings\"\ndb = \"{}/vigil.db\"\n\
             # Test directories are not on a LUKS volume (the VM test has one).\n\
             allow_unencrypted_volume = true\n\n[keys]\n{}\n\
             [recording]\nsegment_seconds = {segment_seconds}\nstall_timeout_seconds = 5\n",
            d.display(),
            d.display(),
            keys.replace("{dir}", &d.display().to_string())
        );
        for c in cams {
            toml.push_str(&format!(
                "\n[[camera]]\nname = \"{}\"\nurl = \"{}\"\n{camera_extra}",
                c.name, c.url
            ));
        }
        let config = d.join("vigil.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut v = Vigil {
            dir,
            config,
            recovery_key: String::new(),
            daemon: None,
            runs: 0,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let out = v.cli(&["keys", "init"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "keys init: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        v.recovery_key = stdout
            .lines()
            .skip_while(|l| !l.starts_with("RECOVERY KEY"))
            .map(str::trim)
            .find(|l| l.len() == 47 && l.matches('-').count() == 7)
            .unwrap_or_default()
            .to_string();
        assert!(!v.recovery_key.is_empty(), "no recovery key printed: {stdout}");
        v
    }

    /// Adds an `[http]` section on an ephemeral loopback port (the daemon
    /// binds port 0, so parallel tests never race for a port; see
    /// [`Vigil::https_port`]).
    pub fn enable_http(&mut self, extra: &str) {
        let mut cfg = std::fs::read_to_string(&self.config).expect("config");
        cfg.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}"));
        std::fs::write(&self.config, cfg).expect("config");
    }

    /// The port a listener the daemon logged is bound to (waits up to 20 s).
    /// `what` is the start of the log message, e.g. "HTTPS API listening".
    pub fn logged_port(&self, what: &str) -> u16 {
        let port = wait_for(Duration::from_secs(20), || {
            let log = self.log();
            let line = log.lines().rev().find(|l| l.contains(what))?;
            let at = line.find("listen=127.0.0.1:")? + 17;
            line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        });
        port.unwrap_or_else(|| panic!("the daemon never logged \"{what}\":\n{}", self.log()))
    }

    pub fn https_port(&self) -> u16 {
        self.logged_port("HTTPS API listening")
    }

    /// The first-start admin password, from the private file whose path the
    /// daemon logged (waits up to 20 s). The password itself is never in the log.
    pub fn first_admin_password(&self) -> String {
        const SAYS: &str = "one-time password is in the file ";
        wait_for(Duration::from_secs(20), || {
            let log = self.log();
            let i = log.find(SAYS)?;
            let path = log[i + SAYS.len()..].split(" (mode 0600)").next()?;
            let pw = std::fs::read_to_string(path).ok()?.trim().to_string();
            assert!(!log.contains(&pw), "the one-time password is in the log");
            (!pw.is_empty()).then_some(pw)
        })
        .expect("the daemon wrote a one-time admin password to a file")
    }

    /// Environment for every later `vigil` this fixture starts (e.g. libfaketime).
    pub fn set_env(&mut self, k: &str, val: &str) {
        self.env.push((k.to_string(), val.to_string()));
    }

    /// `vigil --config C ARGS` with this installation's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(vigil_bin());
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("VIGIL_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// Runs a CLI command with extra environment for this call only.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run vigil")
    }

    /// Runs a CLI command with `input` on standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut c = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vigil");
        if let Some(mut i) = c.stdin.take() {
            let _ = i.write_all(input);
        }
        c.wait_with_output().expect("wait vigil")
    }

    /// Starts a CLI command in the background (for kill -9 tests).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vigil")
    }

    /// One camera, the daemon started, and the camera streaming (asserted, 20 s at most).
    pub fn recording_one(name: &str, url: String, segment_seconds: u32) -> Vigil {
        let mut v = Vigil::new(&[Cam { name, url }], segment_seconds);
        v.start();
        assert!(
            v.wait_state(name, "streaming", Duration::from_secs(20)).is_some(),
            "{name} never streamed"
        );
        v
    }

    /// `vigil export --camera C --start S --end E --out OUT`.
    pub fn export(&self, camera: &str, start: &str, end: &str, out: &Path) -> Output {
        let out = out.to_string_lossy();
        self.cli(&[
            "export", "--camera", camera, "--start", start, "--end", end, "--out", &out,
        ])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn storage(&self) -> PathBuf {
        self.path("recordings")
    }

    /// Runs a CLI command to completion (bounded by the command itself).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run vigil")
    }

    /// Starts `vigil run`, logging to run-N.log.
    pub fn start(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.path(&format!("run-{}.log", self.runs))).expect("log file");
        let child = Command::new(vigil_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("VIGIL_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vigil run");
        self.daemon = Some(child);
    }

    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|i| std::fs::read_to_string(self.path(&format!("run-{i}.log"))).unwrap_or_default())
            .collect()
    }

    /// SIGTERM and wait (at most 15 s); returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.daemon.take() else { return false };
        signal(c.id(), "TERM");
        match wait_bounded(&mut c, Duration::from_secs(15)) {
            Some(s) => s.success(),
            None => {
                kill_and_wait(&mut c);
                false
            }
        }
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            kill_and_wait(&mut c);
        }
    }

    pub fn recordings(&self) -> Vec<Rec> {
        let out = self.cli(&["recordings"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(Rec::parse)
            .collect()
    }

    /// Camera name -> state from `vigil cameras`.
    pub fn camera_state(&self, name: &str) -> Option<String> {
        let out = self.cli(&["cameras"]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap_or_default().to_string())
        })
    }

    pub fn wait_state(&self, name: &str, state: &str, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        wait_for(limit, || {
            (self.camera_state(name).as_deref() == Some(state)).then(|| t.elapsed())
        })
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            kill_and_wait(&mut c);
        }
        if std::thread::panicking() {
            eprintln!("--- vigil log ---\n{}", self.log());
            // Keep the directory for a post-mortem.
            let p = self.dir.path().to_path_buf();
            eprintln!("(kept {})", p.display());
            std::mem::forget(std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir")));
        }
    }
}

/// A row of `vigil recordings`.
#[derive(Debug, Clone)]
pub struct Rec {
    pub id: i64,
    pub camera: String,
    pub start: String,
    pub end: String,
    pub frames: i64,
    pub bytes: i64,
    pub state: String,
    /// The data key id (hex).
    pub key: String,
}

impl Rec {
    fn parse(l: &str) -> Option<Rec> {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 7 {
            return None;
        }
        Some(Rec {
            id: w[0].parse().ok()?,
            camera: w[1].into(),
            start: w[2].into(),
            end: w[3].into(),
            frames: w[4].parse().ok()?,
            bytes: w[5].parse().ok()?,
            state: w[6].into(),
            key: w.get(7).map(|k| k.to_string()).unwrap_or_default(),
        })
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time printed by vigil.
pub fn epoch_secs(t: &str) -> f64 {
    let out = Command::new("date")
        .args(["-u", "-d", t, "+%s.%N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(f64::NAN)
}

pub fn rfc3339(epoch: f64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{epoch:.3}"), "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What ffprobe says of a file's video stream.
#[derive(Debug)]
pub struct Probe {
    pub codec: String,
    pub tag: String,
    pub frames: usize,
    /// Packet decode timestamps in seconds.
    pub dts: Vec<f64>,
}

pub fn ffprobe(path: &Path) -> Result<Probe, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,codec_tag_string",
        ])
        .args(["-show_entries", "packet=dts_time", "-of", "json"])
        .arg(path)
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let s = &v["streams"][0];
    let dts: Vec<f64> = v["packets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["dts_time"].as_str().and_then(|t| t.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    // Decoding every frame proves the stream is playable, not just parseable.
    let dec = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output();
    match dec {
        Ok(o) if o.status.success() && o.stderr.is_empty() => {}
        Ok(o) => return Err(format!("ffmpeg decode: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => return Err(format!("ffmpeg: {e}")),
    }
    Ok(Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().into(),
        tag: s["codec_tag_string"].as_str().unwrap_or_default().into(),
        frames: dts.len(),
        dts,
    })
}

/// The largest gap between consecutive decode timestamps, and whether they increase.
pub fn dts_continuity(dts: &[f64]) -> (f64, bool) {
    let mut max_gap: f64 = 0.0;
    let mut increasing = true;
    for w in dts.windows(2) {
        max_gap = max_gap.max(w[1] - w[0]);
        increasing &= w[1] > w[0];
    }
    (max_gap, increasing)
}

/// Walks a VSEG file's records: (offset, total length, kind). Follows docs/format.md.
pub fn vseg_records(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut out = Vec::new();
    let mut off = 128;
    while off + 5 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]) as usize;
        let total = 5 + len;
        if off + total > bytes.len() {
            break;
        }
        out.push((off, total, bytes[off + 4]));
        off += total;
    }
    out
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A child process killed by PID and reaped when dropped.
pub struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        kill_and_wait(&mut self.0);
    }
}

/// Serves `dir` over HTTP on 127.0.0.1 (python3's http.server); returns the guard and port.
pub fn http_server(dir: &Path) -> (Guard, u16) {
    let port = free_port();
    let child = Command::new("/usr/bin/python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let g = Guard(child);
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "http server did not start");
    (g, port)
}

/// Loads `url` in headless Chromium (virtual time advanced by `budget_ms`) and returns the DOM.
pub fn chromium_dom(url: &str, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args(["--autoplay-policy=no-user-gesture-required", "--mute-audio"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium (scripts/test installs it)");
    let pid = child.id();
    // Bounded: kill chromium if it has not printed the DOM in 60 s.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        signal(pid, "KILL");
    });
    let out = child.wait_with_output().expect("chromium output");
    drop(killer);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A software TPM 2.0 (swtpm) on loopback TCP behind a resource manager
/// (tpm2-abrmd on a private D-Bus), as a board's kernel `/dev/tpmrm0`
/// would be: without one, every `systemd-creds decrypt` leaves a session
/// loaded and the fourth fails with "out of memory for session contexts".
/// State lives in a temporary directory; every process is killed by PID and
/// reaped on drop.
pub struct Swtpm {
    pub port: u16,
    pub state: tempfile::TempDir,
    bus_dir: tempfile::TempDir,
    swtpm: Option<Child>,
    bus: Option<Child>,
    abrmd: Option<Child>,
}

const TABRMD_TCTI: &str = "tabrmd:bus_type=session";

impl Swtpm {
    pub fn start() -> Swtpm {
        let mut s = Swtpm {
            port: 0,
            state: tempfile::Builder::new()
                .prefix("vigil-swtpm-")
                .tempdir()
                .expect("tempdir"),
            bus_dir: tempfile::Builder::new()
                .prefix("vigil-bus-")
                .tempdir()
                .expect("tempdir"),
            swtpm: None,
            bus: None,
            abrmd: None,
        };
        s.restart();
        s
    }

    fn stop(&mut self) {
        for c in [self.abrmd.take(), self.bus.take(), self.swtpm.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            kill_and_wait(&mut c);
        }
    }

    /// The private bus address: set as DBUS_SESSION_BUS_ADDRESS for vigil.
    pub fn bus_address(&self) -> String {
        format!("unix:path={}/bus", self.bus_dir.path().display())
    }

    /// (Re)starts swtpm with the same state (PCRs reset, as at a reboot),
    /// its bus and its resource manager.
    pub fn restart(&mut self) {
        self.stop();
        // Fresh ports each time: a dying swtpm may still hold the old ones.
        let (port, ctrl) = loop {
            let p = free_port();
            if p < 65535 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break (p, p + 1);
            }
        };
        self.port = port;
        self.swtpm = Some(
            Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
                .arg("--tpmstate")
                .arg(format!("dir={}", self.state.path().display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start swtpm (scripts/test installs it)"),
        );
        // (The probe connection is closed at once: swtpm serves one client at a time.)
        let up = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
        });
        assert!(up.is_some(), "swtpm did not listen on {port}");
        let bus = self.bus_dir.path().join("bus");
        let _ = std::fs::remove_file(&bus);
        let conf = self.bus_dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow send_destination=\"*\"/><allow receive_sender=\"*\"/><allow own=\"*\"/></policy></busconfig>\n",
                bus.display()
            ),
        )
        .expect("bus config");
        self.bus = Some(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", conf.display()))
                .args(["--nofork", "--nopidfile"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dbus-daemon"),
        );
        assert!(
            wait_for(Duration::from_secs(10), || bus.exists().then_some(())).is_some(),
            "private D-Bus did not start"
        );
        self.abrmd = Some(
            Command::new("tpm2-abrmd")
                .args(["--session", "--allow-root", "--flush-all"])
                .arg(format!("--tcti=swtpm:host=127.0.0.1,port={port}"))
                .env("DBUS_SESSION_BUS_ADDRESS", self.bus_address())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.bus_dir.path().join("abrmd.log")).expect("abrmd log"))
                .spawn()
                .expect("start tpm2-abrmd (scripts/test installs it)"),
        );
        let ready = wait_for(Duration::from_secs(15), || {
            Command::new("tpm2_getcap")
                .arg("properties-fixed")
                .env("TPM2TOOLS_TCTI", TABRMD_TCTI)
                .env("DBUS_SESSION_BUS_ADDRESS", self.bus_address())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
        });
        if ready.is_none() {
            let o = Command::new("tpm2_getcap")
                .arg("properties-fixed")
                .env("TPM2TOOLS_TCTI", TABRMD_TCTI)
                .env("DBUS_SESSION_BUS_ADDRESS", self.bus_address())
                .output();
            panic!(
                "tpm2-abrmd did not answer: {}\n{o:?}\n{}",
                std::fs::read_to_string(self.bus_dir.path().join("abrmd.log")).unwrap_or_default(),
                std::fs::read_to_string(&conf).unwrap_or_default()
            );
        }
    }

    /// Loses every key the TPM held (a new board, or a cleared TPM).
    pub fn wipe(&mut self) {
        self.stop();
        for e in std::fs::read_dir(self.state.path()).expect("state dir").flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        self.restart();
    }

    /// The TCTI for systemd-creds and tpm2-tools (with [`Swtpm::bus_address`]).
    pub fn tcti(&self) -> String {
        TABRMD_TCTI.to_string()
    }

    /// Extends PCR `pcr` (SHA-256 bank) with a fixed digest, as a boot measurement would.
    pub fn extend(&self, pcr: u32, tag: u8) {
        let digest: String = std::iter::repeat_n(format!("{tag:02x}"), 32).collect();
        let o = Command::new("tpm2_pcrextend")
            .arg(format!("{pcr}:sha256={digest}"))
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus_address())
            .output()
            .expect("tpm2_pcrextend (scripts/test installs tpm2-tools)");
        assert!(o.status.success(), "pcrextend: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// The `[keys]` section sealing the KEK to this TPM (optionally to `pcrs`).
    pub fn keys_toml(&self, pcrs: &str) -> String {
        format!(
            "source = \"credential\"\ncredential = \"{{dir}}/kek.cred\"\ntpm2_device = \"{}\"\ntpm2_pcrs = \"{pcrs}\"\n",
            self.tcti()
        )
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `needle` occurs anywhere in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// (status, body) of one HTTPS request made by curl.
pub fn curl(port: u16, method: &str, path: &str, extra: &[&str], body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    // The event stream never ends: its status is all a caller here needs.
    let limit = if path.starts_with("/api/v1/events") { "2" } else { "10" };
    c.args([
        "-sk",
        "--path-as-is",
        "-m",
        limit,
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    c.args(extra);
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    c.arg(format!("https://127.0.0.1:{port}{path}"));
    let o = c.output().expect("curl (scripts/test installs it)");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (b, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), b.to_string())
}

/// A tmpfs mounted over `dir`, unmounted when dropped (also on failure).
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
    pub fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status();
        assert!(st.is_ok_and(|s| s.success()), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The path of libfaketime's multi-threaded library, if installed.
pub fn libfaketime() -> Option<String> {
    let out = std::process::Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with("libfaketimeMT.so.1"))
        .map(str::to_string)
}

/// A command's standard output then its standard error, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Exports `camera` from the first to the last of `recs` (consecutive
/// recordings) into `out` and asserts that the MP4 holds every recorded
/// frame with continuous, increasing timestamps (`what` names the case).
pub fn assert_one_export_holds_every_frame(v: &Vigil, camera: &str, recs: &[Rec], out: &Path, what: &str) {
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
        panic!("no recordings to export ({what})");
    };
    let o = v.export(camera, &first.start, &last.end, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = ffprobe(out).expect("ffprobe accepts the export");
    let frames: i64 = recs.iter().map(|r| r.frames).sum();
    assert_eq!(
        p.frames as i64, frames,
        "every recorded frame is in the export ({what})"
    );
    let (max_gap, increasing) = dts_continuity(&p.dts);
    assert!(
        increasing && max_gap < 0.1,
        "timestamps continuous {what} (max gap {max_gap} s)"
    );
}

/// A logged-in API client: its cookie jar and CSRF token.
pub struct Session {
    pub jar: PathBuf,
    pub csrf: String,
}

/// The HTTPS API of a daemon on loopback, driven with curl.
pub struct Api {
    pub port: u16,
}

impl Api {
    /// Logs in (with a TOTP code if given), keeping the cookie in a new jar
    /// under `dir`: the status, and the session when 200.
    pub fn login(&self, dir: &Path, name: &str, password: &str, totp: Option<&str>) -> (u16, Option<Session>) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jar = dir.join(format!("jar-{name}-{stamp}"));
        let body = match totp {
            Some(c) => format!(r#"{{"name":"{name}","password":"{password}","totp":"{c}"}}"#),
            None => format!(r#"{{"name":"{name}","password":"{password}"}}"#),
        };
        let (code, b) = curl(
            self.port,
            "POST",
            "/api/v1/login",
            &["-c", &jar.to_string_lossy()],
            Some(&body),
        );
        let csrf = serde_json::from_str::<serde_json::Value>(&b)
            .ok()
            .and_then(|v| v.get("csrf_token").and_then(|x| x.as_str()).map(str::to_string))
            .unwrap_or_default();
        (code, (code == 200).then_some(Session { jar, csrf }))
    }

    /// A request as `s` (cookie + CSRF header).
    pub fn call(&self, s: &Session, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let csrf = format!("X-CSRF-Token: {}", s.csrf);
        curl(
            self.port,
            method,
            path,
            &["-b", &s.jar.to_string_lossy(), "-H", &csrf],
            body,
        )
    }
}

impl Vigil {
    /// `vigil users add NAME --role ROLE` with `password`, no change required.
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        let o = self.cli_stdin(
            &[
                "users",
                "add",
                "--name",
                name,
                "--role",
                role,
                "--password-stdin",
                "--no-change-required",
            ],
            password.as_bytes(),
        );
        assert!(
            o.status.success(),
            "users add {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
