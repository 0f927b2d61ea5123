#!/usr/bin/python3
"""The real receivers the alerts suite (issue 16) delivers to, all on
127.0.0.1 free ports: a throwaway CA and server certificate (openssl), the
Debian mosquitto broker (TLS, password file, no anonymous) with an
independent `mosquitto_sub` watching `#`, a webhook receiver that checks the
HMAC signature and timestamp, an HTTPS endpoint of Twilio's Messages API
shape and an SMTP sink (aiosmtpd: STARTTLS and AUTH required).

Each receiver records every delivery it accepted (and every request it
refused) and can be stopped and started again on the same port. Every
process is started here and killed by PID in `close()`; every wait is
bounded.

    /usr/bin/python3 tests/alerts/receivers.py --selftest

starts them all and proves each with an independent client (mosquitto_pub,
curl, smtplib), also that a bad signature, a stale timestamp, bad Basic
auth and SMTP without STARTTLS are refused."""
import base64
import collections
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hostile"))
from fixture import kill_pid, wait_for  # noqa: E402  (tests/hostile/fixture.py)

# aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on
# every AUTH; its errors still show.
logging.getLogger("mail.log").setLevel(logging.ERROR)

# The clock skew a webhook receiver accepts (the contract's 300 s).
MAX_SKEW_S = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def run(args, **kw):
    o = subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)
    if o.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}…: exit {o.returncode}: {o.stderr.strip()}")
    return o


class Message:
    """One delivery a receiver accepted. `key` is the idempotency key;
    `json` the payload where the channel carries it (webhook, MQTT, email),
    None for Twilio (SMS text only); `raw` every byte received except the
    Authorization header (what the secret-leak check scans)."""

    def __init__(self, channel, key, payload, text, raw, headers=None, topic=None):
        self.t = time.time()
        self.channel = channel
        self.key = key
        self.json = payload
        self.text = text
        self.raw = raw
        self.headers = headers or {}
        self.topic = topic

    def field(self, *path):
        v = self.json
        for p in path:
            if not isinstance(v, dict):
                return None
            v = v.get(p)
        return v

    def __repr__(self):
        return f"<{self.channel} {self.key} {self.field('type')} {self.field('alert', 'code')}>"


class Certs:
    """A throwaway CA and a server certificate for 127.0.0.1 (SAN IP), P-256."""

    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        ca_key = os.path.join(d, "ca.key")
        csr = os.path.join(d, "server.csr")
        ext = os.path.join(d, "server.ext")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca, "-days", "2",
             "-subj", "/CN=Vigil alerts test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        run(["openssl", "req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1"])
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", self.cert, "-days", "2", "-extfile", ext])

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx


# --- HTTPS receivers (webhook, Twilio) --------------------------------------

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, receiver):
        self.receiver = receiver
        self.open_conns = set()
        self.lock = threading.Lock()
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        with self.lock:
            self.open_conns.add(sock)
        return sock, addr

    def shutdown_request(self, request):
        with self.lock:
            self.open_conns.discard(request)
        super().shutdown_request(request)

    def cut_all(self):
        with self.lock:
            conns = list(self.open_conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        # TLS per connection, in the handler's thread (a slow handshake
        # holds no other client up).
        self.request.settimeout(15)
        try:
            self.request = self.server.receiver.ctx.wrap_socket(self.request, server_side=True)
        except (OSError, ssl.SSLError):
            self.request = None
        if self.request is not None:
            super().setup()

    def handle(self):
        if self.request is not None:
            super().handle()

    def finish(self):
        if self.request is not None:
            try:
                super().finish()
            except OSError:
                pass

    def do_POST(self):  # noqa: N802 (http.server's naming)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply, ctype = self.server.receiver.handle(self.path, headers, body)
        data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_POST  # noqa: N815


class HttpsReceiver:
    """An HTTPS server on a fixed port, stoppable and restartable; subclasses
    implement handle(path, headers, body) -> (status, reply, content type)."""

    channel = "https"

    def __init__(self, certs, port=None):
        self.ctx = certs.server_context()
        self.port = port or free_port()
        self.server = None
        self.thread = None
        self.messages = []
        self.rejected = []
        self.lock = threading.Lock()

    def start(self):
        if self.server is not None:
            return
        end = time.monotonic() + 10
        while True:
            try:
                self.server = _Server(("127.0.0.1", self.port), _Handler, self)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        """Stops listening and cuts every open connection (no keep-alive
        connection survives to deliver behind the test's back)."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server.cut_all()
        self.thread.join(10)
        self.server = None

    @property
    def running(self):
        return self.server is not None

    def record(self, m):
        with self.lock:
            self.messages.append(m)

    def reject(self, why, headers, body):
        with self.lock:
            self.rejected.append({"t": time.time(), "why": why, "headers": headers, "body": body})

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def counts(self):
        """Deliveries per idempotency key, raw (a key twice counts 2)."""
        return collections.Counter(m.key for m in self.snapshot())


def sign(secret, timestamp, body):
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookReceiver(HttpsReceiver):
    """Accepts a POST only with a valid X-Vigil-Signature over
    "<X-Vigil-Timestamp>.<raw body>" and a timestamp within 300 s; 401
    otherwise. Records the headers and the JSON of every accepted one."""

    channel = "webhook"

    def __init__(self, certs, secret, port=None):
        super().__init__(certs, port)
        self.secret = secret
        self.path = "/vigil"

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}{self.path}"

    def handle(self, path, headers, body):
        ts = headers.get("x-vigil-timestamp", "")
        sig = headers.get("x-vigil-signature", "")
        try:
            skew = abs(time.time() - int(ts))
        except ValueError:
            skew = None
        if skew is None or skew > MAX_SKEW_S:
            self.reject(f"timestamp {ts!r} missing or more than {MAX_SKEW_S} s off", headers, body)
            return 401, {"error": "stale or missing timestamp"}, "application/json"
        if not hmac.compare_digest(sign(self.secret, ts, body), sig):
            self.reject("bad signature", headers, body)
            return 401, {"error": "bad signature"}, "application/json"
        try:
            payload = json.loads(body)
        except ValueError:
            self.reject("body is not JSON", headers, body)
            return 400, {"error": "not JSON"}, "application/json"
        if path != self.path or not headers.get("content-type", "").startswith("application/json"):
            self.reject(f"path {path} or content type {headers.get('content-type')}", headers, body)
            return 400, {"error": "wrong path or content type"}, "application/json"
        key = headers.get("idempotency-key", "")
        raw = "\n".join(f"{k}: {v}" for k, v in headers.items()).encode() + b"\n\n" + body
        self.record(Message("webhook", key, payload, None, raw, headers))
        return 200, {"ok": True}, "application/json"


def twilio_error(status, code, message):
    return status, {"code": code, "message": message,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}, "application/json"


class TwilioReceiver(HttpsReceiver):
    """`POST /2010-04-01/Accounts/{sid}/Messages.json` with Basic sid:token
    and the form fields To, From, Body: 201 and Twilio's message JSON; 401
    (error 20003) on bad credentials; 400 when a field is missing."""

    channel = "twilio"

    def __init__(self, certs, sid, token, port=None):
        super().__init__(certs, port)
        self.sid = sid
        self.token = token

    @property
    def base_url(self):
        return f"https://127.0.0.1:{self.port}"

    def handle(self, path, headers, body):
        want = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if not hmac.compare_digest(headers.get("authorization", ""), want):
            self.reject("bad Basic auth", {k: v for k, v in headers.items() if k != "authorization"}, body)
            return twilio_error(401, 20003, "Authenticate")
        if path != f"/2010-04-01/Accounts/{self.sid}/Messages.json":
            self.reject(f"path {path}", headers, body)
            return twilio_error(404, 20404, "The requested resource was not found")
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            self.reject("content type", headers, body)
            return twilio_error(400, 21609, "Invalid content type")
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        for field, code, text in [("To", 21604, "A 'To' phone number is required."),
                                  ("From", 21603, "A 'From' phone number is required."),
                                  ("Body", 21602, "Message body is required.")]:
            if not form.get(field):
                self.reject(f"no {field}", headers, body)
                return twilio_error(400, code, text)
        sid = "SM" + secrets.token_hex(16)
        key = headers.get("idempotency-key", "")
        kept = {k: v for k, v in headers.items() if k != "authorization"}
        raw = "\n".join(f"{k}: {v}" for k, v in kept.items()).encode() + b"\n\n" + body
        self.record(Message("twilio", key, None, form["Body"], raw, kept))
        now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        return 201, {"sid": sid, "account_sid": self.sid, "status": "queued", "to": form["To"],
                     "from": form["From"], "body": form["Body"], "num_segments": "1",
                     "direction": "outbound-api", "api_version": "2010-04-01", "price": None,
                     "error_code": None, "error_message": None, "date_created": now, "date_updated": now,
                     "date_sent": None, "uri": f"/2010-04-01/Accounts/{self.sid}/Messages/{sid}.json"}, \
            "application/json"


# --- SMTP sink ----------------------------------------------------------------

def email_json(text):
    """The pretty JSON after the human text of an alert email, or None."""
    i = text.find("\n{")
    if i < 0:
        i = 0 if text.startswith("{") else -1
    if i < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(text[i:].lstrip())[0]
    except ValueError:
        return None


class SmtpReceiver:
    """aiosmtpd on loopback: STARTTLS offered and required, AUTH PLAIN/LOGIN
    required (only after TLS) with the test user and password."""

    channel = "email"

    def __init__(self, certs, user, password, port=None):
        self.certs = certs
        self.user = user
        self.password = password
        self.port = port or free_port()
        self.controller = None
        self.messages = []
        self.rejected = []
        self.lock = threading.Lock()

    def start(self):
        if self.controller is not None:
            return
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
                raw = envelope.original_content or envelope.content
                if isinstance(raw, str):
                    raw = raw.encode()
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                body = msg.get_body(preferencelist=("plain",))
                text = body.get_content() if body is not None else ""
                headers = {k.lower(): str(v) for k, v in msg.items()}
                key = headers.get("x-vigil-idempotency-key", "")
                m = Message("email", key, email_json(text), text, raw, headers)
                m.envelope = {"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "tls": session.ssl is not None, "auth": session.authenticated}
                with outer.lock:
                    outer.messages.append(m)
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (getattr(auth_data, "login", b"") == self.user.encode()
                  and getattr(auth_data, "password", b"") == self.password.encode())
            if not ok:
                with self.lock:
                    self.rejected.append({"t": time.time(), "why": f"AUTH {mechanism} refused"})
            return AuthResult(success=ok)

        ctx = self.certs.server_context()
        end = time.monotonic() + 10
        while True:
            c = Controller(Handler(), hostname="127.0.0.1", port=self.port, require_starttls=True,
                           tls_context=ctx, authenticator=authenticator, auth_required=True,
                           auth_require_tls=True, ready_timeout=10)
            try:
                c.start()
                break
            except Exception:  # noqa: BLE001: port still held by the stopped one
                if time.monotonic() > end:
                    raise
                time.sleep(0.3)
        self.controller = c

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def running(self):
        return self.controller is not None

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def counts(self):
        return collections.Counter(m.key for m in self.snapshot())


# --- MQTT ---------------------------------------------------------------------

class MqttBroker:
    """The Debian mosquitto with its own config: a TLS listener on loopback,
    a password file (users `vigil` for the daemon, `watcher` for the test's
    own subscriber), no anonymous clients, no persistence. A `mosquitto_sub`
    subscribed to `#` runs while the broker does and writes every message
    (time, retained flag, topic, payload in hex) to a file."""

    channel = "mqtt"

    def __init__(self, certs, d, user, password, port=None):
        self.certs = certs
        self.dir = d
        self.user = user
        self.password = password
        self.watch_password = "watch-" + secrets.token_hex(8)
        self.port = port or free_port()
        self.proc = None
        self.sub = None
        self.sub_log = os.path.join(d, "mqtt-seen.tsv")
        self.log = os.path.join(d, "mosquitto.log")
        pw = os.path.join(d, "mosquitto.passwd")
        run(["mosquitto_passwd", "-c", "-b", pw, user, password])
        run(["mosquitto_passwd", "-b", pw, "watcher", self.watch_password])
        os.chmod(pw, 0o600)
        self.conf = os.path.join(d, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"user root\npersistence false\nper_listener_settings false\n"
                    f"allow_anonymous false\npassword_file {pw}\n"
                    f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
                    f"listener {self.port} 127.0.0.1\ncafile {certs.ca}\ncertfile {certs.cert}\n"
                    f"keyfile {certs.key}\ntls_version tlsv1.2\n")
        open(self.sub_log, "a").close()

    @property
    def url(self):
        return f"mqtts://127.0.0.1:{self.port}"

    def client_args(self, user="watcher", password=None):
        return ["-h", "127.0.0.1", "-p", str(self.port), "--cafile", self.certs.ca,
                "-u", user, "-P", password if password is not None else self.watch_password]

    def start(self):
        if self.proc is not None:
            return
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if not wait_for(10, lambda: port_open(self.port) or self.proc.poll() is not None) \
                or self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto did not start: {self.tail()}")
        out = open(self.sub_log, "a")
        self.sub = subprocess.Popen(["mosquitto_sub", *self.client_args(), "-i", f"watcher-{os.getpid()}",
                                     "-q", "1", "-t", "#", "-F", r"%U\t%r\t%t\t%x"],
                                    stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        out.close()
        # Subscribed once a message of our own comes back through it.
        probe = f"selftest/probe/{secrets.token_hex(4)}"
        ok = wait_for(10, lambda: self.publish(probe, "probe") and
                      wait_for(1, lambda: any(r[2] == probe for r in self.seen())))
        if not ok:
            raise RuntimeError(f"the MQTT watcher never saw its probe: {self.tail()}")

    def stop(self):
        kill_pid(self.sub, grace=5.0)
        self.sub = None
        kill_pid(self.proc, grace=5.0)
        self.proc = None

    @property
    def running(self):
        return self.proc is not None

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def publish(self, topic, payload, user=None, password=None, retain=False):
        args = ["mosquitto_pub", *self.client_args(user or "watcher", password), "-q", "1", "-t", topic,
                "-m", payload]
        if retain:
            args.append("-r")
        return subprocess.run(args, capture_output=True, timeout=15).returncode == 0

    def seen(self):
        """[(unix time, retained, topic, payload bytes)] of everything the watcher got."""
        out = []
        with open(self.sub_log, "rb") as f:
            for line in f.read().decode("ascii", "replace").splitlines():
                parts = line.split("\t")
                if len(parts) != 4:
                    continue
                try:
                    out.append((float(parts[0]), parts[1] == "1", parts[2], bytes.fromhex(parts[3])))
                except ValueError:
                    continue
        return out

    def raw(self):
        with open(self.sub_log, "rb") as f:
            return f.read()

    def alerts(self, prefix):
        """The alert messages on `<prefix>/alerts` as Message objects (the
        watcher subscribes with QoS 1: a duplicate is counted)."""
        msgs = []
        for t, retained, topic, payload in self.seen():
            if topic != f"{prefix}/alerts":
                continue
            try:
                j = json.loads(payload)
            except ValueError:
                j = None
            m = Message("mqtt", (j or {}).get("idempotency_key", ""), j, None, payload, topic=topic)
            m.t = t
            m.retained = retained
            msgs.append(m)
        return msgs

    def snapshot(self, prefix):
        return self.alerts(prefix)

    def counts(self, prefix):
        return collections.Counter(m.key for m in self.alerts(prefix))

    def retained(self, topic_filter, wait_s=2):
        """{topic: payload text} of the retained messages matching the filter,
        read by a fresh client."""
        o = subprocess.run(["mosquitto_sub", *self.client_args(), "-t", topic_filter, "--retained-only",
                            "-W", str(wait_s), "-F", r"%t\t%x"], capture_output=True, timeout=wait_s + 15)
        out = {}
        for line in o.stdout.decode("ascii", "replace").splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                try:
                    out[parts[0]] = bytes.fromhex(parts[1]).decode("utf-8", "replace")
                except ValueError:
                    pass
        return out


# --- all of them --------------------------------------------------------------

class Receivers:
    """The four receivers with fresh random credentials. `close()` stops them
    all and removes the temp dir (unless keep)."""

    def __init__(self, keep=False):
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="vigil-alerts-rx-")
        self.certs = Certs(self.dir)
        self.webhook_secret = "hook-hmac-" + secrets.token_hex(12)
        self.twilio_sid = "AC" + secrets.token_hex(16)
        self.twilio_token = "twl-token-" + secrets.token_hex(12)
        self.mqtt_user = "vigil"
        self.mqtt_password = "mqtt-pass-" + secrets.token_hex(12)
        self.smtp_user = "vigil@alerts.test"
        self.smtp_password = "smtp-pass-" + secrets.token_hex(12)
        self.webhook = WebhookReceiver(self.certs, self.webhook_secret)
        self.twilio = TwilioReceiver(self.certs, self.twilio_sid, self.twilio_token)
        self.smtp = SmtpReceiver(self.certs, self.smtp_user, self.smtp_password)
        self.mqtt = MqttBroker(self.certs, self.dir, self.mqtt_user, self.mqtt_password)
        self.all = [self.webhook, self.mqtt, self.twilio, self.smtp]

    def secrets(self):
        """name -> value of every credential the daemon gets."""
        return {"webhook HMAC secret": self.webhook_secret, "Twilio token": self.twilio_token,
                "MQTT password": self.mqtt_password, "SMTP password": self.smtp_password}

    def start_all(self):
        for r in self.all:
            r.start()

    def stop_all(self):
        for r in self.all:
            r.stop()

    def close(self):
        for r in self.all:
            try:
                r.stop()
            except Exception:  # noqa: BLE001: stop the others too
                pass
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- self-test ----------------------------------------------------------------

def selftest():
    import smtplib

    failures = []

    def check(ok, what):
        print(f"  {'ok ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            failures.append(what)

    def curl(url, args, body):
        o = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", rx.certs.ca,
                            "--max-time", "10", *args, "--data-binary", "@-", url],
                           input=body, capture_output=True, timeout=20)
        return o.stdout.decode().strip()

    def hook(body, ts=None, secret=None):
        ts = str(int(time.time())) if ts is None else str(ts)
        sig = sign(secret or rx.webhook_secret, ts, body)
        return curl(rx.webhook.url, ["-H", "Content-Type: application/json", "-H", f"X-Vigil-Timestamp: {ts}",
                                     "-H", f"X-Vigil-Signature: {sig}", "-H", "Idempotency-Key: k-hook"], body)

    def sms(token=None, fields=None):
        f = fields if fields is not None else {"To": "+15552223333", "From": "+15550001111", "Body": "hi"}
        return curl(f"{rx.twilio.base_url}/2010-04-01/Accounts/{rx.twilio_sid}/Messages.json",
                    ["-u", f"{rx.twilio_sid}:{token or rx.twilio_token}", "-H", "Idempotency-Key: k-sms"],
                    urllib.parse.urlencode(f).encode())

    def mail(starttls=True, password=None):
        m = email.message.EmailMessage()
        m["From"], m["To"], m["Subject"] = "vigil@shop.lan", "tech@shop.lan", "[Vigil t] INFO: test"
        m["Message-ID"] = "<k-mail@vigil>"
        m["X-Vigil-Idempotency-Key"] = "k-mail"
        m.set_content('A test.\n\n{\n  "type": "test",\n  "idempotency_key": "k-mail"\n}\n')
        try:
            with smtplib.SMTP("127.0.0.1", rx.smtp.port, timeout=10) as s:
                if starttls:
                    s.starttls(context=rx.certs.client_context())
                s.login(rx.smtp_user, password or rx.smtp_password)
                s.send_message(m)
            return "sent"
        except (smtplib.SMTPException, OSError) as e:
            return f"refused ({type(e).__name__})"

    rx = Receivers()
    try:
        t = time.monotonic()
        rx.start_all()
        print(f"receivers up in {time.monotonic() - t:.1f} s: webhook {rx.webhook.port}, mqtt {rx.mqtt.port}, "
              f"twilio {rx.twilio.port}, smtp {rx.smtp.port}", flush=True)
        for round_ in (1, 2):
            body = json.dumps({"version": 1, "type": "test", "idempotency_key": f"k-hook-{round_}"}).encode()
            check(hook(body) == "200", f"round {round_}: webhook with the right signature: 200")
            check(sms() == "201", f"round {round_}: Twilio shape with the right token: 201")
            check(mail() == "sent", f"round {round_}: SMTP with STARTTLS and AUTH: sent")
            ok = rx.mqtt.publish("vigil/self/alerts", '{"idempotency_key":"k-mqtt"}', user=rx.mqtt_user,
                                 password=rx.mqtt_password)
            check(ok, f"round {round_}: mosquitto_pub over TLS with the daemon's password")
            check(wait_for(5, lambda: rx.mqtt.counts("vigil/self")["k-mqtt"] == round_),
                  f"round {round_}: the watcher saw the MQTT message")
            if round_ == 1:
                check(hook(body, secret="wrong") == "401", "webhook with a wrong signature: 401")
                check(hook(body, ts=int(time.time()) - 400) == "401", "webhook 400 s old: 401")
                check(sms(token="wrong") == "401", "Twilio with a wrong token: 401")
                check(sms(fields={"To": "+1555", "From": "+1555"}) == "400", "Twilio without Body: 400")
                check(mail(starttls=False).startswith("refused"), "SMTP AUTH without STARTTLS: refused")
                check(mail(password="wrong").startswith("refused"), "SMTP with a wrong password: refused")
                check(not rx.mqtt.publish("vigil/self/x", "x", user=rx.mqtt_user, password="wrong"),
                      "MQTT with a wrong password: refused")
                rx.mqtt.publish("vigil/self/state", "online", user=rx.mqtt_user, password=rx.mqtt_password,
                                retain=True)
                check(rx.mqtt.retained("vigil/self/#").get("vigil/self/state") == "online",
                      "a retained topic reads back")
                t = time.monotonic()
                rx.stop_all()
                down = [r.channel for r in rx.all if port_open(r.port)]
                check(not down, f"all stopped in {time.monotonic() - t:.1f} s; still listening: {down}")
                check(hook(body) == "000", "webhook down: no connection")
                t = time.monotonic()
                rx.start_all()
                print(f"  restarted on the same ports in {time.monotonic() - t:.1f} s", flush=True)
        check(rx.webhook.counts() == {"k-hook": 2}, f"webhook counts {dict(rx.webhook.counts())}")
        check(rx.twilio.counts() == {"k-sms": 2}, f"Twilio counts {dict(rx.twilio.counts())}")
        check(rx.smtp.counts() == {"k-mail": 2}, f"SMTP counts {dict(rx.smtp.counts())}")
        mails = rx.smtp.snapshot()
        check(all(m.json and m.json.get("type") == "test" for m in mails), "the email's JSON part parsed")
        check(all(m.envelope["tls"] and m.envelope["auth"] for m in mails), "every email came over TLS with AUTH")
        check(len(rx.webhook.rejected) == 2, f"webhook rejected {len(rx.webhook.rejected)} (2 expected)")
    finally:
        rx.close()
    print("selftest:", "PASS" if not failures else f"FAIL ({len(failures)})")
    return 1 if failures else 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--selftest"]:
        print(__doc__)
        sys.exit(2)
    sys.exit(selftest())
