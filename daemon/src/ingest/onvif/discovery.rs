//! WS-Discovery of ONVIF cameras: one Probe (SOAP over UDP) to
//! 239.255.255.250:3702 out of the named interface only (IP_MULTICAST_IF,
//! TTL 1, from an ephemeral port bound on its address; never by the default
//! route), then every ProbeMatch answered to it until the wait is over.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use url::Url;

use super::soap::{self, NS_SOAP};
use super::OnvifError;

const NS_WSD: &str = "http://schemas.xmlsoap.org/ws/2005/04/discovery";
const NS_WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 3702);
/// The longest a probe waits for answers.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// A camera that answered a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// Its device service.
    pub xaddr: Url,
    /// Its endpoint reference (`urn:uuid:...`).
    pub urn: String,
    /// From its `onvif://www.onvif.org/name/` scope ("" without).
    pub name: String,
    /// From its `onvif://www.onvif.org/hardware/` scope ("" without).
    pub hardware: String,
    pub scopes: Vec<String>,
}

/// A random `urn:uuid:` (version 4).
fn message_id() -> Result<String, OnvifError> {
    let mut b = soap::random::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The Probe for NetworkVideoTransmitter devices.
pub fn probe_message(id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_WSA}\" xmlns:d=\"{NS_WSD}\" \
         xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\">\
         <s:Header><a:Action s:mustUnderstand=\"1\">{NS_WSD}/Probe</a:Action>\
         <a:MessageID>{id}</a:MessageID>\
         <a:ReplyTo><a:Address>{NS_WSA}/role/anonymous</a:Address></a:ReplyTo>\
         <a:To s:mustUnderstand=\"1\">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>\
         <s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>",
        id = soap::escape(id)
    )
}

/// The most devices one probe lists (a flood of answers is cut there).
pub const MAX_FOUND: usize = 256;

/// Sends one Probe out of `interface` and collects the answers for `wait`
/// (at most [`MAX_WAIT`]), one per endpoint.
pub async fn probe(interface: Ipv4Addr, wait: Duration) -> Result<Vec<Discovered>, OnvifError> {
    let socket = bind(interface)
        .map_err(|e| OnvifError::Unreachable(format!("cannot send a discovery probe out of {interface}: {e}")))?;
    let id = message_id()?;
    socket
        .send_to(probe_message(&id).as_bytes(), SocketAddr::V4(GROUP))
        .await
        .map_err(|e| OnvifError::Unreachable(format!("cannot send a discovery probe out of {interface}: {e}")))?;
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    let mut found: Vec<Discovered> = Vec::new();
    let mut ignored = 0usize;
    let mut buf = vec![0u8; 65_536];
    loop {
        let got = match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Err(_) => break,
            Ok(Err(e)) => {
                tracing::debug!("discovery: receive failed: {e}");
                continue;
            }
            Ok(Ok((n, from))) => (n, from),
        };
        let (n, from) = got;
        let Ok(text) = std::str::from_utf8(&buf[..n]) else {
            continue;
        };
        for d in parse_probe_matches(text, &id) {
            // A device speaks for itself: its address must be the one the
            // answer came from (a spoofed ProbeMatch naming another host would
            // otherwise be sent the installer's signed login).
            if d.xaddr.host()
                != Some(url::Host::Ipv4(match from.ip() {
                    std::net::IpAddr::V4(ip) => ip,
                    std::net::IpAddr::V6(_) => continue,
                }))
            {
                ignored += 1;
                continue;
            }
            if found.len() < MAX_FOUND && !found.iter().any(|f| f.urn == d.urn) {
                found.push(d);
            }
        }
    }
    if ignored > 0 {
        tracing::warn!("discovery: {ignored} answer(s) named an address other than their sender's; ignored");
    }
    Ok(found)
}

fn bind(interface: Ipv4Addr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(interface, 0)).into())?;
    s.set_multicast_if_v4(&interface)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// The ProbeMatches of one answer to the probe `id` (an answer that does
/// not relate to it, or says nothing of what it relates to, is ignored).
pub fn parse_probe_matches(xml: &str, id: &str) -> Vec<Discovered> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    if soap::text_of(doc.root(), NS_WSA, "RelatesTo").map(str::trim) != Some(id) {
        return Vec::new();
    }
    soap::descendants(doc.root(), NS_WSD, "ProbeMatch")
        .filter_map(|m| {
            let urn = soap::descendant(m, NS_WSA, "EndpointReference")
                .and_then(|e| soap::text_of(e, NS_WSA, "Address"))?
                .to_string();
            let xaddr = soap::text_of(m, NS_WSD, "XAddrs")?
                .split_whitespace()
                .filter_map(|a| Url::parse(a).ok())
                .find(|u| u.scheme() == "http")?;
            let scopes: Vec<String> = soap::text_of(m, NS_WSD, "Scopes")
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let scope = |prefix: &str| {
                scopes
                    .iter()
                    .find_map(|s| s.strip_prefix(prefix))
                    .map(|v| crate::base::text::one_line(&percent_decoded(v), 128))
                    .unwrap_or_default()
            };
            Some(Discovered {
                xaddr,
                urn,
                name: scope("onvif://www.onvif.org/name/"),
                hardware: scope("onvif://www.onvif.org/hardware/"),
                scopes,
            })
        })
        .collect()
}

/// `%XX` sequences decoded (a scope's value is a URI segment); invalid
/// UTF-8 is replaced.
fn percent_decoded(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
