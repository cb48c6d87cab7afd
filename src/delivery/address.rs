//! Which addresses eventd may connect to. By default only global unicast: loopback, private,
//! link-local, CGNAT, unique-local, multicast, documentation and reserved ranges are refused,
//! also when written as IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 addresses.
//! Operators open ranges with `EVENTD_ALLOW_PRIVATE_TARGETS` (a CIDR list).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        AddressPolicy { allow }
    }

    /// Parses `127.0.0.0/8,::1/128` (a bare address counts as a single-host network).
    pub fn parse_allow_list(s: &str) -> Result<Vec<IpNet>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("'{p}' is not a CIDR range such as 127.0.0.0/8"))
            })
            .collect()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let embedded = embedded_v4(ip).map(IpAddr::V4);
        let allowed = |a: IpAddr| self.allow.iter().any(|net| net.contains(&a));
        if allowed(ip) || embedded.is_some_and(allowed) {
            return true;
        }
        match (ip, embedded) {
            (_, Some(v4)) => is_global(v4),
            (ip, None) => is_global(ip),
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) IPv6 address.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network"
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 169 && b == 254)              // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))  // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b))  // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00      // unique local
        || (s[0] & 0xffc0) == 0xfe80      // link-local
        || (s[0] & 0xffc0) == 0xfec0      // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00      // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0)  // Teredo (hides an IPv4 address)
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &AddressPolicy, cases: &[(&str, bool)]) {
        for (ip, expected) in cases {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(policy.permits(addr), *expected, "{ip}");
        }
    }

    #[test]
    fn default_policy_refuses_everything_but_global_unicast() {
        check(
            &AddressPolicy::default(),
            &[
                ("8.8.8.8", true),
                ("1.1.1.1", true),
                ("2606:4700::1111", true),
                ("127.0.0.1", false),
                ("127.8.9.10", false),
                ("10.0.0.5", false),
                ("172.16.0.1", false),
                ("172.31.255.255", false),
                ("172.32.0.1", true),
                ("192.168.1.1", false),
                ("169.254.169.254", false),
                ("100.64.0.1", false),
                ("0.0.0.0", false),
                ("224.0.0.1", false),
                ("255.255.255.255", false),
                ("::1", false),
                ("::", false),
                ("fd00::1", false),
                ("fe80::1", false),
                ("ff02::1", false),
                ("::ffff:127.0.0.1", false),
                ("::ffff:169.254.169.254", false),
                ("::ffff:8.8.8.8", true),
                ("::127.0.0.1", false),
                ("64:ff9b::a9fe:a9fe", false),
                ("64:ff9b::808:808", true),
                ("2002:7f00:1::", false),
                ("2002:a9fe:a9fe::1", false),
                ("2002:808:808::1", true),
                ("2001:db8::1", false),
                ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),
            ],
        );
    }

    #[test]
    fn allow_list_opens_ranges_in_every_form() {
        let allow = AddressPolicy::parse_allow_list("127.0.0.0/8, ::1/128").unwrap();
        check(
            &AddressPolicy::new(allow),
            &[
                ("127.0.0.1", true),
                ("::1", true),
                ("::ffff:127.0.0.1", true),
                ("10.0.0.5", false),
                ("169.254.169.254", false),
            ],
        );
        assert!(AddressPolicy::parse_allow_list("nonsense").is_err());
    }
}
