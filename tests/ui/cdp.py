"""Headless Chromium driven over the DevTools protocol (python3-websocket),
shared by the UI suites: start Chromium in its own process group (killed
as a group in `Browser.close()`), then act on the page as a person would:
mouse clicks at an element's centre (Input.dispatchMouseEvent), typing
(Input.insertText), key presses, hovering; evaluate JavaScript; take
screenshots; answer JavaScript dialogs (confirm/prompt) as told; run
axe-core (injected with Runtime.evaluate: the page's CSP does not apply).
Every wait is bounded."""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import websocket  # python3-websocket

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AXE = os.path.join(ROOT, "tests/fixtures/axe.min.js")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium; `page` is its first tab."""

    def __init__(self, width=1366, height=768):
        self.profile = tempfile.mkdtemp(prefix="vigil-chromium-")
        port = free_port()
        # start_new_session: Chromium and its helpers form one process group,
        # killed together by PID in close().
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
             "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--no-first-run",
             "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
             f"--remote-debugging-port={port}", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        target = None
        end = time.monotonic() + 20
        while time.monotonic() < end and target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                    if pages:
                        target = pages[0]["webSocketDebuggerUrl"]
            except OSError:
                time.sleep(0.1)
        if target is None:
            self.close()
            raise RuntimeError("Chromium's DevTools endpoint did not come up within 20 s (is chromium installed?)")
        self.page = Page(target)

    def close(self):
        try:
            self.page.ws.close()
        except Exception:  # noqa: BLE001: closing anyway
            pass
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, ws_url):
        # No Origin header: Chromium refuses DevTools connections from web origins.
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.n = 0
        self.dialogs = []  # messages of the JavaScript dialogs the page opened
        self.accept_dialogs = False  # answer to confirm(): dismiss unless told
        self.prompt_text = ""
        self.console_errors = []
        self.size = (1366, 768)
        self.call("Page.enable")
        self.call("Runtime.enable")

    # --- protocol ----------------------------------------------------------
    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Page.javascriptDialogOpening":
            self.dialogs.append(p.get("message", ""))
            self.n += 1
            self.ws.send(json.dumps({"id": self.n, "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": self.accept_dialogs, "promptText": self.prompt_text}}))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.console_errors.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        del self.console_errors[:-50]

    def call(self, method, limit=30.0, **params):
        self.n += 1
        me = self.n
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._event(msg)
        raise TimeoutError(f"DevTools {method} did not answer within {limit:.0f} s")

    def pump(self, seconds):
        """Sleeps while handling events (dialogs, console errors)."""
        end = time.monotonic() + seconds
        self.ws.settimeout(0.1)
        try:
            while time.monotonic() < end:
                try:
                    msg = json.loads(self.ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                if "method" in msg:
                    self._event(msg)
        finally:
            self.ws.settimeout(30)

    def js(self, expr, limit=30.0):
        r = self.call("Runtime.evaluate", limit=limit, expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(f"{expr[:100]!r}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expr, limit=20.0, what=None):
        """Polls a JavaScript expression until truthy; TimeoutError names `what`."""
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            try:
                v = self.js(expr)
                if v:
                    return v
            except RuntimeError as e:
                last = e
            self.pump(0.25)
        raise TimeoutError(f"{what or expr} (waited {limit:.0f} s)" + (f"; last error: {last}" if last else ""))

    # --- navigation and screen ----------------------------------------------
    def goto(self, url):
        self.call("Page.navigate", url=url)

    def set_size(self, width, height, mobile=False):
        self.size = (width, height)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2 if mobile else 1, mobile=mobile)
        self.pump(0.3)

    def shot(self, path):
        r = self.call("Page.captureScreenshot", format="png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    # --- a person's input ---------------------------------------------------
    def centre(self, target):
        """(x, y) of an element's centre in the viewport after scrolling it
        into view. `target` is a CSS selector, or a JavaScript expression
        giving the element when it starts with 'js:'. Raises when the element
        is missing, not displayed, or covered by another at its centre."""
        expr = target[3:] if target.startswith("js:") else f"document.querySelector({json.dumps(target)})"
        r = self.js(f"""(() => {{ const el = {expr};
            if (!el) return {{missing: true}};
            el.scrollIntoView({{block: 'center', inline: 'center'}});
            const b = el.getBoundingClientRect();
            if (b.width === 0 || b.height === 0) return {{hidden: true}};
            const x = b.left + b.width / 2, y = b.top + b.height / 2;
            const top = document.elementFromPoint(x, y);
            const covered = top && top !== el && !el.contains(top) && !top.contains(el);
            return {{x, y, covered: covered ? (top.tagName + (top.id ? '#' + top.id : '') + '.' + top.className) : null}};
        }})()""")
        if r.get("missing"):
            raise RuntimeError(f"no element {target}")
        if r.get("hidden"):
            raise RuntimeError(f"{target} is not displayed")
        if r.get("covered"):
            raise RuntimeError(f"{target} is covered by {r['covered']} at its centre")
        return r["x"], r["y"]

    def mouse(self, kind, x, y, button="left", clicks=1):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, clickCount=clicks)

    def click_xy(self, x, y):
        self.mouse("mouseMoved", x, y, button="none", clicks=0)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def click(self, target):
        x, y = self.centre(target)
        self.click_xy(x, y)

    def hover(self, x, y):
        self.mouse("mouseMoved", max(0, x - 20), y, button="none", clicks=0)
        self.mouse("mouseMoved", x, y, button="none", clicks=0)

    def type(self, target, text):
        """Clicks into a field, selects what it holds and types over it."""
        self.click(target)
        self.js("document.activeElement && document.activeElement.select && document.activeElement.select(), true")
        self.call("Input.insertText", text=text)

    def key(self, key, code=None, vk=0):
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code or key, windowsVirtualKeyCode=vk)

    # --- checks -------------------------------------------------------------
    def axe(self):
        """axe-core's serious and critical violations on the page as it is:
        [{id, impact, help, nodes: [target...]}]."""
        if not self.js("typeof window.axe === 'object'"):
            with open(AXE, encoding="utf-8") as f:
                self.call("Runtime.evaluate", expression=f.read(), returnByValue=True)
        r = self.js("""axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').split('\\n').slice(1, 2).join(''))})))""",
                    limit=60)
        return r or []
