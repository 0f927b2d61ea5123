"""The installation the hostile-client suite attacks: a GStreamer RTSP test
camera, a Vigil installation (file key, `vigil provision`, users), the
daemon, and small HTTPS helpers that bind the client socket to a chosen
loopback address. Every process is started here and killed by PID in
`Fixture.close()` (called from a `finally`), also when a test fails."""
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_PW = "hostile suite admin Qx7-vault"
USER_PW = "hostile suite user Lm4-harbour"
NOFILE = 4096  # LimitNOFILE of systemd/vigil.service


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


CTX = tls_context()


def wait_for(limit, f, every=0.2):
    """Polls f until it returns something truthy, at most `limit` seconds
    (f is asked once more at the end, so a last sleep is never wasted);
    returns f's last answer."""
    end = time.monotonic() + limit
    while True:
        v = f()
        if v or time.monotonic() >= end:
            return v
        time.sleep(every)


class Reply:
    def __init__(self, status, headers, body, took):
        self.status = status
        self.headers = headers
        self.body = body
        self.took = took

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"{self.status} in {self.took:.2f}s {self.text()[:200]!r}"


def request(port, method, path, headers=None, body=None, src="127.0.0.1", timeout=10.0):
    """One HTTPS request on a new connection from `src`; timed from connect to
    the whole body read. A failure to connect or read is status 0."""
    h = {"Host": f"127.0.0.1:{port}"}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    t = time.monotonic()
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=CTX, source_address=(src, 0))
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t)
    except (OSError, http.client.HTTPException) as e:
        return Reply(0, {}, str(e).encode(), time.monotonic() - t)
    finally:
        c.close()


class Session:
    def __init__(self, port, cookie, csrf, src):
        self.port, self.cookie, self.csrf, self.src = port, cookie, csrf, src

    def call(self, method, path, body=None, headers=None, timeout=10.0):
        h = {"Cookie": f"vigil_session={self.cookie}", "X-CSRF-Token": self.csrf}
        h.update(headers or {})
        return request(self.port, method, path, h, body, self.src, timeout)

    def logout(self):
        return self.call("POST", "/api/v1/logout")


def login(port, name, password, src="127.0.0.1", totp=None, timeout=10.0):
    """(reply, Session or None)."""
    body = {"name": name, "password": password}
    if totp:
        body["totp"] = totp
    r = request(port, "POST", "/api/v1/login", body=body, src=src, timeout=timeout)
    if r.status != 200:
        return r, None
    m = re.search(r"vigil_session=([^;]+)", r.headers.get("set-cookie", ""))
    j = r.json() or {}
    if not m:
        return r, None
    return r, Session(port, m.group(1), j.get("csrf_token", ""), src)


def _raise_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def kill_pid(p, grace=10.0):
    """SIGTERM (then SIGKILL) one child we started, by its PID, and reap it."""
    if p is None or p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGCONT)
        os.kill(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(5)


class Fixture:
    """One camera server, one installation, one daemon. `close()` kills them
    all. Subclasses change the cameras (name, path on the test camera), the
    users (name, role; password USER_PW), the segment length and whether a
    plain-HTTP listener runs."""

    CAMERAS = [("cam", "/h264"), ("other", "/h264")]
    USERS = [("viewer1", "viewer"), ("limited", "viewer"), ("operator1", "operator"),
             ("tech", "operator"), ("victim", "viewer"), ("owner", "viewer"),
             ("guessed", "operator")]
    SEGMENT_SECONDS = 4
    PLAIN_LISTEN = True
    CAMERA_ARGS = []  # more rtsp_camera.py options (size, bitrate, pattern)

    def __init__(self, vigil_bin, keep=False):
        self.bin = vigil_bin
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="vigil-hostile-")
        self.camera = None
        self.daemon = None
        self.runs = 0
        self.port = None
        self.plain_port = None
        self.otp = None

    # --- processes -------------------------------------------------------
    def start_camera(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.camera_port = s.getsockname()[1]
        self.camera = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(ROOT, "tests/fixtures/rtsp_camera.py"), "--port", str(self.camera_port),
             *self.CAMERA_ARGS],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            line = self.camera.stdout.readline()
            if line.startswith("READY"):
                return
            if not line and self.camera.poll() is not None:
                break
        raise RuntimeError("the RTSP test camera did not become ready (GStreamer installed? scripts/hostile-test installs it)")

    def path(self, rel):
        return os.path.join(self.dir, rel)

    @property
    def db(self):
        return self.path("vigil.db")

    @property
    def log_path(self):
        return self.path(f"daemon-{self.runs}.log")

    def write_config(self):
        d = self.dir
        cams = "".join(f'[[camera]]\nname = "{n}"\nurl = "rtsp://127.0.0.1:{self.camera_port}{p}"\n\n'
                       for n, p in self.CAMERAS)
        plain = 'plain_listen = "127.0.0.1:0"\n' if self.PLAIN_LISTEN else ""
        cfg = (f'[storage]\ndir = "{d}/recordings"\ndb = "{d}/vigil.db"\nallow_unencrypted_volume = true\n\n'
               f'[keys]\nsource = "file"\nfile = "{d}/kek.key"\n\n'
               f'[recording]\nsegment_seconds = {self.SEGMENT_SECONDS}\nstall_timeout_seconds = 5\n\n'
               f'{cams}'
               f'[http]\nlisten = "127.0.0.1:0"\n{plain}')
        self.config = self.path("vigil.toml")
        with open(self.config, "w") as f:
            f.write(cfg)

    def cli(self, *args, stdin=None, timeout=120):
        """`vigil --config C ARGS`: CompletedProcess (text)."""
        env = dict(os.environ, VIGIL_LOG="warn", NO_COLOR="1")
        return subprocess.run([self.bin, "--config", self.config, *args], input=stdin, capture_output=True,
                              text=True, timeout=timeout, env=env)

    def start_daemon(self):
        self.runs += 1
        log = open(self.log_path, "wb")
        env = dict(os.environ, VIGIL_LOG="info", NO_COLOR="1")
        self.daemon = subprocess.Popen([self.bin, "--config", self.config, "run"], stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL, env=env, preexec_fn=_raise_nofile)
        log.close()
        self.port = self.logged_port("HTTPS API listening")
        self.plain_port = self.logged_port("plain HTTP listener", required=False)
        ok = wait_for(20, lambda: request(self.port, "GET", "/health/live", timeout=3).status == 200)
        if not ok:
            raise RuntimeError("the daemon's /health/live never answered 200")

    def stop_daemon(self):
        kill_pid(self.daemon, grace=15)
        self.daemon = None

    def log(self):
        out = ""
        for i in range(1, self.runs + 1):
            try:
                with open(self.path(f"daemon-{i}.log"), "rb") as f:
                    out += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return out

    def current_log(self):
        """This run's log only (a restarted daemon's lines, not the last run's)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def logged_port(self, what, required=True):
        def find():
            for line in reversed(self.current_log().splitlines()):
                if what in line:
                    m = re.search(r"listen=127\.0\.0\.1:(\d+)", line)
                    if m:
                        return int(m.group(1))
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.daemon.returncode}):\n{self.log()[-3000:]}")
            return None
        port = wait_for(20 if required else 3, find)
        if port is None and required:
            raise RuntimeError(f"the daemon never logged \"{what}\":\n{self.log()[-3000:]}")
        return port

    def rss_kib(self):
        try:
            with open(f"/proc/{self.daemon.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return 0

    def close(self):
        kill_pid(self.daemon, grace=15)
        kill_pid(self.camera)
        if self.camera is not None and self.camera.stdout:
            self.camera.stdout.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the installation ------------------------------------------------
    def keys_init_args(self):
        """More `vigil keys init` options (a subclass writes the recovery key to a file)."""
        return []

    def provision(self):
        """keys init, provision (one-time admin password to a 0600 file), users."""
        self.start_camera()
        self.write_config()
        o = self.cli("keys", "init", *self.keys_init_args())
        if o.returncode != 0:
            raise RuntimeError(f"keys init: {o.stdout}{o.stderr}")
        otp_file = self.path("admin-otp")
        o = self.cli("provision", "--admin-password-file", otp_file)
        if o.returncode != 0:
            raise RuntimeError(f"provision: {o.stdout}{o.stderr}")
        try:
            with open(otp_file) as f:
                self.otp = f.read().strip()
        except OSError:
            m = re.search(r"ONE-TIME PASSWORD[^:]*: (\S+)", o.stdout)
            self.otp = m.group(1) if m else None
        if not self.otp:
            raise RuntimeError(f"no one-time admin password from provision: {o.stdout}")
        for name, role in self.USERS:
            o = self.cli("users", "add", "--name", name, "--role", role, "--password-stdin",
                         "--no-change-required", stdin=USER_PW)
            if o.returncode != 0:
                raise RuntimeError(f"users add {name}: {o.stdout}{o.stderr}")

    def wait_recording(self, limit=40):
        """Waits for a complete recording of each camera."""
        def done():
            rows = self.query("SELECT c.name, count(*) FROM recording r JOIN camera c ON c.id = r.camera_id "
                              "WHERE r.state = 'complete' GROUP BY c.name")
            names = {n for n, k in rows if k > 0}
            return {n for n, _ in self.CAMERAS} <= names
        if not wait_for(limit, done, every=0.5):
            raise RuntimeError(f"no complete recording of both cameras within {limit} s:\n{self.log()[-3000:]}")

    def query(self, sql, args=()):
        """A read of the index (read-only, beside the running daemon)."""
        c = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    def write(self, sql, args=()):
        c = sqlite3.connect(self.db, timeout=10)
        try:
            c.execute(sql, args)
            c.commit()
        finally:
            c.close()

    def recording_totals(self):
        """(count, bytes, frames) of every recording."""
        return tuple(self.query("SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(frames), 0) FROM recording")[0])

    def archive_range(self, camera):
        """(start, end) strings of the camera's whole complete archive, from `vigil recordings`."""
        o = self.cli("recordings")
        rows = [l.split() for l in o.stdout.splitlines()[1:]]
        rows = [w for w in rows if len(w) >= 7 and w[1] == camera and w[6] == "complete"]
        if not rows:
            return None
        return rows[0][2], rows[-1][3]

    def max_audit_id(self):
        return self.query("SELECT coalesce(max(id), 0) FROM audit_log")[0][0]

    def audit_since(self, after_id):
        return self.query("SELECT id, actor, action, target, outcome, detail FROM audit_log WHERE id > ? ORDER BY id",
                          (after_id,))
