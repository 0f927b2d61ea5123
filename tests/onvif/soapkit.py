"""The simulator's SOAP plumbing: namespaces, an element builder, the camera's
time formats (xs:dateTime, xs:duration), SOAP 1.2 envelopes and faults, and the
WS-Security UsernameToken (PasswordDigest) check. Python 3 stdlib + lxml."""
import base64
import datetime
import hashlib
import hmac
import re
import threading
import time

from lxml import etree

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "tt": "http://www.onvif.org/ver10/schema",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
# Declared once on every response Envelope, so these prefixes are in scope
# everywhere (the event Topic text "tns1:RuleEngine/..." relies on it).
ENVELOPE_NSMAP = {p: NS[p] for p in ("s", "xs", "tt", "tds", "trt", "tptz", "tev", "wsnt", "wstop", "wsa", "tns1", "ter")}

MAX_BODY = 64 * 1024
CLOCK_SKEW_S = 300
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                              remove_blank_text=True)


def q(name):
    """'tt:Name' -> '{http://www.onvif.org/ver10/schema}Name'; a bare name stays unqualified."""
    if ":" not in name or name.startswith("{"):
        return name
    prefix, local = name.split(":", 1)
    return "{%s}%s" % (NS[prefix], local)


def el(parent, name, text=None, **attrs):
    """A child element named 'prefix:Local' (attributes may be given as prefix__Local)."""
    e = etree.SubElement(parent, q(name))
    for k, v in attrs.items():
        e.set(q(k.replace("__", ":")), str(v))
    if text is not None:
        e.text = str(text)
    return e


def xbool(value):
    return "true" if value else "false"


class Fault(Exception):
    """A SOAP 1.2 Fault: Code (s:Sender|s:Receiver), Subcodes (ter:...), Reason."""

    def __init__(self, code, subcodes, reason, status=400):
        super().__init__(reason)
        self.code = code
        self.subcodes = subcodes if isinstance(subcodes, (list, tuple)) else [subcodes]
        self.reason = reason
        self.status = status


def not_authorized():
    return Fault("s:Sender", ["ter:NotAuthorized"], "Sender not authorized")


def invalid_arg(sub, reason):
    return Fault("s:Sender", ["ter:InvalidArgVal", sub], reason)


# --- time -----------------------------------------------------------------

def iso_utc(epoch_s):
    """xs:dateTime in UTC with milliseconds and 'Z': 2024-05-01T10:00:00.123Z."""
    d = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def parse_datetime(text):
    """An xs:dateTime (a missing zone is taken as UTC) -> epoch seconds, or None."""
    try:
        d = datetime.datetime.fromisoformat((text or "").strip())
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text):
    """An xs:duration of days/hours/minutes/seconds (PT10S, PT1M30S, P1D) -> seconds, or None."""
    m = _DURATION.match((text or "").strip())
    if not m or (text or "").strip() in ("P", "PT"):
        return None
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def parse_time_spec(text, now):
    """wsnt:AbsoluteOrRelativeTimeType: a duration from now or an absolute dateTime -> epoch seconds."""
    text = (text or "").strip()
    if text.startswith("P"):
        d = parse_duration(text)
        return None if d is None else now + d
    return parse_datetime(text)


# --- envelopes --------------------------------------------------------------

def envelope():
    env = etree.Element(q("s:Envelope"), nsmap=ENVELOPE_NSMAP)
    el(env, "s:Header")
    return env, el(env, "s:Body")


def serialize(env):
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def fault_envelope(fault):
    env, body = envelope()
    f = el(body, "s:Fault")
    code = el(f, "s:Code")
    el(code, "s:Value", fault.code)
    parent = code
    for sub in fault.subcodes:
        parent = el(parent, "s:Subcode")
        el(parent, "s:Value", sub)
    reason = el(f, "s:Reason")
    el(reason, "s:Text", fault.reason, **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})
    return serialize(env)


def parse_request(raw):
    """The request's Header (or None) and the Body's operation element; Fault if it is no SOAP 1.2 envelope."""
    try:
        root = etree.fromstring(raw, SAFE_PARSER)
    except etree.XMLSyntaxError:
        raise Fault("s:Sender", ["ter:WellFormed"], "the request is not well-formed XML")
    if root.getroottree().docinfo.doctype:
        raise Fault("s:Sender", ["ter:WellFormed"], "a document type declaration is not allowed")
    if root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope":
        raise Fault("s:VersionMismatch", [], "only SOAP 1.2 is supported")
    if root.tag != q("s:Envelope"):
        raise Fault("s:Sender", ["ter:WellFormed"], "the request is not a SOAP 1.2 Envelope")
    header = root.find(q("s:Header"))
    body = root.find(q("s:Body"))
    ops = [] if body is None else [c for c in body if isinstance(c.tag, str)]
    if len(ops) != 1:
        raise Fault("s:Sender", ["ter:WellFormed"], "the Body must hold exactly one operation")
    return header, ops[0]


# --- WS-Security ------------------------------------------------------------

class NonceCache:
    """Nonces seen lately; one may not be used twice (kept 2 x the clock skew, at most 10000)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}

    def fresh(self, nonce):
        now = time.monotonic()
        with self.lock:
            for k in [k for k, t in self.seen.items() if t < now]:
                del self.seen[k]
            if nonce in self.seen:
                return False
            if len(self.seen) >= 10000:
                self.seen.pop(next(iter(self.seen)))
            self.seen[nonce] = now + 2 * CLOCK_SKEW_S
            return True


def check_username_token(header, user, password, camera_now, nonces):
    """True when the header holds a UsernameToken of this user whose PasswordDigest
    = Base64(SHA1(nonce + Created + password)) matches, Created is within
    CLOCK_SKEW_S of the camera's clock and the nonce is new."""
    if header is None:
        return False
    token = header.find("%s/%s" % (q("wsse:Security"), q("wsse:UsernameToken")))
    if token is None:
        return False
    name = token.findtext(q("wsse:Username"))
    pw = token.find(q("wsse:Password"))
    nonce_text = token.findtext(q("wsse:Nonce"))
    created = token.findtext(q("wsu:Created"))
    if name is None or pw is None or nonce_text is None or created is None:
        return False
    if not (pw.get("Type") or "").endswith("#PasswordDigest"):
        return False
    try:
        nonce = base64.b64decode(nonce_text.strip(), validate=True)
    except ValueError:
        return False
    created_s = parse_datetime(created)
    if not nonce or len(nonce) > 128 or created_s is None:
        return False
    if abs(created_s - camera_now) > CLOCK_SKEW_S:
        return False
    expect = base64.b64encode(hashlib.sha1(nonce + created.strip().encode() + password.encode()).digest())
    if not (hmac.compare_digest(name.strip().encode(), user.encode())
            and hmac.compare_digest((pw.text or "").strip().encode(), expect)):
        return False
    return nonces.fresh(nonce)
