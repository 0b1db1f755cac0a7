//! `loka-stratum status`: reads a running daemon's `/metrics` and `/health`
//! and prints a summary for a terminal.
//!
//! Plain blocking std I/O with timeouts: this runs in the CLI, not on the
//! daemon's executor.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time allowed for each request to the daemon.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the status could not be read.
#[derive(Debug)]
pub enum StatusError {
    /// The URL is not `http://host:port`.
    BadUrl(String),
    /// The daemon did not answer.
    Unreachable {
        /// Where it was looked for.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The answer was not a metrics page.
    BadAnswer(String),
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::BadUrl(u) => write!(f, "{u:?} is not an http://host:port URL"),
            StatusError::Unreachable { addr, source } => {
                write!(f, "loka-stratum is not running or not reachable at {addr}: {source}")
            }
            StatusError::BadAnswer(why) => write!(f, "unexpected answer from the daemon: {why}"),
        }
    }
}

impl std::error::Error for StatusError {}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Label pairs, unescaped.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus text format lines (comments skipped).
pub fn parse_page(page: &str) -> Vec<Sample> {
    page.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = head.split_once('{') else {
        return Some(Sample { name: head.to_string(), labels: Vec::new(), value });
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(other) => val.push(other),
                    None => return None,
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), val));
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    Some(Sample { name: name.to_string(), labels, value })
}

/// `http://host:port[/…]` or `host:port` to a socket address string.
fn authority(url: &str) -> Result<String, StatusError> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if url.contains("://") && !url.starts_with("http://") {
        return Err(StatusError::BadUrl(url.into()));
    }
    let host = rest.split('/').next().unwrap_or("");
    if !host.contains(':') {
        return Err(StatusError::BadUrl(url.into()));
    }
    Ok(host.to_string())
}

/// The URL to reach a daemon whose metrics listen on `bind`.
pub fn local_url(bind: SocketAddr) -> String {
    let host = if bind.ip().is_unspecified() {
        if bind.is_ipv4() { "127.0.0.1".to_string() } else { "[::1]".to_string() }
    } else if bind.is_ipv6() {
        format!("[{}]", bind.ip())
    } else {
        bind.ip().to_string()
    };
    format!("http://{host}:{}", bind.port())
}

fn get(addr: &str, path: &str) -> Result<(u16, String), StatusError> {
    let unreachable = |source| StatusError::Unreachable { addr: addr.to_string(), source };
    let target = addr
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| StatusError::BadUrl(addr.to_string()))?;
    let mut s = TcpStream::connect_timeout(&target, TIMEOUT).map_err(unreachable)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(unreachable)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(unreachable)?;
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| StatusError::BadAnswer("no HTTP header".into()))?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Hashes per second in H/s … EH/s.
pub fn hashrate(h: f64) -> String {
    let units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    let mut v = h;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", units[i])
}

/// A share difficulty, short: `812`, `45.2K`, `3.10M`, `1.25G`, `116.63T`.
pub fn difficulty(d: f64) -> String {
    const UNITS: [(f64, &str); 5] = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    match UNITS.iter().find(|(scale, _)| d >= *scale) {
        Some((scale, unit)) => format!("{:.2}{unit}", d / scale),
        None if d <= 0.0 => "-".into(),
        None if d < 0.01 => format!("{d:.2e}"),
        None if d < 10.0 => format!("{d:.3}"),
        None => format!("{d:.0}"),
    }
}

/// A sum of share difficulty for the books' tables: four decimals, or
/// three significant digits below 0.01 (a CPU miner's `9.54e-7`), never a
/// row of zeros.
pub fn difficulty_sum(d: f64) -> String {
    match d {
        d if !d.is_finite() || d <= 0.0 => "0".into(),
        d if d < 0.01 => format!("{d:.2e}"),
        d => format!("{d:.4}"),
    }
}

/// A duration in seconds as `3d 4h`, `2h 5m`, `4m 10s` or `12s`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Renders the summary from a metrics page and the health answer.
pub fn render(url: &str, samples: &[Sample], health: (u16, &str), now: f64) -> String {
    let one = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let mut out = String::new();
    let version = samples.iter().find(|s| s.name == "stratum_build_info").and_then(|s| s.label("version"));
    let uptime = one("process_start_time_seconds").map(|t| age(now - t)).unwrap_or_else(|| "?".into());
    let _ = writeln!(out, "loka-stratum {} at {url}, up {uptime}", version.unwrap_or("?"));
    let _ = writeln!(out, "health {} {}", health.0, health.1.trim());
    for pool in samples.iter().filter(|s| s.name == "stratum_upstream_connected") {
        let name = pool.label("pool").unwrap_or("?");
        let of_pool = |s: &&Sample| s.label("pool") == Some(name);
        let state = samples
            .iter()
            .filter(of_pool)
            .find(|s| s.name == "stratum_pool_state" && s.value == 1.0)
            .and_then(|s| s.label("state"))
            .unwrap_or("?");
        let active =
            samples.iter().filter(of_pool).any(|s| s.name == "stratum_pool_active" && s.value == 1.0);
        let seconds = samples
            .iter()
            .filter(of_pool)
            .find(|s| s.name == "stratum_pool_active_seconds_total")
            .map_or(0.0, |s| s.value);
        let _ = writeln!(
            out,
            "pool {name}: {state}{}, {} upstream connections, in use {} in all",
            if active { " (in use)" } else { "" },
            pool.value,
            age(seconds)
        );
    }
    let n = |name: &str| one(name).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "miners: {} connected, {} since start; shares: {} accepted, {} rejected, {} stale",
        n("stratum_connections_active"),
        n("stratum_connections_total"),
        n("stratum_shares_accepted_total"),
        n("stratum_shares_rejected_total"),
        n("stratum_stale_shares_total"),
    );
    let checked = |result: &str| {
        let is = |s: &&Sample| s.name == "stratum_shares_checked_total" && s.label("result") == Some(result);
        samples.iter().find(is).map_or(0.0, |s| s.value)
    };
    let _ = writeln!(
        out,
        "checked by the proxy: {} valid, {} low difficulty, {} duplicate, {} stale, {} bad version, {} malformed; \
         {} disputed",
        checked("valid"),
        checked("low_difficulty"),
        checked("duplicate"),
        checked("stale"),
        checked("bad_version"),
        checked("malformed"),
        n("stratum_shares_disputed_total"),
    );
    let last_block = samples.iter().find(|s| s.name == "stratum_last_block_timestamp_seconds");
    let found = n("stratum_blocks_found_total");
    let head = if found > 0.0 { format!("BLOCKS FOUND: {found}") } else { "blocks found: 0".into() };
    match last_block {
        Some(b) => {
            let _ = writeln!(
                out,
                "{head}; last {} ago by {}, hash {}",
                age(now - b.value),
                crate::web::page::short_login(b.label("worker").unwrap_or("?")),
                b.label("hash").unwrap_or("?")
            );
        }
        None => {
            let _ = writeln!(out, "{head}");
        }
    }
    #[derive(Default)]
    struct Row<'a> {
        state: &'a str,
        accepted: f64,
        rejected: f64,
        stale: f64,
        rate: f64,
        checked_rate: f64,
        hw_errors: f64,
        best: f64,
        best_today: f64,
        last: Option<f64>,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for s in samples {
        let Some(w) = s.label("worker") else { continue };
        let row = rows.entry(w).or_default();
        match s.name.as_str() {
            "stratum_worker_shares_accepted_total" => row.accepted = s.value,
            "stratum_worker_shares_rejected_total" => row.rejected += s.value,
            "stratum_worker_shares_stale_total" => row.stale = s.value,
            "stratum_worker_hashrate_hashes_per_second" => row.rate = s.value,
            "stratum_worker_hashrate_checked_hashes_per_second" => row.checked_rate = s.value,
            "stratum_worker_hardware_error_ratio" => row.hw_errors = s.value,
            "stratum_worker_best_share_difficulty" => row.best = s.value,
            "stratum_worker_best_share_today_difficulty" => row.best_today = s.value,
            "stratum_worker_last_share_timestamp_seconds" => row.last = Some(s.value),
            "stratum_worker_state" if s.value == 1.0 => row.state = s.label("state").unwrap_or(""),
            _ => {}
        }
    }
    if rows.is_empty() {
        out.push_str("no shares yet\n");
        return out;
    }
    // A person reads this: long logins keep their rig, shortened in the
    // middle of the address (the metrics keep the whole login).
    let shown: BTreeMap<&str, String> = rows
        .keys()
        .map(|k| {
            (*k, crate::web::page::short_login(&k.chars().filter(|c| !c.is_control()).collect::<String>()))
        })
        .collect();
    let width = shown.values().map(|k| k.chars().count()).max().unwrap_or(6).max(6);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<7}  {:>9}  {:>9}  {:>7}  {:>12}  {:>12}  {:>6}  {:>10}  {:>10}  LAST SHARE",
        "WORKER",
        "STATE",
        "ACCEPTED",
        "REJECTED",
        "STALE",
        "HASHRATE",
        "TRUE RATE",
        "HW ERR",
        "BEST TODAY",
        "BEST EVER"
    );
    for (worker, r) in &rows {
        let shown = &shown[worker];
        let last = r.last.map(|t| format!("{} ago", age(now - t))).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{shown:<width$}  {:<7}  {:>9}  {:>9}  {:>7}  {:>12}  {:>12}  {:>5.1}%  {:>10}  {:>10}  {last}",
            if r.state.is_empty() { "-" } else { r.state },
            r.accepted,
            r.rejected,
            r.stale,
            hashrate(r.rate),
            hashrate(r.checked_rate),
            r.hw_errors * 100.0,
            difficulty(r.best_today),
            difficulty(r.best)
        );
    }
    out
}

/// Fetches and renders the status of the daemon at `url`.
pub fn status(url: &str) -> Result<String, StatusError> {
    let addr = authority(url)?;
    let (code, page) = get(&addr, "/metrics")?;
    if code != 200 || !page.contains("stratum_build_info") {
        return Err(StatusError::BadAnswer(format!("/metrics answered {code}")));
    }
    let (hcode, hbody) = get(&addr, "/health")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Ok(render(url, &parse_page(&page), (hcode, &hbody), now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_escaped_labels() {
        let s = parse_line(r#"stratum_worker_shares_rejected_total{worker="a\"b\\c",reason="duplicate"} 3"#)
            .unwrap();
        assert_eq!(s.label("worker"), Some("a\"b\\c"));
        assert_eq!(s.label("reason"), Some("duplicate"));
        assert_eq!(s.value, 3.0);
        assert_eq!(parse_line("x 1.5").unwrap().value, 1.5);
        assert_eq!(parse_line(r#"h_bucket{le="+Inf"} 2"#).unwrap().label("le"), Some("+Inf"));
    }

    #[test]
    fn units() {
        assert_eq!(hashrate(1.5e12), "1.50 TH/s");
        assert_eq!(difficulty(116_627_841_100_297.0), "116.63T");
        assert_eq!(
            (difficulty(812.4), difficulty(2.5), difficulty(0.000_234)),
            ("812".into(), "2.500".into(), "2.34e-4".into())
        );
        assert_eq!(difficulty(0.0), "-");
        assert_eq!(hashrate(999.0), "999.00 H/s");
        assert_eq!(age(3725.0), "1h 2m");
        assert_eq!(age(59.0), "59s");
        assert_eq!(local_url("0.0.0.0:9090".parse().unwrap()), "http://127.0.0.1:9090");
        assert_eq!(authority("http://10.0.0.2:9090/metrics").unwrap(), "10.0.0.2:9090");
        assert!(authority("https://x:1").is_err());
    }

    /// Three rigs of one solo address stay three rows a person can tell
    /// apart; tiny sums of difficulty keep their digits.
    #[test]
    fn long_logins_keep_their_rigs_and_tiny_sums_their_digits() {
        let address = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
        let page: String = ["rig1", "bfg", "axe"]
            .iter()
            .map(|rig| format!("stratum_worker_shares_accepted_total{{worker=\"{address}.{rig}\"}} 1\n"))
            .collect();
        let text = render("http://x:1", &parse_page(&page), (200, "ok"), 2000.0);
        for rig in ["rig1", "bfg", "axe"] {
            assert!(text.contains(&format!("bc1qar0s…f5mdq.{rig} ")), "{text}");
        }
        assert!(!text.contains(address), "{text}");
        let sums = [9.54e-7, 0.0, -0.0, 88.0, 0.000_149, 0.05].map(difficulty_sum);
        assert_eq!(sums, ["9.54e-7", "0", "0", "88.0000", "1.49e-4", "0.0500"]);
    }

    #[test]
    fn renders_a_table() {
        let page = "stratum_build_info{version=\"0.1.0\"} 1\nprocess_start_time_seconds 1000\n\
            stratum_upstream_connected{pool=\"p\"} 1\nstratum_connections_active 1\n\
            stratum_upstream_connected{pool=\"backup\"} 0\nstratum_pool_active{pool=\"p\"} 1\n\
            stratum_pool_state{pool=\"p\",state=\"up\"} 1\nstratum_pool_state{pool=\"backup\",state=\"down\"} 1\n\
            stratum_pool_state{pool=\"backup\",state=\"up\"} 0\nstratum_pool_active_seconds_total{pool=\"p\"} 130\n\
            stratum_worker_shares_accepted_total{worker=\"alice.rig1\"} 7\n\
            stratum_worker_hashrate_hashes_per_second{worker=\"alice.rig1\"} 2.5e12\n\
            stratum_worker_last_share_timestamp_seconds{worker=\"alice.rig1\"} 1990\n\
            stratum_worker_hashrate_checked_hashes_per_second{worker=\"alice.rig1\"} 2.4e12\n\
            stratum_worker_hardware_error_ratio{worker=\"alice.rig1\"} 0.0125\n\
            stratum_worker_best_share_difficulty{worker=\"alice.rig1\"} 45200000\n\
            stratum_worker_state{worker=\"alice.rig1\",state=\"hashing\"} 0\n\
            stratum_worker_state{worker=\"alice.rig1\",state=\"late\"} 1\n\
            stratum_shares_checked_total{result=\"low_difficulty\"} 3\n\
            stratum_blocks_found_total 1\n\
            stratum_last_block_timestamp_seconds{worker=\"alice.rig1\",hash=\"00000000000000000002abcd\"} 1940\n";
        let text = render("http://x:1", &parse_page(page), (200, "ok"), 2000.0);
        assert!(text.contains("up 16m 40s"), "{text}");
        assert!(text.contains("pool p: up (in use), 1 upstream connections, in use 2m 10s in all"), "{text}");
        assert!(text.contains("pool backup: down, 0 upstream connections"), "{text}");
        assert!(text.contains("2.40 TH/s") && text.contains("1.2%") && text.contains("45.20M"), "{text}");
        assert!(text.contains("3 low difficulty"), "{text}");
        assert!(
            text.contains("BLOCKS FOUND: 1; last 1m 0s ago by alice.rig1, hash 00000000000000000002abcd"),
            "{text}"
        );
        assert!(text.contains("alice.rig1  late "), "the worker's state: {text}");
        assert!(text.contains("2.50 TH/s") && text.contains("10s ago"), "{text}");
    }
}
