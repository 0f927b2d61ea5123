//! Client networks: the unit that connection caps and the audit of refused
//! logins count by, so that one host cannot pass for many by using more of
//! its addresses.

use std::net::IpAddr;

/// A /24 (IPv4) or /64 (IPv6) network; IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 3]),
    V6([u16; 4]),
}

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let o = a.octets();
                Network::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(a) => {
                let s = a.segments();
                Network::V6([s[0], s[1], s[2], s[3]])
            }
        }
    }
}

impl std::fmt::Display for Network {
    /// `192.0.2.0/24`, `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Network::V6([a, b, c, d]) => write!(f, "{a:x}:{b:x}:{c:x}:{d:x}::/64"),
        }
    }
}

/// A client's own address, as the login throttle counts it: an IPv4 address
/// (an IPv4-mapped IPv6 one as IPv4), or an IPv6 client's /64, since one host
/// holds a whole /64 and could otherwise rotate addresses for fresh budgets.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(Network::of(ip("10.1.2.3")), Network::of(ip("10.1.2.250")));
        assert_ne!(Network::of(ip("10.1.2.3")), Network::of(ip("10.1.3.3")));
        assert_eq!(Network::of(ip("::ffff:10.1.2.3")), Network::of(ip("10.1.2.9")));
        assert_eq!(
            Network::of(ip("2001:db8:1:2::1")),
            Network::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(Network::of(ip("2001:db8:1:2::1")), Network::of(ip("2001:db8:1:3::1")));
    }
}
