#!/usr/bin/python3
"""Validates every SOAP response the ONVIF simulator serves against the official
ONVIF schemas shipped by onvif-zeep (its wsdl/ folder: devicemgmt.wsdl,
media.wsdl, ptz.wsdl, events.wsdl, onvif.xsd, b-2.xsd, t-1.xsd, ws-addr.xsd,
ws-discovery.xsd, ...), compiled with lxml.etree.XMLSchema. The schemas inside
the WSDLs are extracted into a temporary folder, a wrapper XSD imports them
all, and every remote schemaLocation resolves to the local copy (no network).
The request bodies it sends are validated too (they show a valid request).

  validate.py --wsdl DIR --port P --user U --password PW [--discovery]

Calls the running sim on 127.0.0.1:P once per operation, takes the Body's
child and validates it; with --discovery also probes WS-Discovery (out of
127.0.0.1 only, TTL 1) and validates the ProbeMatches. Prints one line per
check and "N passed, M failed"; exits 1 on a failure."""
import argparse
import base64
import copy
import datetime
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from lxml import etree

SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS = {
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsd": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
XSD = "http://www.w3.org/2001/XMLSchema"
REMOTE = {  # remote schemaLocation -> local file in the wsdl folder
    "http://schemas.xmlsoap.org/ws/2004/08/addressing": "addressing",
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://www.w3.org/2005/08/addressing/ws-addr.xsd": "ws-addr.xsd",
    "http://docs.oasis-open.org/wsn/b-2.xsd": "b-2.xsd",
    "http://docs.oasis-open.org/wsn/t-1.xsd": "t-1.xsd",
    "http://docs.oasis-open.org/wsrf/bf-2.xsd": "bf-2.xsd",
}


class LocalResolver(etree.Resolver):
    def __init__(self, wsdl_dir):
        super().__init__()
        self.wsdl_dir = wsdl_dir

    def resolve(self, url, public_id, context):
        if url in REMOTE:
            return self.resolve_filename(os.path.join(self.wsdl_dir, REMOTE[url]), context)
        if url.startswith("http://") or url.startswith("https://"):
            raise OSError("no network: schema %s has no local copy" % url)
        return None


def compile_schemas(wsdl_dir):
    """One XMLSchema holding tds, trt, tptz, tev (from the WSDLs), wsnt, tt and WS-Discovery."""
    wsdl_dir = os.path.abspath(wsdl_dir)
    tmp = tempfile.mkdtemp(prefix="onvif-xsd-")
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(LocalResolver(wsdl_dir))
    imports = []
    for name, wsdl in (("tds", "devicemgmt.wsdl"), ("trt", "media.wsdl"), ("tptz", "ptz.wsdl"),
                       ("tev", "events.wsdl")):
        doc = etree.parse(os.path.join(wsdl_dir, wsdl), parser)
        schemas = doc.getroot().findall("{http://schemas.xmlsoap.org/wsdl/}types/{%s}schema" % XSD)
        if len(schemas) != 1:
            raise RuntimeError("%s: expected one inline schema, found %d" % (wsdl, len(schemas)))
        # A new root declaring every prefix in scope in the WSDL (QNames in attribute
        # values such as type="trt:Capabilities" need them; a plain copy drops them).
        schema = etree.Element(schemas[0].tag, dict(schemas[0].attrib), nsmap=dict(schemas[0].nsmap))
        schema.extend(copy.deepcopy(c) for c in schemas[0])
        for imp in schema.iter("{%s}import" % XSD, "{%s}include" % XSD):
            loc = imp.get("schemaLocation")
            if loc and not loc.startswith("http"):
                imp.set("schemaLocation", "file://" + os.path.normpath(os.path.join(wsdl_dir, loc)))
        path = os.path.join(tmp, name + ".xsd")
        etree.ElementTree(schema).write(path)
        imports.append((NS[name], "file://" + path))
    imports.append((NS["wsnt"], "file://" + os.path.join(wsdl_dir, "b-2.xsd")))
    imports.append((NS["wsd"], "file://" + os.path.join(wsdl_dir, "ws-discovery.xsd")))
    wrapper = '<xs:schema xmlns:xs="%s" targetNamespace="urn:vigil:onvif-validate">%s</xs:schema>' % (
        XSD, "".join('<xs:import namespace="%s" schemaLocation="%s"/>' % i for i in imports))
    path = os.path.join(tmp, "all.xsd")
    with open(path, "w") as f:
        f.write(wrapper)
    return etree.XMLSchema(etree.parse(path, parser))


def digest_header(user, password, created):
    nonce = os.urandom(16)
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return ('<s:Header><wsse:Security xmlns:wsse="%s" xmlns:wsu="%s" s:mustUnderstand="true"><wsse:UsernameToken>'
            '<wsse:Username>%s</wsse:Username>'
            '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0'
            '#PasswordDigest">%s</wsse:Password>'
            '<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0'
            '#Base64Binary">%s</wsse:Nonce><wsu:Created>%s</wsu:Created></wsse:UsernameToken></wsse:Security>'
            '</s:Header>') % (WSSE, WSU, user, digest, base64.b64encode(nonce).decode(), created)


class Client:
    """A bare SOAP 1.2 client signing with the camera's clock (read once from GetSystemDateAndTime)."""

    def __init__(self, port, user, password):
        self.base = "http://127.0.0.1:%d" % port
        self.user, self.password = user, password
        self.skew = 0.0

    def created(self):
        d = datetime.datetime.fromtimestamp(time.time() + self.skew, tz=datetime.timezone.utc)
        return d.strftime("%Y-%m-%dT%H:%M:%SZ")

    def call(self, path, op_xml, auth=True, timeout=20):
        """(HTTP status, the parsed request operation, the Body's child of the answer)."""
        nsdecl = " ".join('xmlns:%s="%s"' % kv for kv in NS.items())
        header = digest_header(self.user, self.password, self.created()) if auth else ""
        raw = '<s:Envelope xmlns:s="%s" %s>%s<s:Body>%s</s:Body></s:Envelope>' % (SOAP, nsdecl, header, op_xml)
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, raw.encode(), {"Content-Type": "application/soap+xml; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        body = etree.fromstring(data).find("{%s}Body" % SOAP)
        request_op = etree.fromstring(raw.encode()).find("{%s}Body" % SOAP)[0]
        return status, request_op, body[0]

    def sync_clock(self):
        _, _, r = self.call("/onvif/device_service", "<tds:GetSystemDateAndTime/>", auth=False)
        u = r.find(".//{%s}UTCDateTime" % NS["tt"])
        g = lambda p: int(u.findtext(".//{%s}%s" % (NS["tt"], p)))  # noqa: E731
        cam = datetime.datetime(g("Year"), g("Month"), g("Day"), g("Hour"), g("Minute"), g("Second"),
                                tzinfo=datetime.timezone.utc).timestamp()
        self.skew = cam - time.time()

    def control(self, method, path):
        req = urllib.request.Request(self.base + path, data=b"" if method == "POST" else None, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("ok    %s" % name, flush=True)
        else:
            self.failed += 1
            print("FAIL  %s %s" % (name, detail), flush=True)
        return ok


def detached(element):
    """A copy of element as a document root, still declaring every prefix in scope
    (QName values such as "dn:NetworkVideoTransmitter" need them)."""
    root = etree.Element(element.tag, dict(element.attrib), nsmap=dict(element.nsmap))
    root.text = element.text
    root.extend(copy.deepcopy(c) for c in element)
    return root


def schema_valid(schema, element):
    ok = schema.validate(etree.ElementTree(detached(element)))
    return ok, "; ".join("line %d: %s" % (e.line, e.message) for e in list(schema.error_log)[:3])


def must_reject(schema, report, label, element, path):
    """Negative control: the response with the element at path removed must NOT validate
    (shows that the schema really checks that part, not skips it as lax content)."""
    broken = detached(element)
    victim = broken.find(path)
    if victim is None:
        return report.check("schema rejects %s" % label, False, "(%s not found)" % path)
    victim.getparent().remove(victim)
    return report.check("schema rejects %s" % label, not schema.validate(etree.ElementTree(broken)))


def run_operations(schema, client, report):
    """Each operation the sim serves: status 200, the expected response element, request and response valid."""
    def op(label, path, xml, expect, auth=True):
        status, req, resp = client.call(path, xml, auth=auth)
        ok_req, why_req = schema_valid(schema, req)
        ok_resp, why_resp = schema_valid(schema, resp)
        good = status == 200 and resp.tag == expect and ok_req and ok_resp
        report.check("schema %s" % label, good,
                     "(HTTP %d, %s; request: %s; response: %s)" % (status, resp.tag, why_req or "valid",
                                                                  why_resp or "valid"))
        return resp

    t = lambda p, n: "{%s}%s" % (NS[p], n)  # noqa: E731
    client.sync_clock()
    dev, media, ptz, ev = ("/onvif/%s_service" % s for s in ("device", "media", "ptz", "events"))
    op("GetSystemDateAndTime (no auth)", dev, "<tds:GetSystemDateAndTime/>",
       t("tds", "GetSystemDateAndTimeResponse"), auth=False)
    r = op("GetDeviceInformation", dev, "<tds:GetDeviceInformation/>", t("tds", "GetDeviceInformationResponse"))
    must_reject(schema, report, "GetDeviceInformationResponse without Model", r, t("tds", "Model"))
    op("GetCapabilities All", dev, "<tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities>",
       t("tds", "GetCapabilitiesResponse"))
    op("GetCapabilities Media", dev,
       "<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>",
       t("tds", "GetCapabilitiesResponse"))
    for inc in ("false", "true"):
        op("GetServices IncludeCapability=%s" % inc, dev,
           "<tds:GetServices><tds:IncludeCapability>%s</tds:IncludeCapability></tds:GetServices>" % inc,
           t("tds", "GetServicesResponse"))
    op("SetNTP", dev, "<tds:SetNTP><tds:FromDHCP>false</tds:FromDHCP><tds:NTPManual><tt:Type>IPv4</tt:Type>"
       "<tt:IPv4Address>127.0.0.1</tt:IPv4Address></tds:NTPManual></tds:SetNTP>", t("tds", "SetNTPResponse"))
    op("GetNTP", dev, "<tds:GetNTP/>", t("tds", "GetNTPResponse"))
    op("SetSystemDateAndTime NTP", dev, "<tds:SetSystemDateAndTime><tds:DateTimeType>NTP</tds:DateTimeType>"
       "<tds:DaylightSavings>false</tds:DaylightSavings></tds:SetSystemDateAndTime>",
       t("tds", "SetSystemDateAndTimeResponse"))
    now = time.gmtime(time.time() + client.skew)
    op("SetSystemDateAndTime Manual", dev,
       "<tds:SetSystemDateAndTime><tds:DateTimeType>Manual</tds:DateTimeType>"
       "<tds:DaylightSavings>false</tds:DaylightSavings><tds:UTCDateTime>"
       "<tt:Time><tt:Hour>%d</tt:Hour><tt:Minute>%d</tt:Minute><tt:Second>%d</tt:Second></tt:Time>"
       "<tt:Date><tt:Year>%d</tt:Year><tt:Month>%d</tt:Month><tt:Day>%d</tt:Day></tt:Date>"
       "</tds:UTCDateTime></tds:SetSystemDateAndTime>"
       % (now.tm_hour, now.tm_min, now.tm_sec, now.tm_year, now.tm_mon, now.tm_mday),
       t("tds", "SetSystemDateAndTimeResponse"))
    client.sync_clock()
    r = op("GetProfiles", media, "<trt:GetProfiles/>", t("trt", "GetProfilesResponse"))
    must_reject(schema, report, "a Profile's encoder without Multicast", r, ".//" + t("tt", "Multicast"))
    op("GetProfile sub", media, "<trt:GetProfile><trt:ProfileToken>sub</trt:ProfileToken></trt:GetProfile>",
       t("trt", "GetProfileResponse"))
    for token in ("main", "sub"):
        op("GetStreamUri %s" % token, media,
           "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport>"
           "<tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>"
           "<trt:ProfileToken>%s</trt:ProfileToken></trt:GetStreamUri>" % token, t("trt", "GetStreamUriResponse"))
    r = op("SetPreset", ptz, "<tptz:SetPreset><tptz:ProfileToken>main</tptz:ProfileToken>"
           "<tptz:PresetName>validate</tptz:PresetName></tptz:SetPreset>", t("tptz", "SetPresetResponse"))
    preset = r.findtext(t("tptz", "PresetToken")) or "none"
    op("GetPresets", ptz, "<tptz:GetPresets><tptz:ProfileToken>main</tptz:ProfileToken></tptz:GetPresets>",
       t("tptz", "GetPresetsResponse"))
    op("GotoPreset", ptz, "<tptz:GotoPreset><tptz:ProfileToken>main</tptz:ProfileToken>"
       "<tptz:PresetToken>%s</tptz:PresetToken></tptz:GotoPreset>" % preset, t("tptz", "GotoPresetResponse"))
    op("ContinuousMove", ptz, "<tptz:ContinuousMove><tptz:ProfileToken>main</tptz:ProfileToken><tptz:Velocity>"
       '<tt:PanTilt x="0.5" y="-0.25"/><tt:Zoom x="0.1"/></tptz:Velocity></tptz:ContinuousMove>',
       t("tptz", "ContinuousMoveResponse"))
    op("Stop", ptz, "<tptz:Stop><tptz:ProfileToken>main</tptz:ProfileToken><tptz:PanTilt>true</tptz:PanTilt>"
       "<tptz:Zoom>true</tptz:Zoom></tptz:Stop>", t("tptz", "StopResponse"))
    op("GetEventProperties", ev, "<tev:GetEventProperties/>", t("tev", "GetEventPropertiesResponse"))
    r = op("CreatePullPointSubscription", ev, "<tev:CreatePullPointSubscription>"
           "<tev:InitialTerminationTime>PT120S</tev:InitialTerminationTime></tev:CreatePullPointSubscription>",
           t("tev", "CreatePullPointSubscriptionResponse"))
    address = r.findtext("%s/%s" % (t("tev", "SubscriptionReference"), t("wsa", "Address")))
    if not report.check("pullpoint address given", bool(address), repr(address)):
        return
    client.control("POST", "/control/event?kind=motion&state=true")
    client.control("POST", "/control/event?kind=tamper&state=false")
    r = op("PullMessages (2 events)", address, "<tev:PullMessages><tev:Timeout>PT5S</tev:Timeout>"
           "<tev:MessageLimit>10</tev:MessageLimit></tev:PullMessages>", t("tev", "PullMessagesResponse"))
    report.check("PullMessages returned 2 messages", len(r.findall(t("wsnt", "NotificationMessage"))) == 2)
    must_reject(schema, report, "a NotificationMessage without its Message", r, ".//" + t("wsnt", "Message"))
    broken = detached(r)
    for m in broken.iter(t("tt", "Message")):
        del m.attrib["UtcTime"]
    report.check("schema rejects a tt:Message without UtcTime", not schema.validate(etree.ElementTree(broken)))
    op("Renew", address, "<wsnt:Renew><wsnt:TerminationTime>PT60S</wsnt:TerminationTime></wsnt:Renew>",
       t("wsnt", "RenewResponse"))
    op("Unsubscribe", address, "<wsnt:Unsubscribe/>", t("wsnt", "UnsubscribeResponse"))


def fault_of(data):
    """(Code, [Subcodes], Reason) of a SOAP 1.2 Fault answer, or None."""
    try:
        f = etree.fromstring(data).find("{%s}Body/{%s}Fault" % (SOAP, SOAP))
    except etree.XMLSyntaxError:
        return None
    if f is None:
        return None
    subs = [v.text for v in f.iter("{%s}Value" % SOAP)]
    return subs[0], subs[1:], f.findtext("{%s}Reason/{%s}Text" % (SOAP, SOAP))


def run_robustness(client, report):
    """Bad requests get a clean SOAP Fault (no traceback), and the sim keeps serving."""
    def raw(data, headers=None):
        req = urllib.request.Request(client.base + "/onvif/device_service", data,
                                     headers or {"Content-Type": "application/soap+xml"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def fault_check(label, status, data, want_status, want_sub):
        f = fault_of(data)
        report.check(label, status == want_status and f is not None and want_sub in f[1]
                     and b"Traceback" not in data, "(HTTP %d, %r)" % (status, f))

    envelope_of = ('<s:Envelope xmlns:s="%s" xmlns:tds="%s">%%s<s:Body>%%s</s:Body></s:Envelope>'
                   % (SOAP, NS["tds"]))
    status, data = raw((envelope_of % ("", "<tds:GetDeviceInformation/>")).encode())
    fault_check("no Security header: 400 ter:NotAuthorized", status, data, 400, "ter:NotAuthorized")
    header = digest_header(client.user, client.password, client.created())
    once = (envelope_of % (header, "<tds:GetDeviceInformation/>")).encode()
    status, _ = raw(once)
    report.check("a signed request is accepted", status == 200, "(HTTP %d)" % status)
    status, data = raw(once)
    fault_check("the same nonce again: 400 ter:NotAuthorized", status, data, 400, "ter:NotAuthorized")
    stale = digest_header(client.user, client.password, datetime.datetime.fromtimestamp(
        time.time() + client.skew - 400, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    status, data = raw((envelope_of % (stale, "<tds:GetDeviceInformation/>")).encode())
    fault_check("Created 400 s before the camera's clock: 400 ter:NotAuthorized", status, data, 400,
                "ter:NotAuthorized")
    header = digest_header(client.user, client.password, client.created())
    status, data = raw((envelope_of % (header, "<tds:Reboot/>")).encode())
    fault_check("an unknown operation: 400 ter:ActionNotSupported", status, data, 400, "ter:ActionNotSupported")
    status, data = raw(b"<s:Envelope xmlns:s='%s'><s:Body><unclosed></s:Body>" % SOAP.encode())
    fault_check("malformed XML: 400 ter:WellFormed", status, data, 400, "ter:WellFormed")
    status, data = raw(b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + (envelope_of % ("", "<tds:GetSystemDateAndTime/>"))
                       .encode())
    fault_check("a DOCTYPE: 400 ter:WellFormed", status, data, 400, "ter:WellFormed")
    status, data = raw(b"x" * (64 * 1024 + 1))
    report.check("a body over 64 KiB: 413", status == 413, "(HTTP %d)" % status)
    status, _, r = client.call("/onvif/device_service", "<tds:GetDeviceInformation/>")
    report.check("still serving after the bad requests", status == 200 and r.tag.endswith("Response"))


def run_discovery(schema, port, report, wait=2.0):
    """A Probe sent out of 127.0.0.1 only (IP_MULTICAST_IF, TTL 1); each ProbeMatches must validate."""
    probe = ('<s:Envelope xmlns:s="%s" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="%s" '
             'xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header>'
             '<a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
             '<a:MessageID>%s</a:MessageID><a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>'
             '<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>'
             % (SOAP, NS["wsd"], uuid.uuid4().urn))
    report.check("schema Probe request", schema_valid(schema, etree.fromstring(probe).find("{%s}Body" % SOAP)[0])[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.sendto(probe.encode(), ("239.255.255.250", 3702))
        deadline = time.monotonic() + wait
        found = False
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = sock.recvfrom(65536)
            except socket.timeout:
                break
            matches = etree.fromstring(data).find("{%s}Body" % SOAP)[0]
            if ("127.0.0.1:%d/" % port) in (matches.findtext(".//{%s}XAddrs" % NS["wsd"]) or ""):
                ok, why = schema_valid(schema, matches)
                report.check("schema ProbeMatches", ok, why)
                found = True
        if not found:
            report.check("ProbeMatches from the sim on port %d" % port, False, "none within %.1f s" % wait)
    finally:
        sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wsdl", default=os.environ.get("ONVIF_WSDL"), help="onvif-zeep's wsdl folder ($ONVIF_WSDL)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--discovery", action="store_true")
    a = p.parse_args()
    if not a.wsdl:
        p.error("--wsdl or ONVIF_WSDL is required")
    report = Report()
    schema = compile_schemas(a.wsdl)
    report.check("ONVIF schemas compiled from %s" % a.wsdl, True)
    client = Client(a.port, a.user, a.password)
    run_operations(schema, client, report)
    run_robustness(client, report)
    if a.discovery:
        run_discovery(schema, a.port, report)
    print("%d passed, %d failed" % (report.passed, report.failed))
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
