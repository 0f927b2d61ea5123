"""The installation of the onboarding suite (issue 17): the hostile suite's
Fixture (tests/hostile/fixture.py) with no camera in vigil.toml, two real
GStreamer test cameras (a main stream at 1280x720 and a sub stream at
640x360, each its own server), three ONVIF camera simulators
(tests/onvif/sim.py) whose stream URIs point at them, answering
WS-Discovery on loopback only, and `[onvif] discovery_interface =
"127.0.0.1"`. Every process is started here and killed by PID in
`close()`, also when a scenario fails."""
import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hostile"))
import fixture  # noqa: E402  (tests/hostile/fixture.py)
from fixture import kill_pid, wait_for  # noqa: E402

SIM = os.path.join(fixture.ROOT, "tests/onvif/sim.py")
CAMERA = os.path.join(fixture.ROOT, "tests/fixtures/rtsp_camera.py")
ONVIF_USER = "onvif-admin"
ONVIF_PW = "onvif pass Zr8-lantern"
# (simulator name, clock offset in seconds)
SIMS = [("porch", 0.0), ("gate", 0.0), ("drifty", 90.0)]


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ready(argv, what, limit=30):
    """Starts argv (Python, prints READY) and waits for its READY line."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        line = p.stdout.readline()
        if line.startswith("READY"):
            return p
        if not line and p.poll() is not None:
            break
    kill_pid(p)
    raise RuntimeError(f"{what} did not become ready")


class Sim:
    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def device_url(self):
        return f"http://127.0.0.1:{self.port}/onvif/device_service"

    def control(self, method, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def log(self):
        return self.control("GET", "/control/log")

    def event(self, kind, state):
        return self.control("POST", f"/control/event?kind={kind}&state={'true' if state else 'false'}")


class OnboardingBox(fixture.Fixture):
    USERS = [("tech", "admin"), ("op", "operator"), ("watcher", "viewer")]
    SEGMENT_SECONDS = 4
    PLAIN_LISTEN = False
    # A plain RTSP camera (no ONVIF): its clock comes from RTCP sender reports.
    CAMERAS = [("lobby", "/h264")]

    def __init__(self, vigil_bin, keep=False):
        super().__init__(vigil_bin, keep=keep)
        self.streams = {}  # "main"/"sub" -> (Popen, port)
        self.sims = {}  # name -> Sim

    def start_camera(self):
        for which, size in (("main", "1280x720"), ("sub", "640x360")):
            port = free_port()
            p = start_ready(["/usr/bin/python3", CAMERA, "--port", str(port), "--size", size, "--fps", "10",
                             "--gop", "10", "--bitrate", "400"], f"the {which} test camera")
            self.streams[which] = (p, port)
        self.camera_port = self.streams["sub"][1]
        for name, offset in SIMS:
            port = free_port()
            argv = ["/usr/bin/python3", SIM, "--port", str(port), "--name", name, "--user", ONVIF_USER,
                    "--password", ONVIF_PW, "--main-uri", self.uri("main"), "--sub-uri", self.uri("sub"),
                    "--discovery"]
            if offset:
                argv += ["--clock-offset", str(offset)]
            self.sims[name] = Sim(name, port, start_ready(argv, f"the ONVIF simulator {name}"))

    def uri(self, which):
        return f"rtsp://127.0.0.1:{self.streams[which][1]}/h264"

    def write_config(self):
        super().write_config()
        with open(self.config, "a") as f:
            f.write('\n[onvif]\ndiscovery_interface = "127.0.0.1"\n')

    def user(self, name):
        r, s = fixture.login(self.port, name, fixture.USER_PW)
        if s is None:
            raise RuntimeError(f"{name} cannot log in: {r}")
        return s

    def onboard(self, sim, name, password=ONVIF_PW, extra=()):
        """`vigil cameras add --onvif`: the CompletedProcess."""
        return self.cli("cameras", "add", "--onvif", sim.address, "--username", ONVIF_USER, "--password-stdin",
                        "--name", name, *extra, stdin=password + "\n", timeout=60)

    def health_camera(self, session, name):
        """The camera's entry in /health/ready (logged in: the details)."""
        r = session.call("GET", "/health/ready")
        j = r.json() or {}
        for c in j.get("cameras", []):
            if c.get("name") == name:
                return c
        return None

    def wait_camera_recording(self, name, limit=60):
        def done():
            rows = self.query("SELECT count(*) FROM recording r JOIN camera c ON c.id = r.camera_id "
                              "WHERE c.name = ? AND r.state = 'complete'", (name,))
            return rows[0][0] > 0
        return wait_for(limit, done, every=0.5)

    def close(self):
        kill_pid(self.daemon, grace=15)
        self.daemon = None
        for s in self.sims.values():
            kill_pid(s.proc)
            s.proc.stdout.close()
        for p, _ in self.streams.values():
            kill_pid(p)
            p.stdout.close()
        super().close()
