#!/usr/bin/python3
"""A Vigil installation for trying the web UI by hand or from a test: four
GStreamer test cameras (three H.264, one H.265 only; `front` has a
1280x720 main stream from a second test camera server and the first
server's 640x360 stream as its sub stream), the daemon on loopback, and
users of each role. Prints one JSON line (url, users) and
stays up until killed (SIGTERM/SIGINT): then every process it started is
killed by PID. Debug builds also serve the UI from the source tree when
VIGIL_DEV_UI_DIR is set, so a changed script needs no rebuild.
    tests/ui/devbox.py --vigil target/debug/vigil"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hostile"))
import fixture  # noqa: E402  (tests/hostile/fixture.py)

PASSWORD = fixture.USER_PW
CAMERAS = [("front", "/h264"), ("yard", "/h264"), ("door", "/h264"), ("garage", "/h265")]
USERS = [("tech", "admin"), ("op", "operator"), ("watcher", "viewer")]


# The camera with a main and a sub stream, and their sizes.
SUB_CAMERA = "front"
MAIN_SIZE, SUB_SIZE = (1280, 720), (640, 360)
# The camera with ONVIF (an ONVIF simulator, tests/onvif/sim.py): PTZ and camera events.
ONVIF_CAMERA = "door"
ONVIF_USER, ONVIF_PW = "door-admin", "door onvif Tq5-basin"


class UiBox(fixture.Fixture):
    """Four cameras (one H.265 only; front with a sub stream), users of each role."""

    CAMERAS = CAMERAS
    USERS = USERS
    SEGMENT_SECONDS = 10
    PLAIN_LISTEN = False

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.main_camera = None
        self.sim = None
        self.sim_port = None
        # The motion event raised once the daemon subscribed: (start, end) as the simulator's UTC strings.
        self.motion = None

    def start_sim(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.sim_port = sock.getsockname()[1]
        # Its profiles: the 1280x720 camera as main, the first one's 640x360 as sub.
        main = f"rtsp://127.0.0.1:{self.main_port}/h264"
        sub = f"rtsp://127.0.0.1:{self.camera_port}/h264"
        self.sim = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(fixture.ROOT, "tests/onvif/sim.py"), "--port", str(self.sim_port),
             "--name", ONVIF_CAMERA, "--user", ONVIF_USER, "--password", ONVIF_PW, "--main-uri", main, "--sub-uri", sub,
             "--discovery"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            line = self.sim.stdout.readline()
            if line.startswith("READY"):
                return
            if not line and self.sim.poll() is not None:
                break
        raise RuntimeError("the ONVIF simulator did not become ready (python3-lxml installed?)")

    def sim_control(self, method, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.sim_port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def raise_motion(self):
        """Once the daemon subscribed to the simulator's events: motion for 2 s."""
        if not fixture.wait_for(30, lambda: self.sim_control("GET", "/control/log").get("subscriptions", 0) > 0):
            raise RuntimeError("the daemon never subscribed to the simulator's events")
        start = self.sim_control("POST", "/control/event?kind=motion&state=true")["utc"]
        time.sleep(2)
        end = self.sim_control("POST", "/control/event?kind=motion&state=false")["utc"]
        self.motion = (start, end)

    def start_camera(self):
        super().start_camera()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.main_port = port
        self.main_camera = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(fixture.ROOT, "tests/fixtures/rtsp_camera.py"), "--port", str(port),
             "--size", "%dx%d" % MAIN_SIZE, "--fps", "10", "--gop", "10", "--bitrate", "800"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            line = self.main_camera.stdout.readline()
            if line.startswith("READY"):
                self.start_sim()
                return
            if not line and self.main_camera.poll() is not None:
                break
        raise RuntimeError("the 1280x720 test camera did not become ready")

    def write_config(self):
        super().write_config()
        with open(self.config) as f:
            cfg = f.read()
        old = f'name = "{SUB_CAMERA}"\nurl = "rtsp://127.0.0.1:{self.camera_port}/h264"\n'
        new = (f'name = "{SUB_CAMERA}"\nurl = "rtsp://127.0.0.1:{self.main_port}/h264"\n'
               f'sub_url = "rtsp://127.0.0.1:{self.camera_port}/h264"\n')
        if old not in cfg:
            raise RuntimeError("devbox: the front camera's block is not where it was expected")
        cfg = cfg.replace(old, new)
        old = f'name = "{ONVIF_CAMERA}"\nurl = "rtsp://127.0.0.1:{self.camera_port}/h264"\n'
        new = old + (f'onvif_url = "http://127.0.0.1:{self.sim_port}/onvif/device_service"\n'
                     f'username = "{ONVIF_USER}"\npassword = "{ONVIF_PW}"\n')
        if old not in cfg:
            raise RuntimeError("devbox: the door camera's block is not where it was expected")
        cfg = cfg.replace(old, new)
        # Discovery from the Cameras page: out of loopback only.
        cfg += '\n[onvif]\ndiscovery_interface = "127.0.0.1"\n'
        with open(self.config, "w") as f:
            f.write(cfg)

    def close(self):
        fixture.kill_pid(self.sim)
        if self.sim is not None and self.sim.stdout:
            self.sim.stdout.close()
        fixture.kill_pid(self.main_camera)
        if self.main_camera is not None and self.main_camera.stdout:
            self.main_camera.stdout.close()
        super().close()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vigil", required=True)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    a = p.parse_args()
    box = UiBox(os.path.abspath(a.vigil), keep=a.keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        box.provision()
        box.start_daemon()
        print(json.dumps({"url": f"https://127.0.0.1:{box.port}", "dir": box.dir,
                          "admin": "admin", "one_time_password": box.otp, "password": PASSWORD,
                          "users": {n: r for n, r in USERS}}), flush=True)
        while box.daemon.poll() is None:
            time.sleep(1)
        print(f"the daemon exited:\n{box.log()[-3000:]}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        box.close()


if __name__ == "__main__":
    main()
