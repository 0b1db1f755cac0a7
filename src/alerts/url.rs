//! The addresses of the alert sinks as the config file writes them:
//! `http://host[:port][/path][?query]` for a webhook and
//! `mqtt://[user[:password]@]host[:port]` for a broker.
//!
//! Invariant: a parsed address can be written into a request as it is: its
//! host is a name or an IP literal, its path holds no space, control
//! character or fragment, and nothing in it can break a request line or
//! header. TLS is deliberately absent (the gateway carries no TLS stack), so
//! `https://` and `mqtts://` are refused with a reason rather than sent in
//! the clear.

use std::fmt;
use std::net::Ipv6Addr;

use crate::config::HostPort;

/// Port of `http://` when the address names none.
pub const HTTP_DEFAULT_PORT: u16 = 80;
/// Port of `mqtt://` when the address names none.
pub const MQTT_DEFAULT_PORT: u16 = 1883;
/// What [`MqttUrl`]'s `Display` shows instead of a password.
pub const PASSWORD_MASK: &str = "***";

/// A webhook address: `http://host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    address: HostPort,
    path_and_query: String,
}

impl HttpUrl {
    /// Parses `s`; the error says what is wrong and how to write it.
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        let (scheme, rest) = split_scheme(s, "http", "https", "webhook")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        let shown = shown(scheme, authority, path_and_query);
        printable(&shown, s)?;
        if authority.contains('@') {
            return Err(format!(
                "{shown:?}: user:password@ is not supported in a webhook address; \
                 put a token in a header or in the path"
            ));
        }
        if path_and_query.contains('#') {
            return Err(format!("{shown:?}: a fragment (#...) is never sent to a server; remove it"));
        }
        let address = host_port(&shown, authority, HTTP_DEFAULT_PORT)?;
        let path_and_query = match path_and_query {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(HttpUrl { address, path_and_query })
    }

    /// `host:port`, what is dialled.
    pub fn address(&self) -> &HostPort {
        &self.address
    }

    /// The path with its query, starting with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.address, self.path_and_query)
    }
}

/// An MQTT broker address: `mqtt://[user[:password]@]host[:port]`.
///
/// `Debug` and `Display` show the password as [`PASSWORD_MASK`].
#[derive(Clone, PartialEq, Eq)]
pub struct MqttUrl {
    address: HostPort,
    username: Option<String>,
    password: Option<String>,
}

impl MqttUrl {
    /// Parses `s`; user and password may be percent-encoded (`%40` for `@`).
    pub fn parse(s: &str) -> Result<MqttUrl, String> {
        let (scheme, rest) = split_scheme(s, "mqtt", "mqtts", "broker")?;
        let (authority, tail) = match rest.strip_suffix('/') {
            Some(authority) => (authority, "/"),
            None => (rest, ""),
        };
        let shown = shown(scheme, authority, tail);
        printable(&shown, s)?;
        // Everything before the last '@' is the user and password, so an
        // unencoded '@', '/' or '#' in a password still parses.
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        if host.contains(['/', '?', '#']) {
            return Err(format!(
                "{shown:?}: an MQTT address is only mqtt://[user[:password]@]host[:port]; \
                 the topic is set separately"
            ));
        }
        let address = host_port(&shown, host, MQTT_DEFAULT_PORT)?;
        let Some(userinfo) = userinfo else {
            return Ok(MqttUrl { address, username: None, password: None });
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if user.is_empty() {
            return Err(format!("{shown:?}: the user name before '@' is empty"));
        }
        let username = percent_decode(user).map_err(|e| format!("{shown:?}: the user name {e}"))?;
        let password =
            password.map(percent_decode).transpose().map_err(|e| format!("{shown:?}: the password {e}"))?;
        Ok(MqttUrl { address, username: Some(username), password })
    }

    /// `host:port`, what is dialled.
    pub fn address(&self) -> &HostPort {
        &self.address
    }

    /// The user name, decoded.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, decoded.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mqtt://")?;
        if let Some(user) = &self.username {
            for c in user.chars() {
                match c {
                    '%' | '@' | ':' | '/' => write!(f, "%{:02X}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            if self.password.is_some() {
                write!(f, ":{PASSWORD_MASK}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.address)
    }
}

impl fmt::Debug for MqttUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MqttUrl({self})")
    }
}

/// The scheme as written and what follows `://` in `s`. `tls_scheme` and
/// any other scheme are refused with a reason (`what` names the sink). No
/// error echoes `s`: it may hold a password.
fn split_scheme<'a>(
    s: &'a str,
    scheme: &str,
    tls_scheme: &str,
    what: &str,
) -> Result<(&'a str, &'a str), String> {
    let Some((given, rest)) = s.split_once("://") else {
        return Err(format!("a {what} address starts with {scheme}:// (e.g. {scheme}://192.168.1.10)"));
    };
    if given.eq_ignore_ascii_case(tls_scheme) {
        return Err(format!(
            "{tls_scheme} is not supported (no TLS in the gateway); use {scheme}:// on the LAN"
        ));
    }
    if !given.eq_ignore_ascii_case(scheme) {
        return Err(format!("scheme {given:?} is not supported for a {what}: use {scheme}://"));
    }
    Ok((given, rest))
}

/// The address as messages show it: `scheme://authority tail` with any
/// password in the authority masked.
fn shown(scheme: &str, authority: &str, tail: &str) -> String {
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return format!("{scheme}://{authority}{tail}");
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{PASSWORD_MASK}@{host}{tail}"),
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// Refuses `s` (shown as `shown`) when it holds a space, a control or a
/// non-ASCII character: a request line or header must not carry them.
fn printable(shown: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
        Some(c) => Err(format!("{shown:?} contains {c:?}; percent-encode it or remove it")),
        None => Ok(()),
    }
}

/// `host[:port]` or `[v6]:port` of the address `s` (as shown), with
/// `default` for a missing port.
fn host_port(s: &str, authority: &str, default: u16) -> Result<HostPort, String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (v6, after) =
            bracketed.split_once(']').ok_or_else(|| format!("{s:?}: an IPv6 address misses its ']'"))?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{s:?}: {v6:?} is not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(port) => (v6, Some(port)),
            None if after.is_empty() => (v6, None),
            None => return Err(format!("{s:?}: expected ':port' after the IPv6 address")),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let named = host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !authority.starts_with('[') && !named {
        return Err(format!("{s:?}: {host:?} is not a host name or IPv4 address"));
    }
    let port = match port {
        None => default,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|n| *n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{s:?}: the port must be a number from 1 to 65535"))?,
    };
    Ok(HostPort::new(host, port))
}

/// `s` with each `%XX` replaced by its byte; the result must be UTF-8
/// without control characters. The error says what is wrong, not the value.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, after)) = rest.split_first() {
        if b == b'%' {
            let hex = after.get(..2).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a '%' not followed by two hex digits")?;
            bytes.push(byte);
            rest = after.get(2..).unwrap_or_default();
        } else {
            bytes.push(b);
            rest = after;
        }
    }
    let decoded = String::from_utf8(bytes).map_err(|_| "is not UTF-8 once percent-decoded")?;
    if decoded.chars().any(char::is_control) {
        return Err("holds a control character once percent-decoded");
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests;
