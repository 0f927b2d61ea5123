"""The onboarding suite's scenarios (issue 17), each `f(box, v)` with a
Verdict v: discovery, onboarding by ONVIF with main and sub streams, a
wrong password, the camera's clock, PTZ, camera events."""
import io
import json
import re
import struct
import time
import zipfile

from box import ONVIF_PW, ONVIF_USER, SIMS
from fixture import wait_for


def discover(box, v):
    t = time.monotonic()
    o = box.cli("cameras", "discover", "--interface", "127.0.0.1", "--wait-ms", "2000", "--username", ONVIF_USER,
                "--password-stdin", "--json", stdin=ONVIF_PW + "\n", timeout=60)
    v.check(o.returncode == 0, f"discover: exit {o.returncode}: {(o.stdout + o.stderr)[-400:]!r}")
    try:
        found = json.loads(o.stdout)
    except ValueError:
        found = []
    ours = {f"127.0.0.1:{s.port}": s for s in box.sims.values()}
    seen = [d for d in found if any(a in d.get("address", "") for a in ours)]
    v.figure(f"discover: {len(found)} device(s) in {time.monotonic() - t:.1f} s, {len(seen)} of our "
             f"{len(ours)} simulators: " + ", ".join(f"{d.get('name')} {d.get('model')} {d.get('credentials')}"
                                                    for d in seen))
    v.check(len(seen) == len(SIMS), f"discovery found {len(seen)} of {len(SIMS)} simulators: {found}")
    for d in seen:
        v.check(d.get("manufacturer") == "Vigil Sim" and d.get("firmware") == "1.0.0" and d.get("credentials") == "ok",
                f"discovered device: {d}")
    # The same without credentials: listed, "not given".
    o = box.cli("cameras", "discover", "--interface", "127.0.0.1", "--wait-ms", "1500", "--json", timeout=60)
    try:
        anon = json.loads(o.stdout)
    except ValueError:
        anon = []
    v.check(o.returncode == 0 and sum(1 for d in anon if d.get("credentials") == "not given") >= len(SIMS),
            f"discover without credentials: exit {o.returncode}, {anon}")


def wrong_password(box, v):
    sim = box.sims["gate"]
    before = sim.log().get("auth_failures", 0)
    o = box.onboard(sim, "gate-bad", password="not the password")
    out = (o.stdout + o.stderr).strip()
    v.figure(f"wrong password: exit {o.returncode}: {out.splitlines()[-1][:160] if out else ''}")
    v.check(o.returncode == 1 and "refused the username or password" in out, f"wrong password: {o.returncode} {out!r}")
    v.check("not the password" not in out, "the error holds no password")
    v.check(sim.log().get("auth_failures", 0) > before, "the simulator saw the refused login")
    rows = box.query("SELECT count(*) FROM managed_camera WHERE name = 'gate-bad'")
    v.check(rows[0][0] == 0, "no camera was written")
    # Unreachable: a port nobody listens on.
    o = box.cli("cameras", "add", "--onvif", "127.0.0.1:9", "--username", ONVIF_USER, "--password-stdin",
                "--name", "nowhere", stdin=ONVIF_PW + "\n", timeout=60)
    out = (o.stdout + o.stderr).strip()
    v.figure(f"unreachable: exit {o.returncode}: {out.splitlines()[-1][:160] if out else ''}")
    v.check(o.returncode == 1 and "panick" not in out, f"unreachable: {o.returncode} {out!r}")


def onboard_before_start(box, v):
    """Run before the daemon starts: porch and drifty onboarded by the CLI."""
    for name in ("porch", "drifty"):
        o = box.onboard(box.sims[name], name)
        out = o.stdout + o.stderr
        v.figure(f"add --onvif {name}: exit {o.returncode}: {' | '.join(out.strip().splitlines()[-3:])[:240]}")
        v.check(o.returncode == 0, f"add --onvif {name}: {out[-400:]!r}")
        v.check("1280x720" in out and "640x360" in out, f"{name}: main and sub stream sizes printed: {out!r}")
    rows = box.query("SELECT name, url, sub_url, onvif_url FROM managed_camera ORDER BY name")
    v.figure(f"managed cameras: {rows}")
    porch = [r for r in rows if r[0] == "porch"]
    v.check(porch and porch[0][1] == box.uri("main") and porch[0][2] == box.uri("sub"),
            f"porch's main and sub stream URIs: {porch}")
    audit = box.query("SELECT actor, action, target, outcome FROM audit_log WHERE action = 'camera.add'")
    v.check(any(r[2] == "porch" and r[3] == "ok" for r in audit), f"camera.add audited: {audit}")
    secret = box.query("SELECT count(*) FROM secret WHERE name = 'camera.porch'") if _has_table(box, "secret") else [(1,)]
    v.check(secret[0][0] == 1, "porch's password is in the secrets store")


def _has_table(box, name):
    return bool(box.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


def sample_entry_size(data):
    """(width, height) of the first avc1/hvc1 sample entry in an MP4 byte string."""
    for tag in (b"avc1", b"hvc1", b"hev1"):
        i = data.find(tag)
        if i > 0:
            # Visual sample entry: 6 reserved + 2 index + 16 predefined, then width, height.
            w, h = struct.unpack(">HH", data[i + 4 + 24:i + 4 + 28])
            return w, h
    return None


def streams(box, v):
    ok = box.wait_camera_recording("porch", 60)
    v.check(ok, "porch recorded a complete recording within 60 s")
    s = box.user("watcher")
    sizes = {}
    for which in ("main", "sub"):
        sizes[which] = _first_bytes(box, s, which)
    # Recorded and played back: the main stream (view.mp4 of the last 3 s recorded).
    last = box.query("SELECT r.start_wall_ns, r.end_wall_ns FROM recording r JOIN camera c ON c.id = r.camera_id "
                     "WHERE c.name = 'porch' AND r.state = 'complete' ORDER BY r.id DESC LIMIT 1")
    recorded = None
    if last:
        end = last[0][1] / 1e9
        q = (f"start={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end - 3))}"
             f"&end={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end))}")
        r = box.user("op").call("GET", f"/api/v1/cameras/porch/view.mp4?{q}", timeout=20)
        recorded = sample_entry_size(r.body) if r.status == 200 else f"HTTP {r.status} {r.text()[:100]}"
    v.figure(f"live: main {sizes['main']}, sub {sizes['sub']}; recorded (view.mp4): {recorded}")
    v.check(recorded == (1280, 720), f"the recording is the main stream: {recorded}")
    subs = box.query("SELECT count(*) FROM camera WHERE name = 'porch.sub'")
    v.check(subs[0][0] == 0, "the sub stream is not recorded (record_sub is off for an onboarded camera)")
    v.check(sizes["main"] and sizes["main"][1] == (1280, 720), f"live main: {sizes['main']}")
    v.check(sizes["sub"] and sizes["sub"][1] == (640, 360) and sizes["sub"][0] == "sub", f"live sub: {sizes['sub']}")


def _first_bytes(box, s, which):
    """(X-Vigil-Stream, (w, h)) from the first 64 KiB of the live stream."""
    import http.client
    import fixture
    c = http.client.HTTPSConnection("127.0.0.1", box.port, timeout=10, context=fixture.CTX)
    try:
        c.request("GET", f"/api/v1/cameras/porch/live?stream={which}",
                  headers={"Cookie": f"vigil_session={s.cookie}", "X-CSRF-Token": s.csrf})
        r = c.getresponse()
        if r.status != 200:
            return (f"HTTP {r.status}", None)
        data = b""
        end = time.monotonic() + 10
        while len(data) < 65536 and time.monotonic() < end:
            chunk = r.read1(16384)
            if not chunk:
                break
            data += chunk
            if sample_entry_size(data):
                break
        return (r.getheader("X-Vigil-Stream"), sample_entry_size(data))
    except OSError as e:
        return (f"error {e}", None)
    finally:
        c.close()


def clock(box, v):
    s = box.user("tech")
    t = time.monotonic()

    def drift():
        c = box.health_camera(s, "drifty") or {}
        d = c.get("clock_drift_ms")
        return d if d is not None and abs(d) > 2000 else None
    d = wait_for(65, drift, every=1.0)
    v.figure(f"drifty (clock 90 s ahead): drift {d} ms flagged after {time.monotonic() - t:.0f} s")
    v.check(d is not None and abs(d - 90000) < 2000, f"drift of the 90 s camera: {d}")
    alerts = (s.call("GET", "/api/v1/alerts").json() or {}).get("open", [])
    v.check(any(a.get("code") == "camera.clock_drift" and a.get("camera") == "drifty" for a in alerts),
            f"camera.clock_drift open: {[a.get('code') for a in alerts]}")
    o = box.cli("status")
    line = next((l for l in o.stdout.splitlines() if l.strip().startswith("drifty ")), "")
    v.figure(f"vigil status: {line.strip()}")
    v.check(re.search(r"clock \+(89|90)\.\d s \(onvif, OFF\)", line) is not None,
            f"vigil status names the drift: {o.stdout[-600:]!r}")
    # A bundle of drifty's footage states the drift measured.
    v.check(box.wait_camera_recording("drifty", 40), "drifty recorded")
    last = box.query("SELECT r.end_wall_ns FROM recording r JOIN camera c ON c.id = r.camera_id "
                     "WHERE c.name = 'drifty' AND r.state = 'complete' ORDER BY r.id DESC LIMIT 1")
    clock_in_bundle = None
    if last:
        end = last[0][0] / 1e9
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        op = box.user("op")
        r = op.call("POST", "/api/v1/exports", {"camera": "drifty", "start": iso(end - 3), "end": iso(end)}, timeout=60)
        dl = (r.json() or {}).get("download") if r.status == 201 else None
        if dl:
            z = op.call("GET", dl, timeout=60)
            try:
                with zipfile.ZipFile(io.BytesIO(z.body)) as zf:
                    manifest = json.loads(zf.read("manifest.json"))
                clock_in_bundle = [c.get("camera_clock") for c in manifest.get("clips", [])]
            except (zipfile.BadZipFile, KeyError, ValueError) as e:
                clock_in_bundle = f"unreadable bundle: {e}"
        else:
            clock_in_bundle = f"export: {r}"
    v.figure(f"bundle manifest: camera_clock {clock_in_bundle}")
    v.check(isinstance(clock_in_bundle, list) and clock_in_bundle and clock_in_bundle[0]
            and abs(clock_in_bundle[0].get("drift_ms", 0) - 90000) < 2000 and clock_in_bundle[0].get("source") == "onvif",
            f"the bundle states drifty's drift: {clock_in_bundle}")
    # The plain RTSP camera's clock, from its RTCP sender reports (GStreamer's are this box's time).
    t = time.monotonic()
    rtcp = wait_for(70, lambda: (lambda c: c if c.get("clock_source") == "rtcp" else None)(
        box.health_camera(s, "lobby") or {}), every=1.0) or {}
    v.figure(f"lobby (plain RTSP): drift {rtcp.get('clock_drift_ms')} ms from {rtcp.get('clock_source')} "
             f"after {time.monotonic() - t:.0f} s")
    drift = rtcp.get("clock_drift_ms")
    v.check(rtcp.get("clock_source") == "rtcp" and drift is not None and abs(drift) < 1000,
            f"the plain camera's clock from RTCP: {rtcp}")
    o = box.cli("cameras", "sync-time", "drifty", timeout=60)
    out = (o.stdout + o.stderr).strip()
    v.figure(f"sync-time: exit {o.returncode}: {' | '.join(out.splitlines()[-2:])[:200]}")
    v.check(o.returncode == 0, f"sync-time: {out!r}")
    off = box.sims["drifty"].log().get("clock_offset")
    v.figure(f"the simulator's clock offset after sync-time: {off}")
    v.check(off is not None and abs(off) < 1.0, f"the camera's clock after sync-time is within 1 s: {off}")
    alerts = (s.call("GET", "/api/v1/alerts").json() or {}).get("open", [])
    v.check(not any(a.get("code") == "camera.clock_drift" and a.get("camera") == "drifty" for a in alerts),
            f"camera.clock_drift cleared after sync-time: {[a.get('code') for a in alerts]}")
    d = (box.health_camera(s, "drifty") or {}).get("clock_drift_ms")
    v.check(d is not None and abs(d) <= 1000, f"health's drift after sync-time: {d}")
    audit = box.query("SELECT outcome FROM audit_log WHERE action = 'camera.sync_time' AND target = 'drifty'")
    v.check(audit and audit[-1][0] == "ok", f"sync-time audited: {audit}")
    o = box.cli("cameras", "sync-time", "drifty", "--ntp", "ntp.example.lan", timeout=60)
    v.check(o.returncode == 0 and box.sims["drifty"].log().get("ntp") == "ntp.example.lan",
            f"sync-time --ntp: {o.returncode} {box.sims['drifty'].log()}")


def ptz(box, v):
    sim = box.sims["porch"]
    before = len(sim.log().get("ptz", []))
    op = box.user("op")
    sent = [{"op": "move", "x": 0.5, "y": -0.25, "zoom": 0.0}, {"op": "stop"},
            {"op": "set_preset", "name": "door"}, {"op": "goto", "preset": None}, {"op": "move", "x": 0, "y": 0, "zoom": 0.75},
            {"op": "stop"}]
    preset = None
    for body in sent:
        if body["op"] == "goto":
            body["preset"] = preset
        r = op.call("POST", "/api/v1/cameras/porch/ptz", body)
        v.check(r.status == 200, f"operator PTZ {body}: {r}")
        if body["op"] == "set_preset":
            preset = (r.json() or {}).get("preset")
    got = sim.log().get("ptz", [])[before:]
    v.figure(f"PTZ: sent {len(sent)}, the simulator received {[g.get('op') for g in got]}")
    want = ["ContinuousMove", "Stop", "SetPreset", "GotoPreset", "ContinuousMove", "Stop"]
    v.check([g.get("op") for g in got] == want, f"the simulator's PTZ log: {got}")
    if len(got) == len(want):
        v.check(abs(got[0].get("x", 9) - 0.5) < 1e-6 and abs(got[0].get("y", 9) + 0.25) < 1e-6,
                f"first move's speeds: {got[0]}")
        v.check(got[3].get("preset") == preset and got[2].get("name") == "door", f"presets: {got[2:4]}")
    # A viewer: refused, audited, and nothing reaches the camera.
    aid = box.max_audit_id()
    r = box.user("watcher").call("POST", "/api/v1/cameras/porch/ptz", {"op": "move", "x": 1, "y": 0, "zoom": 0})
    v.check(r.status == 403, f"viewer PTZ: {r}")
    rows = [a for a in box.audit_since(aid) if a[2] == "camera.ptz"]
    v.figure(f"viewer PTZ: HTTP {r.status}, audit {[(a[1], a[4]) for a in rows]}")
    v.check(any(a[1] == "user:watcher" and a[4] == "denied" for a in rows), f"viewer PTZ audited: {rows}")
    v.check(len(sim.log().get("ptz", [])) == before + len(want), "the viewer's move never reached the camera")
    oks = box.query("SELECT count(*) FROM audit_log WHERE action = 'camera.ptz' AND outcome = 'ok'")
    v.check(oks[0][0] >= len(want), f"operator moves audited: {oks}")


def events(box, v):
    sim = box.sims["porch"]
    s = box.user("watcher")
    marks = []
    for state, wait in ((True, 2.0), (False, 3.0), (True, 2.0), (False, 0.5)):
        marks.append(sim.event("motion", state)["utc"])
        time.sleep(wait)
    sim.event("tamper", True)
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))

    def listed():
        r = s.call("GET", f"/api/v1/events?camera=porch&start={start}&end={end}")
        evs = (r.json() or {}).get("events", [])
        motion = [e for e in evs if e["kind"] == "motion" and e.get("end")]
        return evs if len(motion) >= 2 and any(e["kind"] == "tamper" for e in evs) else None
    evs = wait_for(30, listed, every=1.0) or []
    motion = [e for e in evs if e["kind"] == "motion"]
    want = [(marks[0], marks[1]), (marks[2], marks[3])]

    def ts(x):
        from datetime import datetime
        return datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()
    errs = []
    for (a, b), e in zip(want, motion):
        errs += [abs(ts(e["start"]) - ts(a)), abs(ts(e["end"]) - ts(b))]
    v.figure(f"events: {len(motion)} motion, {sum(1 for e in evs if e['kind'] == 'tamper')} tamper; "
             f"start/end off by at most {max(errs) if errs else None:.3f} s")
    v.check(len(motion) == 2 and errs and max(errs) <= 1.0, f"motion events at the right instants: {motion} vs {want}")
    r = box.user("tech").call("GET", f"/api/v1/events?start={end}&end={start}")
    v.check(r.status == 400, f"a reversed range: {r}")
