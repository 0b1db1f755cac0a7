//! Setting values that check themselves when read: addresses with ports,
//! durations with units, names that need no JSON escaping, times of day,
//! address prefixes, and a password that never prints itself.
//! TOML and the environment read them through the same `FromStr`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A `host:port` address; the host may be a name, resolved at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// `host:port` from its parts.
    pub fn new(host: &str, port: u16) -> Self {
        HostPort { host: host.into(), port }
    }

    /// The host part (without IPv6 brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether `target` (from an HTTP `CONNECT`) names this address.
    pub fn matches(&self, target: &str) -> bool {
        target
            .parse::<HostPort>()
            .is_ok_and(|t| t.port == self.port && t.host.eq_ignore_ascii_case(&self.host))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) =
            s.rsplit_once(':').ok_or_else(|| format!("address {s:?} has no port (expected host:port)"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty()
            || host.contains(['/', ' ', '"', '\\'])
            || (host.contains(':') && !s.starts_with('['))
        {
            return Err(format!("address {s:?} has no valid host (expected host:port)"));
        }
        let port =
            port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                format!("address {s:?} has no valid port (expected host:port, port 1-65535)")
            })?;
        Ok(HostPort { host: host.into(), port })
    }
}

/// A socket address to listen on: `ip:port` (port 0 picks a free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindAddr(pub SocketAddr);

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if !s.contains(':') || s.ends_with(']') {
            return Err(format!("address {s:?} has no port (expected ip:port)"));
        }
        s.parse().map(BindAddr).map_err(|_| format!("{s:?} is not an ip:port address to listen on"))
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A duration written with a unit: `500ms`, `30s`, `10m`, `2h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(digits);
        let n: u64 = n.parse().map_err(|_| {
            format!("duration {s:?} must be a number with a unit (ms, s, m, h, d), e.g. \"30s\"")
        })?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => {
                return Err(format!("duration {s:?} needs a unit: ms, s, m, h or d (e.g. \"30s\")"));
            }
        };
        ms.map(|ms| Interval(Duration::from_millis(ms))).ok_or_else(|| format!("duration {s:?} is too long"))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) { write!(f, "{}s", ms / 1000) } else { write!(f, "{ms}ms") }
    }
}

/// A time of day in UTC, `HH:MM`: when the books' day starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeOfDay(pub u32);

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time of day (HH:MM, UTC)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 3600 + m * 60))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 3600, self.0 % 3600 / 60)
    }
}

/// Text that can be spliced into a JSON string as is: printable ASCII
/// without `"` or `\`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plain(pub String);

impl FromStr for Plain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > 128 {
            return Err("must be at most 128 characters".into());
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\') {
            return Err(format!(
                "{s:?} contains {c:?}; only printable ASCII without quotes or backslashes is allowed"
            ));
        }
        Ok(Plain(s.into()))
    }
}

impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password: checked like [`Plain`], but never shown. `Display`, `Debug`
/// and serialization (so `config --show`) print [`MASK`], and a refused
/// value is not echoed in the error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

/// What a [`Secret`] shows instead of itself.
pub const MASK: &str = "********";

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<Plain>().map(|plain| Secret(plain.0)).map_err(|_| {
            "must be at most 128 printable ASCII characters without spaces, quotes or backslashes \
             (the value is not shown)"
                .into()
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

/// An address prefix that may connect: CIDR (`192.168.0.0/16`, `fd00::/8`)
/// or a plain address (`/32` or `/128`).
///
/// Host bits must be zero: `10.0.0.1/8` is refused rather than masked, since
/// it means either `10.0.0.0/8` or `10.0.0.1/32` and a wrong guess opens the
/// door to the whole network or shuts it on the one device. An IPv4-mapped
/// IPv6 prefix (`::ffff:10.0.0.0/104`) is kept as the IPv4 prefix it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    network: IpAddr,
    len: u8,
}

/// `len` ones then zeros, in the low `width` bits of a `u128` (`len <= width`).
fn mask(width: u8, len: u8) -> u128 {
    let ones = u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0);
    ones >> (128 - width)
}

/// An address as a number, with its width in bits.
fn bits(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (32, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (128, u128::from(v6)),
    }
}

impl Prefix {
    /// Whether `ip` lies in this prefix. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, how a dual-stack listener sees IPv4 peers) counts
    /// as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (width, net) = bits(self.network);
        let (ip_width, ip) = bits(ip.to_canonical());
        width == ip_width && ip & mask(width, self.len) == net
    }

    /// The prefix of `len` bits at `value`, an address `width` bits wide.
    fn from_bits(width: u8, value: u128, len: u8) -> Prefix {
        let network = match u32::try_from(value) {
            Ok(v4) if width == 32 => IpAddr::V4(Ipv4Addr::from(v4)),
            _ => IpAddr::V6(Ipv6Addr::from(value)),
        };
        Prefix { network, len }
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or prefix (e.g. \"192.168.0.0/16\")"))?;
        let (width, value) = bits(ip);
        let len = match len {
            None => width,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|n| len.bytes().all(|b| b.is_ascii_digit()) && *n <= width)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {width}"))?,
        };
        if value & !mask(width, len) != 0 {
            let network = Prefix::from_bits(width, value & mask(width, len), len);
            let host = Prefix::from_bits(width, value, width);
            return Err(format!(
                "{s:?} has host bits set: write \"{network}\" for the network or \"{host}\" for the one address"
            ));
        }
        let prefix = Prefix { network: ip, len };
        // ::ffff:0:0/96 and longer name IPv4 addresses; keep them as such.
        match ip {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Ok(Prefix { network: IpAddr::V4(v4), len: len - 96 }),
                None => Ok(prefix),
            },
            _ => Ok(prefix),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// Reads a value through its `FromStr`, so TOML and env share one check.
macro_rules! via_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
pub(super) use via_str;
via_str!(HostPort, BindAddr, Interval, Plain, TimeOfDay, Prefix, Secret);

#[cfg(test)]
mod tests;
