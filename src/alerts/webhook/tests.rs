use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::*;

/// Long enough for a loaded test machine, short enough to fail fast.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A one-request HTTP server on a free port: it reads a whole request (head
/// and `Content-Length` body), answers `answer` and closes. Its thread
/// returns the bytes it received.
fn serve(answer: Vec<u8>) -> (HttpUrl, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
        let mut received = Vec::new();
        let mut chunk = [0u8; 1024];
        while !complete(&received) {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the client closed before its request was complete: {received:?}");
            received.extend_from_slice(&chunk[..n]);
        }
        // The client may have stopped reading (a long answer): not an error here.
        let _ = stream.write_all(&answer);
        received
    });
    (HttpUrl::parse(&format!("http://127.0.0.1:{port}/hook?x=1")).unwrap(), server)
}

/// Whether `request` holds its head and the body its head announces.
fn complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else { return false };
    let length = text[..end]
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse::<usize>().unwrap());
    request.len() >= end + 4 + length
}

fn post_json(url: &HttpUrl, timeout: Duration) -> Result<u16, SinkError> {
    crate::rt::block_on(post(url, "application/json", &[], b"{}", timeout))
}

#[test]
fn posts_exactly_the_request_and_takes_a_204() {
    let (url, server) = serve(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec());
    let headers = [("Authorization", "Bearer t0ken"), ("X-Source", "gateway\tone")];
    let body = br#"{"alert":"worker offline","worker":"s19"}"#;
    let sent = crate::rt::block_on(post(&url, "application/json", &headers, body, TEST_TIMEOUT));
    assert_eq!(sent.unwrap(), 204);
    let received = String::from_utf8(server.join().unwrap()).unwrap();
    let want = format!(
        "POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: loka-stratum/{}\r\n\
         Content-Type: application/json\r\nContent-Length: 41\r\nAuthorization: Bearer t0ken\r\n\
         X-Source: gateway\tone\r\nConnection: close\r\n\r\n\
         {{\"alert\":\"worker offline\",\"worker\":\"s19\"}}",
        url.address().port(),
        env!("CARGO_PKG_VERSION"),
    );
    assert_eq!(received, want);
}

#[test]
fn a_200_is_delivered_and_a_500_is_an_error_with_its_code() {
    let (url, server) = serve(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec());
    assert_eq!(post_json(&url, TEST_TIMEOUT).unwrap(), 200);
    server.join().unwrap();

    let (url, server) = serve(b"HTTP/1.1 500 Internal Server Error\r\n\r\n".to_vec());
    let err = post_json(&url, TEST_TIMEOUT).unwrap_err();
    assert!(matches!(err, SinkError::Status { code: 500, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("http://127.0.0.1:{}/hook?x=1 answered with HTTP status 500", url.address().port())
    );
    server.join().unwrap();
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Never accepted: the kernel completes the connection and takes the
    // request, and no answer ever comes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let start = Instant::now();
    let err = post_json(&url, Duration::from_millis(300)).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, SinkError::TimedOut { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("127.0.0.1:{port} did not answer within 300 ms"));
    assert!(took >= Duration::from_millis(300) && took < TEST_TIMEOUT, "took {took:?}");
    drop(listener);
}

#[test]
fn a_server_that_closes_without_answering_is_an_error() {
    let (url, server) = serve(b"".to_vec());
    let err = post_json(&url, TEST_TIMEOUT).unwrap_err();
    server.join().unwrap();
    assert!(matches!(err, SinkError::Protocol { .. }), "{err:?}");
    let want =
        format!("127.0.0.1:{}: the server closed the connection without answering", url.address().port());
    assert_eq!(err.to_string(), want);
}

#[test]
fn an_answer_that_is_not_http_is_an_error() {
    let (url, server) = serve(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec());
    let err = post_json(&url, TEST_TIMEOUT).unwrap_err();
    server.join().unwrap();
    let want =
        format!("127.0.0.1:{}: the answer does not start with an HTTP/1.x status line", url.address().port());
    assert_eq!(err.to_string(), want);

    let mut endless = b"HTTP/1.1 200 ".to_vec();
    endless.resize(2 * MAX_STATUS_LINE_BYTES, b'x');
    let (url, server) = serve(endless);
    let err = post_json(&url, TEST_TIMEOUT).unwrap_err();
    server.join().unwrap();
    assert_eq!(
        err.to_string(),
        format!("127.0.0.1:{}: the status line is longer than 4 KiB", url.address().port())
    );
}

#[test]
fn a_refused_connection_names_the_address() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let err = post_json(&url, TEST_TIMEOUT).unwrap_err();
    assert!(matches!(err, SinkError::Connect { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot connect to 127.0.0.1:{port}"));
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.to_lowercase().contains("refused"), "{source}");
}

#[test]
fn headers_that_would_break_the_request_are_refused_before_connecting() {
    // Nothing listens there: a refusal proves no connection was tried.
    let url = HttpUrl::parse("http://127.0.0.1:9/").unwrap();
    let refused = |content_type: &str, headers: &[(&str, &str)]| match crate::rt::block_on(post(
        &url,
        content_type,
        headers,
        b"",
        TEST_TIMEOUT,
    )) {
        Err(SinkError::Header { name, reason }) => format!("{name}: {reason}"),
        other => panic!("{headers:?}: {other:?}"),
    };
    let control = "the value holds CR, LF or another control character";
    assert_eq!(refused("text/plain", &[("X-Token", "a\r\nX-Evil: 1")]), format!("X-Token: {control}"));
    assert_eq!(refused("text/plain", &[("X-Token", "a\nb")]), format!("X-Token: {control}"));
    assert_eq!(refused("text/plain", &[("X-Token", "a\0")]), format!("X-Token: {control}"));
    assert_eq!(refused("text/plain\r\nX-Evil: 1", &[]), format!("Content-Type: {control}"));
    let token = "the name must be letters, digits and -, without spaces or ':'";
    assert_eq!(refused("text/plain", &[("X-Evil: 1\r\nX", "a")]), format!("X-Evil: 1\r\nX: {token}"));
    assert_eq!(refused("text/plain", &[("", "a")]), format!(": {token}"));
    assert_eq!(refused("text/plain", &[("X Token", "a")]), format!("X Token: {token}"));
    let own = "the client sets this header itself";
    assert_eq!(refused("text/plain", &[("content-length", "0")]), format!("content-length: {own}"));
    assert_eq!(refused("text/plain", &[("Host", "evil")]), format!("Host: {own}"));
}

#[test]
fn the_host_header_leaves_out_port_80_and_brackets_ipv6() {
    let head = |url: &str| {
        let request = request(&HttpUrl::parse(url).unwrap(), "text/plain", &[], b"hi").unwrap();
        let text = String::from_utf8(request).unwrap();
        text.lines().take(2).collect::<Vec<_>>().join("|")
    };
    assert_eq!(head("http://ha.lan/api/webhook/x"), "POST /api/webhook/x HTTP/1.1|Host: ha.lan");
    assert_eq!(head("http://ha.lan:8123"), "POST / HTTP/1.1|Host: ha.lan:8123");
    assert_eq!(head("http://[fd00::5]/a?b"), "POST /a?b HTTP/1.1|Host: [fd00::5]");
    assert_eq!(head("http://[fd00::5]:8080/"), "POST / HTTP/1.1|Host: [fd00::5]:8080");
}

/// `status` on `head`: `Ok(Some(code))`, `Ok(None)` for "not complete
/// yet", or `Err` for a head that is not HTTP/1.x.
fn check(head: &[u8], expect: Result<Option<u16>, ()>) {
    assert_eq!(status(head).map_err(|_| ()), expect, "{:?}", String::from_utf8_lossy(head));
}

#[test]
fn status_lines_parse() {
    check(b"HTTP/1.1 204 No Content\r\n", Ok(Some(204)));
    check(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Ok(Some(200)));
    check(b"HTTP/1.0 404\r\n", Ok(Some(404)));
    check(b"HTTP/1.1 503 \n", Ok(Some(503)));
    check(b"HTTP/1.1 100 Continue\r\n", Ok(Some(100)));
    check(b"", Ok(None));
    check(b"HTTP/1.1 200 OK", Ok(None));
    check(b"HTTP/1.1 2", Ok(None));
    check(b"HTTP/2 200\r\n", Err(()));
    check(b"HTTP/1.1 20 OK\r\n", Err(()));
    check(b"HTTP/1.1 2000 OK\r\n", Err(()));
    check(b"HTTP/1.1 2x0 OK\r\n", Err(()));
    check(b"HTTP/1.1 099 Low\r\n", Err(()));
    check(b"HTTP/1.1 600 High\r\n", Err(()));
    check(b"HTTP/1.1  200 OK\r\n", Err(()));
    check(b"ICY 200 OK\r\n", Err(()));
    check(b"\r\n", Err(()));
    check(b"HTTP/1.\xff 200\r\n", Err(()));
}
