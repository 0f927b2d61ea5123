"""9: the issue's notes: security headers on the server library's own
errors, JSON POSTs only as application/json, Origin checks, the plain-HTTP
redirect, anonymous readiness, control characters in free text, the camera
probe; and (9b) `vigil verify-export` of a bundle re-signed by a stranger."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

from fixture import ADMIN_PW, CTX, USER_PW, login, request
from verdict import Verdict

SECURITY_HEADERS = ["strict-transport-security", "x-content-type-options", "content-security-policy"]
BANNER = b"HOSTILE-BANNER-5f3a9c SSH-2.0-OpenSSH_9.2 secret\r\n"


def raw_exchange(port, data, src="127.0.0.1", limit=5.0):
    """Sends raw bytes over TLS and returns what comes back before the close (bounded)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit, source_address=(src, 0))
    out = b""
    try:
        t = CTX.wrap_socket(s)
        t.sendall(data)
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                b = t.recv(65536)
            except (socket.timeout, ssl.SSLError, OSError):
                break
            if not b:
                break
            out += b
            if b"\r\n\r\n" in out:
                break
    finally:
        s.close()
    return out


def _head(raw):
    text = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = text.split("\r\n")
    status = lines[0] if lines else ""
    names = {l.split(":", 1)[0].strip().lower() for l in lines[1:] if ":" in l}
    return status, names


class Banner:
    """A TCP server on 127.0.0.1 that answers anything with BANNER (not a camera), for 60 s at most."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stop = time.monotonic() + 60
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while time.monotonic() < self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                c.settimeout(2)
                try:
                    c.recv(4096)
                except OSError:
                    pass
                c.sendall(BANNER * 4)
            except OSError:
                pass
            finally:
                c.close()

    def close(self):
        self.stop = 0
        self.thread.join(2)
        self.sock.close()


def notes(fx):
    v = Verdict(9, "notes: headers, content type, Origin, redirect, readiness, free text, probe")
    port = fx.port
    # The server library's own 400 and 431.
    for what, data, code in [("malformed request line", b"GARBAGE \x01\x02 NONSENSE\r\n\r\n", "400"),
                             ("huge header", b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
                              "431")]:
        try:
            raw = raw_exchange(port, data)
        except OSError as e:
            raw = b""
            v.figure(f"{what}: {e}")
        status, names = _head(raw)
        missing = [h for h in SECURITY_HEADERS if h not in names]
        v.figure(f"{what}: {status!r}, missing headers {missing}")
        v.check(code in status, f"{what}: expected {code}, got {status!r}")
        v.check(not missing and status, f"{what}: the response lacks {missing}")
    # JSON sent as text/plain (a cross-site form).
    r = request(port, "POST", "/api/v1/login", {"Content-Type": "text/plain"},
                json.dumps({"name": "tech", "password": USER_PW}), src="127.0.0.48")
    v.figure(f"login as text/plain: {r.status}")
    v.check(r.status == 415, f"login with Content-Type text/plain: {r.status}, not 415")
    # A state change from another origin.
    r = request(port, "POST", "/api/v1/login", {"Origin": "https://evil.example"},
                {"name": "tech", "password": USER_PW}, src="127.0.0.48")
    v.figure(f"login with Origin https://evil.example: {r.status}")
    v.check(r.status == 403, f"a POST with Origin https://evil.example: {r.status}, not 403")
    # The plain-HTTP redirect and a hostile Host header.
    if v.check(fx.plain_port is not None, "no plain HTTP listener was logged"):
        c = http.client.HTTPConnection("127.0.0.1", fx.plain_port, timeout=5, source_address=("127.0.0.48", 0))
        try:
            c.request("GET", "/api/v1/me", headers={"Host": "evil.example"})
            rr = c.getresponse()
            loc = rr.getheader("Location") or ""
            rr.read()
        except (OSError, http.client.HTTPException) as e:
            loc = f"error {e}"
        finally:
            c.close()
        v.figure(f"plain redirect with Host evil.example: Location {loc!r}")
        v.check("evil.example" not in loc, f"the redirect reflects the Host header: {loc}")
    # Anonymous readiness: only the status.
    r = request(port, "GET", "/health/ready", src="127.0.0.48")
    j = r.json()
    v.figure(f"anonymous /health/ready: {r.status} keys {sorted(j) if isinstance(j, dict) else j}")
    v.check(isinstance(j, dict) and set(j) == {"status"}, f"anonymous /health/ready says more than its status: {r.text()[:300]}")
    # A hold reason that would print as a fake audit row.
    rid = fx.query("SELECT max(id) FROM recording WHERE state = 'complete'")[0][0]
    r, op = login(port, "operator1", USER_PW, src="127.0.0.49")
    fake = "     1 2020-01-01T00:00:00.000Z user:admin       hostile.fake.row"
    if v.check(op is not None, f"operator1 logs in: {r}"):
        h = op.call("POST", "/api/v1/holds", {"recording_id": rid, "reason": f"case 7\n{fake}"})
        v.figure(f"hold reason with a newline: {h.status}")
        v.check(h.status == 400, f"a hold reason with \\n: {h.status}, not 400")
    tail = fx.cli("audit", "tail", "-n", "30").stdout
    v.check(not any(l.strip().startswith("1 2020-01-01T00:00:00.000Z") for l in tail.splitlines()),
            "`vigil audit tail` prints a fake row")
    # The camera probe: only RTSP and V4L2 devices, only a verdict.
    banner = Banner()
    try:
        r, admin = login(port, "admin", ADMIN_PW, src="127.0.0.50")
        if v.check(admin is not None, f"admin logs in: {r}"):
            for url in [f"http://127.0.0.1:{banner.port}/", f"rtsp://127.0.0.1:{banner.port}/",
                        "v4l2:///etc/passwd", "v4l2:///dev/../etc/passwd", "v4l2:///dev/null"]:
                p = admin.call("POST", "/api/v1/probe-camera", {"url": url}, timeout=20)
                j = p.json() if p.status == 200 else None
                refused = p.status == 400 or (isinstance(j, dict) and j.get("ok") is False and set(j) <= {"ok", "error"})
                leaked = b"HOSTILE-BANNER" in p.body or b"root:" in p.body or b"OpenSSH" in p.body
                v.figure(f"probe {url}: {p.status} {p.text()[:120]!r}")
                v.check(refused, f"probe {url} is not refused with only a verdict: {p.status} {p.text()[:200]}")
                v.check(not leaked, f"probe {url} returns raw bytes of the target")
    finally:
        banner.close()
    v.finish()
    return v


def _openssl(*args, **kw):
    return subprocess.run(["openssl", *args], capture_output=True, timeout=30, **kw)


def bundle_forgery(fx):
    """9b: verify-export of a bundle re-signed by a stranger, and of a good one without a pinned key."""
    v = Verdict("9b", "verify-export: a stranger's signature is never INTACT")
    rng = fx.archive_range("cam")
    good = fx.path("bundle-good")
    o = fx.cli("export", "--camera", "cam", "--start", rng[0], "--end", rng[1], "--bundle", good)
    if not v.check(o.returncode == 0, f"export --bundle: {o.returncode} {o.stdout}{o.stderr}"):
        v.finish()
        return v
    g = fx.cli("verify-export", good)
    v.figure(f"good bundle, no pinned key: exit {g.returncode}, {_result(g.stdout)!r}")
    v.check(g.returncode == 3 and "RESULT: INTACT, ORIGIN NOT VERIFIED" in g.stdout,
            f"a good bundle without a pinned key: exit {g.returncode}, {_result(g.stdout)!r} "
            "(want exit 3 and RESULT: INTACT, ORIGIN NOT VERIFIED)")
    fp = _fingerprint(fx)
    if fp:
        p = fx.cli("verify-export", "--fingerprint", fp, good)
        v.check(p.returncode == 0 and _result(p.stdout) == "RESULT: INTACT",
                f"a good bundle with the device fingerprint pinned: exit {p.returncode} {_result(p.stdout)!r}")
    # The stranger: another Ed25519 key, a changed manifest, re-signed, the key carried in the bundle.
    bad = fx.path("bundle-forged")
    shutil.copytree(good, bad)
    key = fx.path("stranger.pem")
    _openssl("genpkey", "-algorithm", "ed25519", "-out", key, check=True)
    der = _openssl("pkey", "-in", key, "-pubout", "-outform", "DER", check=True).stdout
    pem = _openssl("pkey", "-in", key, "-pubout", check=True).stdout
    raw = der[-32:]
    with open(os.path.join(bad, "device-public-key.pem"), "wb") as f:
        f.write(pem)
    mpath = os.path.join(bad, "manifest.json")
    with open(mpath) as f:
        m = json.load(f)
    import hashlib
    m["operator"] = "someone else entirely"
    m["signing_key"]["public_key_hex"] = raw.hex()
    m["signing_key"]["fingerprint_sha256"] = hashlib.sha256(raw).hexdigest()
    with open(mpath, "w") as f:
        json.dump(m, f, indent=2)
    _openssl("pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", mpath, "-out", os.path.join(bad, "manifest.sig"), check=True)
    b = fx.cli("verify-export", bad)
    lines = [l.strip() for l in b.stdout.splitlines()]
    v.figure(f"stranger-signed bundle, no pinned key: exit {b.returncode}, {_result(b.stdout)!r}")
    v.check(b.returncode != 0, "a bundle re-signed by a stranger verifies with exit 0")
    v.check("RESULT: INTACT" not in lines, "a bundle re-signed by a stranger prints the plain line RESULT: INTACT")
    if fp:
        p = fx.cli("verify-export", "--fingerprint", fp, bad)
        v.check(p.returncode == 1, f"a stranger-signed bundle with the device fingerprint pinned: exit {p.returncode}")
    v.finish()
    return v


def _result(out):
    return next((l.strip() for l in out.splitlines() if l.startswith("RESULT")), "")


def _fingerprint(fx):
    import re
    o = fx.cli("device")
    m = re.search(r"\b[0-9a-f]{64}\b", o.stdout)
    return m.group(0) if m else None
