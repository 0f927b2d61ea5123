"""5: every egress of footage is audited, and a camera set is enforced."""
import datetime
from urllib.parse import quote

from fixture import ADMIN_PW, USER_PW, login
from verdict import Verdict


def _ns(rfc3339):
    t = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return int(t.timestamp()) * 10**9


def _names_range(row, start, end):
    """Whether an audit row's target/detail names the range (as printed, to the second, or in ns)."""
    text = f"{row[3]} {row[5]}"
    marks = [start[:19], end[:19], str(_ns(start))[:10], str(_ns(end))[:10]]
    return any(m in text for m in marks[:2]) or any(m in text for m in marks[2:])


def footage_egress(fx):
    v = Verdict(5, "footage egress audited; camera sets enforced")
    rng = fx.archive_range("cam")
    if not v.check(rng is not None, "no complete recording of cam"):
        v.finish()
        return v
    start, end = rng
    path = f"/api/v1/cameras/cam/view.mp4?start={quote(start)}&end={quote(end)}"

    # Playback as a viewer.
    before = fx.max_audit_id()
    r, viewer = login(fx.port, "viewer1", USER_PW, src="127.0.0.44")
    if v.check(viewer is not None, f"viewer1 logs in: {r}"):
        p = viewer.call("GET", path, timeout=30)
        v.figure(f"viewer playback {start}..{end}: {p.status}, {len(p.body)} bytes")
        v.check(p.status == 200, f"viewer playback: {p.status}")
        rows = [x for x in fx.audit_since(before) if x[2] == "footage.play"]
        v.check(any(x[1] == "user:viewer1" and "cam" in f"{x[3]} {x[5]}" and _names_range(x, start, end) for x in rows),
                f"no footage.play audit row naming user:viewer1, cam and the range: {fx.audit_since(before)}")

    # A download with Range as an operator.
    before = fx.max_audit_id()
    r, op = login(fx.port, "operator1", USER_PW, src="127.0.0.45")
    if v.check(op is not None, f"operator1 logs in: {r}"):
        d = op.call("GET", path + "&download=1", headers={"Range": "bytes=0-"}, timeout=30)
        v.figure(f"operator download with Range: bytes=0-: {d.status}, {len(d.body)} bytes")
        v.check(d.status in (200, 206), f"download: {d.status}")
        rows = [x for x in fx.audit_since(before) if x[2] == "footage.download"]
        v.check(any(x[1] == "user:operator1" and "cam" in f"{x[3]} {x[5]}" for x in rows),
                f"no footage.download audit row for a Range download: {fx.audit_since(before)}")

    # A viewer limited to [other] asks for cam.
    r, admin = login(fx.port, "admin", ADMIN_PW, src="127.0.0.46")
    if v.check(admin is not None, f"admin logs in: {r}"):
        put = admin.call("PUT", "/api/v1/users/limited/cameras", {"cameras": ["other"]})
        v.check(put.status == 200, f"PUT /api/v1/users/limited/cameras: {put}")
        # A bad camera set must not leave a user who sees every camera.
        bad = admin.call("POST", "/api/v1/users", {"name": "badset", "role": "viewer",
                                                   "password": "a long enough phrase for badset 42",
                                                   "cameras": ["no such\ncamera"]})
        listed = admin.call("GET", "/api/v1/users")
        v.figure(f"user added with a bad camera set: {bad.status}; listed: {'badset' in listed.text()}")
        v.check(bad.status == 400 and "badset" not in listed.text(),
                f"a bad camera set on user add: {bad}; the user exists: {'badset' in listed.text()}")
    r, lim = login(fx.port, "limited", USER_PW, src="127.0.0.47")
    if v.check(lim is not None, f"limited logs in: {r}"):
        before = fx.max_audit_id()
        denied = lim.call("GET", path, timeout=30)
        v.figure(f"viewer limited to [other] asking for cam: {denied.status}")
        v.check(denied.status == 403, f"a camera outside the set: {denied.status}, not 403")
        rows = fx.audit_since(before)
        v.check(any(x[1] == "user:limited" and x[4] == "denied" and "cam" in f"{x[3]} {x[5]}" for x in rows),
                f"no denied audit row for the refused playback: {rows}")
        orng = fx.archive_range("other")
        if orng:
            own = lim.call("GET", f"/api/v1/cameras/other/view.mp4?start={quote(orng[0])}&end={quote(orng[1])}",
                           headers={"Range": "bytes=0-1023"}, timeout=30)
            v.check(own.status in (200, 206), f"the limited viewer cannot play a camera of its set: {own.status}")
        # A hold on one of cam's recordings (placed by the operator) is not
        # listed to a viewer limited to [other], nor its manifest served.
        rec = fx.query("SELECT r.id FROM recording r JOIN camera c ON c.id = r.camera_id "
                       "WHERE c.name = 'cam' ORDER BY r.id LIMIT 1")
        if op is not None and rec:
            rid = rec[0][0]
            h = op.call("POST", "/api/v1/holds", {"recording_id": rid, "reason": "hostile suite: case 14"})
            listed = lim.call("GET", "/api/v1/holds")
            seen = [x for x in (listed.json() if listed.status == 200 else []) if x.get("recording_id") == rid]
            man = lim.call("GET", f"/api/v1/recordings/{rid}/manifest")
            v.figure(f"hold on cam's recording {rid}: placed {h.status}; listed to the limited viewer: {len(seen)}; "
                     f"its manifest: {man.status}")
            v.check(h.status == 201 and listed.status == 200 and not seen,
                    f"a hold on a camera outside the set is listed: {h.status} {listed.status} {seen}")
            v.check(man.status == 403, f"the manifest of a camera outside the set: {man.status}, not 403")
    v.finish()
    return v
