use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};

use super::*;

/// Long enough for a loaded test machine, short enough to fail fast.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(60);

// ---- The wire format, on bytes from the MQTT 3.1.1 specification. ----

#[test]
fn remaining_lengths_encode_and_decode_as_in_the_spec() {
    // Section 2.2.3, table 2.4: the edges of each encoded size.
    for (length, bytes) in [
        (0, &[0x00][..]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ] {
        let mut out = Vec::new();
        encode_remaining_length(length, &mut out).unwrap();
        assert_eq!(out, bytes, "{length}");
        assert_eq!(decode_remaining_length(bytes), Ok(Some((length, bytes.len()))), "{length}");
        // Cut short, it is not there yet.
        assert_eq!(decode_remaining_length(&bytes[..bytes.len() - 1]), Ok(None), "{length}");
    }
    assert!(decode_remaining_length(&[0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    let too_long = encode_remaining_length(MAX_REMAINING_BYTES + 1, &mut Vec::new()).unwrap_err();
    assert_eq!(too_long.to_string(), "MQTT packet is 268435456 bytes long, more than the 268435455 allowed");
}

#[test]
fn connect_packets_are_encoded_as_in_the_spec() {
    // Section 3.1: fixed header, "MQTT", level 4, flags, keep-alive, then
    // client id, will topic, will message, user name, password.
    let plain = encode_connect("gw", 60, None, None).unwrap();
    assert_eq!(plain, [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'g', b'w']);

    let will = Will { topic: "a/w", payload: b"off", retain: true };
    let full = encode_connect("gw", 300, Some(("u", Some("pw"))), Some(will)).unwrap();
    #[rustfmt::skip]
    let want = [
        0x10, 31,
        0, 4, b'M', b'Q', b'T', b'T', 4,
        0x80 | 0x40 | 0x20 | 0x04 | 0x02, // user, password, will retain, will (QoS 0), clean
        0x01, 0x2C, // 300 s
        0, 2, b'g', b'w',
        0, 3, b'a', b'/', b'w',
        0, 3, b'o', b'f', b'f',
        0, 1, b'u',
        0, 2, b'p', b'w',
    ];
    assert_eq!(full, want);

    let user_only = encode_connect("", 0, Some(("u", None)), None).unwrap();
    assert_eq!(user_only, [0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x82, 0, 0, 0, 0, 0, 1, b'u']);

    let wildcard_will = Will { topic: "a/#", payload: b"", retain: false };
    assert!(matches!(encode_connect("gw", 60, None, Some(wildcard_will)), Err(SinkError::Invalid { .. })));
    let nul = encode_connect("g\0w", 60, None, None).unwrap_err();
    assert_eq!(nul.to_string(), "MQTT client id \"g\\0w\": a client id cannot hold NUL");
    let long_id = "x".repeat(MAX_FIELD_BYTES + 1);
    let err = encode_connect(&long_id, 60, None, None).unwrap_err();
    assert_eq!(err.to_string(), "MQTT client id is 65536 bytes long, more than the 65535 allowed");
}

#[test]
fn publish_packets_carry_qos_1_retain_and_the_packet_id() {
    let id = NonZeroU16::new(10).unwrap();
    let retained = encode_publish("a/b", b"hi", true, id).unwrap();
    assert_eq!(retained, [0x33, 9, 0, 3, b'a', b'/', b'b', 0, 10, b'h', b'i']);
    let live = encode_publish("a/b", b"", false, NonZeroU16::MAX).unwrap();
    assert_eq!(live, [0x32, 7, 0, 3, b'a', b'/', b'b', 0xFF, 0xFF]);
    // A payload past 127 bytes takes a second length byte.
    let big = encode_publish("t", &[7; 200], false, id).unwrap();
    assert_eq!(big[..8], [0x32, 0xCD, 0x01, 0, 1, b't', 0, 10]);
    assert_eq!(big.len(), 3 + 205);
}

#[test]
fn topics_that_cannot_be_published_to_are_refused() {
    let id = NonZeroU16::MIN;
    let refused = |topic: &str| encode_publish(topic, b"x", false, id).unwrap_err().to_string();
    let wildcard = "'+' and '#' are wildcards for subscribing; a publish names one topic";
    assert_eq!(refused("home/+/alert"), format!("MQTT topic \"home/+/alert\": {wildcard}"));
    assert_eq!(refused("home/#"), format!("MQTT topic \"home/#\": {wildcard}"));
    assert_eq!(refused("a\0b"), "MQTT topic \"a\\0b\": a topic cannot hold NUL");
    assert_eq!(refused(""), "MQTT topic \"\": a topic cannot be empty");
    let long = "t".repeat(MAX_FIELD_BYTES + 1);
    assert_eq!(refused(&long), "MQTT topic is 65536 bytes long, more than the 65535 allowed");
    assert!(encode_publish(&long[1..], b"x", false, id).is_ok());
}

#[test]
fn packet_ids_cycle_from_1_to_65535_never_0() {
    assert_eq!(next_packet_id(0).get(), 1);
    assert_eq!(next_packet_id(1).get(), 2);
    assert_eq!(next_packet_id(65_534).get(), 65_535);
    assert_eq!(next_packet_id(65_535).get(), 1);
}

/// `decode(bytes)`: `Ok(Some(packet))` taking all of `bytes`, `Ok(None)`
/// for "not all there yet", or `Err(part)` of the error.
fn check(bytes: &[u8], expect: Result<Option<Incoming>, &str>) {
    match (decode(bytes), expect) {
        (Ok(Some((packet, used))), Ok(Some(want))) => {
            assert_eq!((packet, used), (want, bytes.len()), "{bytes:02X?}");
        }
        (Ok(None), Ok(None)) => {}
        (Err(err), Err(part)) => assert!(err.contains(part), "{bytes:02X?}: {err:?} should contain {part:?}"),
        (got, _) => panic!("{bytes:02X?}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn broker_packets_decode() {
    let connack = |session_present, return_code| Ok(Some(Incoming::ConnAck { session_present, return_code }));
    check(&[0x20, 0x02, 0x00, 0x00], connack(false, 0));
    check(&[0x20, 0x02, 0x01, 0x00], connack(true, 0));
    check(&[0x20, 0x02, 0x00, 0x05], connack(false, 5));
    check(&[0x40, 0x02, 0x00, 0x0A], Ok(Some(Incoming::PubAck { packet_id: 10 })));
    check(&[0x40, 0x02, 0xFF, 0xFF], Ok(Some(Incoming::PubAck { packet_id: 65_535 })));
    check(&[0xD0, 0x00], Ok(Some(Incoming::PingResp)));
    // Anything else is skipped whole: a SUBACK, a PUBLISH, a reserved type.
    check(&[0x90, 0x03, 0x00, 0x01, 0x00], Ok(Some(Incoming::Other { packet_type: 9 })));
    check(&[0x30, 0x04, 0x00, 0x01, b't', b'x'], Ok(Some(Incoming::Other { packet_type: 3 })));
    check(&[0xF0, 0x00], Ok(Some(Incoming::Other { packet_type: 15 })));
    // Not all there yet.
    check(&[], Ok(None));
    check(&[0x20], Ok(None));
    check(&[0x20, 0x02, 0x00], Ok(None));
    check(&[0x30, 0x80], Ok(None));
    // Malformed.
    check(&[0x20, 0x03, 0x00, 0x00, 0x00], Err("malformed CONNACK"));
    check(&[0x20, 0x02, 0x02, 0x00], Err("malformed CONNACK"));
    check(&[0x21, 0x02, 0x00, 0x00], Err("malformed CONNACK"));
    check(&[0x40, 0x01, 0x00], Err("malformed PUBACK"));
    check(&[0x42, 0x02, 0x00, 0x01], Err("malformed PUBACK"));
    check(&[0xD0, 0x01, 0x00], Err("malformed PINGRESP"));
    check(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], Err("remaining length longer than 4 bytes"));
    // A packet longer than 64 KiB is refused from its header alone.
    check(&[0x30, 0x81, 0x80, 0x04], Err("longer than 64 KiB"));

    // Two packets in one read: the first, and how much it took.
    let two = [0xD0, 0x00, 0x40, 0x02, 0x00, 0x01];
    assert_eq!(decode(&two), Ok(Some((Incoming::PingResp, 2))));
    // Exactly 64 KiB is accepted.
    let mut largest = vec![0x30, 0x80, 0x80, 0x04];
    largest.resize(4 + MAX_INCOMING_BYTES, 0);
    check(&largest, Ok(Some(Incoming::Other { packet_type: 3 })));
}

#[test]
fn decoding_garbage_never_panics() {
    // xorshift64: the same bytes every run.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        let len = (next() % 12) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Ok(Some((_, used))) = decode(&bytes) {
            assert!(used <= bytes.len() && used >= 2, "{bytes:02X?}");
        }
    }
    for first in 0..=255u8 {
        for second in 0..=255u8 {
            let _ = decode(&[first, second, 0xFF, 0x01]);
        }
    }
}

#[test]
fn refusals_are_in_words() {
    assert_eq!(refusal(5), "not authorized");
    assert_eq!(refusal(4), "bad user name or password");
    assert_eq!(refusal(200), "unknown return code 200");
}

// ---- The client against scripted brokers. ----

/// A broker on a free port that accepts one connection and runs `script`
/// on it.
fn scripted(script: impl FnOnce(TcpStream) + Send + 'static) -> (MqttUrl, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
        script(stream);
    });
    (MqttUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap(), broker)
}

/// The next whole packet the client sent (framed by `decode`, which skips
/// any packet type it does not know whole).
fn read_packet(stream: &mut TcpStream) -> Vec<u8> {
    let mut packet = Vec::new();
    loop {
        if let Some((_, used)) = decode(&packet).unwrap() {
            assert_eq!(used, packet.len(), "the client sent more than one packet at once");
            return packet;
        }
        let mut byte = [0u8];
        stream.read_exact(&mut byte).unwrap();
        packet.push(byte[0]);
    }
}

fn connect_to(url: &MqttUrl, timeout: Duration) -> Result<Client, SinkError> {
    crate::rt::block_on(Client::connect(url, "gw", None, KEEP_ALIVE, timeout))
}

#[test]
fn publish_waits_for_the_puback_with_its_own_packet_id() {
    let (url, broker) = scripted(|mut stream| {
        assert_eq!(read_packet(&mut stream)[0], 0x10);
        stream.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
        let publish = read_packet(&mut stream);
        assert_eq!(publish, [0x32, 8, 0, 3, b'a', b'/', b'b', 0, 1, b'x']);
        // Another id, a PINGRESP and a stray PUBLISH first: all skipped.
        stream.write_all(&[0x40, 0x02, 0x00, 0x07, 0xD0, 0x00, 0x30, 0x03, 0x00, 0x01, b't']).unwrap();
        stream.write_all(&[0x40, 0x02, 0x00, 0x01]).unwrap();
        assert_eq!(read_packet(&mut stream), [0x33, 8, 0, 3, b'a', b'/', b'b', 0, 2, b'y']);
        stream.write_all(&[0x40, 0x02, 0x00, 0x02]).unwrap();
        assert_eq!(read_packet(&mut stream), PINGREQ);
        stream.write_all(&[0xD0, 0x00]).unwrap();
        assert_eq!(read_packet(&mut stream), DISCONNECT);
    });
    crate::rt::block_on(async {
        let mut client = Client::connect(&url, "gw", None, KEEP_ALIVE, TEST_TIMEOUT).await.unwrap();
        client.publish("a/b", b"x", false).await.unwrap();
        client.publish("a/b", b"y", true).await.unwrap();
        assert!(client.idle_for() < TEST_TIMEOUT);
        client.ping().await.unwrap();
        client.disconnect().await;
    });
    broker.join().unwrap();
}

#[test]
fn a_publish_without_its_puback_times_out() {
    let (url, broker) = scripted(|mut stream| {
        read_packet(&mut stream);
        stream.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
        read_packet(&mut stream);
        stream.write_all(&[0x40, 0x02, 0x00, 0x09]).unwrap();
        // Hold the connection until the client gives up.
        let _ = stream.read(&mut [0u8; 16]);
    });
    let mut client = connect_to(&url, Duration::from_millis(300)).unwrap();
    let start = Instant::now();
    let err = crate::rt::block_on(client.publish("a", b"x", false)).unwrap_err();
    assert!(matches!(err, SinkError::TimedOut { .. }), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(300) && start.elapsed() < TEST_TIMEOUT);
    drop(client);
    broker.join().unwrap();
}

#[test]
fn connect_times_out_when_the_broker_never_answers() {
    // Never accepted: the kernel takes the CONNECT and nothing answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = MqttUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap();
    let err = connect_to(&url, Duration::from_millis(300)).unwrap_err();
    assert_eq!(err.to_string(), format!("127.0.0.1:{port} did not answer within 300 ms"));
    drop(listener);
}

#[test]
fn a_broker_that_closes_or_talks_nonsense_is_an_error() {
    for (answer, want) in [
        (&[][..], "the broker closed the connection"),
        (&[0x20, 0x03, 0x00, 0x00, 0x00], "the broker sent a malformed CONNACK"),
        (&[0xD0, 0x00], "the broker's first packet is not a CONNACK"),
        (&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], "the broker sent a packet longer than 64 KiB"),
        (&[0x40, 0x03, 0x00, 0x01, 0x02], "the broker sent a malformed PUBACK"),
        // 'H' 'T': a packet of type 4 and 84 bytes, cut short by the close.
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "the broker closed the connection"),
    ] {
        let (url, broker) = scripted(move |mut stream| {
            read_packet(&mut stream);
            stream.write_all(answer).unwrap();
        });
        let err = connect_to(&url, TEST_TIMEOUT).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {want}", url.address()), "{answer:02X?}");
        broker.join().unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = MqttUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap();
    let err = connect_to(&url, TEST_TIMEOUT).unwrap_err();
    assert_eq!(err.to_string(), format!("cannot connect to 127.0.0.1:{port}"));
}

// ---- The client against a real Mosquitto. ----

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Fails the test, naming how to install what is missing.
fn missing(tool: &str, e: impl std::fmt::Display) -> ! {
    panic!(
        "{tool} could not be run ({e}): these tests need a real broker; run `bash .ci/install` \
         (Debian packages mosquitto and mosquitto-clients)"
    )
}

/// A directory of its own for each broker.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("loka-mqtt-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Mosquitto on a free port of 127.0.0.1, killed on drop.
struct Broker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    /// Starts Mosquitto in `dir` with `settings` added to its listener and
    /// waits (up to 5 s) until it listens.
    fn start(dir: PathBuf, settings: &str) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("mosquitto.conf");
        let text = format!("listener {port} 127.0.0.1\npersistence false\nuser root\n{settings}");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.join("mosquitto.log")).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| missing(MOSQUITTO, e));
        let mut broker = Broker { child, port, dir };
        let deadline = Instant::now() + TEST_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(broker.dir.join("mosquitto.log")).unwrap_or_default();
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "mosquitto does not listen on {port} after 5 s:\n{log}");
            thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn url(&self, userinfo: &str) -> MqttUrl {
        MqttUrl::parse(&format!("mqtt://{userinfo}127.0.0.1:{}", self.port)).unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `mosquitto_sub` printing one line per message, read on a thread.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
}

impl Subscriber {
    /// Subscribes on `broker` with `args` (topic, format, credentials); it
    /// gives up by itself after 10 s.
    fn start(broker: &Broker, args: &[&str]) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-W", "10"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| missing("mosquitto_sub", e));
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, lines }
    }

    /// The next message, within 10 s.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("mosquitto_sub printed nothing within 10 s ({e})"))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber to `loka/#` that is known to be subscribed: it has printed
/// the retained `loka/ready` that `client` publishes first.
async fn subscribed(broker: &Broker, client: &mut Client, args: &[&str]) -> Subscriber {
    client.publish("loka/ready", b"1", true).await.unwrap();
    let subscriber = Subscriber::start(broker, args);
    assert_eq!(subscriber.line(), "loka/ready 1");
    subscriber
}

#[test]
fn mosquitto_delivers_publishes_and_keeps_retained_ones() {
    let broker = Broker::start(scratch_dir(), "allow_anonymous true\n");
    crate::rt::block_on(async {
        let mut client =
            Client::connect(&broker.url(""), "gw", None, KEEP_ALIVE, TEST_TIMEOUT).await.unwrap();
        let live = subscribed(&broker, &mut client, &["-t", "loka/#", "-v"]).await;
        client.publish("loka/alert", b"worker s19 offline", false).await.unwrap();
        client.publish("loka/state", br#"{"online":false}"#, true).await.unwrap();
        assert_eq!(live.line(), "loka/alert worker s19 offline");
        assert_eq!(live.line(), r#"loka/state {"online":false}"#);
        client.ping().await.unwrap();

        // A later subscriber gets exactly the retained messages (retain
        // flag 1) before anything published after it subscribed.
        let late = Subscriber::start(&broker, &["-t", "loka/#", "-F", "%r %t %p"]);
        let mut retained = vec![late.line()];
        client.publish("loka/end", b"end", false).await.unwrap();
        loop {
            match late.line() {
                end if end == "0 loka/end end" => break,
                line => retained.push(line),
            }
        }
        retained.sort();
        assert_eq!(retained, ["1 loka/ready 1", r#"1 loka/state {"online":false}"#]);
        client.disconnect().await;
    });
}

#[test]
fn mosquitto_sends_the_will_when_the_connection_drops_but_not_after_disconnect() {
    let broker = Broker::start(scratch_dir(), "allow_anonymous true\n");
    let url = broker.url("");
    crate::rt::block_on(async {
        let mut watcher = Client::connect(&url, "watcher", None, KEEP_ALIVE, TEST_TIMEOUT).await.unwrap();
        let live = subscribed(&broker, &mut watcher, &["-t", "loka/#", "-v"]).await;
        let will = |topic| Some(Will { topic, payload: b"gateway offline", retain: false });

        let polite = Client::connect(&url, "polite", will("loka/will/polite"), KEEP_ALIVE, TEST_TIMEOUT);
        // `disconnect` returns once the broker has closed: its will is gone.
        polite.await.unwrap().disconnect().await;
        let dropped = Client::connect(&url, "dropped", will("loka/will/dropped"), KEEP_ALIVE, TEST_TIMEOUT);
        drop(dropped.await.unwrap());

        assert_eq!(live.line(), "loka/will/dropped gateway offline");
        watcher.publish("loka/end", b"end", false).await.unwrap();
        assert_eq!(live.line(), "loka/end end");
    });
}

#[test]
fn mosquitto_with_passwords_takes_the_right_one_and_refuses_others() {
    let dir = scratch_dir();
    let passwords = dir.join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["loka", "s3c@ret"])
        .status()
        .unwrap_or_else(|e| missing("mosquitto_passwd", e));
    assert!(made.success(), "mosquitto_passwd failed: {made}");
    let settings = format!("allow_anonymous false\npassword_file {}\n", passwords.display());
    let broker = Broker::start(dir, &settings);
    let address = format!("127.0.0.1:{}", broker.port);
    let refused = |url: MqttUrl| connect_to(&url, TEST_TIMEOUT).unwrap_err().to_string();
    assert_eq!(
        refused(broker.url("loka:wrong@")),
        format!("{address} refused the connection: not authorized")
    );
    assert_eq!(refused(broker.url("")), format!("{address} refused the connection: not authorized"));

    crate::rt::block_on(async {
        // The '@' in the password is percent-encoded in the address.
        let url = broker.url("loka:s3c%40ret@");
        let mut client = Client::connect(&url, "gw", None, KEEP_ALIVE, TEST_TIMEOUT).await.unwrap();
        client.publish("loka/auth", b"yes", true).await.unwrap();
        let check = Subscriber::start(&broker, &["-u", "loka", "-P", "s3c@ret", "-t", "loka/auth", "-v"]);
        assert_eq!(check.line(), "loka/auth yes");
        client.disconnect().await;
    });
}
