//! Onboarding a camera over ONVIF: from an address as an installer types
//! it to the device service's URL, reading who the camera is and its main
//! and sub streams, and storing it as a managed camera (its password as the
//! secret `camera.<name>`, the row and its `camera.add` audit entry through
//! `db::cameras::store_managed`, as the web UI's camera add does).

use url::Url;
use zeroize::Zeroizing;

use super::{choose_streams, Device, DeviceInfo, MediaProfile, OnvifError};
use crate::db::cameras::{self as managed_cameras, ManagedCamera};
use crate::db::Index;
use crate::keys::keyring::Keyring;

/// Why onboarding failed.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// The installer's input (address, name) is wrong.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Camera(#[from] OnvifError),
    #[error("a camera named {0} exists already")]
    Exists(String),
    #[error("the camera's password could not be stored: {0}")]
    Secret(String),
    #[error("the camera could not be stored: {0}")]
    Db(String),
}

/// The device service URL of `address`: `host`, `host:port`, or a full
/// `http://host[:port]/onvif/device_service` URL.
pub fn device_url(address: &str) -> Result<Url, OnboardError> {
    let address = address.trim();
    let bad = |why: &str| OnboardError::Usage(format!("\"{address}\" is not a camera address: {why}"));
    if address.is_empty() || address.contains(char::is_whitespace) || address.starts_with('/') {
        return Err(bad("use host[:port] or the device service URL"));
    }
    let url = if address.contains("://") {
        Url::parse(address).map_err(|e| bad(&e.to_string()))?
    } else {
        Url::parse(&format!("http://{address}/onvif/device_service")).map_err(|e| bad(&e.to_string()))?
    };
    // The same rules as `onvif_url` in vigil.toml.
    crate::config::onvif_url(url.as_str()).map_err(|m| bad(&m))
}

/// A camera name from what a camera says (its model) and its address:
/// letters, digits, '-' and '_' only.
pub fn default_name(info: &DeviceInfo, url: &Url) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .split('-')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-")
    };
    let host = clean(url.host_str().unwrap_or(""));
    let model = clean(&info.model);
    let mut name = match (model.is_empty(), host.is_empty()) {
        (false, false) => format!("{model}-{host}"),
        (false, true) => model,
        (true, false) => host,
        (true, true) => "camera".to_string(),
    };
    name.truncate(64);
    name.trim_end_matches('-').to_string()
}

/// A camera found by discovery, as `cameras discover --json` and the web
/// API list it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FoundCamera {
    /// What `cameras add --onvif` takes: host:port for the usual device
    /// service path, else the whole URL.
    pub address: String,
    pub urn: String,
    pub name: String,
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
    /// "ok", "refused", "not given" or "unreachable".
    pub credentials: &'static str,
}

/// How a camera took the login (None: no login was given).
pub fn credentials_word(r: Option<&Result<DeviceInfo, OnvifError>>) -> &'static str {
    match r {
        None => "not given",
        Some(Ok(_)) => "ok",
        Some(Err(OnvifError::NotAuthorized)) => "refused",
        Some(Err(_)) => "unreachable",
    }
}

/// The address a discovered camera is added by.
pub fn address_of(xaddr: &Url) -> String {
    match (xaddr.path(), xaddr.host_str()) {
        ("/onvif/device_service", Some(h)) => match xaddr.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        },
        _ => xaddr.to_string(),
    }
}

/// How long each discovered camera has to say who it is.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The cameras `found`, each asked who it is with the login when one is given.
pub async fn check_found(
    found: Vec<super::discovery::Discovered>,
    username: Option<&str>,
    password: Option<&Zeroizing<String>>,
) -> Vec<FoundCamera> {
    // Asked side by side, each bounded: a slow device does not hold up the list.
    let infos = futures::future::join_all(found.iter().map(|d| async move {
        let u = username?;
        let device = Device::new(d.xaddr.clone(), Some(u.to_string()), password.cloned());
        Some(match tokio::time::timeout(CHECK_TIMEOUT, device.information()).await {
            Ok(r) => r,
            Err(_) => Err(OnvifError::Timeout),
        })
    }))
    .await;
    let mut out = Vec::new();
    for (d, info) in found.into_iter().zip(infos) {
        let (manufacturer, model, firmware) = match &info {
            Some(Ok(i)) => (i.manufacturer.clone(), i.model.clone(), i.firmware.clone()),
            _ => (String::new(), d.hardware.clone(), String::new()),
        };
        out.push(FoundCamera {
            address: address_of(&d.xaddr),
            credentials: credentials_word(info.as_ref()),
            urn: d.urn,
            name: d.name,
            manufacturer,
            model,
            firmware,
        });
    }
    out
}

/// What an ONVIF camera offers.
#[derive(Clone, Debug)]
pub struct Inspected {
    pub device_url: Url,
    pub info: DeviceInfo,
    pub main: MediaProfile,
    pub sub: Option<MediaProfile>,
}

/// Reads who the camera at `device_url` is and its main and sub stream.
pub async fn inspect(
    device_url: Url,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
) -> Result<Inspected, OnvifError> {
    let device = Device::new(device_url.clone(), username, password);
    let info = device.information().await?;
    let profiles = device.profiles().await?;
    let (main, sub) = choose_streams(&profiles)?;
    Ok(Inspected {
        device_url,
        info,
        main,
        sub,
    })
}

/// The managed camera `name` for what [`inspect`] found.
pub fn managed_camera(
    name: &str,
    found: &Inspected,
    username: Option<String>,
    has_password: bool,
    record_audio: bool,
) -> Option<ManagedCamera> {
    Some(ManagedCamera {
        name: name.to_string(),
        url: found.main.stream_uri.as_ref()?.to_string(),
        username,
        has_password,
        enabled: true,
        sub_url: found
            .sub
            .as_ref()
            .and_then(|s| s.stream_uri.as_ref())
            .map(Url::to_string)
            // A sub stream address the recorder would refuse (e.g. with credentials in it) is left out.
            .filter(|u| {
                let usable = crate::config::camera_url(u).is_ok();
                if !usable {
                    // Not the address itself: it may hold a password.
                    tracing::warn!("camera {name}: its sub stream address is not a plain rtsp:// URL; left out");
                }
                usable
            }),
        onvif_url: Some(found.device_url.to_string()),
        record_audio,
    })
}

/// Stores `camera` as a new managed camera, `password` as its secret, as
/// `actor`; audited `camera.add`. Refuses a name already managed.
pub fn store(
    keyring: &Keyring,
    idx: &Index,
    actor: &str,
    camera: &ManagedCamera,
    password: Option<&str>,
) -> Result<(), OnboardError> {
    if !crate::base::names::valid_camera_name(&camera.name) {
        return Err(OnboardError::Usage(format!(
            "\"{}\": {}",
            camera.name,
            crate::base::names::CAMERA_NAME_RULE
        )));
    }
    crate::config::camera_url(&camera.url)
        .map_err(|m| OnboardError::Camera(OnvifError::Malformed(format!("the main stream address: {m}"))))?;
    if managed_cameras::find_managed(idx, &camera.name)
        .map_err(|e| OnboardError::Db(e.to_string()))?
        .is_some()
    {
        return Err(OnboardError::Exists(camera.name.clone()));
    }
    let secret = managed_cameras::password_secret_name(&camera.name);
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        crate::keys::secrets::set(keyring, &secret, p.as_bytes(), None)
            .map_err(|e| OnboardError::Secret(e.to_string()))?;
    }
    if let Err(e) = managed_cameras::store_managed(idx, actor, camera) {
        if password.is_some() {
            let _ = crate::keys::secrets::remove(keyring, &secret);
        }
        return Err(OnboardError::Db(e.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_a_host_a_host_and_port_or_a_url() {
        for (a, u) in [
            ("192.0.2.7", "http://192.0.2.7/onvif/device_service"),
            ("192.0.2.7:8080", "http://192.0.2.7:8080/onvif/device_service"),
            ("cam.local", "http://cam.local/onvif/device_service"),
            (
                "http://127.0.0.1:18080/onvif/device_service",
                "http://127.0.0.1:18080/onvif/device_service",
            ),
        ] {
            assert_eq!(device_url(a).unwrap().as_str(), u, "{a}");
        }
        for a in ["", "rtsp://192.0.2.7/", "http://admin:pw@192.0.2.7/", "a b"] {
            assert!(device_url(a).is_err(), "{a}");
        }
        let info = DeviceInfo {
            manufacturer: "Vigil Sim".into(),
            model: "SimCam 1".into(),
            firmware: "1.0.0".into(),
            serial: "x".into(),
        };
        let name = default_name(&info, &device_url("127.0.0.1:18080").unwrap());
        assert_eq!(name, "simcam-1-127-0-0-1");
        assert!(crate::base::names::valid_camera_name(&name));
    }
}
