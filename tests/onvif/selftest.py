#!/usr/bin/env python3
"""The ONVIF simulator's independent proof: reference clients talk to it.

Run with the venv of scripts/lib/onvif-venv.sh (onvif-zeep, wsdiscovery; lxml
and GStreamer from Debian):  bash tests/onvif/run-selftest.sh
  or by hand:  $ONVIF_PY tests/onvif/selftest.py --wsdl "$ONVIF_WSDL"

Starts one real GStreamer RTSP camera (tests/fixtures/rtsp_camera.py) and 3
simulators (--discovery, ports picked by the kernel), then checks with
onvif-zeep (ONVIFCamera): device information, the camera clock, the two
profiles and their stream URIs (the main one plays: ffprobe reads H.264 from
it), PTZ ContinuousMove/Stop/SetPreset/GotoPreset exactly as /control/log
shows, a PullPoint subscription delivering a motion event (topic, IsMotion,
UtcTime), NotAuthorized on a wrong password and on a clock 1 h off (and success
once signed with the camera's clock), SetSystemDateAndTime and SetNTP; finds
all 3 by WS-Discovery (a Probe built and the matches parsed by the wsdiscovery
package, sent from a raw socket out of 127.0.0.1 only, TTL 1: wsdiscovery's own
networking sends on every interface, so it is not used); then runs validate.py
over every operation. Prints one line per check and "N passed, M failed";
exits 1 on a failure. Every wait is bounded; children are killed by PID."""
import argparse
import atexit
import datetime
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import validate  # noqa: E402

TER = "http://www.onvif.org/ver10/error"
CHILDREN = []


def kill_children():
    for proc in CHILDREN:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass


def start(cmd, timeout=30.0):
    """Starts cmd, waits (bounded) for its "READY <port>" line; returns (proc, port)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    CHILDREN.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("READY "):
            return proc, int(line.split()[1])
    raise RuntimeError("%s did not print READY within %.0f s" % (" ".join(cmd[:3]), timeout))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(port, method, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=b"" if method == "POST" else None,
                                 method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def expect(report, name, fn):
    """report.check(name) on fn() returning (ok, detail); an exception is a failure with its message."""
    try:
        ok, detail = fn()
    except Exception as e:
        ok, detail = False, "%s: %s" % (type(e).__name__, e)
    return report.check(name, ok, detail)


def zeep_checks(report, wsdl, sim, rtsp_main, sub_uri):
    from onvif import ONVIFCamera
    port, user, pw = sim["port"], sim["user"], sim["password"]
    cam = ONVIFCamera("127.0.0.1", port, user, pw, wsdl, no_cache=True)

    def information():
        i = cam.devicemgmt.GetDeviceInformation()
        got = (i.Manufacturer, i.Model, i.FirmwareVersion, i.SerialNumber)
        return got == ("Vigil Sim", "SimCam 1", "1.0.0", "SIM-" + sim["name"].upper()), repr(got)
    expect(report, "zeep GetDeviceInformation", information)

    def clock():
        u = cam.devicemgmt.GetSystemDateAndTime().UTCDateTime
        t = datetime.datetime(u.Date.Year, u.Date.Month, u.Date.Day, u.Time.Hour, u.Time.Minute, u.Time.Second,
                              tzinfo=datetime.timezone.utc).timestamp()
        return abs(t - time.time()) < 5, "camera clock %+.1f s from this box" % (t - time.time())
    expect(report, "zeep GetSystemDateAndTime (UTC = real time, offset 0)", clock)

    media = cam.create_media_service()

    def profiles():
        got = [(p.token, p.Name, p.VideoEncoderConfiguration.Encoding, p.VideoEncoderConfiguration.Resolution.Width,
                p.VideoEncoderConfiguration.Resolution.Height,
                p.VideoEncoderConfiguration.RateControl.FrameRateLimit, p.PTZConfiguration is not None)
               for p in media.GetProfiles()]
        want = [("main", "mainStream", "H264", 1280, 720, 25, True), ("sub", "subStream", "H264", 640, 360, 10, True)]
        return got == want, repr(got)
    expect(report, "zeep GetProfiles: main 1280x720 25 fps, sub 640x360 10 fps, H264, PTZ", profiles)

    def uri(token):
        return media.GetStreamUri({"StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                                   "ProfileToken": token}).Uri
    main_uri = [None]

    def uris():
        main_uri[0] = uri("main")
        got = (main_uri[0], uri("sub"))
        return got == (rtsp_main, sub_uri), repr(got)
    expect(report, "zeep GetStreamUri main and sub", uris)

    def plays():
        out = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "10000000",
                              "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height",
                              "-of", "json", main_uri[0] or rtsp_main],
                             capture_output=True, text=True, timeout=40)
        streams = json.loads(out.stdout or "{}").get("streams", [])
        return bool(streams) and streams[0].get("codec_name") == "h264", (out.stdout + out.stderr).strip()[-300:]
    expect(report, "the main stream URI plays (ffprobe reads H.264)", plays)

    ptz = cam.create_ptz_service()

    def ptz_ops():
        ptz.ContinuousMove({"ProfileToken": "main", "Velocity": {"PanTilt": {"x": 0.5, "y": -0.25}, "Zoom": {"x": 0.1}}})
        ptz.Stop({"ProfileToken": "main"})
        token = ptz.SetPreset({"ProfileToken": "main", "PresetName": "door"})
        ptz.GotoPreset({"ProfileToken": "main", "PresetToken": token})
        presets = [(p.token, p.Name) for p in ptz.GetPresets({"ProfileToken": "main"})]
        log = control(port, "GET", "/control/log")["ptz"]
        want = [{"op": "ContinuousMove", "x": 0.5, "y": -0.25, "zoom": 0.1}, {"op": "Stop"},
                {"op": "SetPreset", "name": "door", "preset": token}, {"op": "GotoPreset", "preset": token}]
        return log == want and presets == [(token, "door")], "log %r presets %r" % (log, presets)
    expect(report, "zeep PTZ ContinuousMove/Stop/SetPreset/GotoPreset, /control/log shows exactly those", ptz_ops)

    def events():
        from zeep.plugins import HistoryPlugin
        pullpoint = cam.create_pullpoint_service()
        # zeep drops the text of mixed content (wsnt:TopicExpressionType), so the
        # Topic is read from the envelope zeep received.
        history = HistoryPlugin()
        pullpoint.zeep_client.plugins.append(history)
        utc = control(port, "POST", "/control/event?kind=motion&state=true")["utc"]
        got = pullpoint.PullMessages({"Timeout": datetime.timedelta(seconds=5), "MessageLimit": 10})
        msgs = got.NotificationMessage
        if len(msgs) != 1:
            return False, "%d messages" % len(msgs)
        topics = history.last_received["envelope"].findall(".//{http://docs.oasis-open.org/wsn/b-2}Topic")
        topic = topics[0].text if len(topics) == 1 else None
        dialect = msgs[0].Topic.Dialect
        message = msgs[0].Message._value_1  # the tt:Message element (xs:any)
        ns = {"tt": "http://www.onvif.org/ver10/schema"}
        is_motion = message.xpath("tt:Data/tt:SimpleItem[@Name='IsMotion']/@Value", namespaces=ns)
        source = message.xpath("tt:Source/tt:SimpleItem[@Name='VideoSourceConfigurationToken']/@Value",
                               namespaces=ns)
        got = (topic, dialect, is_motion, source, message.get("UtcTime"))
        want = ("tns1:RuleEngine/CellMotionDetector/Motion", "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet",
                ["true"], ["vsc"], utc)
        return got == want, "got %r want %r" % (got, want)
    expect(report, "zeep PullPoint: a motion event's topic, IsMotion, source and UtcTime", events)

    def wrong_password():
        from onvif.client import ONVIFService
        from zeep.exceptions import Fault
        svc = ONVIFService("http://127.0.0.1:%d/onvif/device_service" % port, user, "wrong",
                           os.path.join(wsdl, "devicemgmt.wsdl"), no_cache=True,
                           binding_name="{http://www.onvif.org/ver10/device/wsdl}DeviceBinding")
        before = control(port, "GET", "/control/log")["auth_failures"]
        try:
            svc.ws_client.GetDeviceInformation()
            return False, "the call succeeded"
        except Fault as f:
            subcodes = [(s.namespace, s.localname) for s in (f.subcodes or [])]
            after = control(port, "GET", "/control/log")["auth_failures"]
            return ((TER, "NotAuthorized") in subcodes and f.message == "Sender not authorized"
                    and after == before + 1), "subcodes %r reason %r failures %d->%d" % (subcodes, f.message,
                                                                                       before, after)
    expect(report, "zeep wrong password: Fault ter:NotAuthorized 'Sender not authorized'", wrong_password)


def clock_checks(report, wsdl, sim):
    from onvif import ONVIFCamera
    from onvif.exceptions import ONVIFError
    port, user, pw = sim["port"], sim["user"], sim["password"]

    def skewed_refused():
        try:
            ONVIFCamera("127.0.0.1", port, user, pw, wsdl, no_cache=True)
            return False, "a Created 1 h off the camera's clock was accepted"
        except ONVIFError as e:
            return "Sender not authorized" in str(e), str(e)
    expect(report, "camera clock +1 h: zeep signing with this box's time is refused", skewed_refused)

    cam = [None]

    def adjusted():
        cam[0] = ONVIFCamera("127.0.0.1", port, user, pw, wsdl, no_cache=True, adjust_time=True)
        return cam[0].devicemgmt.GetDeviceInformation().Manufacturer == "Vigil Sim", "ok"
    if not expect(report, "camera clock +1 h: zeep signing with the camera's clock (adjust_time) works", adjusted):
        return

    def set_clock():
        now = datetime.datetime.now(datetime.timezone.utc)
        # The client keeps signing with the old (1 h) difference: this call is the last it can make.
        cam[0].devicemgmt.SetSystemDateAndTime({
            "DateTimeType": "Manual", "DaylightSavings": False,
            "UTCDateTime": {"Date": {"Year": now.year, "Month": now.month, "Day": now.day},
                            "Time": {"Hour": now.hour, "Minute": now.minute, "Second": now.second}}})
        log = control(port, "GET", "/control/log")
        return abs(log["clock_offset"]) < 3 and log["ntp"] is None, "log %r" % log
    expect(report, "zeep SetSystemDateAndTime Manual sets the camera's clock (offset ~0)", set_clock)

    def ntp():
        fresh = ONVIFCamera("127.0.0.1", port, user, pw, wsdl, no_cache=True)
        fresh.devicemgmt.SetNTP({"FromDHCP": False, "NTPManual": [{"Type": "DNS", "DNSname": "ntp.example"}]})
        fresh.devicemgmt.SetSystemDateAndTime({"DateTimeType": "NTP", "DaylightSavings": False})
        got = fresh.devicemgmt.GetNTP()
        log = control(port, "GET", "/control/log")
        mode = fresh.devicemgmt.GetSystemDateAndTime().DateTimeType
        return (log["ntp"] == "ntp.example" and log["clock_offset"] == 0 and mode == "NTP"
                and got.NTPManual[0].DNSname == "ntp.example"), "log %r mode %r" % (log, mode)
    expect(report, "zeep SetNTP + SetSystemDateAndTime NTP: recorded, GetNTP and DateTimeType say so", ntp)


def discovery_checks(report, sims, wait=2.0):
    from wsdiscovery.actions import constructProbe
    from wsdiscovery.message import createSOAPMessage, parseSOAPMessage
    from wsdiscovery.qname import QName
    import wsd
    probe = createSOAPMessage(constructProbe([QName("http://www.onvif.org/ver10/network/wsdl",
                                                    "NetworkVideoTransmitter", "dn")], []))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    found = {}
    try:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.sendto(probe.encode() if isinstance(probe, str) else probe, ("239.255.255.250", 3702))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, sender = sock.recvfrom(65536)
            except socket.timeout:
                break
            env = parseSOAPMessage(data, sender[0])
            for m in (env.getProbeResolveMatches() if env else []):
                found[tuple(m.getXAddrs())] = (m.getEPR(), [str(s) for s in m.getScopes()],
                                               [t.getLocalname() for t in m.getTypes()], sender[0])
    finally:
        sock.close()
    for sim in sims:
        xaddr = ("http://127.0.0.1:%d/onvif/device_service" % sim["port"],)
        epr, scopes, types, sender = found.get(xaddr, (None, [], [], None))
        ok = (epr == wsd.endpoint_urn(sim["name"]) and "onvif://www.onvif.org/name/" + sim["name"] in scopes
              and types == ["NetworkVideoTransmitter", "Device"] and sender == "127.0.0.1")
        report.check("wsdiscovery finds %s at %s (urn, name scope, types)" % (sim["name"], xaddr[0]), ok,
                     "got %r" % (found.get(xaddr),))
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wsdl", default=os.environ.get("ONVIF_WSDL"), help="onvif-zeep's wsdl folder ($ONVIF_WSDL)")
    a = p.parse_args()
    if not a.wsdl:
        p.error("--wsdl or ONVIF_WSDL is required")
    atexit.register(kill_children)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    report = validate.Report()
    try:
        rtsp_port = free_port()
        _, rtsp_port = start(["/usr/bin/python3", os.path.join(ROOT, "tests/fixtures/rtsp_camera.py"),
                              "--port", str(rtsp_port), "--size", "320x240", "--fps", "10"])
        report.check("GStreamer RTSP camera ready on 127.0.0.1:%d" % rtsp_port, True)
        main_uri = "rtsp://127.0.0.1:%d/h264" % rtsp_port
        sub_uri = "rtsp://127.0.0.1:%d/h264?sub" % rtsp_port
        sims = []
        for name, offset in (("cam-a", 0), ("cam-b", 0), ("cam-c", 3600)):
            sim = {"name": name, "user": "admin", "password": "pw-" + name}
            _, sim["port"] = start([sys.executable, os.path.join(HERE, "sim.py"), "--port", "0", "--name", name,
                                    "--user", sim["user"], "--password", sim["password"], "--main-uri", main_uri,
                                    "--sub-uri", sub_uri, "--clock-offset", str(offset), "--discovery"])
            report.check("sim %s ready on 127.0.0.1:%d (clock offset %+d s)" % (name, sim["port"], offset), True)
            sims.append(sim)
        zeep_checks(report, a.wsdl, sims[0], main_uri, sub_uri)
        clock_checks(report, a.wsdl, sims[2])
        discovery_checks(report, sims)
        schema = validate.compile_schemas(a.wsdl)
        report.check("ONVIF schemas compiled from %s" % a.wsdl, True)
        client = validate.Client(sims[1]["port"], sims[1]["user"], sims[1]["password"])
        validate.run_operations(schema, client, report)
        validate.run_robustness(client, report)
        validate.run_discovery(schema, sims[1]["port"], report)
    except Exception as e:
        report.check("selftest ran to the end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        kill_children()
    print("%d passed, %d failed" % (report.passed, report.failed))
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
