"""The alerts suite's scenarios (issue 16's Acceptance), each against an
AlertBox and the receivers, asserting into a Verdict and printing its
figures. Channel kinds: webhook, mqtt, twilio, email (the receivers'
`channel`); the box's channel names are box.CHANNELS."""
import base64
import collections
import json
import math
import os
import re
import time

from box import CHANNELS, SMS_FROM, SMS_TO  # noqa: F401
from receivers import wait_for

KINDS = ["webhook", "mqtt", "twilio", "email"]


class Ev:
    """One received message seen as an alert event: its type (raised,
    resolved, digest, test), code and camera. Twilio's SMS carries no JSON:
    its event is the JSON another channel got under the same key; a digest
    or a test is told by its key (`-d-`, `-t-`)."""

    def __init__(self, m, j):
        self.m = m
        self.t = m.t
        self.key = m.key
        self.json = j
        alert = (j or {}).get("alert") or {}
        self.type = (j or {}).get("type")
        if self.type is None:
            self.type = "digest" if "-d-" in m.key else "test" if "-t-" in m.key else None
        self.code = alert.get("code")
        self.camera = alert.get("camera")
        self.severity = alert.get("severity")

    def __repr__(self):
        return f"{self.type}:{self.code}:{self.camera}:{self.key}"


def events(box):
    """{kind: [Ev]} of everything this box's channels delivered so far."""
    got = box.received()
    by_key = {}
    for k in ("webhook", "mqtt", "email"):
        for m in got[k]:
            if m.json:
                by_key.setdefault(m.key, m.json)
    return {k: [Ev(m, m.json or by_key.get(m.key)) for m in msgs] for k, msgs in got.items()}


def wait_all(box, pred, since, limit):
    """Waits until every channel delivered an event matching pred after
    `since` (unix time); {kind: first such Ev or None}."""
    def found():
        evs = events(box)
        return {k: next((e for e in evs[k] if e.t >= since and pred(e)), None) for k in KINDS}
    wait_for(limit, lambda: all(found().values()), every=0.25)
    return found()


def report_latency(v, what, found, since, limit):
    parts = []
    for k in KINDS:
        e = found[k]
        parts.append(f"{k} {e.t - since:.1f} s" if e else f"{k} MISSING")
        v.check(e is not None and e.t - since <= limit, f"{what} on {k} within {limit:.0f} s: "
                f"{'none' if e is None else f'{e.t - since:.1f} s'}")
    v.figure(f"{what}: " + ", ".join(parts))


def check_wire(box, v, found, severity):
    """The wire forms of one event on each channel, per the contract."""
    w = found["webhook"]
    if w:
        h = w.m.headers
        v.check(h.get("idempotency-key") == w.json.get("idempotency_key"), "webhook Idempotency-Key = the JSON's")
        v.check(h.get("x-vigil-signature", "").startswith("sha256="), "webhook X-Vigil-Signature sha256=…")
        j = w.json
        v.check(j.get("version") == 1 and j.get("device_id") == box.device_id and j.get("device_name") == box.name
                and isinstance(j.get("sent_at"), str) and isinstance((j.get("alert") or {}).get("id"), int)
                and (j.get("alert") or {}).get("first_seen"),
                f"webhook JSON has version, device_id, device_name, sent_at, alert.id, first_seen: {j}")
    for k in KINDS:
        e = found[k]
        if e and e.json:
            v.check(e.severity == severity, f"{k}: severity {e.severity!r} (expected {severity})")
    sev = severity.upper()
    s = found["twilio"]
    if s:
        body = s.m.text
        v.check(body.startswith(f"[Vigil {box.name}] {sev}: ") and body.endswith(f"(ref {s.key[-8:]})")
                and len(body) <= 320, f"SMS body shape: {body!r}")
    e = found["email"]
    if e:
        h = e.m.headers
        v.check(h.get("subject", "").startswith(f"[Vigil {box.name}] {sev}: "), f"email Subject {h.get('subject')!r}")
        v.check(h.get("message-id") == f"<{e.key}@vigil>", f"email Message-ID {h.get('message-id')!r}")
        v.check(e.m.envelope["tls"] and e.m.envelope["auth"], "email came over STARTTLS with AUTH")


def api(session, method, path, body=None):
    r = session.call(method, path, body)
    return r.status, r.json()


# --- 6: vigil alerts test, /metrics, roles ----------------------------------

def cli_test(box, rx, v):
    receivers = {"webhook": rx.webhook, "mqtt": rx.mqtt, "twilio": rx.twilio, "email": rx.smtp}
    for kind, ch in CHANNELS.items():
        t = time.time()
        o = box.cli("alerts", "test", ch, timeout=90)
        out = (o.stdout + o.stderr).strip()
        m = re.search(r"\(key ([^)\s]+)\)", o.stdout)
        v.check(o.returncode == 0 and "sent through" in o.stdout and m,
                f"alerts test {ch}: exit {o.returncode}, {out[-300:]!r}")
        v.figure(f"alerts test {ch}: exit {o.returncode} in {time.time() - t:.1f} s: {o.stdout.strip()[:120]}")
        if m:
            key = m.group(1)
            got = wait_for(10, lambda: next((e for e in events(box)[kind] if e.key == key), None))
            v.check(got is not None, f"{kind} receiver got the test message {key}")
            if got is not None and got.json is not None:
                v.check(got.type == "test", f"{kind} test message type {got.type!r}")
        r = receivers[kind]
        r.stop()
        try:
            t = time.time()
            o = box.cli("alerts", "test", ch, timeout=90)
            out = (o.stdout + o.stderr).strip()
            v.check(o.returncode == 1 and out and "panick" not in out,
                    f"alerts test {ch} with its receiver down: exit {o.returncode}, {out[-300:]!r}")
            v.figure(f"alerts test {ch}, receiver down: exit {o.returncode} in {time.time() - t:.1f} s: "
                     f"{out.splitlines()[-1][:160] if out else ''}")
        finally:
            r.start()
    s = box.admin()
    r = s.call("GET", "/metrics")
    v.check(r.status == 200 and "vigil_alert_deliveries_total" in r.text(),
            f"/metrics shows vigil_alert_deliveries_total ({r.status})")
    lines = [x for x in r.text().splitlines() if x.startswith("vigil_alert")]
    v.figure(f"/metrics: {len(lines)} vigil_alert* lines, e.g. {lines[:3]}")
    viewer = box.viewer()
    st, _ = api(viewer, "PUT", "/api/v1/alerts/channels/x",
                {"kind": "webhook", "url": "https://127.0.0.1:9/x", "secret_value": "nope"})
    v.check(st == 403, f"viewer PUT /api/v1/alerts/channels/x: {st} (403 expected)")
    st, _ = api(viewer, "POST", "/api/v1/alerts/channels/hook/test")
    v.check(st == 403, f"viewer POST /api/v1/alerts/channels/hook/test: {st} (403 expected)")
    st, j = api(viewer, "GET", "/api/v1/alerts?all=1")
    v.check(st == 200 and isinstance(j, dict) and "open" in j, f"viewer GET /api/v1/alerts?all=1: {st}")


# --- 1: camera offline and back ------------------------------------------------

def offline_and_back(box, rx, v):
    delay = box.alerts["offline_after_seconds"]
    cam = "front"
    t0 = time.time()
    box.camera_down(cam)
    limit = 10 + delay
    raised = wait_all(box, lambda e: e.type == "raised" and e.code == "camera.offline" and e.camera == cam,
                      t0, limit + 5)
    report_latency(v, f"camera.offline raised for {cam}", raised, t0, limit)
    check_wire(box, v, raised, "critical")
    v.check(not rx.webhook.rejected, f"the webhook receiver refused {len(rx.webhook.rejected)} deliveries "
            f"(bad signature or timestamp): {[r['why'] for r in rx.webhook.rejected][:3]}")
    state = f"{box.prefix}/camera/{cam}/state"
    st = wait_for(10, lambda: rx.mqtt.retained(state, 1).get(state) == "offline")
    v.check(st, f"retained {state} = offline (got {rx.mqtt.retained(state, 1).get(state)!r})")
    problems = rx.mqtt.retained(f"{box.prefix}/problems", 1).get(f"{box.prefix}/problems")
    try:
        pj = json.loads(problems or "")
    except ValueError:
        pj = None
    v.check(isinstance(pj, dict) and pj.get("open", 0) >= 1
            and any(a.get("code") == "camera.offline" and a.get("camera") == cam for a in pj.get("alerts", [])),
            f"retained {box.prefix}/problems lists camera.offline: {problems!r}")

    t1 = time.time()
    box.camera_up(cam)
    resolved = wait_all(box, lambda e: e.type == "resolved" and e.code == "camera.offline" and e.camera == cam,
                        t1, 40)
    report_latency(v, f"camera.offline resolved for {cam} (after restart)", resolved, t1, 40)
    for k in KINDS:
        r, e = raised[k], resolved[k]
        if r and e and e.json and r.json:
            v.check(e.json["alert"].get("id") == r.json["alert"].get("id") and e.key != r.key
                    and e.json["alert"].get("cleared"), f"{k}: resolved names the same alert id, "
                    f"a new key and a cleared time")
    st = wait_for(10, lambda: rx.mqtt.retained(state, 1).get(state) == "online")
    v.check(st, f"retained {state} = online after the restart")

    box_state = rx.mqtt.retained(f"{box.prefix}/state", 1).get(f"{box.prefix}/state")
    v.check(box_state == "online", f"retained {box.prefix}/state = {box_state!r} (online expected)")
    disc = rx.mqtt.retained(f"homeassistant/binary_sensor/{box.device_id}/#", 2)
    v.figure(f"Home Assistant discovery: {len(disc)} retained configs: {sorted(disc)}")
    dev = {"identifiers": [box.device_id], "name": box.name, "manufacturer": "Vigil", "model": "Vigil NVR"}
    for c, _ in box.CAMERAS:
        topic = f"homeassistant/binary_sensor/{box.device_id}/{c}_online/config"
        try:
            j = json.loads(disc.get(topic, ""))
        except ValueError:
            j = None
        want = {"name": f"{c} online", "unique_id": f"{box.device_id}_{c}_online",
                "state_topic": f"{box.prefix}/camera/{c}/state", "payload_on": "online", "payload_off": "offline",
                "device_class": "connectivity", "availability_topic": f"{box.prefix}/state", "device": dev}
        v.check(isinstance(j, dict) and all(j.get(k) == w for k, w in want.items()),
                f"discovery {topic}: {disc.get(topic)!r}")
    topic = f"homeassistant/binary_sensor/{box.device_id}/problem/config"
    try:
        j = json.loads(disc.get(topic, ""))
    except ValueError:
        j = None
    v.check(isinstance(j, dict) and j.get("device_class") == "problem"
            and j.get("state_topic") == f"{box.prefix}/problems"
            and j.get("value_template") == "{{ 'ON' if value_json.open > 0 else 'OFF' }}"
            and j.get("device") == dev, f"discovery {topic}: {disc.get(topic)!r}")


# --- 2: receivers down, kill -9, restart --------------------------------------

def alerts_api(box):
    st, j = api(box.admin(), "GET", "/api/v1/alerts?all=1")
    if st != 200 or not isinstance(j, dict):
        return None
    seen, out = set(), []
    for a in (j.get("open") or []) + (j.get("recent") or []):
        if isinstance(a, dict) and a.get("id") not in seen:
            seen.add(a.get("id"))
            out.append(a)
    return out


def receivers_down(box, rx, v):
    delay = box.alerts["offline_after_seconds"]
    cam = "yard"
    t0 = time.time()
    rx.stop_all()
    try:
        box.camera_down(cam)
        time.sleep(delay + 4)
        box.camera_up(cam)

        def yard_cleared():
            al = alerts_api(box) or []
            return any(a.get("code") == "camera.offline" and a.get("camera") == cam and a.get("cleared")
                       and a.get("first_seen", "") for a in al)
        v.check(wait_for(40, yard_cleared, every=1), f"the API shows {cam}'s camera.offline raised and cleared")
        pending = [(a.get("code"), d.get("channel"), d.get("state")) for a in alerts_api(box) or []
                   for d in a.get("deliveries") or [] if d.get("state") in ("pending", "failed")]
        v.figure(f"pending while the receivers are down: {len(pending)} deliveries")
        v.check(pending, "deliveries are pending while the receivers are down")
        box.kill9()
        box.start_daemon()
        time.sleep(2)
    finally:
        rx.start_all()
    t_back = time.time()
    v.figure(f"receivers down for {t_back - t0:.0f} s (daemon killed with SIGKILL and restarted meanwhile)")

    def want(e):
        return e.t >= t0 and e.code == "camera.offline" and e.camera == cam
    got = {}
    for typ in ("raised", "resolved"):
        got[typ] = wait_all(box, lambda e, typ=typ: want(e) and e.type == typ, t0, 150)
        report_latency(v, f"{cam} camera.offline {typ}, after the receivers came back", got[typ], t_back, 150)
    restarted = wait_all(box, lambda e: e.code == "daemon.restarted" and e.t >= t0, t0, 60)
    v.check(all(restarted.values()), f"daemon.restarted on every channel: "
            f"{[k for k in KINDS if not restarted[k]]} missing")

    def settled():
        al = alerts_api(box)
        return al is not None and not [d for a in al for d in a.get("deliveries") or []
                                       if d.get("state") in ("pending", "failed")]
    v.check(wait_for(90, settled, every=1), "no delivery pending in the API once the receivers are back")
    time.sleep(5)  # a late duplicate would come now
    exactly_once(box, v)
    compare_with_api(box, v)
    o = box.cli("alerts", "list", "--json")
    v.check(o.returncode == 0, f"vigil alerts list --json: exit {o.returncode} {o.stderr[-200:]!r}")
    try:
        json.loads(o.stdout)
    except ValueError:
        v.check(False, f"vigil alerts list --json is not JSON: {o.stdout[:200]!r}")


def exactly_once(box, v):
    """Every key once per channel, and every event key on every channel."""
    evs = events(box)
    union = set()
    for k in KINDS:
        c = collections.Counter(e.key for e in evs[k])
        dup = {key: n for key, n in c.items() if n > 1}
        v.check(not dup, f"{k}: keys delivered more than once: {dup}")
        union |= {e.key for e in evs[k] if e.type in ("raised", "resolved")}
        v.figure(f"{k}: {sum(c.values())} deliveries, {len(c)} keys, {len(dup)} duplicated")
    for k in KINDS:
        missing = union - {e.key for e in evs[k]}
        v.check(not missing, f"{k}: event keys other channels got but it did not: {sorted(missing)[:5]}")


def compare_with_api(box, v):
    """Each alert's delivery marked sent in the API arrived (JSON channels by alert id)."""
    al = alerts_api(box)
    if al is None:
        v.check(False, "GET /api/v1/alerts?all=1 failed")
        return
    evs = events(box)
    names = {ch: k for k, ch in CHANNELS.items()}
    sent = missing = 0
    for a in al:
        for d in a.get("deliveries") or []:
            kind = names.get(d.get("channel"))
            if d.get("state") != "sent" or kind is None:
                continue
            sent += 1
            ids = {(e.json or {}).get("alert", {}).get("id") for e in evs[kind] if e.json}
            ids |= {ev.get("alert", {}).get("id") for e in evs[kind] if e.json
                    for ev in e.json.get("events") or []}
            if kind != "twilio" and a.get("id") not in ids:
                missing += 1
                v.check(False, f"{kind}: alert {a.get('id')} {a.get('code')} marked sent, never received")
    v.figure(f"API: {len(al)} alerts, {sent} deliveries marked sent, {missing} of them not received")


# --- 3: disk ------------------------------------------------------------------

def disk(box, rx, v):
    rows = box.query("SELECT file_name FROM recording WHERE state = 'complete' ORDER BY id DESC LIMIT 1")
    if not rows:
        v.check(False, "no complete recording to flip a byte in")
    else:
        path = os.path.join(box.volume, "recordings", rows[0][0])
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x01]))
        t0 = time.time()
        cycle = 5
        found = wait_all(box, lambda e: e.code == "fixity.mismatch" and e.type == "raised", t0, cycle + 20)
        report_latency(v, f"fixity.mismatch after a flipped byte in {rows[0][0]} ({size} B)", found, t0,
                       cycle + 15)
    st = os.statvfs(box.volume)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    floor = total // 4
    fill_mib = (free - floor) // (1 << 20) + 3
    t0 = time.time()
    filler = os.path.join(box.volume, "filler")
    with open(filler, "wb") as f:
        for _ in range(max(fill_mib, 1)):
            try:
                f.write(b"\0" * (1 << 20))
            except OSError:
                break
    st = os.statvfs(box.volume)
    v.figure(f"tmpfs {total >> 20} MiB filled from outside with {fill_mib} MiB: "
             f"{st.f_bavail * st.f_frsize >> 20} MiB free, floor {floor >> 20} MiB")
    found = wait_all(box, lambda e: e.code in ("disk.low", "storage.paused") and e.type == "raised", t0, 40)
    report_latency(v, "disk.low or storage.paused", found, t0, 35)
    os.remove(filler)
    t1 = time.time()
    cleared = wait_all(box, lambda e: e.code in ("disk.low", "storage.paused") and e.type == "resolved", t1, 30)
    v.figure("after the filler went: resolved on "
             f"{[k for k in KINDS if cleared[k]]} ({'all' if all(cleared.values()) else 'not all'})")


# --- 4: flapping ----------------------------------------------------------------

def flapping(box, rx, v):
    rate = box.alerts["rate_limit"]
    digest_after = box.alerts["digest_after_seconds"]
    t0 = time.time()
    cuts, secs = box.proxy.flap(20)
    v.figure(f"camera {box.flapping}: {cuts} cuts in {secs:.0f} s ({box.proxy.accepted} connections accepted)")
    v.check(cuts == 20 and secs <= 75, f"20 cuts in about a minute (got {cuts} in {secs:.0f} s)")
    time.sleep(digest_after + 15)
    evs = events(box)
    most_digests = math.ceil((time.time() - t0) / digest_after) + 2
    for k in KINDS:
        mine = [e for e in evs[k] if e.type != "test"]
        single = [e for e in mine if e.type in ("raised", "resolved")]
        digests = [e for e in mine if e.type == "digest"]
        inside = sum(len((e.json or {}).get("events") or []) for e in digests)
        v.figure(f"{k}: {len(single)} single messages (rate_limit {rate}), {len(digests)} digests"
                 + (f" holding {inside} events" if k != "twilio" else ""))
        v.check(len(single) <= rate, f"{k}: {len(single)} single messages > rate_limit {rate}")
        v.check(1 <= len(digests) <= most_digests, f"{k}: {len(digests)} digests (1..{most_digests} expected)")
        if k == "webhook":
            v.check(len(single) + inside >= 10, f"the flaps reached the webhook as events "
                    f"({len(single)} single + {inside} in digests; 10 at least expected)")
        for e in digests:
            if e.json is not None:
                v.check(e.json.get("type") == "digest" and isinstance(e.json.get("events"), list),
                        f"{k}: digest JSON has type digest and events")


# --- 5: no secrets leak ---------------------------------------------------------

def leaks(box, rx, v):
    """Scans what this box sent and wrote; called for each box before it closes."""
    secret = rx.secrets()
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    plain = f"\0{rx.smtp_user}\0{rx.smtp_password}"
    forms = dict(secret)
    forms["Twilio sid:token (Basic, base64)"] = b64(f"{rx.twilio_sid}:{rx.twilio_token}")
    forms["SMTP AUTH PLAIN (base64)"] = b64(plain)
    forms["SMTP password (base64)"] = b64(rx.smtp_password)
    got = box.received()
    payload = b"".join(m.raw for k in KINDS for m in got[k])
    payload += b"".join(p + t.encode() for _, _, t, p in rx.mqtt.seen())
    log = box.log().encode()

    def scan(what, data, names):
        hits = [n for n in names if forms[n].encode() in data]
        v.check(not hits, f"{box.name}: {', '.join(hits)} found in {what}")
        return len(data)

    n1 = scan("received payloads", payload, list(forms))
    n2 = scan("the daemon's log", log, list(forms))
    dbb = b""
    for suffix in ("", "-wal", "-shm"):
        try:
            with open(box.db + suffix, "rb") as f:
                dbb += f.read()
        except OSError:
            pass
    keep = ["Twilio token", "MQTT password", "Twilio sid:token (Basic, base64)"]
    n3 = scan("the database, WAL and shm", dbb, keep)
    outs = b""
    for args in (["alerts", "list"], ["alerts", "list", "--all", "--json"]):
        o = box.cli(*args)
        v.check(o.returncode == 0, f"{box.name}: vigil {' '.join(args)}: exit {o.returncode}")
        outs += (o.stdout + o.stderr).encode()
    r = box.admin().call("GET", "/api/v1/alerts/channels")
    outs += r.body
    n4 = scan("vigil alerts list and GET /api/v1/alerts/channels", outs, list(forms))
    v.figure(f"{box.name}: scanned {n1} B of payloads, {n2} B of log, {n3} B of database files, "
             f"{n4} B of CLI/API output for {len(forms)} secret forms")
