//! The ONVIF client: a camera's device service (who it is, its clock, its
//! services), its media profiles and stream addresses ([`media`]), PTZ
//! ([`ptz`]), pulled events ([`events`]) and WS-Discovery ([`discovery`]).
//! Requests are SOAP 1.2 over HTTP ([`soap`]), signed with a WS-Security
//! UsernameToken whose `Created` is in the camera's own time: the camera's
//! clock is read first (unauthenticated), and its offset applied, since
//! cameras refuse a token far from their clock. Passwords never appear in
//! an error, a log or a listing.

use std::sync::Mutex;
use std::time::Duration;

use url::Url;
use zeroize::Zeroizing;

pub mod discovery;
pub mod events;
pub mod media;
pub mod onboard;
pub mod ptz;
pub mod soap;

#[cfg(test)]
mod sim_tests;

pub use events::{CameraEvent, PullPoint};
pub use media::MediaProfile;
pub use ptz::Ptz;

use soap::{NS_DEVICE, NS_SCHEMA};

/// Why an ONVIF request failed, as an installer reads it.
#[derive(Debug, thiserror::Error)]
pub enum OnvifError {
    #[error("the camera cannot be reached: {0}")]
    Unreachable(String),
    #[error("the camera refused the username or password (ONVIF NotAuthorized)")]
    NotAuthorized,
    #[error("the camera offers no ONVIF media service")]
    NoMediaService,
    #[error("the camera has no H.264 or H.265 video profile with a stream address")]
    NoVideoProfile,
    #[error("the camera answered with an ONVIF fault {code}: {reason}")]
    Fault { code: String, reason: String },
    #[error("the camera's answer is not what ONVIF describes: {0}")]
    Malformed(String),
    #[error("the camera did not answer in time")]
    Timeout,
}

/// Who the camera says it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
    pub serial: String,
}

/// One reading of the camera's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CameraClock {
    /// The camera's UTC time (ONVIF gives whole seconds).
    pub camera_utc_ms: i64,
    /// This box's UTC time at the midpoint of the request.
    pub local_utc_ms: i64,
    /// camera - local (so with a resolution of about a second).
    pub drift_ms: i64,
    /// Whether the camera sets its clock by NTP.
    pub ntp: bool,
}

/// The addresses of a camera's services other than the device service.
#[derive(Clone, Debug, Default)]
struct Services {
    media: Option<Url>,
    ptz: Option<Url>,
    events: Option<Url>,
}

/// One camera's ONVIF device service.
pub struct Device {
    url: Url,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
    /// camera - local, in ms, once read.
    offset_ms: Mutex<Option<i64>>,
    services: Mutex<Option<Services>>,
}

fn now_ms() -> i64 {
    crate::base::clock::now_ns() / 1_000_000
}

impl Device {
    pub fn new(device_url: Url, username: Option<String>, password: Option<Zeroizing<String>>) -> Device {
        Device {
            url: device_url,
            username,
            password,
            offset_ms: Mutex::new(None),
            services: Mutex::new(None),
        }
    }

    /// The device service's address.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends `body` to `url` (signed when there is a login) and returns the
    /// checked answer. `to` adds a WS-Addressing `To` (pull points).
    async fn call_at(&self, url: &Url, body: &str, to: Option<&str>, wait: Duration) -> Result<String, OnvifError> {
        let offset = self.offset().await?;
        let login = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(soap::Login {
                username: u,
                password: p,
                camera_now_ms: now_ms() + offset,
            }),
            _ => None,
        };
        let envelope = soap::envelope(body, login.as_ref(), to)?;
        let (status, xml) = soap::post(url, envelope, wait).await?;
        soap::check_answer(status, &xml)
    }

    async fn call(&self, body: &str) -> Result<String, OnvifError> {
        self.call_at(&self.url, body, None, soap::ANSWER_TIMEOUT).await
    }

    /// camera - local in ms, read from the camera once.
    async fn offset(&self) -> Result<i64, OnvifError> {
        if let Some(o) = *self.offset_ms.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(o);
        }
        let c = self.clock().await?;
        Ok(c.drift_ms)
    }

    fn forget_offset(&self) {
        *self.offset_ms.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// GetDeviceInformation.
    pub async fn information(&self) -> Result<DeviceInfo, OnvifError> {
        let xml = self
            .call(&format!("<GetDeviceInformation xmlns=\"{NS_DEVICE}\"/>"))
            .await?;
        let doc = soap::parse(&xml)?;
        let r = soap::descendant(doc.root(), NS_DEVICE, "GetDeviceInformationResponse")
            .ok_or_else(|| OnvifError::Malformed("no GetDeviceInformationResponse".into()))?;
        // Shown in a terminal and the UI: no control character, bounded.
        let t = |name| crate::base::text::one_line(soap::text_of(r, NS_DEVICE, name).unwrap_or(""), 128);
        Ok(DeviceInfo {
            manufacturer: t("Manufacturer"),
            model: t("Model"),
            firmware: t("FirmwareVersion"),
            serial: t("SerialNumber"),
        })
    }

    /// GetSystemDateAndTime (unauthenticated, as ONVIF allows): the camera's
    /// clock against this box's. Also remembers the offset for signing.
    pub async fn clock(&self) -> Result<CameraClock, OnvifError> {
        let envelope = soap::envelope(&format!("<GetSystemDateAndTime xmlns=\"{NS_DEVICE}\"/>"), None, None)?;
        let before = now_ms();
        let (status, xml) = soap::post(&self.url, envelope, soap::ANSWER_TIMEOUT).await?;
        let after = now_ms();
        let xml = soap::check_answer(status, &xml)?;
        let (mut camera_utc_ms, ntp) = parse_clock(&xml)?;
        // ONVIF's clock has whole seconds, cut (not rounded) by cameras: the
        // camera's time was on average half a second past what it said.
        if camera_utc_ms.rem_euclid(1000) == 0 {
            camera_utc_ms += 500;
        }
        let local_utc_ms = before + (after - before) / 2;
        let drift_ms = camera_utc_ms - local_utc_ms;
        *self.offset_ms.lock().unwrap_or_else(|p| p.into_inner()) = Some(drift_ms);
        Ok(CameraClock {
            camera_utc_ms,
            local_utc_ms,
            drift_ms,
            ntp,
        })
    }

    /// SetSystemDateAndTime, Manual, to `utc_ms` (whole seconds).
    pub async fn set_clock_utc(&self, utc_ms: i64) -> Result<(), OnvifError> {
        // To the nearest second (ONVIF sets whole seconds): off by half a second at most.
        let t = time::OffsetDateTime::from_unix_timestamp((utc_ms + 500).div_euclid(1000))
            .map_err(|e| OnvifError::Malformed(format!("time out of range: {e}")))?;
        let body = format!(
            "<tds:SetSystemDateAndTime xmlns:tds=\"{NS_DEVICE}\" xmlns:tt=\"{NS_SCHEMA}\">\
             <tds:DateTimeType>Manual</tds:DateTimeType><tds:DaylightSavings>false</tds:DaylightSavings>\
             <tds:UTCDateTime><tt:Date><tt:Year>{}</tt:Year><tt:Month>{}</tt:Month><tt:Day>{}</tt:Day></tt:Date>\
             <tt:Time><tt:Hour>{}</tt:Hour><tt:Minute>{}</tt:Minute><tt:Second>{}</tt:Second></tt:Time></tds:UTCDateTime>\
             </tds:SetSystemDateAndTime>",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let r = self.call(&body).await;
        self.forget_offset();
        r.map(|_| ())
    }

    /// Points the camera's clock at the NTP `server` (an IPv4 address or a
    /// DNS name): SetNTP, then SetSystemDateAndTime NTP.
    pub async fn set_ntp(&self, server: &str) -> Result<(), OnvifError> {
        let manual = match server.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => format!("<tt:Type>IPv4</tt:Type><tt:IPv4Address>{ip}</tt:IPv4Address>"),
            Err(_) => format!(
                "<tt:Type>DNS</tt:Type><tt:DNSname>{}</tt:DNSname>",
                soap::escape(server)
            ),
        };
        self.call(&format!(
            "<tds:SetNTP xmlns:tds=\"{NS_DEVICE}\" xmlns:tt=\"{NS_SCHEMA}\">\
             <tds:FromDHCP>false</tds:FromDHCP><tds:NTPManual>{manual}</tds:NTPManual></tds:SetNTP>"
        ))
        .await?;
        let r = self
            .call(&format!(
                "<tds:SetSystemDateAndTime xmlns:tds=\"{NS_DEVICE}\">\
                 <tds:DateTimeType>NTP</tds:DateTimeType><tds:DaylightSavings>false</tds:DaylightSavings>\
                 </tds:SetSystemDateAndTime>"
            ))
            .await;
        self.forget_offset();
        r.map(|_| ())
    }

    /// The media, PTZ and events services' addresses (GetServices, or
    /// GetCapabilities for cameras without it), read once.
    async fn services(&self) -> Result<Services, OnvifError> {
        if let Some(s) = self.services.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(s);
        }
        let s = match self
            .call(&format!(
                "<GetServices xmlns=\"{NS_DEVICE}\"><IncludeCapability>false</IncludeCapability></GetServices>"
            ))
            .await
        {
            Ok(xml) => parse_services(&xml)?,
            Err(OnvifError::Fault { .. }) => parse_capabilities(
                &self
                    .call(&format!(
                        "<GetCapabilities xmlns=\"{NS_DEVICE}\"><Category>All</Category></GetCapabilities>"
                    ))
                    .await?,
            )?,
            Err(e) => return Err(e),
        };
        *self.services.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
        Ok(s)
    }
}

/// The camera's UTC time (ms) and whether it uses NTP, from a
/// GetSystemDateAndTimeResponse.
fn parse_clock(xml: &str) -> Result<(i64, bool), OnvifError> {
    let doc = soap::parse(xml)?;
    let sdt = soap::descendant(doc.root(), NS_DEVICE, "SystemDateAndTime")
        .ok_or_else(|| OnvifError::Malformed("no SystemDateAndTime".into()))?;
    let ntp = soap::text_of(sdt, NS_SCHEMA, "DateTimeType") == Some("NTP");
    let utc = soap::descendant(sdt, NS_SCHEMA, "UTCDateTime")
        .ok_or_else(|| OnvifError::Malformed("the camera gives no UTC time (UTCDateTime)".into()))?;
    let num = |name: &str| -> Result<i64, OnvifError> {
        soap::required(utc, NS_SCHEMA, name)?
            .parse::<i64>()
            .map_err(|_| OnvifError::Malformed(format!("{name} is not a number")))
    };
    let month = time::Month::try_from(u8::try_from(num("Month")?).unwrap_or(0))
        .map_err(|_| OnvifError::Malformed("Month is out of range".into()))?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num("Year")?).unwrap_or(0),
        month,
        u8::try_from(num("Day")?).unwrap_or(0),
    )
    .map_err(|e| OnvifError::Malformed(format!("the camera's date is invalid: {e}")))?;
    let small = |v: i64| u8::try_from(v).unwrap_or(u8::MAX);
    let t = time::Time::from_hms(small(num("Hour")?), small(num("Minute")?), small(num("Second")?))
        .map_err(|e| OnvifError::Malformed(format!("the camera's time is invalid: {e}")))?;
    let dt = time::PrimitiveDateTime::new(date, t).assume_utc();
    Ok((dt.unix_timestamp() * 1000, ntp))
}

fn xaddr(text: &str) -> Option<Url> {
    Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

fn parse_services(xml: &str) -> Result<Services, OnvifError> {
    let doc = soap::parse(xml)?;
    let mut s = Services::default();
    for svc in soap::descendants(doc.root(), NS_DEVICE, "Service") {
        let ns = soap::child(svc, NS_DEVICE, "Namespace")
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim();
        let addr = soap::child(svc, NS_DEVICE, "XAddr")
            .and_then(|n| n.text())
            .and_then(xaddr);
        match ns {
            soap::NS_MEDIA => s.media = s.media.or(addr),
            soap::NS_PTZ => s.ptz = s.ptz.or(addr),
            soap::NS_EVENTS => s.events = s.events.or(addr),
            _ => {}
        }
    }
    Ok(s)
}

fn parse_capabilities(xml: &str) -> Result<Services, OnvifError> {
    let doc = soap::parse(xml)?;
    let caps = soap::descendant(doc.root(), NS_DEVICE, "Capabilities")
        .ok_or_else(|| OnvifError::Malformed("no Capabilities".into()))?;
    let of = |name: &str| {
        soap::descendant(caps, NS_SCHEMA, name)
            .and_then(|n| soap::child(n, NS_SCHEMA, "XAddr"))
            .and_then(|n| n.text())
            .and_then(xaddr)
    };
    Ok(Services {
        media: of("Media"),
        ptz: of("PTZ"),
        events: of("Events"),
    })
}

/// The main and sub stream among `profiles`: main the H.264/H.265 profile
/// with a stream address and the most pixels, sub the one with the fewest
/// among the others (if any).
pub fn choose_streams(profiles: &[MediaProfile]) -> Result<(MediaProfile, Option<MediaProfile>), OnvifError> {
    let mut video: Vec<&MediaProfile> = profiles
        .iter()
        .filter(|p| matches!(p.codec.as_str(), "H264" | "H265") && p.stream_uri.is_some())
        .collect();
    video.sort_by_key(|p| std::cmp::Reverse(u64::from(p.width) * u64::from(p.height)));
    let main = video.first().copied().cloned().ok_or(OnvifError::NoVideoProfile)?;
    let sub = video
        .iter()
        .skip(1)
        .filter(|p| p.stream_uri != main.stream_uri)
        .min_by_key(|p| u64::from(p.width) * u64::from(p.height))
        .map(|p| (*p).clone());
    Ok((main, sub))
}

/// Why [`measure_clock`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Camera(#[from] OnvifError),
    #[error("the camera's clock could not be stored: {0}")]
    Db(String),
}

/// Reads `camera`'s clock through `device` and stores its drift
/// (`db::camera_clock::record`, source "onvif", which raises or clears the
/// `camera.clock_drift` alert) in the index at `db_path`.
pub async fn measure_clock(
    device: &Device,
    camera: &str,
    db_path: &std::path::Path,
) -> Result<CameraClock, MeasureError> {
    let clock = device.clock().await?;
    let camera = camera.to_string();
    crate::db::Index::on_blocking_thread(db_path, move |idx| {
        let source = crate::db::camera_clock::Source::Onvif;
        crate::db::camera_clock::record(idx, &camera, clock.drift_ms, source, crate::base::clock::now_ns())
    })
    .await
    .map_err(MeasureError::Db)?;
    Ok(clock)
}

#[cfg(test)]
mod tests;
