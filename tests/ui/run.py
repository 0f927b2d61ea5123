#!/usr/bin/python3
"""The Chromium acceptance suite of issue 15: one UiBox (tests/ui/devbox.py:
four cameras, `garage` H.265 only, users of each role), one headless
Chromium, driven as a person would (clicks at element centres, typing) at
1366x768 and 390x844. Prints PASS/FAIL per named check, then one JSON line
(the summary). Screenshots of every page go to target/test-artifacts/ui15/.
Exit status 0 only if every check passed.

    tests/ui/run.py --vigil BIN [--shots DIR] [--keep] [--only 9,10]

`--vigil` (or $VIGIL_BIN): a release build with the ffmpeg feature, so the
H.265 camera can be converted (scripts/ui-test builds it). Every process is
killed by PID in a `finally`: the box's (Fixture.close) and Chromium's
process group."""
import argparse
import json
import os
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cdp import ROOT, Browser  # noqa: E402
import checks  # noqa: E402
import pages  # noqa: E402
from devbox import CAMERAS, UiBox  # noqa: E402

class Suite:
    def __init__(self, box, page, shots, only=None):
        self.box, self.pg, self.shots = box, page, shots
        self.only = only  # check numbers to run ("9", "6a"...); check 1 (the first login) always runs
        self.url = f"https://127.0.0.1:{box.port}/"
        self.results = []
        self.axe = {}  # "WxH page" -> serious/critical violations
        self.started = time.monotonic()
        self.shot_n = 0

    # --- bookkeeping ----------------------------------------------------------
    def check(self, name, f):
        """Runs one named check: it passes unless it raises; prints PASS/FAIL."""
        number = name.split()[0]
        if self.only and number != "1" and number not in self.only:
            return True
        t = time.monotonic()
        try:
            detail = f() or ""
            ok = True
        except Exception as e:  # noqa: BLE001: one check's failure must not stop the others
            ok, detail = False, f"{type(e).__name__}: {e}"
            traceback.print_exc(limit=3)
            self.shot(f"FAIL-{name.split()[0]}")
        took = time.monotonic() - t
        print(f"{'PASS' if ok else 'FAIL'} {name} ({took:.1f} s): {detail}", flush=True)
        self.results.append({"check": name, "ok": ok, "seconds": round(took, 1), "detail": detail})
        return ok

    def shot(self, what):
        self.shot_n += 1
        w, h = self.pg.size
        try:
            return self.pg.shot(os.path.join(self.shots, f"{self.shot_n:02d}-{w}x{h}-{what}.png"))
        except Exception:  # noqa: BLE001: a screenshot is evidence, not a check
            return None

    # --- building blocks ------------------------------------------------------
    def open_hash(self, h, section=None):
        """Types the address (url#h) as a person would, waits for the page's section."""
        self.pg.goto(self.url + "#" + h)
        sec = section or h.split("/")[0]
        self.pg.wait(pages.section_shown(sec), limit=15, what=f"section#{sec} shown for #{h}")
        self.pg.pump(1.0)

    def login(self, name, password):
        pg = self.pg
        pg.wait(pages.visible("#login-form"), limit=15, what="the login form (#login-form) shown")
        pg.type("#login-form [name=name]", name)
        pg.type("#login-form [name=password]", password)
        pg.click(pages.SUBMIT.format(form="#login-form"))

    def logged_in_as(self, name, limit=15):
        return self.pg.wait(f"""fetch('/api/v1/me').then(r => r.ok ? r.json() : null)
            .then(m => m && m.actor === 'user:{name}' && !m.must_change_password)""",
                            limit=limit, what=f"{name} logged in (GET /api/v1/me)")

    def logged_out_header(self):
        """header#top not displayed and #who empty: (ok, why)."""
        h = self.pg.js(pages.HEADER_STATE)
        problems = []
        if h["displayed"]:
            problems.append(f"header#top is displayed ({h['height']:.0f} px high, hidden attribute={h['hiddenAttr']})")
        if h["who"]:
            problems.append(f"#who says {h['who']!r}")
        return problems

    def run_axe(self, label):
        w, h = self.pg.size
        v = self.pg.axe()
        self.axe[f"{w}x{h} {label}"] = v
        return v

    def api(self, method, path, body=None):
        return self.pg.js(f"""(async () => {{
            const h = {{'X-CSRF-Token': sessionStorage.getItem('csrf') || ''}};
            const o = {{method: {json.dumps(method)}, headers: h}};
            if ({json.dumps(body is not None)}) {{ h['Content-Type'] = 'application/json'; o.body = {json.dumps(json.dumps(body))}; }}
            const r = await fetch({json.dumps(path)}, o);
            let j = null; try {{ j = await r.json(); }} catch (e) {{}}
            return {{status: r.status, json: j}}; }})()""")

    def camera_names(self):
        r = self.api("GET", "/api/v1/cameras")
        return sorted(c["name"] for c in (r["json"] or []))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigil", default=os.environ.get("VIGIL_BIN"))
    p.add_argument("--shots", default=os.path.join(ROOT, "target/test-artifacts/ui15"))
    p.add_argument("--keep", action="store_true", help="keep the box's data directory")
    p.add_argument("--only", help="comma-separated check numbers (e.g. 9,10 or 6a); the first login always runs")
    a = p.parse_args()
    if not a.vigil:
        p.error("--vigil BIN (or $VIGIL_BIN) is required")
    shutil.rmtree(a.shots, ignore_errors=True)
    os.makedirs(a.shots, exist_ok=True)
    t0 = time.monotonic()
    box = UiBox(os.path.abspath(a.vigil), keep=a.keep)
    browser = None
    suite = None
    try:
        box.provision()
        box.start_daemon()
        recording_since = time.monotonic()
        box.raise_motion()
        browser = Browser(*checks.DESKTOP[:2])
        suite = Suite(box, browser.page, a.shots, set(a.only.split(",")) if a.only else None)
        checks.run_all(suite, recording_since)
    except Exception as e:  # noqa: BLE001: the box or the browser did not come up
        traceback.print_exc()
        if suite is None:
            print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
            suite = Suite.__new__(Suite)
            suite.results, suite.axe, suite.pg = [], {}, None
        suite.results.append({"check": "setup", "ok": False, "detail": f"{type(e).__name__}: {e}"})
        print(box.log()[-3000:], file=sys.stderr)
    finally:
        errors = browser.page.console_errors[-20:] if browser else []
        if browser:
            browser.close()
        box.close()
    ok = bool(suite.results) and all(r["ok"] for r in suite.results)
    failed = [r["check"] for r in suite.results if not r["ok"]]
    print(json.dumps({"ok": ok, "seconds": round(time.monotonic() - t0, 1),
                      "passed": sum(r["ok"] for r in suite.results), "failed": failed,
                      "checks": suite.results, "screenshots": a.shots,
                      "axe_serious_or_critical": {k: v for k, v in suite.axe.items() if v},
                      "console_errors": errors, "cameras": [n for n, _ in CAMERAS]}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
