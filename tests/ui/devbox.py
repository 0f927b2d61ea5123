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

    CAMERAS = CAMERAS
    USERS = USERS
    SEGMENT_SECONDS = 10
    PLAIN_LISTEN = False


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
