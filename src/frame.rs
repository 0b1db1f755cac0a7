//! Line framing over non-blocking sockets.
//!
//! Reads land in one read buffer shared by every connection on the thread
//! (safe because a read and the processing of its lines happen without an
//! `.await` in between). A connection keeps only the partial line left at the
//! end of a read ([`Reader`]) and the bytes its peer has not taken yet
//! ([`Writer`]); both are empty for an idle miner, which keeps idle sessions
//! small.
//!
//! Invariants: a line longer than the limit is an error, never truncated or
//! passed on in pieces; the carried partial line is always shorter than the
//! limit, so it plus one read always fits the shared buffer.

use std::io::{self, Read, Write};

/// Bytes read from a socket per call, on top of a carried partial line.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The shared read buffer for lines of at most `max_line` bytes.
pub fn read_buffer(max_line: usize) -> Vec<u8> {
    vec![0; max_line + 1 + READ_CHUNK_BYTES]
}

/// Why reading lines stopped.
#[derive(Debug)]
pub enum FrameError<E> {
    /// A line (or an unfinished one) is longer than the limit.
    TooLong {
        /// Bytes seen so far in that line.
        size: usize,
    },
    /// The socket failed.
    Io(io::Error),
    /// The line handler failed.
    Line(E),
}

/// What one read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// Bytes arrived (all complete lines were handled).
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

/// The receiving half of a line-framed connection.
#[derive(Debug)]
pub struct Reader {
    carry: Vec<u8>,
    max_line: usize,
}

impl Reader {
    /// A reader for lines of at most `max_line` bytes (without the `\n`).
    pub fn new(max_line: usize) -> Self {
        Reader { carry: Vec::new(), max_line }
    }

    /// Bytes of an unfinished line held between reads.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// The unfinished line held between reads.
    pub fn unfinished(&self) -> &[u8] {
        &self.carry
    }

    /// Reads once from `src` into `buf` and calls `on_line` for each complete
    /// line (without `\n`); an error from `on_line` stops the read.
    /// `buf` must come from [`read_buffer`] for at least this reader's limit.
    pub fn read_lines<E>(
        &mut self,
        mut src: impl Read,
        buf: &mut [u8],
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Got, FrameError<E>> {
        let carried = self.carry.len();
        let Some(head) = buf.get_mut(..carried) else {
            return Err(FrameError::TooLong { size: carried });
        };
        head.copy_from_slice(&self.carry);
        let n = loop {
            match src.read(&mut buf[carried..]) {
                Ok(0) => return Ok(Got::Eof),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::WouldBlock),
                Err(e) => return Err(FrameError::Io(e)),
            }
        };
        let data = &buf[..carried + n];
        let mut start = 0;
        let mut from = carried;
        while let Some(at) = data[from..].iter().position(|&b| b == b'\n') {
            let end = from + at;
            let line = &data[start..end];
            if line.len() > self.max_line {
                return Err(FrameError::TooLong { size: line.len() });
            }
            start = end + 1;
            from = start;
            on_line(line).map_err(FrameError::Line)?;
        }
        let rest = &data[start..];
        if rest.len() > self.max_line {
            return Err(FrameError::TooLong { size: rest.len() });
        }
        self.carry.clear();
        if rest.is_empty() {
            release(&mut self.carry);
        } else {
            reuse(&mut self.carry);
            self.carry.extend_from_slice(rest);
        }
        Ok(Got::Data(n))
    }
}

/// The sending half: bytes the peer has not taken yet.
///
/// A partial write advances a cursor instead of shifting the buffer; the
/// taken prefix is dropped only once it is at least half the buffer, so each
/// byte is moved at most once on average however small the writes are.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    start: usize,
}

impl Writer {
    /// Bytes waiting for the peer.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Sends `bytes` after anything already pending, writing what the socket
    /// takes now and keeping the rest. Returns the bytes written now.
    pub fn send(&mut self, mut dst: impl Write, bytes: &[u8]) -> io::Result<usize> {
        if self.pending() > 0 {
            self.compact();
            self.buf.extend_from_slice(bytes);
            return self.flush(dst);
        }
        let written = write_some(&mut dst, bytes)?;
        self.buf.clear();
        self.start = 0;
        if written < bytes.len() {
            reuse(&mut self.buf);
            self.buf.extend_from_slice(&bytes[written..]);
        }
        Ok(written)
    }

    /// Writes pending bytes until the socket would block. Returns bytes written.
    pub fn flush(&mut self, mut dst: impl Write) -> io::Result<usize> {
        let written = write_some(&mut dst, &self.buf[self.start..])?;
        self.start += written;
        if self.start == self.buf.len() {
            self.start = 0;
            release(&mut self.buf);
        }
        Ok(written)
    }

    /// Drops the taken prefix once it is at least half the buffer.
    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
    }
}

/// Most emptied buffers kept for reuse on a thread.
const MAX_SPARE_BUFFERS: usize = 16;
/// Capacity above which an emptied buffer is freed, not kept.
const MAX_SPARE_CAPACITY: usize = 4 * 1024;

thread_local! {
    /// Emptied carry and write buffers, for the next connection that needs
    /// one.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives an emptied buffer back: an idle connection holds none (a pool's
/// notifies split across reads often on real networks, and each connection
/// kept a few KiB for good). Up to [`MAX_SPARE_BUFFERS`] of at most
/// [`MAX_SPARE_CAPACITY`] are kept on the thread for [`reuse`], so a line
/// split across reads costs no allocation in the usual case either.
fn release(buf: &mut Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    let mut spare = std::mem::take(buf);
    if spare.capacity() <= MAX_SPARE_CAPACITY {
        spare.clear();
        SPARE.with_borrow_mut(|kept| {
            if kept.len() < MAX_SPARE_BUFFERS {
                kept.push(spare);
            }
        });
    }
}

/// Before `buf` takes bytes: a kept buffer when it has none.
fn reuse(buf: &mut Vec<u8>) {
    if buf.capacity() == 0
        && let Some(spare) = SPARE.with_borrow_mut(Vec::pop)
    {
        *buf = spare;
    }
}

/// Writes as much of `bytes` as the socket takes without blocking.
fn write_some(dst: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match dst.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out its chunks one read at a time.
    struct Chunks(Vec<&'static [u8]>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    fn lines(max: usize, chunks: Vec<&'static [u8]>) -> (Vec<String>, Result<Got, FrameError<()>>) {
        let mut src = Chunks(chunks);
        let mut buf = read_buffer(max);
        let mut reader = Reader::new(max);
        let mut got = Vec::new();
        loop {
            let r = reader.read_lines(&mut src, &mut buf, |l| {
                got.push(String::from_utf8_lossy(l).into_owned());
                Ok::<_, ()>(())
            });
            match r {
                Ok(Got::Data(_)) => continue,
                other => return (got, other),
            }
        }
    }

    #[test]
    fn joins_lines_across_reads() {
        let (got, end) = lines(64, vec![b"{\"a\":1}\n{\"b\"", b":2}\n", b"{\"c\":3}\r\n"]);
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}\r"]);
        assert!(matches!(end, Ok(Got::WouldBlock)));
    }

    #[test]
    fn an_emptied_carry_is_given_back_and_the_next_split_line_reuses_it() {
        let mut buf = read_buffer(64);
        let mut reader = Reader::new(64);
        let mut src = Chunks(vec![b"{\"a\"", b":1}\n", b"{\"b\"", b":2}\n"]);
        let mut read = |reader: &mut Reader| {
            reader.read_lines(&mut src, &mut buf, |_| Ok::<_, ()>(())).map(|_| ()).unwrap();
        };
        SPARE.with_borrow_mut(Vec::clear);
        read(&mut reader);
        assert!(reader.carry.capacity() > 0, "a partial line is carried");
        let first = reader.carry.as_ptr();
        read(&mut reader);
        assert_eq!(reader.carry.capacity(), 0, "an idle connection holds no buffer");
        assert_eq!(SPARE.with_borrow(Vec::len), 1);
        read(&mut reader);
        assert_eq!(reader.carry.as_ptr(), first, "the kept buffer is reused, not a new one");
        assert_eq!(SPARE.with_borrow(Vec::len), 0);
    }

    #[test]
    fn the_spare_buffers_are_bounded_in_number_and_size() {
        SPARE.with_borrow_mut(Vec::clear);
        for _ in 0..MAX_SPARE_BUFFERS * 2 {
            release(&mut Vec::with_capacity(64));
        }
        assert_eq!(SPARE.with_borrow(Vec::len), MAX_SPARE_BUFFERS);
        SPARE.with_borrow_mut(Vec::clear);
        release(&mut Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
        assert_eq!(SPARE.with_borrow(Vec::len), 0, "a large buffer is freed, not kept");
    }

    #[test]
    fn long_lines_fail_whole() {
        let (got, end) = lines(8, vec![b"12345678\n123456789\n"]);
        assert_eq!(got, vec!["12345678"]);
        assert!(matches!(end, Err(FrameError::TooLong { size: 9 })));
        let (_, end) = lines(8, vec![b"12345", b"6789"]);
        assert!(matches!(end, Err(FrameError::TooLong { size: 9 })));
    }

    #[test]
    fn eof_is_reported() {
        let mut reader = Reader::new(8);
        let mut buf = read_buffer(8);
        let r = reader.read_lines(&b""[..], &mut buf, |_| Ok::<_, ()>(()));
        assert!(matches!(r, Ok(Got::Eof)));
    }

    /// A sink that takes at most `room` bytes, then would block.
    struct Sink {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_move_a_cursor() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = Writer::default();
        let mut sink = Sink { room: 100, got: Vec::new() };
        w.send(&mut sink, &data[..5000]).unwrap();
        let mut next = 5000;
        while w.pending() > 0 {
            sink.room = 64;
            if next < data.len() {
                // More arrives while the peer is slow.
                w.send(&mut sink, &data[next..next + 250]).unwrap();
                next += 250;
                // Appending drops the taken prefix once it is half the buffer.
                assert!(w.start <= w.buf.len() / 2 + 64, "taken prefix kept: {}", w.start);
            } else {
                w.flush(&mut sink).unwrap();
            }
            assert!(w.start == 0 || w.start < w.buf.len(), "cursor past the end");
        }
        assert_eq!(sink.got, data);
    }

    #[test]
    fn writer_keeps_order_when_blocked() {
        let mut sink = Sink { room: 3, got: Vec::new() };
        let mut w = Writer::default();
        assert_eq!(w.send(&mut sink, b"hello").unwrap(), 3);
        assert_eq!(w.send(&mut sink, b" world").unwrap(), 0);
        assert_eq!(w.pending(), 8);
        sink.room = 100;
        w.flush(&mut sink).unwrap();
        assert_eq!(sink.got, b"hello world");
        assert_eq!(w.pending(), 0);
    }
}
