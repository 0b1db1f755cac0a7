//! The webhook sink: one HTTP/1.1 `POST` per alert, `Connection: close`.
//!
//! Invariant: the whole request is built and checked before any connection
//! is opened, so a caller's header holding CR or LF is refused and never
//! sent; of the answer only the status line is read, at most
//! [`MAX_STATUS_LINE_BYTES`]; the exchange ends within the caller's timeout.
//! Deliberately absent: TLS, redirects, chunked bodies, keep-alive, and
//! interim `1xx` answers (reported as a status error; the request sends no
//! `Expect`, so servers have no reason to send one).

use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::SinkError;
use super::url::{HTTP_DEFAULT_PORT, HttpUrl};

/// The longest status line read from a webhook, in bytes.
pub const MAX_STATUS_LINE_BYTES: usize = 4 * 1024;

/// Headers the client writes itself; a caller may not send them again.
const OWN_HEADERS: [&str; 6] =
    ["host", "user-agent", "content-type", "content-length", "connection", "transfer-encoding"];

/// Posts `body` to `url` as `content_type`, with the extra `headers`, and
/// returns the status when it is 2xx. Everything, from connecting to the
/// status line, happens within `timeout`.
pub async fn post(
    url: &HttpUrl,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, SinkError> {
    let request = request(url, content_type, headers, body)?;
    let address = url.address().to_string();
    let exchange = async {
        let mut stream = crate::rt::connect_host(url.address().host(), url.address().port())
            .await
            .map_err(|source| SinkError::Connect { address: address.clone(), source })?;
        let io = |source| SinkError::Io { address: address.clone(), source };
        stream.write_all(&request).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut head = [0u8; MAX_STATUS_LINE_BYTES];
        let mut len = 0;
        loop {
            let n = stream.read(head.get_mut(len..).unwrap_or_default()).await.map_err(io)?;
            len += n;
            let protocol = |what| SinkError::Protocol { address: address.clone(), what };
            match status(head.get(..len).unwrap_or_default()).map_err(protocol)? {
                Some(code) => break Ok(code),
                None if n == 0 => break Err(protocol("the server closed the connection without answering")),
                None if len == head.len() => break Err(protocol("the status line is longer than 4 KiB")),
                None => {}
            }
        }
    };
    let timed_out = || SinkError::TimedOut { address: address.clone(), after: timeout };
    let code = crate::net::within(timeout, exchange, timed_out).await?;
    if (200..300).contains(&code) { Ok(code) } else { Err(SinkError::Status { url: url.to_string(), code }) }
}

/// The request's bytes, or why a caller's header cannot be sent.
fn request(
    url: &HttpUrl,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<u8>, SinkError> {
    check_value("Content-Type", content_type)?;
    for (name, value) in headers {
        check_name(name)?;
        check_value(name, value)?;
    }
    let address = url.address();
    let host = match address.port() {
        HTTP_DEFAULT_PORT if address.host().contains(':') => format!("[{}]", address.host()),
        HTTP_DEFAULT_PORT => address.host().to_string(),
        _ => address.to_string(),
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: loka-stratum/{}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n",
        url.path_and_query(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    Ok(request)
}

/// Refuses a header name that is not an HTTP token or that the client
/// writes itself.
fn check_name(name: &str) -> Result<(), SinkError> {
    let refuse = |reason| Err(SinkError::Header { name: name.to_string(), reason });
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return refuse("the name must be letters, digits and -, without spaces or ':'");
    }
    if OWN_HEADERS.iter().any(|own| own.eq_ignore_ascii_case(name)) {
        return refuse("the client sets this header itself");
    }
    Ok(())
}

/// Refuses a header value holding CR, LF or another control character
/// (tabs pass): it would end the header and start one of its own.
fn check_value(name: &str, value: &str) -> Result<(), SinkError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        let reason = "the value holds CR, LF or another control character";
        return Err(SinkError::Header { name: name.to_string(), reason });
    }
    Ok(())
}

/// The status code of `head` once its status line (`HTTP/1.x NNN ...`) is
/// complete; `None` while it is not.
pub fn status(head: &[u8]) -> Result<Option<u16>, &'static str> {
    let Some(end) = head.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = head.get(..end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = "the answer does not start with an HTTP/1.x status line";
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad)?;
    let code = match rest {
        [minor, b' ', code @ ..] if minor.is_ascii_digit() => code.get(..3).ok_or(bad)?,
        _ => return Err(bad),
    };
    if !matches!(rest.get(5), None | Some(b' ')) || !code.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return Err(bad);
    }
    Ok(Some(code))
}

#[cfg(test)]
mod tests;
