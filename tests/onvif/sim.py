#!/usr/bin/python3
"""An ONVIF camera simulator for Vigil's tests (issue 17): the device, media
(ver10), PTZ (ver20) and events (PullPoint) services over SOAP 1.2/HTTP on
127.0.0.1, with WS-Security UsernameToken (PasswordDigest) auth, a settable
camera clock, two H.264 profiles (main, sub) whose stream URIs are given, motion
and tamper events raised through a plain-JSON test control API, and (with
--discovery) a WS-Discovery responder joined on 127.0.0.1 only.

  python3 tests/onvif/sim.py --port P --name NAME --user U --password PW \
      --main-uri RTSP --sub-uri RTSP [--clock-offset S] [--discovery] [--model M] [--serial S]

Prints "READY <port>" once bound; exits on SIGTERM. Test control (not ONVIF):
  POST /control/event?kind=motion|tamper&state=true|false -> {"utc": "<camera-clock time>"}
  GET  /control/log -> {"ptz": [...], "clock_offset": s, "ntp": null|"server", "auth_failures": n, "subscriptions": n}
Python 3 stdlib + lxml (python3-lxml)."""
import argparse
import calendar
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soapkit import (MAX_BODY, NS, Fault, NonceCache, check_username_token, el, envelope,  # noqa: E402
                     fault_envelope, invalid_arg, iso_utc, not_authorized, parse_duration, parse_request,
                     parse_time_spec, q, serialize, xbool)

MOTION_TOPIC = "tns1:RuleEngine/CellMotionDetector/Motion"
TAMPER_TOPIC = "tns1:VideoSource/GlobalSceneChange/ImagingService"
CONCRETE_SET = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
MAX_PULL_WAIT_S = 10.0
MAX_SUBSCRIPTIONS = 32
MAX_QUEUED = 200
PROFILES = {
    # token: (name, width, height, fps, bitrate kbit/s, GOP)
    "main": ("mainStream", 1280, 720, 25, 4096, 50),
    "sub": ("subStream", 640, 360, 10, 512, 20),
}


class Subscription:
    def __init__(self, number, termination):
        self.number = number
        self.termination = termination
        self.queue = []


class Camera:
    """The simulated camera's state; every field is guarded by self.cond's lock."""

    def __init__(self, args):
        self.args = args
        self.cond = threading.Condition()
        self.offset = float(args.clock_offset)
        self.ntp = None
        self.ptz_log = []
        self.presets = {}  # token -> name
        self.preset_counter = 0
        self.auth_failures = 0
        self.subs = {}
        self.sub_counter = 0
        self.nonces = NonceCache()

    def now(self):
        """The camera's clock (epoch seconds): real time + the offset."""
        with self.cond:
            return time.time() + self.offset

    def base(self):
        return "http://127.0.0.1:%d/onvif" % self.args.port

    def prune(self, now):
        for n in [n for n, s in self.subs.items() if s.termination < now]:
            del self.subs[n]

    def raise_event(self, kind, state):
        with self.cond:
            utc = time.time() + self.offset
            msg = (kind, state, utc)
            self.prune(utc)
            for s in self.subs.values():
                s.queue.append(msg)
                del s.queue[:-MAX_QUEUED]
            self.cond.notify_all()
        return utc

    def log(self):
        with self.cond:
            self.prune(time.time() + self.offset)
            return {"ptz": list(self.ptz_log), "clock_offset": self.offset, "ntp": self.ntp,
                    "auth_failures": self.auth_failures, "subscriptions": len(self.subs),
                    "subscriptions_created": self.sub_counter}


# --- request helpers ---------------------------------------------------------

def child(op, name):
    return op.find(q(name))


def text_of(op, name, default=None):
    e = op.find(q(name))
    return default if e is None or e.text is None else e.text.strip()


def profile_token(op, ns):
    token = text_of(op, ns + ":ProfileToken")
    if token not in PROFILES:
        raise invalid_arg("ter:NoProfile", "the profile token does not exist")
    return token


def fnum(value, what):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise invalid_arg("ter:InvalidArgVal", "%s is not a number" % what)
    if v != v or abs(v) > 1e6:
        raise invalid_arg("ter:InvalidArgVal", "%s is out of range" % what)
    return v


# --- device service ----------------------------------------------------------

def get_device_information(cam, op, body):
    r = el(body, "tds:GetDeviceInformationResponse")
    el(r, "tds:Manufacturer", "Vigil Sim")
    el(r, "tds:Model", cam.args.model)
    el(r, "tds:FirmwareVersion", "1.0.0")
    el(r, "tds:SerialNumber", cam.args.serial)
    el(r, "tds:HardwareId", "vigil-sim-hw-1")


def date_time(parent, name, epoch):
    t = time.gmtime(epoch)
    d = el(parent, name)
    tm = el(d, "tt:Time")
    el(tm, "tt:Hour", t.tm_hour)
    el(tm, "tt:Minute", t.tm_min)
    el(tm, "tt:Second", t.tm_sec)
    dt = el(d, "tt:Date")
    el(dt, "tt:Year", t.tm_year)
    el(dt, "tt:Month", t.tm_mon)
    el(dt, "tt:Day", t.tm_mday)


def get_system_date_and_time(cam, op, body):
    now = cam.now()
    r = el(body, "tds:GetSystemDateAndTimeResponse")
    s = el(r, "tds:SystemDateAndTime")
    with cam.cond:
        mode = "NTP" if cam.ntp else "Manual"
    el(s, "tt:DateTimeType", mode)
    el(s, "tt:DaylightSavings", "false")
    tz = el(s, "tt:TimeZone")
    el(tz, "tt:TZ", "GMT0")
    date_time(s, "tt:UTCDateTime", now)
    date_time(s, "tt:LocalDateTime", now)


def read_utc(dt):
    """A tt:DateTime (Time{Hour,Minute,Second} Date{Year,Month,Day}) -> epoch seconds."""
    try:
        tm, d = dt.find(q("tt:Time")), dt.find(q("tt:Date"))
        fields = [int(d.findtext(q("tt:Year"))), int(d.findtext(q("tt:Month"))), int(d.findtext(q("tt:Day"))),
                  int(tm.findtext(q("tt:Hour"))), int(tm.findtext(q("tt:Minute"))), int(tm.findtext(q("tt:Second")))]
        if not (1970 <= fields[0] <= 2200 and 1 <= fields[1] <= 12 and 1 <= fields[2] <= 31
                and 0 <= fields[3] < 24 and 0 <= fields[4] < 60 and 0 <= fields[5] < 61):
            raise ValueError
        return calendar.timegm(tuple(fields) + (0, 0, 0))
    except (AttributeError, TypeError, ValueError):
        raise invalid_arg("ter:InvalidDateTime", "the UTCDateTime is not a valid date and time")


def set_system_date_and_time(cam, op, body):
    mode = text_of(op, "tds:DateTimeType")
    if mode == "Manual":
        utc_el = child(op, "tds:UTCDateTime")
        if utc_el is None:
            raise invalid_arg("ter:InvalidDateTime", "DateTimeType Manual needs a UTCDateTime")
        target = read_utc(utc_el)
        with cam.cond:
            cam.offset = target - time.time()
            cam.ntp = None
    elif mode == "NTP":
        with cam.cond:
            cam.offset = 0.0
            cam.ntp = cam.ntp or "ntp"
    else:
        raise invalid_arg("ter:InvalidArgVal", "DateTimeType must be Manual or NTP")
    el(body, "tds:SetSystemDateAndTimeResponse")


def set_ntp(cam, op, body):
    from_dhcp = text_of(op, "tds:FromDHCP")
    if from_dhcp not in ("false", "0", "true", "1"):
        raise invalid_arg("ter:InvalidArgVal", "FromDHCP must be a boolean")
    server = None
    for host in op.findall(q("tds:NTPManual")):
        server = text_of(host, "tt:IPv4Address") or text_of(host, "tt:DNSname") or text_of(host, "tt:IPv6Address")
        if server:
            break
    if from_dhcp in ("false", "0") and not server:
        raise invalid_arg("ter:InvalidArgVal", "NTPManual needs an IPv4Address or DNSname")
    with cam.cond:
        cam.ntp = server if server else "dhcp"
    el(body, "tds:SetNTPResponse")


def get_ntp(cam, op, body):
    with cam.cond:
        server = cam.ntp
    info = el(el(body, "tds:GetNTPResponse"), "tds:NTPInformation")
    el(info, "tt:FromDHCP", xbool(server == "dhcp"))
    if server and server not in ("dhcp", "ntp"):
        host = el(info, "tt:NTPManual")
        is_ip = all(p.isdigit() for p in server.split(".")) and server.count(".") == 3
        el(host, "tt:Type", "IPv4" if is_ip else "DNS")
        el(host, "tt:IPv4Address" if is_ip else "tt:DNSname", server)


def get_capabilities(cam, op, body):
    cats = [c.text.strip() for c in op.findall(q("tds:Category")) if c.text] or ["All"]
    known = {"All", "Device", "Events", "Media", "PTZ"}
    if any(c not in known for c in cats):
        raise Fault("s:Receiver", ["ter:ActionNotSupported", "ter:NoSuchService"],
                    "the requested capability category is not supported")
    want = known if "All" in cats else set(cats)
    caps = el(el(body, "tds:GetCapabilitiesResponse"), "tds:Capabilities")
    if "Device" in want or "All" in want:
        d = el(caps, "tt:Device")
        el(d, "tt:XAddr", cam.base() + "/device_service")
        s = el(d, "tt:System")
        for name in ("DiscoveryResolve", "DiscoveryBye", "RemoteDiscovery", "SystemBackup", "SystemLogging",
                     "FirmwareUpgrade"):
            el(s, "tt:" + name, "false")
        v = el(s, "tt:SupportedVersions")
        el(v, "tt:Major", 2)
        el(v, "tt:Minor", 40)
    if "Events" in want:
        e = el(caps, "tt:Events")
        el(e, "tt:XAddr", cam.base() + "/events_service")
        el(e, "tt:WSSubscriptionPolicySupport", "false")
        el(e, "tt:WSPullPointSupport", "true")
        el(e, "tt:WSPausableSubscriptionManagerInterfaceSupport", "false")
    if "Media" in want:
        m = el(caps, "tt:Media")
        el(m, "tt:XAddr", cam.base() + "/media_service")
        sc = el(m, "tt:StreamingCapabilities")
        el(sc, "tt:RTPMulticast", "false")
        el(sc, "tt:RTP_TCP", "true")
        el(sc, "tt:RTP_RTSP_TCP", "true")
    if "PTZ" in want:
        el(el(caps, "tt:PTZ"), "tt:XAddr", cam.base() + "/ptz_service")


def get_services(cam, op, body):
    include = text_of(op, "tds:IncludeCapability", "false") in ("true", "1")
    r = el(body, "tds:GetServicesResponse")
    for ns, path, major, minor in ((NS["tds"], "device_service", 2, 40), (NS["trt"], "media_service", 2, 40),
                                   (NS["tptz"], "ptz_service", 2, 40), (NS["tev"], "events_service", 2, 40)):
        s = el(r, "tds:Service")
        el(s, "tds:Namespace", ns)
        el(s, "tds:XAddr", "%s/%s" % (cam.base(), path))
        if include:
            c = el(s, "tds:Capabilities")
            if ns == NS["trt"]:
                mc = el(c, "trt:Capabilities", SnapshotUri="false", Rotation="false")
                el(mc, "trt:ProfileCapabilities", MaximumNumberOfProfiles=len(PROFILES))
                el(mc, "trt:StreamingCapabilities", RTPMulticast="false", RTP_TCP="true", RTP_RTSP_TCP="true")
            elif ns == NS["tev"]:
                el(c, "tev:Capabilities", WSSubscriptionPolicySupport="false", WSPullPointSupport="true",
                   WSPausableSubscriptionManagerInterfaceSupport="false", MaxPullPoints=MAX_SUBSCRIPTIONS)
            elif ns == NS["tptz"]:
                el(c, "tptz:Capabilities", EFlip="false", Reverse="false")
            else:
                dc = el(c, "tds:Capabilities")
                el(dc, "tds:Network", NTP=1)
                el(dc, "tds:Security", UsernameToken="true", HttpDigest="false")
                el(dc, "tds:System", DiscoveryBye="false", DiscoveryResolve="false", SystemLogging="false")
        v = el(s, "tds:Version")
        el(v, "tt:Major", major)
        el(v, "tt:Minor", minor)


# --- media service -----------------------------------------------------------

def profile(parent, token, name="trt:Profiles"):
    pname, w, h, fps, kbps, gop = PROFILES[token]
    p = el(parent, name, token=token, fixed="true")
    el(p, "tt:Name", pname)
    vsc = el(p, "tt:VideoSourceConfiguration", token="vsc")
    el(vsc, "tt:Name", "VideoSourceConfig")
    el(vsc, "tt:UseCount", len(PROFILES))
    el(vsc, "tt:SourceToken", "vs")
    el(vsc, "tt:Bounds", x=0, y=0, width=1280, height=720)
    vec = el(p, "tt:VideoEncoderConfiguration", token="vec-" + token)
    el(vec, "tt:Name", pname + "Encoder")
    el(vec, "tt:UseCount", 1)
    el(vec, "tt:Encoding", "H264")
    res = el(vec, "tt:Resolution")
    el(res, "tt:Width", w)
    el(res, "tt:Height", h)
    el(vec, "tt:Quality", "4")
    rc = el(vec, "tt:RateControl")
    el(rc, "tt:FrameRateLimit", fps)
    el(rc, "tt:EncodingInterval", 1)
    el(rc, "tt:BitrateLimit", kbps)
    h264 = el(vec, "tt:H264")
    el(h264, "tt:GovLength", gop)
    el(h264, "tt:H264Profile", "Main")
    mc = el(vec, "tt:Multicast")
    addr = el(mc, "tt:Address")
    el(addr, "tt:Type", "IPv4")
    el(addr, "tt:IPv4Address", "0.0.0.0")
    el(mc, "tt:Port", 0)
    el(mc, "tt:TTL", 1)
    el(mc, "tt:AutoStart", "false")
    el(vec, "tt:SessionTimeout", "PT60S")
    ptz = el(p, "tt:PTZConfiguration", token="ptz")
    el(ptz, "tt:Name", "PTZConfig")
    el(ptz, "tt:UseCount", len(PROFILES))
    el(ptz, "tt:NodeToken", "ptz-node")
    el(ptz, "tt:DefaultContinuousPanTiltVelocitySpace",
       "http://www.onvif.org/ver10/tptz/PanTiltSpaces/VelocityGenericSpace")
    el(ptz, "tt:DefaultContinuousZoomVelocitySpace", "http://www.onvif.org/ver10/tptz/ZoomSpaces/VelocityGenericSpace")
    el(ptz, "tt:DefaultPTZTimeout", "PT5S")


def get_profiles(cam, op, body):
    r = el(body, "trt:GetProfilesResponse")
    for token in PROFILES:
        profile(r, token)


def get_profile(cam, op, body):
    profile(el(body, "trt:GetProfileResponse"), profile_token(op, "trt"), "trt:Profile")


def get_stream_uri(cam, op, body):
    token = profile_token(op, "trt")
    setup = child(op, "trt:StreamSetup")
    stream = None if setup is None else text_of(setup, "tt:Stream")
    if stream not in (None, "RTP-Unicast"):
        raise invalid_arg("ter:InvalidStreamSetup", "only RTP-Unicast streams are offered")
    uri = el(el(body, "trt:GetStreamUriResponse"), "trt:MediaUri")
    el(uri, "tt:Uri", cam.args.main_uri if token == "main" else cam.args.sub_uri)
    el(uri, "tt:InvalidAfterConnect", "false")
    el(uri, "tt:InvalidAfterReboot", "false")
    el(uri, "tt:Timeout", "PT0S")


# --- PTZ service -------------------------------------------------------------

def continuous_move(cam, op, body):
    profile_token(op, "tptz")
    velocity = child(op, "tptz:Velocity")
    if velocity is None:
        raise invalid_arg("ter:InvalidArgVal", "ContinuousMove needs a Velocity")
    pan_tilt, zoom = velocity.find(q("tt:PanTilt")), velocity.find(q("tt:Zoom"))
    x = fnum(pan_tilt.get("x"), "PanTilt x") if pan_tilt is not None else 0.0
    y = fnum(pan_tilt.get("y"), "PanTilt y") if pan_tilt is not None else 0.0
    z = fnum(zoom.get("x"), "Zoom x") if zoom is not None else 0.0
    if max(abs(x), abs(y), abs(z)) > 1.0:
        raise invalid_arg("ter:InvalidVelocity", "a velocity must lie within -1..1")
    with cam.cond:
        cam.ptz_log.append({"op": "ContinuousMove", "x": x, "y": y, "zoom": z})
    el(body, "tptz:ContinuousMoveResponse")


def stop(cam, op, body):
    profile_token(op, "tptz")
    with cam.cond:
        cam.ptz_log.append({"op": "Stop"})
    el(body, "tptz:StopResponse")


def goto_preset(cam, op, body):
    profile_token(op, "tptz")
    token = text_of(op, "tptz:PresetToken")
    with cam.cond:
        if token not in cam.presets:
            raise invalid_arg("ter:NoToken", "the preset token does not exist")
        cam.ptz_log.append({"op": "GotoPreset", "preset": token})
    el(body, "tptz:GotoPresetResponse")


def set_preset(cam, op, body):
    profile_token(op, "tptz")
    name = text_of(op, "tptz:PresetName")
    token = text_of(op, "tptz:PresetToken")
    if name is not None and (len(name) > 64 or not name):
        raise invalid_arg("ter:InvalidPresetName", "the preset name is empty or too long")
    with cam.cond:
        if token is not None and token not in cam.presets:
            raise invalid_arg("ter:NoToken", "the preset token does not exist")
        if token is None:
            if len(cam.presets) >= 100:
                raise Fault("s:Receiver", ["ter:Action", "ter:TooManyPresets"], "the camera holds 100 presets")
            cam.preset_counter += 1
            token = "preset-%d" % cam.preset_counter
        name = name or cam.presets.get(token) or token
        cam.presets[token] = name
        cam.ptz_log.append({"op": "SetPreset", "name": name, "preset": token})
    el(el(body, "tptz:SetPresetResponse"), "tptz:PresetToken", token)


def get_presets(cam, op, body):
    profile_token(op, "tptz")
    r = el(body, "tptz:GetPresetsResponse")
    with cam.cond:
        presets = dict(cam.presets)
    for token, name in presets.items():
        el(el(r, "tptz:Preset", token=token), "tt:Name", name)


# --- events service ----------------------------------------------------------

def topic_description(parent, path, source, data):
    node = parent
    parts = path.split("/")
    for i, part in enumerate(parts):
        node = el(node, "tns1:" + part if i == 0 else part)
    node.set(q("wstop:topic"), "true")
    desc = el(node, "tt:MessageDescription", IsProperty="true")
    el(el(desc, "tt:Source"), "tt:SimpleItemDescription", Name=source[0], Type=source[1])
    el(el(desc, "tt:Data"), "tt:SimpleItemDescription", Name=data[0], Type=data[1])


def get_event_properties(cam, op, body):
    r = el(body, "tev:GetEventPropertiesResponse")
    el(r, "tev:TopicNamespaceLocation", "http://www.onvif.org/onvif/ver10/topics/topicns.xml")
    el(r, "wsnt:FixedTopicSet", "true")
    ts = el(r, "wstop:TopicSet")
    topic_description(ts, "RuleEngine/CellMotionDetector/Motion",
                      ("VideoSourceConfigurationToken", "tt:ReferenceToken"), ("IsMotion", "xs:boolean"))
    topic_description(ts, "VideoSource/GlobalSceneChange/ImagingService",
                      ("VideoSourceConfigurationToken", "tt:ReferenceToken"), ("State", "xs:boolean"))
    el(r, "wsnt:TopicExpressionDialect", CONCRETE_SET)
    el(r, "wsnt:TopicExpressionDialect", "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete")
    el(r, "tev:MessageContentFilterDialect", "http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter")
    el(r, "tev:MessageContentSchemaLocation", "http://www.onvif.org/onvif/ver10/schema/onvif.xsd")


def create_pull_point_subscription(cam, op, body):
    now = cam.now()
    initial = text_of(op, "tev:InitialTerminationTime")
    termination = now + 60 if initial is None else parse_time_spec(initial, now)
    if termination is None or termination <= now:
        raise invalid_arg("ter:InvalidArgVal", "InitialTerminationTime is not a valid future time or duration")
    termination = min(termination, now + 86400)
    with cam.cond:
        cam.prune(now)
        if len(cam.subs) >= MAX_SUBSCRIPTIONS:
            raise Fault("s:Receiver", ["ter:Action", "ter:MaxPullPoints"], "too many pull point subscriptions")
        cam.sub_counter += 1
        sub = Subscription(cam.sub_counter, termination)
        cam.subs[sub.number] = sub
    r = el(body, "tev:CreatePullPointSubscriptionResponse")
    ref = el(r, "tev:SubscriptionReference")
    el(ref, "wsa:Address", "%s/pullpoint/%d" % (cam.base(), sub.number))
    el(r, "wsnt:CurrentTime", iso_utc(now))
    el(r, "wsnt:TerminationTime", iso_utc(termination))


def subscription(cam, number):
    with cam.cond:
        cam.prune(time.time() + cam.offset)
        sub = cam.subs.get(number)
    if sub is None:
        raise invalid_arg("ter:InvalidArgVal", "the subscription does not exist or has expired")
    return sub


def notification(parent, kind, state, utc):
    nm = el(parent, "wsnt:NotificationMessage")
    el(nm, "wsnt:Topic", MOTION_TOPIC if kind == "motion" else TAMPER_TOPIC, Dialect=CONCRETE_SET)
    msg = el(el(nm, "wsnt:Message"), "tt:Message", UtcTime=iso_utc(utc), PropertyOperation="Changed")
    el(el(msg, "tt:Source"), "tt:SimpleItem", Name="VideoSourceConfigurationToken", Value="vsc")
    el(el(msg, "tt:Data"), "tt:SimpleItem", Name="IsMotion" if kind == "motion" else "State", Value=xbool(state))


def pull_messages(cam, op, body, number):
    sub = subscription(cam, number)
    timeout = parse_duration(text_of(op, "tev:Timeout"))
    limit_text = text_of(op, "tev:MessageLimit")
    if timeout is None or limit_text is None or not limit_text.isdigit() or int(limit_text) < 1:
        raise invalid_arg("ter:InvalidArgVal", "PullMessages needs a Timeout duration and a MessageLimit >= 1")
    limit = min(int(limit_text), 1000)
    deadline = time.monotonic() + min(timeout, MAX_PULL_WAIT_S)
    with cam.cond:
        while not sub.queue and cam.subs.get(number) is sub:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cam.cond.wait(left)
        messages, sub.queue[:] = sub.queue[:limit], sub.queue[limit:]
        now = time.time() + cam.offset
        termination = sub.termination
    r = el(body, "tev:PullMessagesResponse")
    el(r, "tev:CurrentTime", iso_utc(now))
    el(r, "tev:TerminationTime", iso_utc(termination))
    for kind, state, utc in messages:
        notification(r, kind, state, utc)


def renew(cam, op, body, number):
    sub = subscription(cam, number)
    now = cam.now()
    spec = text_of(op, "wsnt:TerminationTime")
    termination = now + 60 if spec is None else parse_time_spec(spec, now)
    if termination is None or termination <= now:
        raise invalid_arg("ter:InvalidArgVal", "TerminationTime is not a valid future time or duration")
    with cam.cond:
        sub.termination = min(termination, now + 86400)
    r = el(body, "wsnt:RenewResponse")
    el(r, "wsnt:TerminationTime", iso_utc(sub.termination))
    el(r, "wsnt:CurrentTime", iso_utc(now))


def unsubscribe(cam, op, body, number):
    subscription(cam, number)
    with cam.cond:
        cam.subs.pop(number, None)
        cam.cond.notify_all()
    el(body, "wsnt:UnsubscribeResponse")


# (service path, operation QName) -> handler; GetSystemDateAndTime alone needs no auth.
OPERATIONS = {
    ("device_service", "tds:GetDeviceInformation"): get_device_information,
    ("device_service", "tds:GetSystemDateAndTime"): get_system_date_and_time,
    ("device_service", "tds:SetSystemDateAndTime"): set_system_date_and_time,
    ("device_service", "tds:SetNTP"): set_ntp,
    ("device_service", "tds:GetNTP"): get_ntp,
    ("device_service", "tds:GetCapabilities"): get_capabilities,
    ("device_service", "tds:GetServices"): get_services,
    ("media_service", "trt:GetProfiles"): get_profiles,
    ("media_service", "trt:GetProfile"): get_profile,
    ("media_service", "trt:GetStreamUri"): get_stream_uri,
    ("ptz_service", "tptz:ContinuousMove"): continuous_move,
    ("ptz_service", "tptz:Stop"): stop,
    ("ptz_service", "tptz:GotoPreset"): goto_preset,
    ("ptz_service", "tptz:SetPreset"): set_preset,
    ("ptz_service", "tptz:GetPresets"): get_presets,
    ("events_service", "tev:GetEventProperties"): get_event_properties,
    ("events_service", "tev:CreatePullPointSubscription"): create_pull_point_subscription,
    ("pullpoint", "tev:PullMessages"): pull_messages,
    ("pullpoint", "wsnt:Renew"): renew,
    ("pullpoint", "wsnt:Unsubscribe"): unsubscribe,
}
HANDLERS = {(svc, q(name)): fn for (svc, name), fn in OPERATIONS.items()}
NO_AUTH = {("device_service", q("tds:GetSystemDateAndTime"))}


def soap_call(cam, service, number, raw):
    """One SOAP request -> (HTTP status, response bytes)."""
    try:
        header, op = parse_request(raw)
        handler = HANDLERS.get((service, op.tag))
        if handler is None:
            raise Fault("s:Receiver", ["ter:ActionNotSupported"], "the operation is not supported by this service")
        if (service, op.tag) not in NO_AUTH and not check_username_token(
                header, cam.args.user, cam.args.password, cam.now(), cam.nonces):
            with cam.cond:
                cam.auth_failures += 1
            raise not_authorized()
        env, body = envelope()
        if service == "pullpoint":
            handler(cam, op, body, number)
        else:
            handler(cam, op, body)
        return 200, serialize(env)
    except Fault as f:
        return f.status, fault_envelope(f)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VigilSim/1.0"
    timeout = 30

    def log_message(self, fmt, *args):
        if self.server.camera.args.verbose:
            sys.stderr.write("sim %s: %s\n" % (self.server.camera.args.name, fmt % args))

    def reply(self, status, data, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def reply_json(self, status, obj):
        self.reply(status, json.dumps(obj).encode(), "application/json")

    def read_body(self, length_optional=False):
        """The request body, or None after replying 411/413 (no length / over MAX_BODY)."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self.reply(411, b"a Content-Length is required\n", "text/plain")
            return None
        try:
            length = int(self.headers.get("Content-Length", "0" if length_optional else ""))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self.reply(411, b"a Content-Length is required\n", "text/plain")
            return None
        if length > MAX_BODY:
            self.close_connection = True
            self.reply(413, fault_envelope(Fault("s:Sender", ["ter:WellFormed"], "the request is over 64 KiB")),
                       "application/soap+xml; charset=utf-8")
            return None
        return self.rfile.read(length)

    def do_POST(self):
        try:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/control/event":
                return self.control_event(url)
            service, number = None, None
            if len(parts) == 2 and parts[0] == "onvif" and parts[1] in (
                    "device_service", "media_service", "ptz_service", "events_service"):
                service = parts[1]
            elif len(parts) == 3 and parts[:2] == ["onvif", "pullpoint"] and parts[2].isdigit():
                service, number = "pullpoint", int(parts[2])
            raw = self.read_body()
            if raw is None:
                return
            if service is None:
                return self.reply(404, b"no such service\n", "text/plain")
            status, data = soap_call(self.server.camera, service, number, raw)
            self.reply(status, data, "application/soap+xml; charset=utf-8")
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # never a traceback to the client
            sys.stderr.write("sim %s: internal error: %r\n" % (self.server.camera.args.name, e))
            self.close_connection = True
            try:
                self.reply(500, fault_envelope(Fault("s:Receiver", [], "internal error", 500)),
                           "application/soap+xml; charset=utf-8")
            except OSError:
                pass

    def control_event(self, url):
        if self.read_body(length_optional=True) is None:
            return
        query = urllib.parse.parse_qs(url.query)
        kind = query.get("kind", [""])[0]
        state = query.get("state", [""])[0]
        if kind not in ("motion", "tamper") or state not in ("true", "false"):
            return self.reply_json(400, {"error": "kind must be motion|tamper and state true|false"})
        utc = self.server.camera.raise_event(kind, state == "true")
        self.reply_json(200, {"utc": iso_utc(utc)})

    def do_GET(self):
        try:
            if urllib.parse.urlsplit(self.path).path == "/control/log":
                return self.reply_json(200, self.server.camera.log())
            self.reply(405 if self.path.startswith("/onvif/") else 404, b"not here\n", "text/plain")
        except (ConnectionError, TimeoutError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--main-uri", required=True)
    p.add_argument("--sub-uri", required=True)
    p.add_argument("--clock-offset", type=float, default=0.0, help="the camera's clock minus real time, seconds")
    p.add_argument("--discovery", action="store_true", help="answer WS-Discovery probes (joined on 127.0.0.1 only)")
    p.add_argument("--model", default="SimCam 1")
    p.add_argument("--serial", default=None)
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = p.parse_args()
    if args.serial is None:
        args.serial = "SIM-%s" % args.name.upper()
    server = Server(("127.0.0.1", args.port), Handler)
    args.port = server.server_address[1]
    server.camera = Camera(args)
    if args.discovery:
        from wsd import DiscoveryResponder
        DiscoveryResponder(args.name, args.model, "http://127.0.0.1:%d/onvif/device_service" % args.port).start()

    def on_term(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("READY %d" % args.port, flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
