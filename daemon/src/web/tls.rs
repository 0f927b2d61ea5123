//! The server certificate: the configured PEM files, or a self-signed one
//! made at first start whose private key is kept in the encrypted secrets
//! store (so it is sealed, through the KEK, by the TPM). Its SHA-256
//! fingerprint is logged so a technician can compare it with the browser's.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::http::HttpConfig;
use crate::keys::keyring::Keyring;
use crate::keys::secrets::{self, SecretError};

pub const KEY_SECRET: &str = "https.key";
pub const CERT_SECRET: &str = "https.cert";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("making the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// `AA:BB:...`, as browsers show it.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("{what}: certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(format!("{what}: no certificate in the PEM")));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsError::Pem(format!("{what}: key: {e}")))?
        .ok_or_else(|| TlsError::Pem(format!("{what}: no private key in the PEM")))?;
    Ok((certs, key))
}

/// Loads or makes the certificate; returns the rustls config and the fingerprint.
pub fn server_config(http: &HttpConfig, keyring: &Keyring) -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
    let (certs, key) = match &http.cert_key {
        Some((c, k)) => {
            let cert_pem = std::fs::read(c).map_err(|e| TlsError::Pem(format!("{}: {e}", c.display())))?;
            let key_pem =
                zeroize::Zeroizing::new(std::fs::read(k).map_err(|e| TlsError::Pem(format!("{}: {e}", k.display())))?);
            parse_pem(&cert_pem, &key_pem, &c.display().to_string())?
        }
        None => {
            let stored = keyring
                .with_index(|idx| Ok(secrets::exists(idx.conn(), CERT_SECRET)?))
                .map_err(SecretError::from)?;
            let cert = match stored {
                true => Some(secrets::get(keyring, CERT_SECRET, "https server certificate")?),
                false => None,
            };
            let (cert_pem, key_pem) = match cert {
                Some(c) => (c, secrets::get(keyring, KEY_SECRET, "https server key")?),
                None => {
                    let (c, k) = self_signed()?;
                    secrets::set(keyring, KEY_SECRET, k.as_bytes(), None)?;
                    secrets::set(keyring, CERT_SECRET, c.as_bytes(), None)?;
                    tracing::info!("made a self-signed HTTPS certificate; its key is in the encrypted secrets store");
                    (
                        zeroize::Zeroizing::new(c.into_bytes()),
                        zeroize::Zeroizing::new(k.as_bytes().to_vec()),
                    )
                }
            };
            parse_pem(&cert_pem, &key_pem, "the stored self-signed certificate")?
        }
    };
    let fp = fingerprint(certs[0].as_ref());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if http.tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), fp))
}

/// This machine's host name (`/etc/hostname`), or "vigil": the name of the
/// self-signed certificate.
pub fn machine_host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() < 64 && crate::config::http::valid_host_name(h))
        .unwrap_or_else(|| "vigil".into())
}

/// The host name the plain-HTTP listener redirects to: `http.host_name`,
/// else the machine's (the self-signed certificate's) name. Never a
/// request's Host header.
pub fn redirect_host_name(http: &HttpConfig) -> String {
    http.host_name.clone().unwrap_or_else(machine_host_name)
}

/// A self-signed ECDSA P-256 certificate for this box, valid for 10 years:
/// (certificate PEM, key PEM).
fn self_signed() -> Result<(String, zeroize::Zeroizing<String>), TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let host = machine_host_name();
    let mut params = rcgen::CertificateParams::new(vec![host.clone(), format!("{host}.local"), "localhost".into()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("Vigil NVR {host}"));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
}
