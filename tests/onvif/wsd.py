"""The simulator's WS-Discovery responder (SOAP-over-UDP, WS-Discovery 2005/04 as
ONVIF uses it): a socket bound to the group 239.255.255.250:3702 (so it gets
only datagrams sent to the group), SO_REUSEADDR + SO_REUSEPORT so several
simulators share the port, the group joined on interface 127.0.0.1 ONLY, and
IP_MULTICAST_ALL off (only groups joined on this socket). A Probe whose Types
are empty or name dn:NetworkVideoTransmitter / tds:Device (and whose Scopes, if
any, all match ours) gets a ProbeMatch sent by unicast from 127.0.0.1 to the
prober, and only when the prober is on 127.0.0.0/8. Nothing is ever sent to a
multicast address. Python 3 stdlib + lxml."""
import ipaddress
import socket
import struct
import sys
import threading
import urllib.parse
import uuid

from lxml import etree

GROUP = "239.255.255.250"
PORT = 3702
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"
PROBE = WSD + "/Probe"
PROBE_MATCHES = WSD + "/ProbeMatches"
ANONYMOUS = WSA + "/role/anonymous"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
WANTED_TYPES = {(DN, "NetworkVideoTransmitter"), (TDS, "Device")}


def endpoint_urn(name):
    """The stable EndpointReference of a simulated camera: urn:uuid:<uuid5 of its name>."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "vigil-sim:" + name).urn


def scopes(name, model):
    q = urllib.parse.quote
    return ["onvif://www.onvif.org/type/video_encoder",
            "onvif://www.onvif.org/hardware/" + q(model, safe=""),
            "onvif://www.onvif.org/name/" + q(name, safe=""),
            "onvif://www.onvif.org/Profile/Streaming"]


def scope_matches(wanted, ours):
    """RFC 3986 prefix match by path segments (WS-Discovery's default MatchBy)."""
    w = wanted.rstrip("/").split("/")
    return any(o.rstrip("/").split("/")[:len(w)] == w for o in ours)


def parse_probe(data):
    """(MessageID, [(ns, local) types], [scopes]) of a Probe, or None for anything else."""
    try:
        root = etree.fromstring(data, PARSER)
    except etree.XMLSyntaxError:
        return None
    if root.tag != "{%s}Envelope" % SOAP or root.getroottree().docinfo.doctype:
        return None
    action = root.findtext("{%s}Header/{%s}Action" % (SOAP, WSA))
    msg_id = root.findtext("{%s}Header/{%s}MessageID" % (SOAP, WSA))
    probe = root.find("{%s}Body/{%s}Probe" % (SOAP, WSD))
    if probe is None or (action or "").strip() != PROBE or not msg_id:
        return None
    types = []
    types_el = probe.find("{%s}Types" % WSD)
    for t in (types_el.text or "").split() if types_el is not None else []:
        prefix, _, local = t.rpartition(":")
        types.append((types_el.nsmap.get(prefix or None), local))
    scopes_el = probe.find("{%s}Scopes" % WSD)
    wanted = (scopes_el.text or "").split() if scopes_el is not None else []
    return msg_id.strip(), types, wanted


def probe_match(relates_to, urn, scope_list, xaddr, message_number, instance_id):
    nsmap = {"s": SOAP, "a": WSA, "d": WSD, "dn": DN, "tds": TDS}
    env = etree.Element("{%s}Envelope" % SOAP, nsmap=nsmap)
    header = etree.SubElement(env, "{%s}Header" % SOAP)
    for tag, text in (("MessageID", uuid.uuid4().urn), ("RelatesTo", relates_to), ("To", ANONYMOUS),
                      ("Action", PROBE_MATCHES)):
        etree.SubElement(header, "{%s}%s" % (WSA, tag)).text = text
    etree.SubElement(header, "{%s}AppSequence" % WSD, InstanceId=str(instance_id),
                     MessageNumber=str(message_number))
    body = etree.SubElement(env, "{%s}Body" % SOAP)
    match = etree.SubElement(etree.SubElement(body, "{%s}ProbeMatches" % WSD), "{%s}ProbeMatch" % WSD)
    epr = etree.SubElement(match, "{%s}EndpointReference" % WSA)
    etree.SubElement(epr, "{%s}Address" % WSA).text = urn
    etree.SubElement(match, "{%s}Types" % WSD).text = "dn:NetworkVideoTransmitter tds:Device"
    etree.SubElement(match, "{%s}Scopes" % WSD).text = " ".join(scope_list)
    etree.SubElement(match, "{%s}XAddrs" % WSD).text = xaddr
    etree.SubElement(match, "{%s}MetadataVersion" % WSD).text = "1"
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


class DiscoveryResponder(threading.Thread):
    def __init__(self, name, model, xaddr):
        super().__init__(daemon=True, name="wsd")
        self.urn = endpoint_urn(name)
        self.scopes = scopes(name, model)
        self.xaddr = xaddr
        self.instance_id = 1
        self.message_number = 0
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.rx.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        self.rx.bind((GROUP, PORT))
        mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1"))
        self.rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self.tx.bind(("127.0.0.1", 0))

    def run(self):
        while True:
            try:
                data, sender = self.rx.recvfrom(65536)
                self.answer(data, sender)
            except Exception as e:  # a bad datagram never stops the responder
                sys.stderr.write("wsd: %r\n" % e)

    def answer(self, data, sender):
        if not ipaddress.ip_address(sender[0]).is_loopback:
            return
        probe = parse_probe(data)
        if probe is None:
            return
        msg_id, types, wanted = probe
        if types and not any(t in WANTED_TYPES for t in types):
            return
        if not all(scope_matches(w, self.scopes) for w in wanted):
            return
        self.message_number += 1
        reply = probe_match(msg_id, self.urn, self.scopes, self.xaddr, self.message_number, self.instance_id)
        self.tx.sendto(reply, sender)
