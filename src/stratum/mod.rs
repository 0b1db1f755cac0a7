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

mod json;
#[cfg(test)]
mod tests;

use json::Cursor;
pub use json::{JsonError, MAX_DEPTH};

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
        // A repeated member is refused: parsers disagree on which one counts.
        let mut repeated = None;
        cur.members(MAX_DEPTH, |key, span| {
            let slot = match key {
                b"id" => &mut env.id,
                b"method" => &mut env.method,
                b"params" => &mut env.params,
                b"result" => &mut env.result,
                b"error" => &mut env.error,
                _ => return,
            };
            if slot.is_some() {
                repeated.get_or_insert(span.start);
            }
            *slot = Some(span);
        })?;
        if let Some(at) = repeated {
            return Err(JsonError::DuplicateKey(at));
        }
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

    /// Where the `id` value sits in the line, when present.
    pub fn id_span(&self) -> Option<Range<usize>> {
        self.id.clone()
    }

    /// Where a member can be inserted: just after the object's `{`.
    pub fn insert_at(&self) -> usize {
        self.line.iter().position(|&b| b == b'{').map_or(0, |at| at + 1)
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

    /// The items of `params`, each with its byte range in the line (for
    /// splicing) and its bytes.
    pub fn param_items(&self) -> impl Iterator<Item = (Range<usize>, &'a [u8])> + 'a {
        let base = self.params.as_ref().map_or(0, |s| s.start);
        items(self.params().unwrap_or_default()).map(move |(at, v)| (base + at..base + at + v.len(), v))
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
    // What `typed::<&str>` accepts, without a deserializer (this runs for
    // every field of every share): JSON whitespace around, and between the
    // quotes no quote (the string would end there) and no backslash.
    let start = bytes.iter().position(|b| !json::is_ws(b))?;
    let end = bytes.iter().rposition(|b| !json::is_ws(b))? + 1;
    let inner = bytes[start..end].strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.iter().any(|&b| b == b'"' || b == b'\\') {
        return None;
    }
    core::str::from_utf8(inner).ok()
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
    out.extend_from_slice(Decimal::signed(i64::from(code)).as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(b"\",null]}\n");
}

/// Appends `text` as a JSON string (control characters dropped).
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {}
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Appends `{"id":ID,"result":RESULT,"error":null}\n` with `result` as raw JSON.
pub fn write_result(out: &mut Vec<u8>, id: Option<&[u8]>, result: &[u8]) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.unwrap_or(b"null"));
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.extend_from_slice(b",\"error\":null}\n");
}

/// A decimal number, formatted without allocating.
pub struct Decimal {
    buf: [u8; 21],
    start: usize,
}

impl Decimal {
    /// `value` in decimal.
    pub fn signed(value: i64) -> Decimal {
        let mut d = Decimal::unsigned(value.unsigned_abs());
        if value < 0 {
            d.start -= 1;
            d.buf[d.start] = b'-';
        }
        d
    }

    /// `value` in decimal.
    pub fn unsigned(value: u64) -> Decimal {
        // 20 digits hold u64::MAX, with a byte left for a sign.
        let mut buf = [0u8; 21];
        let mut at = buf.len();
        let mut n = value;
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start: at }
    }

    /// The digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}
