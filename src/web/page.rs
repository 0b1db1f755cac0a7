//! The status page at `/`: one server-rendered HTML page for a phone, with
//! no script and no external asset, that refreshes itself every
//! [`REFRESH_SECS`].
//!
//! Invariants: the page is at most [`MAX_PAGE_BYTES`] (workers past that
//! are counted, not drawn; the ones in trouble come first), and every value
//! that came from a miner or a config file passes through [`Html`], so a
//! login like `<script>` renders as text. The response also forbids every
//! script by its `Content-Security-Policy`.

use std::fmt::{self, Write};

use super::PoolRow;
use crate::alerts::rules::{human_duration, human_rate};
use crate::history::State;
use crate::stats::WorkerView;

/// Seconds between two refreshes of the page.
pub const REFRESH_SECS: u32 = 30;
/// Largest page, in bytes.
pub const MAX_PAGE_BYTES: usize = 64 * 1024;
/// Room kept for what follows the worker cards.
const TAIL_BYTES: usize = 1024;
/// Points in a sparkline: half-hour averages over the last day.
pub const SPARK_POINTS: usize = 48;
/// Logins longer than this show shortened in the middle.
const SHORT_LOGIN_CHARS: usize = 28;

/// Text escaped for HTML (element content and quoted attributes).
pub struct Html<'a>(pub &'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A login for a person: whole when short, else the rig part kept and the
/// address shortened in the middle (`bc1qar0s…f5mdq.rig1`).
pub fn short_login(login: &str) -> String {
    if login.chars().count() <= SHORT_LOGIN_CHARS {
        return login.to_string();
    }
    let (user, rig) = match login.split_once('.') {
        Some((user, rig)) => (user, Some(rig)),
        None => (login, None),
    };
    let chars: Vec<char> = user.chars().collect();
    let user = if chars.len() > 14 {
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[chars.len() - 5..].iter().collect();
        format!("{head}…{tail}")
    } else {
        user.to_string()
    };
    // The rig tells rows apart: kept whole up to 24 characters, else its
    // start and its end (where farms number their machines).
    let rig: Option<String> = rig.map(|r| {
        let chars: Vec<char> = r.chars().collect();
        if chars.len() > 24 {
            let (head, tail): (String, String) =
                (chars[..11].iter().collect(), chars[chars.len() - 12..].iter().collect());
            format!("{head}…{tail}")
        } else {
            r.to_string()
        }
    });
    match rig {
        Some(rig) => format!("{user}.{rig}"),
        None => user,
    }
}

/// Everything the page shows.
pub struct Page<'a> {
    /// The gateway's name.
    pub name: &'a str,
    /// Seconds since the process started.
    pub uptime: u64,
    /// Miner connections open now.
    pub connections: i64,
    /// The pools, in priority order.
    pub pools: Vec<PoolRow<'a>>,
    /// Every worker, each with its sparkline points (hashes per second).
    pub workers: Vec<(WorkerView, Vec<f32>)>,
    /// The last block found: (worker, hash, unix seconds).
    pub last_block: Option<(String, String, u64)>,
    /// Unix seconds now.
    pub now: u64,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:.6em;background:#f4f5f7;color:#222}\
h1{font-size:1.2em;margin:.2em 0}h2{font-size:1em;margin:1em 0 .4em}\
.sum{color:#555;font-size:.9em}.p,.w{background:#fff;border-radius:8px;padding:.5em .7em;margin:.4em 0;\
box-shadow:0 1px 2px #0002}.w .t{display:flex;justify-content:space-between;gap:.5em;align-items:baseline}\
.n{font-weight:600;overflow-wrap:anywhere}.s{font-size:.8em;padding:.1em .5em;border-radius:1em;color:#fff}\
.hashing,.up{background:#2a8a3e}.late,.failing,.recovering,.unknown{background:#c77c02}.down{background:#c0392b}\
.g{display:grid;grid-template-columns:repeat(auto-fit,minmax(7.5em,1fr));gap:.2em .8em;font-size:.85em;color:#444}\
.g span{display:flex;flex-direction:column}.g b{color:#111;font-weight:600;white-space:nowrap}svg{width:100%;height:2.2em;display:block;margin:.3em 0}\
polyline{fill:none;stroke:#2a6fdb;stroke-width:1.2}footer{font-size:.8em;color:#777;margin:1em 0}";

/// Renders `page` into `out` (cleared first).
pub fn render(out: &mut String, page: &Page<'_>) {
    out.clear();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"><title>{} · loka-stratum</title>\
         <link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body>",
        Html(page.name)
    );
    let total = page.workers.iter().fold(0.0, |a, (v, _)| a + v.hashrate_10m);
    let count = |s: State| page.workers.iter().filter(|(v, _)| v.state == s).count();
    let _ = write!(
        out,
        "<h1>{}</h1><div class=\"sum\">{} · {} hashing, {} late, {} down · {} miner connections · up {}</div>",
        Html(page.name),
        human_rate(total),
        count(State::Hashing),
        count(State::Late),
        count(State::Down),
        page.connections,
        human_duration(page.uptime)
    );
    out.push_str("<h2>Pools</h2>");
    for p in &page.pools {
        let _ = write!(
            out,
            "<div class=\"p\"><div class=\"t\"><span class=\"n\">{}{}</span> <span class=\"s {}\">{}</span></div>\
             <div class=\"sum\">{} · {} connections</div></div>",
            Html(p.name),
            if p.active { " (in use)" } else { "" },
            p.state,
            p.state,
            Html(&p.address),
            p.connected
        );
    }
    let _ = write!(out, "<h2>Workers ({})</h2>", page.workers.len());
    if page.workers.is_empty() {
        out.push_str("<p>No worker has had a share accepted yet.</p>");
    }
    // Trouble first: down, then late, then hashing; by login within.
    let mut order: Vec<&(WorkerView, Vec<f32>)> = page.workers.iter().collect();
    let rank = |s: State| match s {
        State::Down => 0,
        State::Late => 1,
        State::Hashing => 2,
    };
    order.sort_by(|a, b| rank(a.0.state).cmp(&rank(b.0.state)).then_with(|| a.0.login.cmp(&b.0.login)));
    let mut shown = 0;
    let mut card = String::new();
    for (v, points) in order {
        card.clear();
        worker_card(&mut card, v, points, page.now);
        if out.len() + card.len() + TAIL_BYTES > MAX_PAGE_BYTES {
            break;
        }
        out.push_str(&card);
        shown += 1;
    }
    if shown < page.workers.len() {
        let _ = write!(
            out,
            "<p>{} more workers not shown: see <a href=\"/api/workers\">/api/workers</a>.</p>",
            page.workers.len() - shown
        );
    }
    if let Some((worker, hash, at)) = &page.last_block {
        let _ = write!(
            out,
            "<h2>Last block</h2><div class=\"p\">{} by {} · {} ago</div>",
            Html(hash),
            Html(&short_login(worker)),
            human_duration(page.now.saturating_sub(*at))
        );
    }
    let _ = write!(
        out,
        "<footer>loka-stratum {} · refreshes every {REFRESH_SECS} s · \
         <a href=\"/metrics\">metrics</a> · <a href=\"/api/status\">/api/status</a> · \
         <a href=\"/api/workers\">/api/workers</a></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
}

/// One worker's card.
fn worker_card(out: &mut String, v: &WorkerView, points: &[f32], now: u64) {
    let state = v.state.label();
    let _ = write!(
        out,
        "<div class=\"w\"><div class=\"t\"><span class=\"n\" title=\"{}\">{}</span> <span class=\"s {state}\">{state}</span></div>",
        Html(&v.login),
        Html(&short_login(&v.login))
    );
    sparkline(out, points);
    let age = v
        .last_share
        .map_or("never".to_string(), |t| format!("{} ago", human_duration(now.saturating_sub(t as u64))));
    let _ = write!(
        out,
        "<div class=\"g\"><span>10 min <b>{}</b></span><span>1 h <b>{}</b></span><span>24 h <b>{}</b></span>\
         <span>accepted <b>{}</b></span><span>rejected <b>{}</b></span><span>stale <b>{}</b></span>\
         <span>best <b>{}</b></span><span>last share <b>{age}</b></span></div></div>",
        human_rate(v.hashrate_10m),
        human_rate(v.hashrate_1h),
        human_rate(v.hashrate_24h),
        v.accepted,
        v.rejected,
        v.stale,
        Difficulty(v.best_share),
    );
}

/// A difficulty with significant digits, however small or large.
pub struct Difficulty(pub f64);

impl fmt::Display for Difficulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if !d.is_finite() || d <= 0.0 {
            return f.write_str("0");
        }
        let units = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
        match units.iter().find(|(scale, _)| d >= *scale) {
            Some((scale, unit)) => write!(f, "{:.2}{unit}", d / scale),
            None if d >= 0.01 => write!(f, "{d:.2}"),
            None => write!(f, "{d:.2e}"),
        }
    }
}

/// An inline SVG polyline of `points`, scaled to its highest point.
fn sparkline(out: &mut String, points: &[f32]) {
    const W: f32 = 96.0;
    const H: f32 = 24.0;
    let max = points.iter().copied().fold(0.0f32, f32::max);
    let step = if points.len() > 1 { W / (points.len() - 1) as f32 } else { W };
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"hashrate, last 24 hours\"><polyline points=\""
    );
    for (i, p) in points.iter().enumerate() {
        let y = if max > 0.0 { H - 1.0 - (p / max) * (H - 2.0) } else { H - 1.0 };
        let _ = write!(out, "{:.1},{:.1} ", i as f32 * step, y);
    }
    out.push_str("\"/></svg>");
}

#[cfg(test)]
#[path = "page_tests.rs"]
mod tests;
