//! `[onvif]`: the interface WS-Discovery probes go out of. Discovery needs
//! it named (an IPv4 address of this box): a probe never goes out by the
//! default route's multicast.

use std::net::Ipv4Addr;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Src};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnvif {
    discovery_interface: Option<Spanned<String>>,
}

/// `[onvif]`; all unset when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnvifConfig {
    /// The IPv4 address of the interface discovery probes go out of.
    pub discovery_interface: Option<Ipv4Addr>,
}

/// What discovery says when no interface is named.
pub const NO_DISCOVERY_INTERFACE: &str = "camera discovery needs the network interface to probe from: \
     set discovery_interface = \"<this box's IPv4 address on the camera network>\" under [onvif] in vigil.toml \
     (or give --interface ADDR)";

/// `text` as an interface address discovery may use: a unicast IPv4
/// address (not 0.0.0.0, broadcast or multicast).
pub fn interface_address(text: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = text
        .trim()
        .parse()
        .map_err(|_| format!("\"{text}\" is not an IPv4 address (example: 192.168.1.10)"))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(format!(
            "\"{text}\" is not an interface address: give this box's own IPv4 address on the camera network"
        ));
    }
    Ok(ip)
}

impl OnvifConfig {
    /// The interface to probe from: `given` (the command line's or the
    /// request's), else the configured one, else an error naming the setting.
    pub fn discovery_interface(&self, given: Option<&str>) -> Result<Ipv4Addr, String> {
        match given.filter(|g| !g.trim().is_empty()) {
            Some(g) => interface_address(g),
            None => self
                .discovery_interface
                .ok_or_else(|| NO_DISCOVERY_INTERFACE.to_string()),
        }
    }
}

pub(super) fn parse(src: &Src<'_>, raw: Spanned<RawOnvif>) -> Result<OnvifConfig, ConfigError> {
    let raw = raw.into_inner();
    let discovery_interface = match raw.discovery_interface {
        None => None,
        Some(s) => Some(interface_address(s.get_ref()).map_err(|m| src.err(s.span(), "onvif.discovery_interface", m))?),
    };
    Ok(OnvifConfig { discovery_interface })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_is_a_unicast_ipv4_address() {
        assert_eq!(interface_address("127.0.0.1"), Ok(Ipv4Addr::LOCALHOST));
        for bad in ["0.0.0.0", "255.255.255.255", "239.255.255.250", "eth0", "::1"] {
            assert!(interface_address(bad).is_err(), "{bad}");
        }
        let none = OnvifConfig::default();
        assert!(none
            .discovery_interface(None)
            .unwrap_err()
            .contains("discovery_interface"));
        assert_eq!(
            none.discovery_interface(Some("10.0.0.2")),
            Ok(Ipv4Addr::new(10, 0, 0, 2))
        );
        let set = OnvifConfig {
            discovery_interface: Some(Ipv4Addr::LOCALHOST),
        };
        assert_eq!(set.discovery_interface(None), Ok(Ipv4Addr::LOCALHOST));
    }
}
