//! The client's address (SPEC section 17): the peer's, or, from a trusted reverse proxy, the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy; and the key the
//! per-address limits count it under (an IPv6 address per /64).
//!
//! `X-Forwarded-For` comes from the network, so its parsing is bounded: the header is at most
//! `max_handshake_size` bytes (the request's own bound; repeated headers are joined with
//! commas, in order), at most [`MAX_HOPS`] entries are looked at, from the right, and an entry
//! longer than any address is garbage. An entry that is not an address stops the walk: the
//! client is then the last trusted hop, the one that handed the garbage over. (A trusted proxy
//! writes addresses; whatever else is in the header was written by whoever it forwarded.)

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `X-Forwarded-For` entries looked at, from the right: more trusted proxies in a row than
/// any real deployment chains.
pub const MAX_HOPS: usize = 32;

/// The most `trusted_proxies` entries accepted.
pub const MAX_TRUSTED: usize = 1024;

/// Longer than any address entry can be: `[v6]:port` with every group written out is 47
/// bytes, 53 with an embedded IPv4 address (`[0000:...:ffff:255.255.255.255]:65535`).
const MAX_ENTRY: usize = 64;

/// An address, or a range of them in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `203.0.113.7`, `10.0.0.0/8`, `::1`, `2001:db8::/32`. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) is its IPv4 address, as peers are compared that way too.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an IP address or CIDR range");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net = addr.parse::<IpAddr>().map_err(|_| bad())?;
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
        let (net, prefix) = match (net, prefix.map(parse_prefix)) {
            (IpAddr::V6(v6), Some(Some(p))) if v6.to_ipv4_mapped().is_some() && p >= 96 => {
                (canonical(net), Some(Some(p - 96)))
            }
            (net, prefix) => (canonical(net), prefix),
        };
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(Some(p)) if p <= bits => p,
            Some(_) => return Err(format!("`{text}`: the prefix length must be 0 to {bits}")),
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A prefix length as written: 1 to 3 ASCII digits without a leading zero (`u8::from_str`
/// would also take `+8`).
fn parse_prefix(text: &str) -> Option<u8> {
    let digits = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    (digits && !leading_zero)
        .then(|| text.parse().ok())
        .flatten()
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses the configured entries; the error names the first bad one.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        if entries.len() > MAX_TRUSTED {
            return Err(format!("at most {MAX_TRUSTED} entries"));
        }
        entries
            .iter()
            .map(|e| Cidr::parse(e.trim()))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client address of a request that came from `peer` with `forwarded_for` (the
    /// `X-Forwarded-For` value, repeated headers joined with commas): see the module docs.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        let Some(header) = forwarded_for.filter(|_| self.contains(peer)) else {
            return peer;
        };
        let mut client = peer;
        // Empty elements are allowed in HTTP lists; they count as hops looked at, so a header
        // of a million commas costs MAX_HOPS steps.
        for entry in header.rsplit(',').take(MAX_HOPS) {
            let entry = entry.trim_matches([' ', '\t']);
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = canonical(ip);
            if !self.contains(client) {
                return client;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, also `v4:port`, `[v6]` and `[v6]:port` (as some
/// proxies write them). Anything else (`unknown`, an obfuscated `_id`, a zone index, garbage)
/// is `None`.
pub fn parse_entry(entry: &str) -> Option<IpAddr> {
    if entry.len() > MAX_ENTRY {
        return None;
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    let is_port = |p: &str| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port_ok = tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port);
        return port_ok
            .then(|| host.parse::<Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    let (host, port) = entry.split_once(':')?;
    is_port(port)
        .then(|| host.parse::<Ipv4Addr>().ok().map(IpAddr::V4))
        .flatten()
}

/// What the per-address limits count a client under: its IPv4 address, or the /64 of its IPv6
/// address (one customer's network: a host picks any of its 2^64 addresses at will).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(u32),
    V6(u64),
}

impl AddrKey {
    /// The key of a client address.
    pub fn of(ip: IpAddr) -> AddrKey {
        match canonical(ip) {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => AddrKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddrKey::V4(v4) => write!(f, "{}", Ipv4Addr::from(v4)),
            AddrKey::V6(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(net) << 64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn cidr_ranges() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(
            c.contains(ip("::ffff:10.1.2.3")),
            "a mapped peer is its IPv4 address"
        );
        assert!(!c.contains(ip("::1")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains(ip("10.9.9.9")) && !mapped.contains(ip("11.0.0.0")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "host",
            "10.0.0/8",
            "1.2.3.4/8/8",
            " 1.2.3.4",
            "fe80::1%eth0",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "2001:db8::1"]);
        let proxy = ip("10.0.0.2");
        // Not from a proxy: the header is ignored (anyone can send one).
        assert_eq!(
            p.client_address(ip("203.0.113.9"), Some("198.51.100.1")),
            ip("203.0.113.9")
        );
        assert_eq!(p.client_address(proxy, None), proxy);
        assert_eq!(
            p.client_address(proxy, Some("198.51.100.1")),
            ip("198.51.100.1")
        );
        // What the client wrote itself (the left part) is not believed.
        assert_eq!(
            p.client_address(proxy, Some("1.1.1.1, 198.51.100.1, 10.0.0.9")),
            ip("198.51.100.1")
        );
        // Through an IPv6 proxy, IPv6 and bracketed or ported entries, spaces and tabs.
        assert_eq!(
            p.client_address(ip("2001:db8::1"), Some(" [2001:db8:5::7]:443 ,\t10.1.1.1 ")),
            ip("2001:db8:5::7")
        );
        assert_eq!(
            p.client_address(proxy, Some("198.51.100.3:5678")),
            ip("198.51.100.3")
        );
        // Every entry trusted: the left-most one.
        assert_eq!(
            p.client_address(proxy, Some("10.9.9.9, 10.0.0.3")),
            ip("10.9.9.9")
        );
        // Empty elements are skipped; garbage stops at the last trusted hop.
        assert_eq!(
            p.client_address(proxy, Some("198.51.100.1,, ,")),
            ip("198.51.100.1")
        );
        assert_eq!(p.client_address(proxy, Some("unknown")), proxy);
        assert_eq!(
            p.client_address(proxy, Some("198.51.100.1, garbage, 10.0.0.7")),
            ip("10.0.0.7")
        );
        // A mapped peer is compared as IPv4, and reported as IPv4.
        assert_eq!(
            p.client_address(ip("::ffff:10.0.0.2"), Some("::ffff:198.51.100.1")),
            ip("198.51.100.1")
        );
        // No proxies configured: never read.
        assert_eq!(
            TrustedProxies::default().client_address(proxy, Some("198.51.100.1")),
            proxy
        );
    }

    #[test]
    fn hostile_headers_cost_a_bounded_walk() {
        let p = proxies(&["10.0.0.0/8"]);
        let proxy = ip("10.0.0.2");
        // Thousands of trusted entries: only MAX_HOPS are looked at, the last of them answers.
        let many: Vec<String> = (0..5000)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let got = p.client_address(proxy, Some(&many.join(",")));
        assert_eq!(got, ip(&many[5000 - MAX_HOPS]));
        // A million commas.
        assert_eq!(p.client_address(proxy, Some(&",".repeat(1 << 20))), proxy);
        // Long garbage, control characters, unicode, a zone index, an overlong entry.
        for junk in [
            "x".repeat(10_000),
            "\u{0}\u{7f}".into(),
            "ｆｅ８０::1".into(),
            "fe80::1%eth0".into(),
            format!("{}1.2.3.4", "0".repeat(100)),
            "[::1".into(),
            "[::1]x".into(),
            "1.2.3.4:".into(),
            "1.2.3.4:123456".into(),
        ] {
            assert_eq!(p.client_address(proxy, Some(&junk)), proxy, "{junk:?}");
        }
        // A port on a bare IPv6 address cannot be told from the address: `::1:80` is `::1:80`.
        assert_eq!(parse_entry("::1:80"), Some(ip("::1:80")));
    }

    /// The longest entries `parse_entry` accepts are within `MAX_ENTRY`, so the length check
    /// only spares the parsers work on garbage and never refuses an address.
    #[test]
    fn the_longest_entries_fit() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let embedded = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
        for entry in [
            full.to_string(),
            format!("[{full}]:65535"),
            format!("[{embedded}]:65535"),
            "255.255.255.255:65535".to_string(),
        ] {
            assert!(parse_entry(&entry).is_some(), "{entry}");
            assert!(entry.len() < MAX_ENTRY, "{entry}");
        }
        // One more digit anywhere is not an address.
        assert_eq!(parse_entry(&format!("[{embedded}]:655350")), None);
        assert_eq!(parse_entry("0ffff::1"), None);
    }

    #[test]
    fn keys_group_ipv6_by_64() {
        assert_eq!(AddrKey::of(ip("192.0.2.1")), AddrKey::V4(0xc000_0201));
        assert_eq!(
            AddrKey::of(ip("::ffff:192.0.2.1")),
            AddrKey::of(ip("192.0.2.1"))
        );
        let a = AddrKey::of(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, AddrKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(a, AddrKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(AddrKey::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
    }

    #[test]
    fn too_many_trusted_proxies_is_an_error() {
        let list: Vec<String> = (0..=MAX_TRUSTED)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert!(TrustedProxies::parse(&list).is_err());
        assert!(TrustedProxies::parse(&list[..MAX_TRUSTED]).is_ok());
    }
}
