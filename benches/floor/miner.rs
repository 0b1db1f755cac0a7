//! The bench's miners. A [`Miner`] does one submit round trip at a time on
//! a blocking socket (the latency and per-share figures); a [`Fleet`] holds
//! many miners on one epoll set in the calling thread (idle memory, and all
//! of them submitting at once), so a thousand miners cost one thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::Failure;
use crate::relay::{Epoll, Event};
use crate::stratum::{HANDSHAKE, find, submit_line, verdict};

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    Ok(stream)
}

/// A miner on a blocking socket with a read timeout.
pub struct Miner {
    reader: BufReader<TcpStream>,
    line: Vec<u8>,
    buf: Vec<u8>,
    next_id: u64,
}

impl Miner {
    /// Connects, subscribes, authorizes and waits for the job.
    pub fn join(addr: SocketAddr, timeout: Duration) -> Result<Miner, Failure> {
        let stream = connect(addr, timeout)?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| format!("read timeout: {e}"))?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| format!("write timeout: {e}"))?;
        let mut miner =
            Miner { reader: BufReader::new(stream), line: Vec::new(), buf: Vec::new(), next_id: 10 };
        miner.send(HANDSHAKE)?;
        while find(miner.read_line()?, b"mining.notify").is_none() {}
        Ok(miner)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.reader.get_mut().write_all(bytes).map_err(|e| format!("miner write: {e}"))
    }

    fn read_line(&mut self) -> Result<&[u8], Failure> {
        self.line.clear();
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(&self.line),
            Err(e) => Err(format!("miner read: {e}")),
        }
    }

    /// One submit and its answer; returns the round trip. A refusal fails.
    pub fn round_trip(&mut self) -> Result<Duration, Failure> {
        self.next_id += 1;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        submit_line(&mut buf, self.next_id);
        let started = Instant::now();
        self.send(&buf)?;
        self.buf = buf;
        loop {
            match verdict(self.read_line()?) {
                Some(true) => return Ok(started.elapsed()),
                Some(false) => {
                    return Err(format!("share refused: {}", String::from_utf8_lossy(&self.line).trim_end()));
                }
                None => {}
            }
        }
    }

    /// `n` round trips, failing on the first error.
    pub fn round_trips(&mut self, n: usize) -> Result<(), Failure> {
        (0..n).try_for_each(|_| self.round_trip().map(drop))
    }
}

/// What became of the submits of one burst.
#[derive(Default, Clone, Copy)]
pub struct Burst {
    pub sent: usize,
    pub accepted: usize,
    pub refused: usize,
    pub closed: usize,
    pub timed_out: usize,
    pub wall: Duration,
}

impl Burst {
    pub fn errors(&self) -> usize {
        self.refused + self.closed + self.timed_out
    }

    pub fn add(&mut self, other: &Burst) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.closed += other.closed;
        self.timed_out += other.timed_out;
        self.wall += other.wall;
    }
}

/// Many miners driven from the calling thread through one epoll set.
pub struct Fleet {
    epoll: Epoll,
    /// `None` once the connection closed or failed.
    streams: Vec<Option<TcpStream>>,
    partial: Vec<Vec<u8>>,
}

/// Where a miner of the fleet is in what it waits for.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    Pending,
    Done,
    Refused,
    Closed,
}

impl Fleet {
    /// Connects `n` miners to `addr`; each subscribes and authorizes, and
    /// all are waited for until each has its job (within `timeout`).
    pub fn join(addr: SocketAddr, n: usize, timeout: Duration) -> Result<Fleet, Failure> {
        let epoll = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            let mut stream = connect(addr, timeout).map_err(|e| format!("miner {i}: {e}"))?;
            stream.write_all(HANDSHAKE).map_err(|e| format!("miner {i}: {e}"))?;
            epoll.add(&stream, i as u64).map_err(|e| format!("epoll add: {e}"))?;
            streams.push(Some(stream));
        }
        let mut fleet = Fleet { epoll, streams, partial: vec![Vec::new(); n] };
        let waits = fleet.await_all(timeout, |line| find(line, b"mining.notify").map(|_| true))?;
        let missing = waits.iter().filter(|w| **w != Wait::Done).count();
        if missing > 0 {
            return Err(format!("{missing} of {n} miners got no job within {timeout:?}"));
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Every live miner sends one submit, back to back; then all answers are
    /// awaited (within `timeout`). Request ids carry `round`.
    pub fn burst(&mut self, round: u64, timeout: Duration) -> Result<Burst, Failure> {
        let mut line = Vec::with_capacity(256);
        let mut result = Burst::default();
        let started = Instant::now();
        for (i, slot) in self.streams.iter_mut().enumerate() {
            let Some(stream) = slot else { continue };
            line.clear();
            submit_line(&mut line, round << 32 | i as u64);
            if stream.write_all(&line).is_ok() {
                result.sent += 1;
            } else {
                *slot = None;
            }
        }
        let waits = self.await_all(timeout, verdict)?;
        result.wall = started.elapsed();
        result.accepted = waits.iter().filter(|w| **w == Wait::Done).count();
        result.refused = waits.iter().filter(|w| **w == Wait::Refused).count();
        result.closed = waits.iter().filter(|w| **w == Wait::Closed).count();
        result.timed_out = waits.iter().filter(|w| **w == Wait::Pending).count();
        Ok(result)
    }

    /// Reads from every live miner until `done` gives a verdict on one of
    /// its lines, the miner closes, or `timeout` passes.
    fn await_all(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[u8]) -> Option<bool>,
    ) -> Result<Vec<Wait>, Failure> {
        let deadline = Instant::now() + timeout;
        let mut waits: Vec<Wait> =
            self.streams.iter().map(|s| if s.is_some() { Wait::Pending } else { Wait::Closed }).collect();
        let mut pending = waits.iter().filter(|w| **w == Wait::Pending).count();
        let mut events = vec![Event { events: 0, token: 0 }; 256];
        let mut buf = vec![0u8; 16 * 1024];
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            let ready = self.epoll.wait(&mut events, ms).map_err(|e| format!("epoll wait: {e}"))?;
            for &Event { token, .. } in ready {
                let i = token as usize;
                let Some(stream) = &self.streams[i] else { continue };
                let n = match (&*stream).read(&mut buf) {
                    Ok(n @ 1..) => n,
                    _ => {
                        // Closing drops the socket from the epoll set.
                        self.streams[i] = None;
                        if waits[i] == Wait::Pending {
                            waits[i] = Wait::Closed;
                            pending -= 1;
                        }
                        continue;
                    }
                };
                let partial = &mut self.partial[i];
                partial.extend_from_slice(&buf[..n]);
                while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                    if waits[i] == Wait::Pending {
                        match done(&partial[..end]) {
                            Some(true) => waits[i] = Wait::Done,
                            Some(false) => waits[i] = Wait::Refused,
                            None => {}
                        }
                        if waits[i] != Wait::Pending {
                            pending -= 1;
                        }
                    }
                    partial.drain(..=end);
                }
            }
        }
        Ok(waits)
    }
}
