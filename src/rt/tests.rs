//! The reactor over real sockets on 127.0.0.1: every wait is bounded by a
//! timer of its own, so a lost edge fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Longest wait for anything in these tests.
const BOUND: Duration = Duration::from_secs(10);

/// `work`, or a panic naming `what` after [`BOUND`].
async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> T {
    work.or(async {
        Timer::after(BOUND).await;
        panic!("{what}: nothing after {BOUND:?}");
    })
    .await
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected pair: ours on the reactor, theirs a blocking std socket.
fn pair() -> (TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let ours = block_on(connect(addr)).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    theirs.set_read_timeout(Some(BOUND)).unwrap();
    (ours, theirs)
}

#[test]
fn bytes_cross_both_ways_and_a_listener_accepts() {
    block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(BOUND)).unwrap();
            s.write_all(b"ping\n").unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            buf
        });
        let (mut stream, _) = bounded("accept", listener.accept()).await.unwrap();
        let mut buf = [0u8; 5];
        bounded("read", stream.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"ping\n");
        stream.write_all(b"pong\n").await.unwrap();
        assert_eq!(&peer.join().unwrap(), b"pong\n");
    });
}

#[test]
fn end_of_file_right_behind_the_last_bytes_is_seen() {
    // The bytes and the FIN come in one edge: the short read that drains
    // the bytes must not make the reader wait for another edge.
    let (mut ours, mut theirs) = pair();
    // Drained first, so the bytes and the FIN come as one event.
    assert_eq!(Read::read(&mut &ours, &mut [0u8; 16]).unwrap_err().kind(), ErrorKind::WouldBlock);
    theirs.write_all(b"last words\n").unwrap();
    theirs.shutdown(Shutdown::Both).unwrap();
    block_on(async {
        let mut all = Vec::new();
        bounded("end of file", ours.read_to_end(&mut all)).await.unwrap();
        assert_eq!(all, b"last words\n");
    });
}

#[test]
fn a_megabyte_arrives_whole_through_short_and_full_reads() {
    let (mut ours, mut theirs) = pair();
    let sent: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let expected = sent.clone();
    let writer = std::thread::spawn(move || {
        for chunk in sent.chunks(7919) {
            theirs.write_all(chunk).unwrap();
        }
    });
    block_on(async {
        let mut got = vec![0u8; expected.len()];
        bounded("a megabyte", ours.read_exact(&mut got)).await.unwrap();
        assert!(got == expected, "the bytes differ");
    });
    writer.join().unwrap();
}

#[test]
fn a_full_socket_waits_for_the_reader_then_writes_on() {
    let (mut ours, mut theirs) = pair();
    // Fill the socket until it would block: the nonblocking write clears
    // its readiness, so the next write must wait for the reader's edge.
    let chunk = [7u8; 65536];
    let mut queued = 0usize;
    loop {
        match Write::write(&mut &ours, &chunk) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let more = 1 << 20;
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; queued + more];
        theirs.read_exact(&mut buf).unwrap();
        buf.iter().all(|&b| b == 7)
    });
    block_on(async {
        bounded("write after the socket was full", ours.write_all(&vec![7u8; more])).await.unwrap();
    });
    assert!(reader.join().unwrap());
}

#[test]
fn timers_fire_in_order_and_a_moved_timer_fires_at_its_new_time() {
    block_on(async {
        let start = Instant::now();
        let mut late = Timer::at(start + Duration::from_secs(3600));
        let early = Timer::after(Duration::from_millis(30));
        // Both polled once (registered), then the late one is moved before
        // the early one.
        let first = early.or(async { (&mut late).await });
        let fired = bounded("the early timer", first).await;
        assert!(fired >= start + Duration::from_millis(30));
        assert!(Instant::now() >= fired);
        late.set_at(Instant::now() + Duration::from_millis(20));
        let moved = bounded("the moved timer", &mut late).await;
        assert!(Instant::now() >= moved);
        // Once fired it stays pending until set again.
        let again = async { Some((&mut late).await) }.or(async {
            Timer::after(Duration::from_millis(50)).await;
            None
        });
        assert_eq!(again.await, None);
    });
}

#[test]
fn a_wake_from_another_thread_ends_the_wait() {
    // No timer is pending: only the eventfd can end the epoll_wait.
    let (tx, rx) = smol::channel::bounded::<u32>(1);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx.send_blocking(42).unwrap();
    });
    assert_eq!(block_on(rx.recv()).unwrap(), 42);
    sender.join().unwrap();
}

#[test]
fn executor_tasks_run_and_a_failed_connect_is_an_error() {
    let ex = smol::LocalExecutor::new();
    let refused = {
        // A port that was just free: nothing listens there.
        let l = std::net::TcpListener::bind(loopback()).unwrap();
        l.local_addr().unwrap()
    };
    let task = ex.spawn(async move { connect(refused).await.map(drop) });
    let result = block_on(ex.run(bounded("connect", task)));
    assert_eq!(result.unwrap_err().kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn slots_are_reused_so_the_table_stays_as_large_as_the_most_open_at_once() {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    block_on(async {
        for _ in 0..200 {
            let a = connect(addr).await.unwrap();
            let b = connect(addr).await.unwrap();
            drop((a, b));
            for _ in 0..2 {
                drop(listener.accept().unwrap());
            }
        }
    });
    // The pair above, plus nothing else on this test's thread.
    assert_eq!(reactor::with(|r| r.slots()), 2);
}

#[test]
fn a_name_resolves_on_a_lookup_thread_and_connects() {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let port = listener.local_addr().unwrap().port();
    block_on(async {
        let stream = bounded("connect by name", connect_host("localhost", port)).await;
        // localhost may resolve to ::1 first, where nothing listens: the
        // next address is tried.
        let stream = stream.unwrap();
        assert_eq!(stream.get_ref().peer_addr().unwrap().port(), port);
        let again = resolve("localhost", port).await.unwrap();
        assert!(again.iter().any(|a| a.port() == port));
    });
}

#[test]
fn every_task_waiting_on_one_socket_wakes_not_only_the_first() {
    let ex = smol::LocalExecutor::new();
    let (ours, mut theirs) = pair();
    let ours = std::rc::Rc::new(ours);
    // Three tasks wait to read the same socket: one waker kept inline, the
    // others in the overflow list; each must be woken by the one edge.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let ours = ours.clone();
            ex.spawn(async move { smol::future::poll_fn(|cx| ours.poll_ready(Direction::Read, cx)).await })
        })
        .collect();
    let all = async {
        // Every task is waiting before the byte is sent.
        for _ in 0..3 {
            smol::future::yield_now().await;
        }
        theirs.write_all(b"x").unwrap();
        for task in waiting {
            task.await;
        }
    };
    block_on(ex.run(bounded("three readers woken", all)));
}
