//! The scanner and accessors on real Stratum lines.

use super::*;

const SUBSCRIBE: &[u8] = br#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}"#;
const NOTIFY: &[u8] = br#"{"params":["6b04a37f00000001","6dd02427ddcba6abc6f0aaabf16d72ced43e701fa23a47566c1f50c412851af0","0100","0a63",[],"20000000","17034219","6b04a37f",true],"id":null,"method":"mining.notify"}"#;
const ANSWER: &[u8] = br#"{"result":[[["mining.notify","6b04a380"]],"80a3046b",8],"id":1,"error":null}"#;

#[test]
fn subscribe_envelope() {
    let env = Envelope::parse(SUBSCRIBE).unwrap();
    assert_eq!(env.id(), Some(&b"1"[..]));
    assert_eq!(env.method(), Some("mining.subscribe"));
    assert_eq!(env.params(), Some(&br#"["cpuminer/2.5.1"]"#[..]));
    assert!(!env.is_response());
    let agent: Vec<_> = items(env.params().unwrap()).map(|(_, v)| plain_str(v)).collect();
    assert_eq!(agent, vec![Some("cpuminer/2.5.1")]);
}

#[test]
fn notify_with_null_id() {
    let env = Envelope::parse(NOTIFY).unwrap();
    assert_eq!(env.id(), Some(&b"null"[..]));
    assert!(!env.has_id());
    let params = env.params().unwrap();
    assert_eq!(item_count(params), 9);
    let last = items(params).last().unwrap().1;
    assert_eq!(boolean(last), Some(true));
}

#[test]
fn answer_is_response() {
    let env = Envelope::parse(ANSWER).unwrap();
    assert!(env.is_response());
    assert_eq!(error_code(env.error()), None);
    let mut it = items(env.result().unwrap());
    it.next();
    assert_eq!(plain_str(it.next().unwrap().1), Some("80a3046b"));
    assert_eq!(typed::<u32>(it.next().unwrap().1), Some(8));
}

#[test]
fn ids_keep_their_bytes() {
    for (line, id) in [
        (&br#"{"id":"abc-1","method":"m","params":[]}"#[..], &br#""abc-1""#[..]),
        (br#"{"id" : 4 ,"method":"m"}"#, b"4"),
        (br#"{"method":"m","id":null}"#, b"null"),
        (br#"{"id":1.50,"method":"m"}"#, b"1.50"),
    ] {
        assert_eq!(Envelope::parse(line).unwrap().id(), Some(id));
    }
}

#[test]
fn strings_with_escapes() {
    let raw = br#""we\"ird\\name\u00e9""#;
    assert_eq!(plain_str(raw), None);
    assert_eq!(text(raw).as_deref(), Some("we\"ird\\nameé"));
    assert_eq!(text(br#""plain""#).as_deref(), Some("plain"));
    assert_eq!(text(b"12"), None);
    let long = format!("\"{}\"", "x".repeat(MAX_TEXT_BYTES + 1));
    assert_eq!(text(long.as_bytes()), None);
}

#[test]
fn error_codes() {
    assert_eq!(error_code(Some(br#"[21,"Job not found",null]"#)), Some(21));
    assert_eq!(error_code(Some(br#"{"code":23,"message":"low"}"#)), Some(23));
    assert_eq!(error_code(Some(b"null")), None);
    assert_eq!(error_code(Some(br#""weird""#)), Some(20));
}

#[test]
fn rejects_bad_json() {
    for bad in [
        &b""[..],
        b"{",
        b"[1,2]",
        b"{\"id\":1,}",
        b"{\"id\":01x}",
        b"{\"id\":1} x",
        b"{\"a\":\"\x01\"}",
        b"{\"a\":tru}",
        b"{\"a\":-}",
        b"{\"a\":\"\\q\"}",
    ] {
        assert!(Envelope::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
    assert_eq!(Envelope::parse(deep.as_bytes()), Err(JsonError::TooDeep));
}

#[test]
fn every_fixture_line_parses() {
    let text = include_str!("../../tests/fixtures/cpuminer-ckpool.txt");
    let mut n = 0;
    for line in text.lines() {
        let json = line.split_once(' ').map(|(_, j)| j.trim()).unwrap_or("");
        Envelope::parse(json.as_bytes()).unwrap();
        n += 1;
    }
    assert!(n > 50);
}

#[test]
fn error_line_format() {
    let mut out = Vec::new();
    write_error(&mut out, Some(b"\"x\""), -32700, "Parse error");
    assert_eq!(out, b"{\"id\":\"x\",\"result\":null,\"error\":[-32700,\"Parse error\",null]}\n");
    Envelope::parse(&out[..out.len() - 1]).unwrap();
}

#[test]
fn keys_another_parser_would_read_differently_are_refused() {
    // An escaped key would hide a member from the proxy but not from the pool.
    let hidden = br#"{"id":1,"m\u0065thod":"mining.authorize","params":["evil","x"]}"#;
    assert!(matches!(Envelope::parse(hidden), Err(JsonError::EscapedKey(8))));
    let nested = br#"{"id":1,"method":"mining.configure","params":[[],{"a\"b":1}]}"#;
    assert!(matches!(Envelope::parse(nested), Err(JsonError::EscapedKey(_))));
    // Parsers differ on which of two `params` (or `id`s) counts.
    let twice = br#"{"id":1,"method":"mining.authorize","params":["a","x"],"params":["evil","x"]}"#;
    assert!(matches!(Envelope::parse(twice), Err(JsonError::DuplicateKey(_))));
    let ids = br#"{"id":1,"id":2,"method":"mining.submit","params":[]}"#;
    assert!(matches!(Envelope::parse(ids), Err(JsonError::DuplicateKey(13))));
    // Other repeated members and escapes inside values are fine.
    let fine = br#"{"id":1,"x":1,"x":2,"method":"mining.authorize","params":["a\u0062","x"]}"#;
    assert!(Envelope::parse(fine).is_ok());
}

#[test]
fn id_span_and_insert_point() {
    let env = Envelope::parse(br#"  {"method":"m","id":"a b"}"#).unwrap();
    assert_eq!(env.id_span(), Some(21..26));
    assert_eq!(env.insert_at(), 3);
}

#[test]
fn decimals() {
    for (value, text) in [(0i64, "0"), (7, "7"), (-20, "-20"), (i64::MIN, "-9223372036854775808")] {
        assert_eq!(Decimal::signed(value).as_bytes(), text.as_bytes());
    }
    assert_eq!(Decimal::unsigned(u64::MAX).as_bytes(), b"18446744073709551615");
}

/// `plain_str` reads a string without the deserializer: it must accept
/// and refuse exactly what `typed::<&str>` does, for every string without
/// an escape (those it refuses whatever they say).
#[test]
fn plain_str_agrees_with_the_deserializer() {
    let cases: &[&[u8]] = &[
        b"\"abc\"",
        b"\"\"",
        b"\"",
        b"\"\"\"",
        b"\"a\"b\"",
        b" \"padded\" ",
        b"\t\r\n\"ws\"\n\r\t",
        b"\"form feed after\"\x0c",
        b"\x0c\"form feed before\"",
        b"\"trailing\" x",
        b"x \"leading\"",
        b"\"unterminated",
        b"unopened\"",
        b"42",
        b"null",
        b"[\"in an array\"]",
        b"\"caf\xc3\xa9\"",
        b"\"bad utf8 \xff\"",
        b"\"control \x01 byte\"",
        b"\"tab\tinside\"",
        b"",
        b"   ",
        b"\"a\" \"b\"",
    ];
    for &case in cases {
        assert_eq!(plain_str(case), typed::<&str>(case), "{:?}", String::from_utf8_lossy(case));
    }
    assert_eq!(plain_str(b"\"with \\\" escape\""), None);
    assert_eq!(plain_str(b"\"80a3046b\""), Some("80a3046b"));
}

/// The string walk skips plain bytes in bulk: wherever a quote, a
/// backslash or a control byte falls, and whatever bytes come before it
/// (the edges of the ranges it tests, UTF-8), it stops where a byte-by-byte
/// walk does.
#[test]
fn string_walk_stops_where_a_byte_walk_does() {
    // The walk as it was, a byte at a time.
    fn bytewise(bytes: &[u8]) -> Result<usize, JsonError> {
        let mut at = 1;
        loop {
            match bytes.get(at) {
                None => return Err(JsonError::Truncated),
                Some(b'"') => return Ok(at + 1),
                Some(b'\\') => match bytes.get(at + 1) {
                    None => return Err(JsonError::Truncated),
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                    Some(b'u') => match bytes.get(at + 2..at + 6) {
                        Some(h) if h.iter().all(u8::is_ascii_hexdigit) => at += 6,
                        Some(_) => return Err(JsonError::Unexpected(at + 1)),
                        None => return Err(JsonError::Truncated),
                    },
                    Some(_) => return Err(JsonError::Unexpected(at + 1)),
                },
                Some(0..=0x1f) => return Err(JsonError::Unexpected(at)),
                Some(_) => at += 1,
            }
        }
    }
    let fillers: &[&[u8]] = &[b"a", b" ", b"\x7f", b"\x21", b"\x5b", b"\x5d", b"\xc3\xa9", b"\xff", b"!#"];
    let specials: &[&[u8]] =
        &[b"\"", b"\\\"", b"\\u00e9", b"\\u12", b"\\x", b"\\", b"\x00", b"\x1f", b"\n", b""];
    for filler in fillers {
        for special in specials {
            for before in 0..20 {
                for after in [0, 1, 9] {
                    let mut s = vec![b'"'];
                    (0..before).for_each(|_| s.extend_from_slice(filler));
                    s.extend_from_slice(special);
                    (0..after).for_each(|_| s.extend_from_slice(filler));
                    // Closed, and running off the end of the line.
                    for closed in [true, false] {
                        let mut s = s.clone();
                        if closed {
                            s.push(b'"');
                        }
                        let mut cur = json::Cursor::new(&s);
                        let got = cur.string().map(|()| cur.at);
                        assert_eq!(got, bytewise(&s), "{:?}", String::from_utf8_lossy(&s));
                    }
                }
            }
        }
    }
}
