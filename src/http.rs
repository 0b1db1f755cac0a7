//! The little HTTP the proxy speaks: telling an HTTP request from Stratum on
//! the Stratum port, the `CONNECT` front door, and canned responses.
//!
//! Invariant: `CONNECT` is only ever granted for the configured pool, so the
//! gateway is never an open proxy.

/// What the first line of a connection on the Stratum port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front<'a> {
    /// Anything not HTTP: treated as Stratum (which rejects garbage itself).
    Stratum,
    /// `CONNECT target HTTP/1.x`.
    Connect(&'a str),
    /// Some other HTTP request (or a malformed `CONNECT`).
    Http,
}

/// Classifies the first line of a connection.
pub fn classify(line: &[u8]) -> Front<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(text) = core::str::from_utf8(line) else {
        return Front::Stratum;
    };
    let mut words = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Front::Stratum;
    };
    let is_http = !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && version.starts_with("HTTP/1.");
    match (is_http, method) {
        (false, _) => Front::Stratum,
        (true, "CONNECT") if !target.is_empty() => Front::Connect(target),
        (true, _) => Front::Http,
    }
}

/// The answer to a `CONNECT` for the configured pool, once it is reachable.
pub const CONNECT_OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
/// The answer to a `CONNECT` for any other target.
pub const FORBIDDEN: &[u8] =
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 38\r\nConnection: close\r\n\r\nonly the configured pool is reachable\n";
/// The answer to other HTTP on the Stratum port.
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 35\r\nConnection: close\r\n\r\nthis port speaks Stratum, not HTTP\n";
/// The answer to a `CONNECT` when the pool cannot be reached.
pub const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\npool is not reachable\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"CONNECT pool.example:3333 HTTP/1.1\r"), Front::Connect("pool.example:3333"));
        assert_eq!(classify(b"GET / HTTP/1.1"), Front::Http);
        assert_eq!(classify(b"CONNECT  HTTP/1.1"), Front::Http);
        assert_eq!(classify(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}"), Front::Stratum);
        assert_eq!(classify(b"\xff\xfe"), Front::Stratum);
    }

    #[test]
    fn content_lengths_match() {
        for resp in [FORBIDDEN, BAD_REQUEST, BAD_GATEWAY] {
            let text = std::str::from_utf8(resp).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        }
    }
}
