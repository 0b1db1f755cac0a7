//! Test support for loka-stratum: a scripted, share-checking Stratum V1 pool
//! ([`CheckingPool`]), line-level and hashing miners ([`ScriptedMiner`],
//! [`HashingMiner`]) and exact share checking ([`check_share`]).
//!
//! Everything is std only: threads and blocking sockets with read timeouts.
//! Every wait is bounded by a deadline.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod browser;
pub mod cli;
pub mod daemon;
pub mod miner;
pub mod pool;
pub mod share;

pub use daemon::{Daemon, http_answer, http_request};
pub use miner::{HashingMiner, MineReport, MinerOptions, ScriptedMiner, ShareOutcome, SubmittedShare};
pub use pool::{
    CheckingPool, ConnInfo, LoginFilter, LoginRecord, PoolOptions, PoolState, PoolStats, SubmitOutcome,
    SubmitRecord, VersionRolling,
};
pub use share::{Job, ShareError, check_share, hex_decode, hex_encode, sha256d};

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Default timeout used by helpers when a test does not care.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `Instant::now() + timeout`.
pub fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

/// Receives from `rx`, waiting at most until `deadline`.
pub fn deadline_recv<T>(rx: &Receiver<T>, deadline: Instant) -> Option<T> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(remaining) {
        Ok(v) => Some(v),
        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
    }
}

/// Result of one [`LineReader::read_line`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A complete line, without its `\n` / `\r\n` terminator.
    Line(String),
    /// The deadline passed before a complete line arrived.
    Timeout,
    /// The peer closed the connection (EOF) or it was reset.
    Closed,
}

/// Reads `\n`-terminated lines of any length from a blocking socket, with
/// deadlines. Partial lines survive timeouts.
pub struct LineReader {
    stream: TcpStream,
    buf: Vec<u8>,
    scanned: usize,
    chunk: Vec<u8>,
    closed: bool,
}

impl LineReader {
    /// Wraps a stream (usually a `try_clone` of the writing half).
    pub fn new(stream: TcpStream) -> LineReader {
        LineReader { stream, buf: Vec::new(), scanned: 0, chunk: vec![0; 64 * 1024], closed: false }
    }

    /// Bytes received after the last complete line (a truncated line at EOF).
    pub fn partial(&self) -> &[u8] {
        &self.buf
    }

    /// Returns the next line, waiting at most until `deadline`.
    pub fn read_line(&mut self, deadline: Instant) -> ReadOutcome {
        self.read_line_inner(Some(deadline))
    }

    /// Returns a line if one is already complete or readable without waiting
    /// ([`ReadOutcome::Timeout`] otherwise). Briefly switches the socket to
    /// non-blocking mode, so do not write to a clone of it from another thread
    /// meanwhile.
    pub fn poll_line(&mut self) -> ReadOutcome {
        self.read_line_inner(None)
    }

    fn take_line(&mut self) -> Option<String> {
        let pos = self.buf[self.scanned..].iter().position(|&b| b == b'\n')?;
        let end = self.scanned + pos;
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        self.scanned = 0;
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_line_inner(&mut self, deadline: Option<Instant>) -> ReadOutcome {
        if let Some(line) = self.take_line() {
            return ReadOutcome::Line(line);
        }
        self.scanned = self.buf.len();
        if self.closed {
            return ReadOutcome::Closed;
        }
        let Some(deadline) = deadline else {
            if self.stream.set_nonblocking(true).is_err() {
                self.closed = true;
                return ReadOutcome::Closed;
            }
            let r = self.stream.read(&mut self.chunk);
            let _ = self.stream.set_nonblocking(false);
            self.absorb(r);
            return match self.take_line() {
                Some(line) => ReadOutcome::Line(line),
                None if self.closed => ReadOutcome::Closed,
                None => {
                    self.scanned = self.buf.len();
                    ReadOutcome::Timeout
                }
            };
        };
        loop {
            if let Some(line) = self.take_line() {
                return ReadOutcome::Line(line);
            }
            self.scanned = self.buf.len();
            if self.closed {
                return ReadOutcome::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return ReadOutcome::Timeout;
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(wait)).is_err() {
                self.closed = true;
                continue;
            }
            let r = self.stream.read(&mut self.chunk);
            self.absorb(r);
        }
    }

    fn absorb(&mut self, r: io::Result<usize>) {
        match r {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.closed = true,
        }
    }
}
