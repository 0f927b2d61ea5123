//! Board profiles (`board/profiles/*.toml`, compiled in): which storage
//! device holds the recordings volume, which cipher it uses, the watchdog
//! device, status LEDs and default cameras. `vigil board detect` picks one
//! from `/proc/device-tree/compatible` (ARM boards) or DMI (PCs and VMs).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Device-tree `compatible` strings, any of which selects this profile.
    pub compatible: Vec<String>,
    /// DMI `sys_vendor` values, any of which selects this profile.
    pub dmi: Vec<String>,
    pub storage_device: String,
    /// A dm-crypt cipher, or "auto": AES-XTS when the CPU has AES
    /// instructions, else Adiantum.
    pub cipher: String,
    pub watchdog: String,
    pub led_status: String,
    pub led_fault: String,
    pub cameras: Vec<String>,
}

const SOURCES: [(&str, &str); 5] = [
    (
        "raspberrypi4",
        include_str!("../../../board/profiles/raspberrypi4.toml"),
    ),
    (
        "raspberrypi5",
        include_str!("../../../board/profiles/raspberrypi5.toml"),
    ),
    ("rk3588", include_str!("../../../board/profiles/rk3588.toml")),
    (
        "qemu-virt-aarch64",
        include_str!("../../../board/profiles/qemu-virt-aarch64.toml"),
    ),
    (
        "qemu-virt-x86_64",
        include_str!("../../../board/profiles/qemu-virt-x86_64.toml"),
    ),
];

pub const ADIANTUM: &str = "xchacha12,aes-adiantum-plain64";
pub const AES_XTS: &str = "aes-xts-plain64";

/// Every compiled-in profile. An unparsable one is a build defect, caught
/// by the unit test; at run time it is skipped with an error.
pub fn profiles() -> Vec<Profile> {
    SOURCES
        .iter()
        .filter_map(|(n, t)| match toml::from_str::<Profile>(t) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("board profile {n}: {e}");
                None
            }
        })
        .collect()
}

/// What identifies the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub compatible: Vec<String>,
    pub dmi_vendor: Option<String>,
    pub dmi_product: Option<String>,
}

/// Reads the device tree's `compatible` (NUL-separated) and DMI.
pub fn identity() -> Identity {
    let compatible = std::fs::read("/proc/device-tree/compatible")
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).to_string())
                .collect()
        })
        .unwrap_or_default();
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{f}"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Identity {
        compatible,
        dmi_vendor: read("sys_vendor"),
        dmi_product: read("product_name"),
    }
}

/// The profile for `id`: the first device-tree string (most specific first)
/// that a profile names, else a DMI vendor match.
pub fn detect<'a>(id: &Identity, profiles: &'a [Profile]) -> Option<&'a Profile> {
    for c in &id.compatible {
        if let Some(p) = profiles.iter().find(|p| p.compatible.iter().any(|x| x == c)) {
            return Some(p);
        }
    }
    let vendor = id.dmi_vendor.as_deref()?;
    profiles.iter().find(|p| p.dmi.iter().any(|d| d == vendor))
}

/// Whether this CPU has AES instructions (x86 `aes`, ARM `aes` feature).
pub fn cpu_has_aes() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
                .any(|l| l.split_whitespace().any(|w| w == "aes"))
        })
        .unwrap_or(false)
}

/// The cipher to format the recordings volume with.
pub fn cipher(p: &Profile, has_aes: bool) -> &str {
    match p.cipher.as_str() {
        "auto" if has_aes => AES_XTS,
        "auto" => ADIANTUM,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_and_each_board_is_detected() {
        let ps = profiles();
        assert_eq!(ps.len(), SOURCES.len());
        for (n, _) in SOURCES {
            assert!(ps.iter().any(|p| p.name == n), "{n}");
        }
        let dt = |c: &[&str]| Identity {
            compatible: c.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let name = |id: &Identity| detect(id, &ps).map(|p| p.name.clone());
        assert_eq!(
            name(&dt(&["raspberrypi,4-model-b", "brcm,bcm2711"])).as_deref(),
            Some("raspberrypi4")
        );
        assert_eq!(
            name(&dt(&["raspberrypi,5-model-b", "brcm,bcm2712"])).as_deref(),
            Some("raspberrypi5")
        );
        assert_eq!(
            name(&dt(&["radxa,rock-5b", "rockchip,rk3588"])).as_deref(),
            Some("rk3588")
        );
        assert_eq!(name(&dt(&["linux,dummy-virt"])).as_deref(), Some("qemu-virt-aarch64"));
        let qemu = Identity {
            dmi_vendor: Some("QEMU".into()),
            ..Default::default()
        };
        assert_eq!(name(&qemu).as_deref(), Some("qemu-virt-x86_64"));
        assert_eq!(name(&dt(&["acme,unknown"])), None);
        // The Pi 4 has no AES instructions: Adiantum; "auto" follows the CPU.
        let pi4 = ps.iter().find(|p| p.name == "raspberrypi4").unwrap();
        assert_eq!(cipher(pi4, false), ADIANTUM);
        let q = ps.iter().find(|p| p.name == "qemu-virt-x86_64").unwrap();
        assert_eq!(cipher(q, true), AES_XTS);
        assert_eq!(cipher(q, false), ADIANTUM);
    }
}
