//! A validating walk over JSON bytes: checks syntax and reports where each
//! value sits, without building anything. Strict RFC 8259 grammar, nesting
//! bounded by [`MAX_DEPTH`].

use core::ops::Range;

/// Deepest nesting of arrays and objects accepted in one line.
pub const MAX_DEPTH: u8 = 32;

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
    /// An object key at this offset contains an escape: another parser would
    /// read it as a different key than the raw bytes say.
    EscapedKey(usize),
    /// A member the proxy reads (`id`, `method`, `params`, `result`, `error`)
    /// appears twice; the second is at this offset.
    DuplicateKey(usize),
}

impl core::fmt::Display for JsonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JsonError::Truncated => f.write_str("line ends inside a JSON value"),
            JsonError::Unexpected(at) => write!(f, "unexpected byte at offset {at}"),
            JsonError::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
            JsonError::NotAnObject => f.write_str("not a JSON object"),
            JsonError::TrailingBytes(at) => write!(f, "trailing bytes at offset {at}"),
            JsonError::EscapedKey(at) => write!(f, "escaped object key at offset {at}"),
            JsonError::DuplicateKey(at) => write!(f, "repeated member at offset {at}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// JSON's whitespace (RFC 8259): space, tab, carriage return, line feed.
pub(crate) fn is_ws(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A validating walk over JSON bytes.
pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| is_ws(&b)) {
            self.at += 1;
        }
    }

    pub(crate) fn eat(&mut self, byte: u8) -> Result<(), JsonError> {
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
    pub(crate) fn value(&mut self, depth: u8) -> Result<Range<usize>, JsonError> {
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

    pub(crate) fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
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

    pub(crate) fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    pub(crate) fn number(&mut self) -> Result<(), JsonError> {
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

    pub(crate) fn unexpected(&self) -> JsonError {
        if self.at >= self.bytes.len() { JsonError::Truncated } else { JsonError::Unexpected(self.at) }
    }

    /// Moves past the bytes of a string that need no closer look: up to
    /// its first quote, backslash or control byte, in one tight loop.
    fn skip_plain(&mut self) {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        self.at += rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(rest.len());
    }

    pub(crate) fn string(&mut self) -> Result<(), JsonError> {
        self.eat(b'"')?;
        loop {
            self.skip_plain();
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

    pub(crate) fn array(&mut self, depth: u8) -> Result<(), JsonError> {
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
    /// Keys are compared raw everywhere, so a key with an escape is refused:
    /// `"m\u0065thod"` must not hide a member from the proxy that the pool
    /// would read.
    pub(crate) fn members(
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
            if key.contains(&b'\\') {
                return Err(JsonError::EscapedKey(key_start));
            }
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

    pub(crate) fn object(&mut self, depth: u8) -> Result<(), JsonError> {
        self.members(depth, |_, _| {})
    }
}
