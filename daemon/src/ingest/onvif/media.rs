//! The media service (ONVIF Media ver10): a camera's profiles (codec, size,
//! frame rate) and, for each H.264/H.265 one, its RTSP stream address.

use url::Url;

use super::soap::{self, NS_MEDIA, NS_SCHEMA};
use super::{Device, OnvifError};

/// One media profile.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaProfile {
    pub token: String,
    pub name: String,
    /// "H264", "H265", or what else the camera says ("JPEG", ...; "" for none).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    /// The RTSP address (RTP-Unicast over RTSP), for H.264/H.265 profiles.
    pub stream_uri: Option<Url>,
}

impl MediaProfile {
    /// "H264 1280x720 25 fps".
    pub fn describe(&self) -> String {
        let fps = match self.fps {
            Some(f) => format!(" {f} fps"),
            None => String::new(),
        };
        format!("{} {}x{}{fps}", self.codec, self.width, self.height)
    }
}

impl Device {
    async fn media_url(&self) -> Result<Url, OnvifError> {
        self.services().await?.media.ok_or(OnvifError::NoMediaService)
    }

    /// GetProfiles, then GetStreamUri (RTP-Unicast, RTSP) for each H.264 or
    /// H.265 profile.
    pub async fn profiles(&self) -> Result<Vec<MediaProfile>, OnvifError> {
        let media = self.media_url().await?;
        let xml = self
            .call_at(
                &media,
                &format!("<GetProfiles xmlns=\"{NS_MEDIA}\"/>"),
                None,
                soap::ANSWER_TIMEOUT,
            )
            .await?;
        let mut profiles = parse_profiles(&xml)?;
        for p in profiles
            .iter_mut()
            .filter(|p| matches!(p.codec.as_str(), "H264" | "H265"))
        {
            let body = format!(
                "<trt:GetStreamUri xmlns:trt=\"{NS_MEDIA}\" xmlns:tt=\"{NS_SCHEMA}\">\
                 <trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream>\
                 <tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>\
                 <trt:ProfileToken>{}</trt:ProfileToken></trt:GetStreamUri>",
                soap::escape(&p.token)
            );
            let xml = self.call_at(&media, &body, None, soap::ANSWER_TIMEOUT).await?;
            p.stream_uri = parse_stream_uri(&xml)?;
        }
        Ok(profiles)
    }
}

/// The profiles of a GetProfilesResponse (no stream addresses yet).
pub fn parse_profiles(xml: &str) -> Result<Vec<MediaProfile>, OnvifError> {
    let doc = soap::parse(xml)?;
    let resp = soap::descendant(doc.root(), NS_MEDIA, "GetProfilesResponse")
        .ok_or_else(|| OnvifError::Malformed("no GetProfilesResponse".into()))?;
    let mut out = Vec::new();
    for p in soap::descendants(resp, NS_MEDIA, "Profiles") {
        let Some(token) = p.attribute("token") else {
            continue;
        };
        let name = soap::child(p, NS_SCHEMA, "Name")
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim()
            .to_string();
        let enc = soap::child(p, NS_SCHEMA, "VideoEncoderConfiguration");
        let num = |local: &str| {
            enc.and_then(|e| soap::descendant(e, NS_SCHEMA, "Resolution"))
                .and_then(|r| soap::text_of(r, NS_SCHEMA, local))
                .and_then(|t| t.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let fps = enc
            .and_then(|e| soap::text_of(e, NS_SCHEMA, "FrameRateLimit"))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f > 0.0);
        let codec = enc
            .and_then(|e| soap::child(e, NS_SCHEMA, "Encoding"))
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim();
        let codec = match codec.to_ascii_uppercase().replace(['.', '-'], "").as_str() {
            "H264" => "H264".to_string(),
            "H265" | "HEVC" => "H265".to_string(),
            _ => codec.to_string(),
        };
        out.push(MediaProfile {
            token: token.to_string(),
            name,
            codec,
            width: num("Width"),
            height: num("Height"),
            fps,
            stream_uri: None,
        });
    }
    Ok(out)
}

/// The `MediaUri/Uri` of a GetStreamUriResponse, when it is an rtsp:// URL.
pub fn parse_stream_uri(xml: &str) -> Result<Option<Url>, OnvifError> {
    let doc = soap::parse(xml)?;
    let uri = soap::descendant(doc.root(), NS_MEDIA, "MediaUri")
        .and_then(|m| soap::text_of(m, NS_SCHEMA, "Uri"))
        .ok_or_else(|| OnvifError::Malformed("GetStreamUri gave no MediaUri".into()))?;
    Ok(Url::parse(uri).ok().filter(|u| matches!(u.scheme(), "rtsp" | "rtsps")))
}
