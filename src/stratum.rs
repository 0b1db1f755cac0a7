//! Stratum V1 lines: the JSON-RPC envelope of one line and the typed params of
//! the methods the proxy understands.
//!
//! Parsing happens in two steps, because `serde-json-core` has no
//! `deserialize_any`: [`Envelope::parse`] walks the line once, checks that it is
//! one well-formed JSON object and records where `id`, `method`, `params`,
//! `result` and `error` sit; then typed values are read from those spans with
//! `serde-json-core`. Nothing is copied: every field borrows from the line, and
//! the `id` is kept as its raw bytes so it can be echoed byte for byte.
//!
//! Invariant: once `Envelope::parse` returned `Ok`, every span it holds is a
//! complete JSON value inside the line, so later accessors cannot panic.

use core::ops::Range;

/// Deepest nesting of arrays and objects accepted in one line.
const MAX_DEPTH: u8 = 32;

/// Why a line is not a Stratum JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// The line ended inside a value.
    Truncated,
    /// An unexpected byte at this offset.
    Unexpected(usize),
    /// Arrays or objects nested deeper than the limit.
    TooDeep,
    /// The top-level value is not an object.
    NotAnObject,
    /// Bytes follow the top-level object.
    TrailingBytes(usize),
}

impl core::fmt::Display for JsonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JsonError::Truncated => f.write_str("line ends inside a JSON value"),
            JsonError::Unexpected(at) => write!(f, "unexpected byte at offset {at}"),
            JsonError::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
            JsonError::NotAnObject => f.write_str("not a JSON object"),
            JsonError::TrailingBytes(at) => write!(f, "trailing bytes at offset {at}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// A validating walk over JSON bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), JsonError> {
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            Some(_) => Err(JsonError::Unexpected(self.at)),
            None => Err(JsonError::Truncated),
        }
    }

    /// Skips one value, checking its syntax; returns its span.
    fn value(&mut self, depth: u8) -> Result<Range<usize>, JsonError> {
        self.skip_ws();
        let start = self.at;
        match self.peek() {
            None => return Err(JsonError::Truncated),
            Some(b'"') => self.string()?,
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(JsonError::Unexpected(self.at)),
        }
        Ok(start..self.at)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        let end = self.at + word.len();
        match self.bytes.get(self.at..end) {
            Some(found) if found == word => {
                self.at = end;
                Ok(())
            }
            Some(_) => Err(JsonError::Unexpected(self.at)),
            None => Err(JsonError::Truncated),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.digits() == 0 {
            return Err(self.unexpected());
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.unexpected());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.unexpected());
            }
        }
        Ok(())
    }

    fn unexpected(&self) -> JsonError {
        if self.at >= self.bytes.len() { JsonError::Truncated } else { JsonError::Unexpected(self.at) }
    }

    fn string(&mut self) -> Result<(), JsonError> {
        self.eat(b'"')?;
        loop {
            match self.peek() {
                None => return Err(JsonError::Truncated),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        None => return Err(JsonError::Truncated),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                        Some(b'u') => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5);
                            match hex {
                                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => self.at += 5,
                                Some(_) => return Err(JsonError::Unexpected(self.at)),
                                None => return Err(JsonError::Truncated),
                            }
                        }
                        Some(_) => return Err(JsonError::Unexpected(self.at)),
                    }
                }
                Some(0..=0x1f) => return Err(JsonError::Unexpected(self.at)),
                Some(_) => self.at += 1,
            }
        }
    }

    fn array(&mut self, depth: u8) -> Result<(), JsonError> {
        let depth = depth.checked_sub(1).ok_or(JsonError::TooDeep)?;
        self.eat(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    /// Walks an object, calling `member(key, value_span)` for each member.
    fn members(
        &mut self,
        depth: u8,
        mut member: impl FnMut(&'a [u8], Range<usize>),
    ) -> Result<(), JsonError> {
        let depth = depth.checked_sub(1).ok_or(JsonError::TooDeep)?;
        self.eat(b'{')?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let key_start = self.at;
            self.string()?;
            let key = &self.bytes[key_start + 1..self.at - 1];
            self.skip_ws();
            self.eat(b':')?;
            let span = self.value(depth)?;
            member(key, span);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn object(&mut self, depth: u8) -> Result<(), JsonError> {
        self.members(depth, |_, _| {})
    }
}

/// The members of one Stratum line that the proxy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    line: &'a [u8],
    id: Option<Range<usize>>,
    method: Option<Range<usize>>,
    params: Option<Range<usize>>,
    result: Option<Range<usize>>,
    error: Option<Range<usize>>,
}

impl<'a> Envelope<'a> {
    /// Checks that `line` is one JSON object and records its members.
    pub fn parse(line: &'a [u8]) -> Result<Self, JsonError> {
        let mut env = Envelope { line, id: None, method: None, params: None, result: None, error: None };
        let mut cur = Cursor::new(line);
        cur.skip_ws();
        if cur.peek() != Some(b'{') {
            return Err(match cur.peek() {
                None => JsonError::Truncated,
                Some(_) => JsonError::NotAnObject,
            });
        }
        cur.members(MAX_DEPTH, |key, span| match key {
            b"id" => env.id = Some(span),
            b"method" => env.method = Some(span),
            b"params" => env.params = Some(span),
            b"result" => env.result = Some(span),
            b"error" => env.error = Some(span),
            _ => {}
        })?;
        cur.skip_ws();
        if cur.at != line.len() {
            return Err(JsonError::TrailingBytes(cur.at));
        }
        Ok(env)
    }

    /// The whole line.
    pub fn line(&self) -> &'a [u8] {
        self.line
    }

    fn slice(&self, span: &Option<Range<usize>>) -> Option<&'a [u8]> {
        span.clone().and_then(|s| self.line.get(s))
    }

    /// The raw bytes of `id`, `None` when absent. `null` is returned as `b"null"`.
    pub fn id(&self) -> Option<&'a [u8]> {
        self.slice(&self.id)
    }

    /// Whether the line has a non-null `id`, i.e. expects an answer.
    pub fn has_id(&self) -> bool {
        matches!(self.id(), Some(id) if id != b"null")
    }

    /// The method name, when `method` is a plain string.
    pub fn method(&self) -> Option<&'a str> {
        self.slice(&self.method).and_then(plain_str)
    }

    /// The raw `params` value.
    pub fn params(&self) -> Option<&'a [u8]> {
        self.slice(&self.params)
    }

    /// Where `params` starts in the line.
    pub fn params_offset(&self) -> Option<usize> {
        self.params.as_ref().map(|s| s.start)
    }

    /// The raw `result` value.
    pub fn result(&self) -> Option<&'a [u8]> {
        self.slice(&self.result)
    }

    /// The raw `error` value.
    pub fn error(&self) -> Option<&'a [u8]> {
        self.slice(&self.error)
    }

    /// Whether this line answers a request: no method, but a result or error.
    pub fn is_response(&self) -> bool {
        self.method.is_none() && (self.result.is_some() || self.error.is_some())
    }
}

/// Iterates the items of a JSON array that `Envelope::parse` already checked.
/// Yields each item's offset within `array` and its bytes.
pub struct Items<'a> {
    cur: Cursor<'a>,
    done: bool,
}

/// The items of `array`; yields nothing when `array` is not an array.
pub fn items(array: &[u8]) -> Items<'_> {
    let mut cur = Cursor::new(array);
    cur.skip_ws();
    let done = cur.eat(b'[').is_err();
    Items { cur, done }
}

impl<'a> Iterator for Items<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.cur.skip_ws();
        if self.cur.peek() == Some(b']') {
            self.done = true;
            return None;
        }
        let span = match self.cur.value(MAX_DEPTH) {
            Ok(span) => span,
            Err(_) => {
                self.done = true;
                return None;
            }
        };
        self.cur.skip_ws();
        if self.cur.peek() == Some(b',') {
            self.cur.at += 1;
        }
        let bytes = self.cur.bytes.get(span.clone())?;
        Some((span.start, bytes))
    }
}

/// Calls `member(key, span)` for each member of a JSON object, with spans
/// relative to `object`. Returns `false` when `object` is not a valid object.
pub fn members(object: &[u8], member: impl FnMut(&[u8], Range<usize>)) -> bool {
    let mut cur = Cursor::new(object);
    cur.skip_ws();
    cur.peek() == Some(b'{') && cur.members(MAX_DEPTH, member).is_ok()
}

/// The number of items in a JSON array (0 when not an array).
pub fn item_count(array: &[u8]) -> usize {
    items(array).count()
}

/// Reads one value of type `T` that fills `bytes` exactly.
pub fn typed<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    match serde_json_core::from_slice::<T>(bytes) {
        Ok((value, used)) if bytes[used.min(bytes.len())..].iter().all(u8::is_ascii_whitespace) => {
            Some(value)
        }
        _ => None,
    }
}

/// A JSON string without escapes, as `&str`; `None` for anything else,
/// including strings with escapes (which `serde-json-core` would hand back raw).
pub fn plain_str(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&b'\\') {
        return None;
    }
    typed::<&str>(bytes)
}

/// Longest string [`text`] reads, in bytes after unescaping.
pub const MAX_TEXT_BYTES: usize = 256;

/// The unescaped text of a JSON string.
pub type Text = heapless::String<MAX_TEXT_BYTES>;

/// A JSON string's text, unescaped; `None` for other values or longer text.
pub fn text(bytes: &[u8]) -> Option<Text> {
    struct Visit;
    impl serde::de::Visitor<'_> for Visit {
        type Value = Text;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text, E> {
            Text::try_from(s).map_err(|_| E::custom("string too long"))
        }
    }
    struct Owned(Text);
    impl<'de> serde::Deserialize<'de> for Owned {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Visit).map(Owned)
        }
    }
    let mut buf = [0u8; MAX_TEXT_BYTES];
    match serde_json_core::from_slice_escaped::<Owned>(bytes, &mut buf) {
        Ok((Owned(value), used)) if bytes[used.min(bytes.len())..].iter().all(u8::is_ascii_whitespace) => {
            Some(value)
        }
        _ => None,
    }
}

/// A JSON number as `f64`.
pub fn number(bytes: &[u8]) -> Option<f64> {
    typed::<f64>(bytes)
}

/// A JSON boolean.
pub fn boolean(bytes: &[u8]) -> Option<bool> {
    typed::<bool>(bytes)
}

/// The error code of a pool's answer: `[code, "msg", data]` or
/// `{"code": n, "message": …}`. `None` when `error` is `null` or absent.
pub fn error_code(error: Option<&[u8]>) -> Option<i64> {
    let error = error?;
    if error == b"null" {
        return None;
    }
    if let Some((_, first)) = items(error).next() {
        return Some(typed::<i64>(first).unwrap_or(20));
    }
    #[derive(serde::Deserialize)]
    struct Coded {
        code: i64,
    }
    Some(typed::<Coded>(error).map_or(20, |c| c.code))
}

/// Parses an 8-digit (or shorter) hex version mask.
pub fn hex_u32(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// Appends `{"id":ID,"result":null,"error":[CODE,"MESSAGE",null]}\n`.
/// `message` must not need JSON escaping (the proxy's own static texts).
pub fn write_error(out: &mut Vec<u8>, id: Option<&[u8]>, code: i32, message: &str) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.unwrap_or(b"null"));
    out.extend_from_slice(b",\"result\":null,\"error\":[");
    let mut num = itoa_buf(code);
    out.extend_from_slice(num.as_bytes_mut());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(b"\",null]}\n");
}

/// Appends `{"id":ID,"result":RESULT,"error":null}\n` with `result` as raw JSON.
pub fn write_result(out: &mut Vec<u8>, id: Option<&[u8]>, result: &[u8]) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.unwrap_or(b"null"));
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.extend_from_slice(b",\"error\":null}\n");
}

/// A small decimal formatter that does not allocate.
struct Decimal {
    buf: [u8; 12],
    start: usize,
}

impl Decimal {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(value: i32) -> Decimal {
    let mut buf = [0u8; 12];
    let mut at = buf.len();
    let mut n = i64::from(value).unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    Decimal { buf, start: at }
}

#[cfg(test)]
mod tests {
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
        let text = include_str!("../tests/fixtures/cpuminer-ckpool.txt");
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
}
