//! Alerts, the status page and the JSON (issue 11), over real sockets: a
//! webhook server and an ntfy-style server on 127.0.0.1 that record what
//! they get, a real MQTT broker, a hashing miner that stops and resumes,
//! and the daemon restarted on the same books.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::daemon::Daemon;
use common::miner::{HashingMiner, MinerOptions};
use common::pool::{CheckingPool, PoolOptions};
use common::{deadline_after, deadline_recv};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
/// How often the daemon's rules look at the workers (`alerts::watch::LOOK_EVERY`).
const LOOK: Duration = Duration::from_secs(5);

/// One request a hook server got: its head lines and body.
#[derive(Debug)]
struct Hooked {
    head: Vec<String>,
    body: String,
}

impl Hooked {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .iter()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim())
    }
}

/// A webhook server on 127.0.0.1:0 that answers 200 and sends each request on.
fn hook_server() -> (SocketAddr, Receiver<Hooked>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(T));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let len = head
                .iter()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send(Hooked { head, body: String::from_utf8_lossy(&body).into() }).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

/// Starts the daemon on `pool` with `extra` appended to its config file.
fn proxy(pool: SocketAddr, extra: &str, env: &[(&str, &str)]) -> Daemon {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("loka-alerts-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("loka.toml");
    std::fs::write(&path, format!("[pool]\nname = \"main\"\naddress = \"{pool}\"\n{extra}\n")).unwrap();
    let mut all = vec![("LOKA_STORE_COMMIT_INTERVAL", "100ms")];
    all.extend_from_slice(env);
    Daemon::start_with(&["-c", path.to_str().unwrap(), "start", "-b", "127.0.0.1:0"], &all)
}

fn miner(proxy: &Daemon, login: &str) -> HashingMiner {
    let mut m = HashingMiner::connect_with(proxy.addr, MinerOptions::default()).unwrap();
    m.subscribe("alerts-test/1.0").expect("subscribed");
    assert!(m.authorize(login, "x"));
    m
}

fn event(h: &Hooked) -> String {
    let v: Value = serde_json::from_str(&h.body).unwrap_or_else(|e| panic!("{e}: {}", h.body));
    v["event"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_worker_that_stops_raises_one_worker_down_and_one_worker_back() {
    let pool = CheckingPool::start(PoolOptions::default());
    let (json_hook, json_rx) = hook_server();
    let (ntfy_hook, ntfy_rx) = hook_server();
    let config = format!(
        "[alerts]\nworker_down_after = \"10s\"\nname = \"attic\"\n\
         [[alert]]\nwebhook = \"http://{json_hook}/api/webhook/miners\"\nevents = [\"worker_down\", \"worker_back\"]\n\
         [[alert]]\nwebhook = \"http://{ntfy_hook}/miners\"\nformat = \"ntfy\"\n"
    );
    let proxy = proxy(pool.addr(), &config, &[]);
    let mut rig = miner(&proxy, "alice.rig1");
    let report = rig.mine(6, T);
    assert_eq!(report.accepted(), 6, "{report:?}");
    // The rig stops hashing but stays connected.
    let down = deadline_recv(&json_rx, deadline_after(T)).expect("a worker_down alert");
    assert_eq!(event(&down), "worker_down");
    assert!(down.head[0].starts_with("POST /api/webhook/miners HTTP/1.1"), "{:?}", down.head);
    assert_eq!(down.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&down.body).unwrap();
    assert_eq!(v["subject"], "alice.rig1");
    assert_eq!(v["gateway"], "attic");
    let ntfy = deadline_recv(&ntfy_rx, deadline_after(T)).expect("the ntfy sink hears it too");
    assert_eq!(ntfy.header("title"), Some("attic: worker down"));
    assert!(ntfy.body.contains("alice.rig1") && ntfy.body.contains("down"), "{}", ntfy.body);
    let page = proxy.http_get("/api/workers").1;
    let workers: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(workers[0]["state"], "down", "{page}");

    // It comes back.
    assert_eq!(rig.mine(1, T).accepted(), 1);
    let back = deadline_recv(&json_rx, deadline_after(T)).expect("a worker_back alert");
    assert_eq!(event(&back), "worker_back");
    let ntfy = deadline_recv(&ntfy_rx, deadline_after(T)).expect("ntfy: back");
    assert_eq!(ntfy.header("title"), Some("attic: worker back"));
    // One alert per change: the metrics count exactly two sent per sink,
    // and nothing else reaches the hooks while the rig keeps hashing.
    assert!(proxy.wait_metric("stratum_alerts_total{sink=\"0-webhook\",result=\"sent\"}", 2.0, T));
    assert_eq!(rig.mine(3, T).accepted(), 3);
    assert!(proxy.wait_metric("stratum_worker_state{worker=\"alice.rig1\",state=\"hashing\"}", 1.0, T));
    // Over two more looks of the rules, nothing else arrives.
    let quiet = deadline_after(LOOK * 2);
    assert!(deadline_recv(&json_rx, quiet).is_none(), "no storm");
    assert!(ntfy_rx.try_recv().is_err(), "no storm");
    assert_eq!(proxy.metric("stratum_alerts_total{sink=\"1-webhook\",result=\"sent\"}"), Some(2.0));
    assert_eq!(proxy.metric("stratum_alerts_total{sink=\"0-webhook\",result=\"dropped\"}"), Some(0.0));
}

#[test]
fn an_unreachable_webhook_costs_the_miners_nothing_and_is_counted() {
    let pool = CheckingPool::start(PoolOptions::default());
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config =
        format!("[alerts]\nworker_down_after = \"10s\"\n[[alert]]\nwebhook = \"http://{closed}/hook\"\n");
    let proxy = proxy(pool.addr(), &config, &[]);
    let mut rig = miner(&proxy, "bob.rig");
    assert_eq!(rig.mine(5, T).accepted(), 5);
    assert!(proxy.wait_log("alert webhook", T).is_some(), "the failing sink is logged");
    // Mining goes on while the sink retries.
    assert_eq!(rig.mine(5, T).accepted(), 5);
    let sent = proxy.metric("stratum_alerts_total{sink=\"0-webhook\",result=\"sent\"}");
    assert_eq!(sent, Some(0.0));
}

#[test]
fn the_json_endpoints_and_the_page_show_every_worker() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(pool.addr(), "", &[]);
    let mut rig = miner(&proxy, "carol.rig<1>");
    assert_eq!(rig.mine(4, T).accepted(), 4);
    assert!(proxy.wait_metric("stratum_worker_shares_accepted_total{worker=\"carol.rig<1>\"}", 4.0, T));
    let (code, body) = proxy.http_get("/api/workers");
    assert_eq!(code, 200);
    let workers: Value = serde_json::from_str(&body).unwrap();
    let w = &workers[0];
    assert_eq!(w["login"], "carol.rig<1>");
    assert_eq!(w["state"], "hashing");
    assert_eq!(w["accepted"], 4);
    for key in ["hashrate_10m", "hashrate_1h", "hashrate_24h", "best_share", "last_share", "down_after"] {
        assert!(w[key].is_number(), "{key}: {body}");
    }
    let (code, body) = proxy.http_get("/api/status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["workers"]["hashing"], 1, "{body}");
    assert_eq!(status["pools"][0]["name"], "main");
    assert_eq!(status["pools"][0]["active"], true);
    assert_eq!(status["accepted"], 4);
    let (code, page) = proxy.http_get("/");
    assert_eq!(code, 200);
    assert!(page.contains("carol.rig&lt;1&gt;") && !page.contains("rig<1>"), "{page}");
    assert!(page.len() <= 64 * 1024);
}

#[test]
fn the_charts_survive_a_restart() {
    let pool = CheckingPool::start(PoolOptions::default());
    let dir = std::env::temp_dir().join(format!("loka-alerts-books-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let books = dir.join("books.redb");
    let env = [("LOKA_STORE_PATH", books.to_str().unwrap())];
    let first = proxy(pool.addr(), "", &env);
    let mut rig = miner(&first, "dave.rig");
    assert_eq!(rig.mine(5, T).accepted(), 5);
    drop(rig);
    assert!(first.terminate(T).is_some());
    let second = proxy(pool.addr(), "", &env);
    let workers: Value = serde_json::from_str(&second.http_get("/api/workers").1).unwrap();
    let w = &workers[0];
    assert_eq!(w["login"], "dave.rig", "{workers}");
    assert!(w["hashrate_1h"].as_f64().unwrap() > 0.0, "restored from the books: {w}");
    assert!(w["last_share"].as_f64().unwrap() > 0.0);
    let page = second.http_get("/").1;
    let line = page.split("<polyline points=\"").nth(1).expect("a sparkline");
    let ys: Vec<f64> = line
        .split('"')
        .next()
        .unwrap()
        .split_whitespace()
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(ys.iter().any(|y| *y < 20.0), "the last day is drawn, not flat: {ys:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Mosquitto on a free port of 127.0.0.1, killed on drop.
struct Broker {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Broker {
    fn start() -> Broker {
        let dir = std::env::temp_dir().join(format!("loka-alerts-mqtt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("mosquitto.conf");
        let text = format!("listener {port} 127.0.0.1\npersistence false\nuser root\nallow_anonymous true\n");
        std::fs::write(&config, text).unwrap();
        let child = std::process::Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto could not be run ({e}): run `bash .ci/install`"));
        let broker = Broker { child, port, dir };
        let deadline = deadline_after(Duration::from_secs(10));
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "mosquitto does not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// `mosquitto_sub -v` on `topics`: one `topic payload` line per message.
    fn subscribe(&self, topics: &[&str]) -> (std::process::Child, Receiver<String>) {
        let mut cmd = std::process::Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-v", "-W", "60"]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto_sub could not be run ({e}): run `bash .ci/install`"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next message on `rx` whose topic matches `pred`, within `T`.
fn message(rx: &Receiver<String>, mut pred: impl FnMut(&str) -> bool) -> (String, Value) {
    let deadline = deadline_after(T);
    loop {
        let line = deadline_recv(rx, deadline).expect("an MQTT message");
        let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
        if pred(topic) {
            return (
                topic.to_string(),
                serde_json::from_str(payload).unwrap_or(Value::String(payload.into())),
            );
        }
    }
}

#[test]
fn home_assistant_finds_each_rig_over_mqtt_and_hears_its_alerts() {
    let broker = Broker::start();
    let (mut sub, rx) = broker.subscribe(&["homeassistant/#", "loka-stratum/#"]);
    let pool = CheckingPool::start(PoolOptions::default());
    let config = format!(
        "[alerts]\nworker_down_after = \"10s\"\nname = \"attic-gw\"\n[[alert]]\nmqtt = \"mqtt://127.0.0.1:{}\"\n",
        broker.port
    );
    let proxy = proxy(pool.addr(), &config, &[]);
    let (_, online) = message(&rx, |t| t == "loka-stratum/attic-gw/status");
    assert_eq!(online, "online");
    let login = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1";
    let mut rig = miner(&proxy, login);
    assert_eq!(rig.mine(5, T).accepted(), 5);
    let (topic, sensor) = message(&rx, |t| t.starts_with("homeassistant/sensor/attic-gw/"));
    assert!(topic.ends_with("_hashrate/config"), "{topic}");
    assert_eq!(sensor["unit_of_measurement"], "H/s");
    assert_eq!(sensor["device"]["name"], login);
    assert_eq!(sensor["availability_topic"], "loka-stratum/attic-gw/status");
    let state_topic = sensor["state_topic"].as_str().unwrap().to_string();
    let (_, binary) = message(&rx, |t| t.starts_with("homeassistant/binary_sensor/attic-gw/"));
    assert_eq!(binary["device_class"], "connectivity");
    assert_eq!(binary["state_topic"], state_topic.as_str());
    assert_eq!(binary["device"]["identifiers"], sensor["device"]["identifiers"]);
    let (_, state) = message(&rx, |t| t == state_topic);
    assert_eq!(state["login"], login);
    assert_eq!(state["online"], "ON");
    assert!(state["hashrate"].as_f64().unwrap() > 0.0, "{state}");
    // The rig stops: the alert and the new state reach the broker.
    let (_, alert) = message(&rx, |t| t == "loka-stratum/attic-gw/event");
    assert_eq!(alert["event"], "worker_down");
    assert_eq!(alert["subject"], login);
    let (_, state) = message(&rx, |t| t == state_topic);
    assert_eq!(state["state"], "down");
    assert_eq!(state["online"], "OFF");
    assert!(proxy.wait_metric("stratum_alerts_total{sink=\"0-mqtt\",result=\"sent\"}", 1.0, T));
    let _ = sub.kill();
    let _ = sub.wait();
}

#[test]
fn the_page_renders_in_a_real_browser() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(pool.addr(), "[alerts]\nname = \"attic\"\n", &[]);
    let mut rigs = Vec::new();
    for login in ["<script>x</script>.rig", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.axe"] {
        let mut rig = miner(&proxy, login);
        assert_eq!(rig.mine(4, T).accepted(), 4);
        rigs.push(rig);
    }
    assert!(proxy.wait_metric(
        "stratum_worker_state{worker=\"<script>x</script>.rig\",state=\"hashing\"}",
        1.0,
        T
    ));
    let page = common::browser::render(&format!("http://{}/", proxy.metrics));
    assert_eq!(page.status, 200);
    assert!(page.console_errors.is_empty(), "console errors: {:?}", page.console_errors);
    assert!(page.text.contains("<script>x</script>.rig"), "the hostile login is text: {}", page.text);
    assert!(!page.dom.to_ascii_lowercase().contains("<script"), "no script element: {}", page.dom);
    assert!(page.text.contains("bc1qar0s…f5mdq.axe"), "long logins keep the rig: {}", page.text);
    assert!(page.text.contains("hashing") && page.text.contains("attic"));
    assert_eq!(page.svgs.len(), 2, "one sparkline per worker: {:?}", page.svgs);
    assert!(page.has_painted_svg(), "a sparkline is drawn: {:?}", page.svgs);
    assert!(page.scroll_width <= page.layout_width, "no sideways scrolling on a phone");
    assert!(page.dom.contains("http-equiv=\"refresh\" content=\"30\""), "it refreshes itself");
}

#[test]
fn a_pool_that_dies_and_a_block_found_reach_the_webhook() {
    // nbits 1f00ffff: every share at the pool's difficulty is a block.
    let primary = CheckingPool::start(PoolOptions { nbits: "1f00ffff", ..Default::default() });
    let fallback = CheckingPool::start(PoolOptions::default());
    let (hook, rx) = hook_server();
    let config = format!(
        "failover_after = 1\n\n[[pool.fallback]]\nname = \"backup\"\naddress = \"{}\"\n\
         [[alert]]\nwebhook = \"http://{hook}/hook\"\nevents = [\"pool_down\", \"failover\", \"block_found\"]\n",
        fallback.addr()
    );
    let proxy = proxy(primary.addr(), &config, &[]);
    let opts = MinerOptions { extranonce_subscribe: true, ..Default::default() };
    let mut rig = HashingMiner::connect_with(proxy.addr, opts).unwrap();
    rig.subscribe("alerts-test/1.0").expect("subscribed");
    assert!(rig.authorize("erin.rig", "x"));
    assert_eq!(rig.mine(1, T).accepted(), 1);
    let block = deadline_recv(&rx, deadline_after(T)).expect("a block_found alert");
    assert_eq!(event(&block), "block_found");
    let v: Value = serde_json::from_str(&block.body).unwrap();
    assert_eq!(v["subject"], "erin.rig");
    primary.kill();
    let mut events: Vec<String> = (0..2)
        .map(|_| event(&deadline_recv(&rx, deadline_after(T)).expect("pool_down and failover")))
        .collect();
    events.sort();
    assert_eq!(events, ["failover", "pool_down"]);
    assert!(deadline_recv(&rx, deadline_after(LOOK * 2)).is_none(), "one alert per change");
}
