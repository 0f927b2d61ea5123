//! Tests of the email channel against aiosmtpd (STARTTLS required, AUTH)
//! on a loopback port; skipped when python3-aiosmtpd is not installed.

use std::path::Path;

use serde_json::json;
use zeroize::Zeroizing;

use crate::alerts::test_tls::{self, Pki, Proc};
use crate::alerts::{SendError, Transport};
use crate::config::alerts::ChannelConfig;

// The sink binds port 0 itself and prints the port it got: no other test's
// server can take it between a choice and the bind.
const SINK: &str = r#"
import asyncio, os, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
cert, key, out = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
class Sink:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        tmp = os.path.join(out, "%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(out, "%d.eml" % n))
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    return AuthResult(success=isinstance(data, LoginPassword) and data.login == b"vigil" and data.password == b"smtp-pass-42", handled=False)
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(Sink(), hostname="127.0.0.1", tls_context=ctx, require_starttls=True,
                     authenticator=auth, auth_require_tls=True), "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"#;

fn channel(port: u16, ca: &Path, user: bool) -> ChannelConfig {
    let mut j = json!({"kind": "email", "smtp_host": "127.0.0.1", "smtp_port": port, "from": "vigil@shop.lan",
        "to": ["tech@shop.lan", "boss@shop.lan"], "secret": "alert-mail", "ca_file": ca.display().to_string()});
    if user {
        j["username"] = json!("vigil");
    }
    ChannelConfig::from_json("mail", &j).unwrap()
}

#[tokio::test]
async fn starttls_auth_and_headers() {
    let Some(python) = test_tls::tool("/usr/bin/python3") else {
        return;
    };
    let has_aiosmtpd = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_aiosmtpd {
        println!("SKIPPED: python3-aiosmtpd is not installed");
        return;
    }
    let pki = Pki::new();
    let out = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(&python)
        .args(["-c", SINK])
        .arg(&pki.cert_path)
        .arg(&pki.key_path)
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _sink = Proc(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the sink printed {line:?}"));
    test_tls::wait_port(port);
    let ctx = test_tls::context();
    let m = test_tls::message();
    let secret = || Some(Zeroizing::new(b"smtp-pass-42".to_vec()));

    let mut t = Transport::new(&channel(port, &pki.ca_path, true), secret(), &ctx).unwrap();
    assert_eq!(t.kind_name(), "email");
    t.send(&m).await.unwrap();
    let mail = std::fs::read_to_string(out.path().join("0.eml")).unwrap();
    let (head, body) = mail.split_once("\r\n\r\n").unwrap();
    let header = |n: &str| test_tls::header(head, n).unwrap_or_else(|| panic!("no {n} in {head}"));
    assert_eq!(header("subject"), "[Vigil shop-nvr-3] CRITICAL: Camera front offline");
    assert_eq!(header("message-id"), "<vigil-1a2b3c4d-e17@vigil>");
    assert_eq!(header("x-vigil-idempotency-key"), "vigil-1a2b3c4d-e17");
    assert!(header("content-type").starts_with("text/plain"), "{head}");
    assert!(
        header("to").contains("tech@shop.lan") && header("to").contains("boss@shop.lan"),
        "{head}"
    );
    let body = body.replace("\r\n", "\n");
    assert!(
        body.starts_with("Camera front has not streamed for 30 s.\n\n{"),
        "{body}"
    );
    assert!(body.contains("\"code\": \"camera.offline\""), "{body}");

    // A wrong password: refused, and the text holds no password.
    let wrong = Some(Zeroizing::new(b"wrong-pass-77".to_vec()));
    let mut t = Transport::new(&channel(port, &pki.ca_path, true), wrong, &ctx).unwrap();
    let e = t.send(&m).await.unwrap_err();
    assert!(matches!(e, SendError::Rejected(_)), "{e:?}");
    assert!(!e.to_string().contains("wrong-pass-77"), "{e}");

    // A CA that did not sign the server's certificate: a TLS error.
    let other = Pki::new();
    let mut t = Transport::new(&channel(port, &other.ca_path, false), None, &ctx).unwrap();
    let e = t.send(&m).await.unwrap_err();
    assert!(matches!(e, SendError::Tls(_)), "{e:?}");
    assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");

    // Nothing listening: unreachable.
    let (_refusing, refused) = test_tls::refused_port();
    let mut t = Transport::new(&channel(refused, &pki.ca_path, false), None, &ctx).unwrap();
    let e = t.send(&m).await.unwrap_err();
    assert!(matches!(e, SendError::Unreachable(_)) && e.retry_soon(), "{e:?}");
}
