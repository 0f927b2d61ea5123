#!/usr/bin/python3
"""What converting an H.265 camera for a browser costs the box: the daemon's
CPU (from /proc/PID/stat) over a window with no viewer, then with one
converted live viewer of `garage` (`live.mp4?codec=h264`), then with a
direct H.264 viewer of `front` for comparison, on tests/ui/devbox.py's box
(four 640x360 25 fps test cameras). Prints one line per window and the
encoder in use. A measurement, not a test: it fails only if nothing plays.
    tests/ui/transcode_cost.py --vigil target/release/vigil [--seconds 10]"""
import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import devbox  # noqa: E402
import fixture  # noqa: E402  (tests/hostile/fixture.py, on devbox's path)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def watch(port, session, path, seconds, out):
    """Reads a live stream for `seconds` on a session; counts its bytes."""
    import http.client
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=seconds + 15, context=fixture.CTX)
    c.request("GET", path, headers={"Cookie": f"vigil_session={session.cookie}", "Host": f"127.0.0.1:{port}"})
    r = c.getresponse()
    out["status"] = r.status
    out["codec"] = r.getheader("X-Codec")
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        b = r.read1(65536)
        if not b:
            break
        n += len(b)
    out["bytes"] = n
    c.close()


def window(box, seconds, stream=None, session=None):
    got = {}
    t = None
    if stream:
        t = threading.Thread(target=watch, args=(box.port, session, stream, seconds + 3, got))
        t.start()
        time.sleep(3)  # the converter starts, the first key frame comes
    a, w = cpu_seconds(box.daemon.pid), time.monotonic()
    time.sleep(seconds)
    b, w2 = cpu_seconds(box.daemon.pid), time.monotonic()
    if t:
        t.join(30)
    return 100.0 * (b - a) / (w2 - w), got


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vigil", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    box = devbox.UiBox(os.path.abspath(a.vigil))
    try:
        box.provision()
        box.start_daemon()
        time.sleep(5)
        _, s = fixture.login(box.port, "tech", devbox.PASSWORD)
        if s is None:
            raise SystemExit("login failed")
        info = s.call("GET", "/api/v1/transcode").json()
        idle, _ = window(box, a.seconds)
        conv, g = window(box, a.seconds, "/api/v1/cameras/garage/live.mp4?codec=h264", s)
        direct, d = window(box, a.seconds, "/api/v1/cameras/front/live.mp4", s)
        print(f"encoder: {info.get('encoder')}; cameras: 4 x 640x360 25 fps (garage H.265)")
        print(f"daemon CPU, no viewer:                    {idle:5.1f} % of one core")
        print(f"daemon CPU, one converted garage viewer:  {conv:5.1f} % ({g.get('codec')}, {g.get('bytes', 0)} bytes)")
        print(f"daemon CPU, one direct front viewer:      {direct:5.1f} % ({d.get('codec')}, {d.get('bytes', 0)} bytes)")
        print(f"conversion alone: about {conv - idle:.1f} % of one core")
        print(json.dumps({"idle": idle, "converted": conv, "direct": direct, "encoder": info.get("encoder")}))
        if not g.get("bytes") or not d.get("bytes"):
            raise SystemExit("a stream sent nothing")
    finally:
        box.close()


if __name__ == "__main__":
    main()
