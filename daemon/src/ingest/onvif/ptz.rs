//! PTZ (ONVIF PTZ ver20) on one media profile: continuous move, stop, and
//! presets (go to, set, list).

use super::soap::{self, NS_PTZ, NS_SCHEMA};
use super::{Device, OnvifError};

/// The PTZ of one profile of a camera.
/// The longest a continuous move lasts without being sent again (the web
/// UI sends it again while a button is held).
pub const MOVE_TIMEOUT_S: u32 = 10;

pub struct Ptz<'a> {
    device: &'a Device,
    profile: String,
}

impl Device {
    /// PTZ on the profile `profile_token`.
    pub fn ptz(&self, profile_token: &str) -> Ptz<'_> {
        Ptz {
            device: self,
            profile: profile_token.to_string(),
        }
    }
}

/// `v` clamped to -1..=1 (ONVIF's generic velocity space); NaN is 0.
fn velocity(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-1.0, 1.0)
    }
}

impl Ptz<'_> {
    async fn call(&self, body: &str) -> Result<String, OnvifError> {
        let url = self.device.services().await?.ptz.ok_or_else(|| OnvifError::Fault {
            code: "NoPTZService".into(),
            reason: "the camera offers no PTZ service".into(),
        })?;
        self.device.call_at(&url, body, None, soap::ANSWER_TIMEOUT).await
    }

    fn token(&self) -> String {
        format!("<tptz:ProfileToken>{}</tptz:ProfileToken>", soap::escape(&self.profile))
    }

    /// ContinuousMove with pan/tilt velocity `x`, `y` and zoom `zoom` (each
    /// -1..1), for at most [`MOVE_TIMEOUT_S`] s: a stop that never comes (a
    /// closed tab, a lost connection) does not leave the camera turning.
    pub async fn continuous_move(&self, x: f64, y: f64, zoom: f64) -> Result<(), OnvifError> {
        self.call(&format!(
            "<tptz:ContinuousMove xmlns:tptz=\"{NS_PTZ}\" xmlns:tt=\"{NS_SCHEMA}\">{}\
             <tptz:Velocity><tt:PanTilt x=\"{}\" y=\"{}\"/><tt:Zoom x=\"{}\"/></tptz:Velocity>\
             <tptz:Timeout>PT{MOVE_TIMEOUT_S}S</tptz:Timeout></tptz:ContinuousMove>",
            self.token(),
            velocity(x),
            velocity(y),
            velocity(zoom)
        ))
        .await
        .map(|_| ())
    }

    /// Stop (pan, tilt and zoom).
    pub async fn stop(&self) -> Result<(), OnvifError> {
        self.call(&format!(
            "<tptz:Stop xmlns:tptz=\"{NS_PTZ}\">{}<tptz:PanTilt>true</tptz:PanTilt><tptz:Zoom>true</tptz:Zoom></tptz:Stop>",
            self.token()
        ))
        .await
        .map(|_| ())
    }

    /// GotoPreset `preset`.
    pub async fn goto_preset(&self, preset: &str) -> Result<(), OnvifError> {
        self.call(&format!(
            "<tptz:GotoPreset xmlns:tptz=\"{NS_PTZ}\">{}<tptz:PresetToken>{}</tptz:PresetToken></tptz:GotoPreset>",
            self.token(),
            soap::escape(preset)
        ))
        .await
        .map(|_| ())
    }

    /// SetPreset named `name` at the current position; returns its token.
    pub async fn set_preset(&self, name: &str) -> Result<String, OnvifError> {
        let xml = self
            .call(&format!(
                "<tptz:SetPreset xmlns:tptz=\"{NS_PTZ}\">{}<tptz:PresetName>{}</tptz:PresetName></tptz:SetPreset>",
                self.token(),
                soap::escape(name)
            ))
            .await?;
        let doc = soap::parse(&xml)?;
        Ok(soap::required(doc.root(), NS_PTZ, "PresetToken")?.to_string())
    }

    /// GetPresets: (token, name) of each.
    pub async fn presets(&self) -> Result<Vec<(String, String)>, OnvifError> {
        let xml = self
            .call(&format!(
                "<tptz:GetPresets xmlns:tptz=\"{NS_PTZ}\">{}</tptz:GetPresets>",
                self.token()
            ))
            .await?;
        parse_presets(&xml)
    }
}

/// The (token, name) of each Preset of a GetPresetsResponse.
pub fn parse_presets(xml: &str) -> Result<Vec<(String, String)>, OnvifError> {
    let doc = soap::parse(xml)?;
    Ok(soap::descendants(doc.root(), NS_PTZ, "Preset")
        .filter_map(|p| {
            let token = p.attribute("token")?.to_string();
            let name = soap::text_of(p, NS_SCHEMA, "Name").unwrap_or("").to_string();
            Some((token, name))
        })
        .collect())
}
