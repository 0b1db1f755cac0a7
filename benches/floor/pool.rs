//! A pool cheap enough not to weigh in the figures: one thread, one epoll
//! set for all its connections, each request answered at once with one
//! `write`. It answers subscribe, answers authorize and then sends a
//! difficulty and a ~1 KiB job, and accepts every other request (submits)
//! without checking it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use crate::relay::{Epoll, Event};
use crate::stratum::{find, notify_line, raw_id};

/// The listener's token; a connection's is its slot.
const LISTENER: u64 = u64::MAX;

pub struct Pool {
    pub addr: SocketAddr,
}

/// One connection: its unfinished line, and its extranonce1.
struct Conn {
    stream: TcpStream,
    partial: Vec<u8>,
    en1: u32,
}

impl Pool {
    /// Listens on 127.0.0.1 port 0 and serves on a thread of its own.
    pub fn start() -> io::Result<Pool> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let epoll = Epoll::new()?;
        epoll.add(&listener, LISTENER)?;
        thread::Builder::new().name("pool".into()).spawn(move || {
            if let Err(e) = serve(&listener, &epoll) {
                eprintln!("bench pool stopped: {e}");
            }
        })?;
        Ok(Pool { addr })
    }
}

fn serve(listener: &TcpListener, epoll: &Epoll) -> io::Result<()> {
    let notify = notify_line();
    // Slots are never reused (see the relay), a few thousand over a run.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = [Event { events: 0, token: 0 }; 256];
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        for &Event { token, .. } in epoll.wait(&mut events, -1)? {
            if token == LISTENER {
                let (stream, _) = listener.accept()?;
                stream.set_nodelay(true)?;
                epoll.add(&stream, conns.len() as u64)?;
                let en1 = 0x0800_0000 + conns.len() as u32;
                conns.push(Some(Conn { stream, partial: Vec::new(), en1 }));
                continue;
            }
            let Some(Some(conn)) = conns.get_mut(token as usize) else { continue };
            let n = match (&conn.stream).read(&mut buf) {
                Ok(0) | Err(_) => {
                    conns[token as usize] = None;
                    continue;
                }
                Ok(n) => n,
            };
            out.clear();
            let mut lines = &buf[..n];
            // Most reads hold whole lines; a line split across reads is
            // put together in `partial` first.
            if !conn.partial.is_empty() {
                let Some(end) = lines.iter().position(|&b| b == b'\n') else {
                    conn.partial.extend_from_slice(lines);
                    continue;
                };
                conn.partial.extend_from_slice(&lines[..=end]);
                answer(&conn.partial, conn.en1, &notify, &mut out);
                conn.partial.clear();
                lines = &lines[end + 1..];
            }
            while let Some(end) = lines.iter().position(|&b| b == b'\n') {
                answer(&lines[..end], conn.en1, &notify, &mut out);
                lines = &lines[end + 1..];
            }
            conn.partial.extend_from_slice(lines);
            if !out.is_empty() && (&conn.stream).write_all(&out).is_err() {
                conns[token as usize] = None;
            }
        }
    }
}

/// Appends the answer to one request line to `out`.
fn answer(line: &[u8], en1: u32, notify: &str, out: &mut Vec<u8>) {
    if line.trim_ascii().is_empty() {
        return;
    }
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(raw_id(line));
    if find(line, b"\"mining.subscribe\"").is_some() {
        let _ = writeln!(out, ",\"result\":[[],\"{en1:08x}\",4],\"error\":null}}");
    } else if find(line, b"\"mining.authorize\"").is_some() {
        out.extend_from_slice(b",\"result\":true,\"error\":null}\n");
        out.extend_from_slice(b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[65536]}\n");
        out.extend_from_slice(notify.as_bytes());
    } else {
        out.extend_from_slice(b",\"result\":true,\"error\":null}\n");
    }
}
