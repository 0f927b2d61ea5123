#!/usr/bin/python3
"""A Vigil installation for trying the web UI by hand or from a test: four
GStreamer test cameras (three H.264, one H.265 only), the daemon on
loopback, and users of each role. Prints one JSON line (url, users) and
stays up until killed (SIGTERM/SIGINT): then every process it started is
killed by PID. Debug builds also serve the UI from the source tree when
VIGIL_DEV_UI_DIR is set, so a changed script needs no rebuild.
    tests/ui/devbox.py --vigil target/debug/vigil"""
import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hostile"))
import fixture  # noqa: E402  (tests/hostile/fixture.py)

PASSWORD = fixture.USER_PW
CAMERAS = [("front", "/h264"), ("yard", "/h264"), ("door", "/h264"), ("garage", "/h265")]
USERS = [("tech", "admin"), ("op", "operator"), ("watcher", "viewer")]


class UiBox(fixture.Fixture):
    """Four cameras (one H.265 only), users of each role."""

    def write_config(self):
        d = self.dir
        cams = "".join(f'[[camera]]\nname = "{n}"\nurl = "rtsp://127.0.0.1:{self.camera_port}{p}"\n\n'
                       for n, p in CAMERAS)
        cfg = (f'[storage]\ndir = "{d}/recordings"\ndb = "{d}/vigil.db"\nallow_unencrypted_volume = true\n\n'
               f'[keys]\nsource = "file"\nfile = "{d}/kek.key"\n\n'
               f'[recording]\nsegment_seconds = 10\nstall_timeout_seconds = 5\n\n'
               f'{cams}'
               f'[http]\nlisten = "127.0.0.1:0"\n')
        self.config = self.path("vigil.toml")
        with open(self.config, "w") as f:
            f.write(cfg)

    def provision(self):
        self.start_camera()
        self.write_config()
        for args in (["keys", "init"], ["provision", "--admin-password-file", self.path("admin-otp")]):
            o = self.cli(*args)
            if o.returncode != 0:
                raise RuntimeError(f"{args[0]}: {o.stdout}{o.stderr}")
        with open(self.path("admin-otp")) as f:
            self.otp = f.read().strip()
        for name, role in USERS:
            o = self.cli("users", "add", "--name", name, "--role", role, "--password-stdin",
                         "--no-change-required", stdin=PASSWORD)
            if o.returncode != 0:
                raise RuntimeError(f"users add {name}: {o.stdout}{o.stderr}")


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
