"""A Vigil installation whose `[alerts]` deliver to the suite's receivers:
the hostile suite's Fixture (tests/hostile/fixture.py) with one GStreamer
test camera server per camera (so one camera can be killed and restarted on
its port), optionally one camera behind the flapping proxy, optionally the
recordings on a small tmpfs, and the four channels (webhook `hook`, MQTT
`mqtt`, Twilio `sms`, email `mail`) with `ca_file` = the test CA. The
channel secrets go into the secrets store with `vigil secrets set` (value on
stdin) before the daemon first starts. `close()` kills every process by PID
and unmounts the tmpfs."""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hostile"))
import fixture  # noqa: E402  (tests/hostile/fixture.py)
from flapper import FlappingProxy  # noqa: E402
from receivers import free_port  # noqa: E402
from fixture import kill_pid  # noqa: E402

PASSWORD = fixture.USER_PW
CHANNELS = {"webhook": "hook", "mqtt": "mqtt", "twilio": "sms", "email": "mail"}
SMS_FROM = "+15550001111"
SMS_TO = "+15552223333"


class AlertBox(fixture.Fixture):
    USERS = [("tech", "admin"), ("watcher", "viewer")]
    SEGMENT_SECONDS = 4
    PLAIN_LISTEN = False

    def __init__(self, vigil_bin, rx, name, cameras, flapping=None, tmpfs_mib=None, keep=False, **alerts):
        """`cameras`: names (each on its own /h264 server); `flapping`: the
        name of one of them to put behind the proxy; `alerts`: overrides of
        the [alerts] keys and of `rate_limit` (every channel)."""
        super().__init__(vigil_bin, keep=keep)
        self.rx = rx
        self.name = name
        self.CAMERAS = [(c, "/h264") for c in cameras]
        self.flapping = flapping
        self.proxy = None
        self.tmpfs_mib = tmpfs_mib
        self.mounted = None
        self.cams = {}  # name -> [Popen, port]
        self.device_id = None
        self.alerts = {"offline_after_seconds": 2, "gap_after_seconds": 10, "flap_window_seconds": 600,
                       "flap_threshold": 50, "digest_after_seconds": 10, "digest_threshold": 50,
                       "rate_limit": 100}
        self.alerts.update(alerts)

    @property
    def prefix(self):
        return f"vigil/{self.name}"

    @property
    def volume(self):
        return self.path("vol")

    # --- cameras ---------------------------------------------------------
    def start_camera(self):
        os.makedirs(self.volume, exist_ok=True)
        if self.tmpfs_mib:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.tmpfs_mib}m,mode=0700", "tmpfs",
                            self.volume], check=True, timeout=30)
            self.mounted = self.volume
        for c, _ in self.CAMERAS:
            self.cams[c] = [None, free_port()]
            self.camera_up(c)
        if self.flapping:
            self.proxy = FlappingProxy(self.cams[self.flapping][1], free_port())
            self.proxy.start()
        self.camera_port = None

    def camera_up(self, c):
        """Starts camera `c`'s RTSP server on its port (again)."""
        port = self.cams[c][1]
        end = time.monotonic() + 30
        while True:
            p = subprocess.Popen(["/usr/bin/python3", os.path.join(fixture.ROOT, "tests/fixtures/rtsp_camera.py"),
                                  "--port", str(port), "--size", "320x180", "--fps", "10", "--gop", "10",
                                  "--bitrate", "300"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = p.stdout.readline()
            if line.startswith("READY"):
                self.cams[c][0] = p
                return
            kill_pid(p, grace=5.0)
            p.stdout.close()
            if time.monotonic() > end:
                raise RuntimeError(f"the RTSP test camera {c} did not become ready on port {port}")
            time.sleep(0.5)

    def camera_down(self, c):
        """Kills camera `c`'s RTSP server (SIGKILL: gone at once, like a pulled cable)."""
        p = self.cams[c][0]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)
            p.stdout.close()
        self.cams[c][0] = None

    # --- the installation ------------------------------------------------
    def write_config(self):
        d = self.dir
        rx = self.rx
        ca = rx.certs.ca
        cams = ""
        for c, path in self.CAMERAS:
            port = self.proxy.port if c == self.flapping else self.cams[c][1]
            cams += f'[[camera]]\nname = "{c}"\nurl = "rtsp://127.0.0.1:{port}{path}"\n\n'
        a = dict(self.alerts)
        rate = a.pop("rate_limit")
        alerts = "".join(f"{k} = {v}\n" for k, v in a.items())
        common = f'min_severity = "info"\nrate_limit = {rate}\nrate_window_seconds = 3600\nca_file = "{ca}"\n'
        retention = ('[retention]\nmin_free_percent = 25\ninterval_seconds = 5\n\n' if self.tmpfs_mib
                     else '[retention]\nmin_free_percent = 1\ninterval_seconds = 5\n\n')
        cfg = (f'[storage]\ndir = "{self.volume}/recordings"\ndb = "{d}/vigil.db"\n'
               f'allow_unencrypted_volume = true\n\n'
               f'[keys]\nsource = "file"\nfile = "{d}/kek.key"\n\n'
               f'[recording]\nsegment_seconds = {self.SEGMENT_SECONDS}\nstall_timeout_seconds = 5\n\n'
               # The floor only on the box's own small tmpfs, never the host's disk.
               f'{retention}'
               f'[fixity]\ncycle_seconds = 5\nrate_mb_per_s = 50\n\n'
               f'{cams}'
               f'[http]\nlisten = "127.0.0.1:0"\n\n'
               f'[alerts]\n{alerts}device_name = "{self.name}"\n\n'
               f'[[alerts.channel]]\nname = "hook"\nkind = "webhook"\n{common}secret = "alert-hook"\n'
               f'url = "{rx.webhook.url}"\n\n'
               f'[[alerts.channel]]\nname = "mqtt"\nkind = "mqtt"\n{common}secret = "alert-mqtt"\n'
               f'url = "{rx.mqtt.url}"\nusername = "{rx.mqtt_user}"\ntopic_prefix = "{self.prefix}"\n'
               f'home_assistant = true\ndiscovery_prefix = "homeassistant"\n\n'
               f'[[alerts.channel]]\nname = "sms"\nkind = "twilio"\n{common}secret = "alert-sms"\n'
               f'base_url = "{rx.twilio.base_url}"\naccount_sid = "{rx.twilio_sid}"\n'
               f'from = "{SMS_FROM}"\nto = "{SMS_TO}"\n\n'
               f'[[alerts.channel]]\nname = "mail"\nkind = "email"\n{common}secret = "alert-mail"\n'
               f'smtp_host = "127.0.0.1"\nsmtp_port = {rx.smtp.port}\nusername = "{rx.smtp_user}"\n'
               f'from = "vigil@{self.name}.test"\nto = ["tech@alerts.test"]\n')
        self.config = self.path("vigil.toml")
        with open(self.config, "w") as f:
            f.write(cfg)

    def provision(self):
        """Cameras, keys, provision, users (the Fixture's), then the channel
        secrets (stdin) and the device id."""
        super().provision()
        for name, value in [("alert-hook", self.rx.webhook_secret), ("alert-mqtt", self.rx.mqtt_password),
                            ("alert-sms", self.rx.twilio_token), ("alert-mail", self.rx.smtp_password)]:
            o = self.cli("secrets", "set", name, stdin=value)
            if o.returncode != 0:
                raise RuntimeError(f"secrets set {name}: {o.stdout}{o.stderr}")
        o = self.cli("device")
        m = re.search(r"vigil-[0-9a-f]+", o.stdout)
        if not m:
            raise RuntimeError(f"no device id from `vigil device`: {o.stdout}{o.stderr}")
        self.device_id = m.group(0)

    def kill9(self):
        """SIGKILL the daemon (no clean stop)."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)
        self.daemon = None

    def admin(self):
        r, s = fixture.login(self.port, "tech", PASSWORD)
        if s is None:
            raise RuntimeError(f"the admin tech cannot log in: {r}")
        return s

    def viewer(self):
        r, s = fixture.login(self.port, "watcher", PASSWORD)
        if s is None:
            raise RuntimeError(f"the viewer watcher cannot log in: {r}")
        return s

    # --- what the receivers got from this box ----------------------------
    def mine(self, m):
        """Whether message m came from this box."""
        if m.json is not None:
            return m.json.get("device_id") == self.device_id
        return (m.text or "").startswith(f"[Vigil {self.name}]")

    def received(self):
        """{channel kind: [Message]} from this box, each in arrival order."""
        rx = self.rx
        return {"webhook": [m for m in rx.webhook.snapshot() if self.mine(m)],
                "mqtt": [m for m in rx.mqtt.alerts(self.prefix) if self.mine(m)],
                "twilio": [m for m in rx.twilio.snapshot() if self.mine(m)],
                "email": [m for m in rx.smtp.snapshot() if self.mine(m)]}

    def close(self):
        """The proxy, the daemon, the cameras, the tmpfs, then the directory."""
        if self.proxy is not None:
            self.proxy.close()
        kill_pid(self.daemon, grace=15)
        self.daemon = None
        for c in list(self.cams):
            self.camera_down(c)
        if self.mounted:
            subprocess.run(["umount", "-l", self.mounted], timeout=30)
            self.mounted = None
        super().close()
