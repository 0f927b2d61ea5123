//! SOAP 1.2 over HTTP for the ONVIF client: the envelope (with the
//! WS-Security UsernameToken, PasswordDigest, signed with the camera's
//! time), one bounded POST over hyper's HTTP/1 client, SOAP faults, and
//! small helpers to read the answer with roxmltree by local name and
//! namespace URI (never by prefix).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use tokio::net::TcpStream;
use url::Url;

use super::OnvifError;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_SCHEMA: &str = "http://www.onvif.org/ver10/schema";
pub const NS_DEVICE: &str = "http://www.onvif.org/ver10/device/wsdl";
pub const NS_MEDIA: &str = "http://www.onvif.org/ver10/media/wsdl";
pub const NS_PTZ: &str = "http://www.onvif.org/ver20/ptz/wsdl";
pub const NS_EVENTS: &str = "http://www.onvif.org/ver10/events/wsdl";
pub const NS_WSNT: &str = "http://docs.oasis-open.org/wsn/b-2";
pub const NS_ERROR: &str = "http://www.onvif.org/ver10/error";
const NS_WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const NS_WSU: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_DIGEST: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
const BASE64_BINARY: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// Time to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for an answer to an ordinary request (a pull waits longer).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body that is read.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// `text` escaped for an XML element or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A login, as the WS-Security header carries it.
pub struct Login<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The camera's UTC time now, in ms (the `Created` of the token).
    pub camera_now_ms: i64,
}

/// `Base64(SHA1(nonce + created + password))`.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_seconds(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Random bytes from the system.
pub fn random<const N: usize>() -> Result<[u8; N], OnvifError> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| OnvifError::Malformed("the system's random source failed".into()))?;
    Ok(b)
}

/// A SOAP 1.2 envelope around `body` (an element with its own `xmlns`),
/// with a UsernameToken when `login` is given and a WS-Addressing `To`
/// when `to` is.
pub fn envelope(body: &str, login: Option<&Login<'_>>, to: Option<&str>) -> Result<String, OnvifError> {
    let mut header = String::new();
    if let Some(l) = login {
        let nonce = random::<16>()?;
        let created = utc_seconds(l.camera_now_ms);
        let digest = password_digest(&nonce, &created, l.password);
        let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
        header.push_str(&format!(
            "<wsse:Security s:mustUnderstand=\"1\" xmlns:wsse=\"{NS_WSSE}\" xmlns:wsu=\"{NS_WSU}\">\
             <wsse:UsernameToken><wsse:Username>{}</wsse:Username>\
             <wsse:Password Type=\"{PASSWORD_DIGEST}\">{digest}</wsse:Password>\
             <wsse:Nonce EncodingType=\"{BASE64_BINARY}\">{nonce}</wsse:Nonce>\
             <wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>",
            escape(l.username)
        ));
    }
    if let Some(to) = to {
        header.push_str(&format!(
            "<wsa:To xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">{}</wsa:To>",
            escape(to)
        ));
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <s:Envelope xmlns:s=\"{NS_SOAP}\"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ))
}

/// POSTs `envelope` to `url` and returns the answer's status and body.
/// Every step is bounded: connect [`CONNECT_TIMEOUT`], the answer `wait`.
pub async fn post(url: &Url, envelope: String, wait: Duration) -> Result<(u16, Vec<u8>), OnvifError> {
    if url.scheme() != "http" {
        return Err(OnvifError::Unreachable(format!(
            "{}:// camera addresses are not supported yet; use the camera's http:// address",
            url.scheme()
        )));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(OnvifError::Unreachable(format!("{url} has no host"))),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(OnvifError::Unreachable(format!("cannot connect to {host}:{port}: {e}"))),
        Err(_) => return Err(OnvifError::Timeout),
    };
    let _ = tcp.set_nodelay(true);
    let lost = |e: hyper::Error| OnvifError::Unreachable(format!("the connection to {host}:{port} failed: {e}"));
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(lost)?;
        let driver = AbortOnDrop(tokio::spawn(conn));
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")
            .header(hyper::header::USER_AGENT, concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(envelope)))
            .map_err(|e| OnvifError::Malformed(format!("cannot build the request: {e}")))?;
        let resp = sender.send_request(req).await.map_err(lost)?;
        let status = resp.status().as_u16();
        let body = crate::base::body::read_whole(resp.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| OnvifError::Malformed(format!("the answer could not be read whole (at most 1 MiB): {e}")))?;
        drop(driver);
        Ok((status, body))
    };
    tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| OnvifError::Timeout)?
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The body of a SOAP answer `xml` (with HTTP `status`) as text checked to
/// parse, or the fault it carries.
pub fn check_answer(status: u16, xml: &[u8]) -> Result<String, OnvifError> {
    let text = std::str::from_utf8(xml)
        .map_err(|_| OnvifError::Malformed("the answer is not UTF-8".into()))?
        .to_string();
    if status == 401 {
        return Err(OnvifError::NotAuthorized);
    }
    let doc = match roxmltree::Document::parse(&text) {
        Ok(d) => d,
        Err(e) if (200..300).contains(&status) => {
            return Err(OnvifError::Malformed(format!("the answer is not XML: {e}")))
        }
        Err(_) => return Err(OnvifError::Unreachable(format!("the camera answered HTTP {status}"))),
    };
    if let Some(fault) = descendant(doc.root(), NS_SOAP, "Fault") {
        return Err(fault_error(fault));
    }
    if !(200..300).contains(&status) {
        return Err(OnvifError::Unreachable(format!("the camera answered HTTP {status}")));
    }
    if descendant(doc.root(), NS_SOAP, "Body").is_none() {
        return Err(OnvifError::Malformed("the answer has no SOAP Body".into()));
    }
    Ok(text)
}

/// A SOAP 1.2 fault as an error: `ter:NotAuthorized` anywhere in its codes
/// is [`OnvifError::NotAuthorized`].
fn fault_error(fault: roxmltree::Node<'_, '_>) -> OnvifError {
    let mut codes = Vec::new();
    for v in fault
        .descendants()
        .filter(|n| n.tag_name().namespace() == Some(NS_SOAP) && n.tag_name().name() == "Value")
    {
        let text = v.text().unwrap_or("").trim();
        let (prefix, local) = match text.split_once(':') {
            Some((p, l)) => (Some(p), l),
            None => (None, text),
        };
        let ns = v.lookup_namespace_uri(prefix);
        if local == "NotAuthorized" && (ns.is_none() || ns == Some(NS_ERROR)) {
            return OnvifError::NotAuthorized;
        }
        codes.push(crate::base::text::one_line(local, 64));
    }
    let reason = crate::base::text::one_line(
        descendant(fault, NS_SOAP, "Text")
            .and_then(|t| t.text())
            .unwrap_or("")
            .trim(),
        300,
    );
    OnvifError::Fault {
        code: codes.join("/"),
        reason,
    }
}

/// The first descendant of `node` (itself included) named `ns`:`local`.
pub fn descendant<'a, 'i>(node: roxmltree::Node<'a, 'i>, ns: &str, local: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(ns))
}

/// Every descendant of `node` named `ns`:`local`.
pub fn descendants<'a, 'i: 'a>(
    node: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    node.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(ns))
}

/// The first child element of `node` named `ns`:`local`.
pub fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, ns: &str, local: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(ns))
}

/// The trimmed text of the first descendant `ns`:`local` of `node`.
pub fn text_of<'a>(node: roxmltree::Node<'a, '_>, ns: &str, local: &str) -> Option<&'a str> {
    descendant(node, ns, local).and_then(|n| n.text()).map(str::trim)
}

/// Parses `xml` (already checked by [`check_answer`]).
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, OnvifError> {
    roxmltree::Document::parse(xml).map_err(|e| OnvifError::Malformed(format!("the answer is not XML: {e}")))
}

/// The text of `ns`:`local` anywhere in `node`, or a Malformed error naming it.
pub fn required<'a>(node: roxmltree::Node<'a, '_>, ns: &str, local: &str) -> Result<&'a str, OnvifError> {
    text_of(node, ns, local).ok_or_else(|| OnvifError::Malformed(format!("the answer has no {local}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_one_of_the_ws_security_profile() {
        // The example of the ONVIF Application Programmer's Guide, 6.1.1.3.
        let nonce = base64::engine::general_purpose::STANDARD
            .decode("LKqI6G/AikKCQrN0zqZFlg==")
            .unwrap();
        assert_eq!(
            password_digest(&nonce, "2010-09-16T07:50:45Z", "userpassword"),
            "tuOSpGlFlIXsozq4HFNeeGeFLEI="
        );
        assert_eq!(utc_seconds(1_284_623_445_999), "2010-09-16T07:50:45Z");
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
        let e = envelope(
            "<x/>",
            Some(&Login {
                username: "<admin>",
                password: "pw",
                camera_now_ms: 0,
            }),
            None,
        )
        .unwrap();
        assert!(e.contains("<wsse:Username>&lt;admin&gt;</wsse:Username>"));
        assert!(!e.contains(">pw<"), "no password in clear");
        roxmltree::Document::parse(&e).unwrap();
    }

    #[test]
    fn faults_are_read_by_namespace() {
        let refused = r#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:ter="http://www.onvif.org/ver10/error">
 <env:Body><env:Fault>
  <env:Code><env:Value>env:Sender</env:Value>
   <env:Subcode><env:Value>ter:NotAuthorized</env:Value></env:Subcode></env:Code>
  <env:Reason><env:Text xml:lang="en">Sender not authorized</env:Text></env:Reason>
 </env:Fault></env:Body></env:Envelope>"#;
        assert!(matches!(
            check_answer(400, refused.as_bytes()),
            Err(OnvifError::NotAuthorized)
        ));
        let unknown = refused
            .replace("ter:NotAuthorized", "ter:ActionNotSupported")
            .replace("Sender not authorized", "no such thing");
        match check_answer(400, unknown.as_bytes()) {
            Err(OnvifError::Fault { code, reason }) => {
                assert_eq!(code, "Sender/ActionNotSupported");
                assert_eq!(reason, "no such thing");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(check_answer(401, b""), Err(OnvifError::NotAuthorized)));
        assert!(matches!(check_answer(200, b"<a"), Err(OnvifError::Malformed(_))));
        assert!(matches!(
            check_answer(502, b"bad gateway"),
            Err(OnvifError::Unreachable(_))
        ));
    }
}
