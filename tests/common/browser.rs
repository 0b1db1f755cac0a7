//! Loads a page in a real headless browser (Debian's `chromium`) and reports
//! what it rendered: the DOM after the load event, the text a reader sees,
//! console errors, and whether each inline `<svg>` actually paints its lines.
//!
//! The browser is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: the browser reads NUL-terminated JSON commands
//! on fd 3 and writes answers and events on fd 4), not by scraping
//! `--dump-dom` and `--enable-logging=stderr`: the stderr log prints every
//! console message as `INFO:CONSOLE:1] "text", source: URL (1)` whatever its
//! level (`console.log` and `console.error` look the same) and never shows a
//! sub-resource that failed to load (a 404 image or stylesheet), while the
//! protocol gives `Runtime.consoleAPICalled` with its type,
//! `Runtime.exceptionThrown`, and `Log.entryAdded` (`source: "network"`,
//! `level: "error"`, "Failed to load resource: ... 404") for failed loads.
//!
//! The favicon: after the load event chromium requests `/favicon.ico` (also
//! in `--headless --dump-dom` mode, where it is a race with the exit), and a
//! 404 there comes as a network error like any other. Because it comes at an
//! unknown time after the load event, it cannot be waited for: favicon errors
//! go to [`Rendered::ignored`], never to [`Rendered::console_errors`]. A page
//! with `<link rel="icon" href="data:,">` makes no favicon request.
//!
//! Every wait is bounded by [`RENDER_TIMEOUT`]; the browser runs in a process
//! group of its own, killed when the render ends or fails, with a fresh
//! profile directory removed afterwards.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Everything one render may take, start to exit.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// The viewport: a phone (CSS pixels, device scale 1, mobile layout).
pub const PHONE: (u32, u32) = (390, 844);

/// What chromium rendered.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `document.documentElement.outerHTML` after the load event.
    pub dom: String,
    /// `document.body.innerText`: the text as a reader sees it (entities
    /// decoded, hidden elements left out).
    pub text: String,
    /// The document's HTTP status (from the navigation timing entry).
    pub status: u16,
    /// Console errors: `console.error` / `console.assert`
    /// (`console.error: ...`), uncaught exceptions (`uncaught: ...`) and
    /// browser log errors such as failed loads (`network: ... (url)`).
    pub console_errors: Vec<String>,
    /// Other console and log messages (`log: ...`, `warning: ...`).
    pub console_other: Vec<String>,
    /// Errors left out of `console_errors` on purpose (the favicon).
    pub ignored: Vec<String>,
    /// The inline `<svg>` elements, in document order.
    pub svgs: Vec<Svg>,
    /// `document.documentElement.clientWidth`: the layout width (390 on a
    /// phone only if the page has a `<meta name="viewport">`; 980 without).
    pub layout_width: f64,
    /// `document.documentElement.scrollWidth`: more than `layout_width` means
    /// the page scrolls sideways.
    pub scroll_width: f64,
    /// A PNG screenshot of the viewport.
    pub screenshot: Vec<u8>,
    /// How long the render took, browser start to exit.
    pub elapsed: Duration,
}

/// One inline `<svg>` as laid out and painted.
#[derive(Debug, Clone, PartialEq)]
pub struct Svg {
    /// Its box in page CSS pixels.
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// How many `polyline`, `path`, `line` and `polygon` elements it holds.
    pub lines: usize,
    /// Whether those lines change pixels: the svg's box is screenshot with
    /// the lines shown and again with them `visibility: hidden`, and the two
    /// PNGs differ. False for an svg with no lines, an empty box, or lines
    /// that draw nothing (no points, `stroke: none`, off the viewBox, the
    /// background colour).
    pub painted: bool,
}

impl Rendered {
    /// Whether some svg has lines that paint (a sparkline drawn).
    pub fn has_painted_svg(&self) -> bool {
        self.svgs.iter().any(|s| s.painted)
    }
}

/// The chromium binary: `chromium` on `$PATH`, else `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    chromium_in(std::env::var_os("PATH"), Path::new("/usr/bin/chromium"))
}

/// `chromium` in the directories of `path`, else `fallback` if it is a file;
/// panics (never a silent pass) if neither is there.
pub fn chromium_in(path: Option<std::ffi::OsString>, fallback: &Path) -> PathBuf {
    let on_path =
        path.and_then(|p| std::env::split_paths(&p).map(|d| d.join("chromium")).find(|c| c.is_file()));
    match on_path {
        Some(c) => c,
        None if fallback.is_file() => fallback.into(),
        None => panic!("chromium not found: run `bash .ci/install`"),
    }
}

/// Loads `url` in headless chromium with a phone's viewport and reports what
/// it rendered. Panics if chromium is missing, the page does not load, or
/// anything takes longer than [`RENDER_TIMEOUT`].
pub fn render(url: &str) -> Rendered {
    let started = Instant::now();
    let mut b = Browser::launch(started + RENDER_TIMEOUT);
    let target = b.call("Target.createTarget", json!({"url": "about:blank"}), None);
    let target = target["targetId"].as_str().unwrap_or_else(|| b.fail("no targetId")).to_string();
    let session = b.call("Target.attachToTarget", json!({"targetId": target, "flatten": true}), None);
    let session = session["sessionId"].as_str().unwrap_or_else(|| b.fail("no sessionId")).to_string();
    let s = Some(session.as_str());
    for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
        b.call(domain, json!({}), s);
    }
    let (w, h) = PHONE;
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": w, "height": h, "deviceScaleFactor": 1, "mobile": true}),
        s,
    );
    let nav = b.call("Page.navigate", json!({"url": url}), s);
    if let Some(e) = nav.get("errorText") {
        b.fail(&format!("navigating to {url}: {e}"));
    }
    b.wait_event("Page.loadEventFired", &session);

    let page = b.evaluate(PAGE_JS, s);
    let mut svgs = Vec::new();
    for (i, svg) in page["svgs"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let f = |k: &str| svg[k].as_f64().unwrap_or(0.0);
        let (x, y, width, height) = (f("x"), f("y"), f("width"), f("height"));
        let lines = svg["lines"].as_u64().unwrap_or(0) as usize;
        let painted = lines > 0 && width >= 1.0 && height >= 1.0 && {
            let clip = json!({"x": x, "y": y, "width": width, "height": height, "scale": 1});
            let shot = json!({"format": "png", "clip": clip, "captureBeyondViewport": true});
            let shown = b.call("Page.captureScreenshot", shot.clone(), s)["data"].clone();
            b.evaluate(&show_lines_js(i, "hidden"), s);
            let hidden = b.call("Page.captureScreenshot", shot, s)["data"].clone();
            b.evaluate(&show_lines_js(i, ""), s);
            shown.is_string() && shown != hidden
        };
        svgs.push(Svg { x, y, width, height, lines, painted });
    }
    let screenshot = b.call("Page.captureScreenshot", json!({"format": "png"}), s)["data"].clone();
    let screenshot = base64_decode(screenshot.as_str().unwrap_or_default());
    // A last round trip: every event sent before its answer has been read.
    b.evaluate("0", s);
    let (console_errors, console_other, ignored) = b.messages(&session);
    b.close();
    let text = |k: &str| page[k].as_str().unwrap_or_default().to_string();
    Rendered {
        dom: text("dom"),
        text: text("text"),
        status: page["status"].as_u64().unwrap_or(0) as u16,
        console_errors,
        console_other,
        ignored,
        svgs,
        layout_width: page["layoutWidth"].as_f64().unwrap_or(0.0),
        scroll_width: page["scrollWidth"].as_f64().unwrap_or(0.0),
        screenshot,
        elapsed: started.elapsed(),
    }
}

/// Reads the rendered page (run by the harness through the protocol; the page
/// itself needs no script).
const PAGE_JS: &str = r#"JSON.stringify({
  dom: document.documentElement.outerHTML,
  text: document.body ? document.body.innerText : "",
  status: (performance.getEntriesByType("navigation")[0] || {}).responseStatus || 0,
  layoutWidth: document.documentElement.clientWidth,
  scrollWidth: document.documentElement.scrollWidth,
  svgs: Array.from(document.querySelectorAll("svg")).map(s => {
    const r = s.getBoundingClientRect();
    return { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height,
             lines: s.querySelectorAll("polyline, path, line, polygon").length };
  }),
})"#;

/// Sets `visibility` on the lines of the `i`th svg ("" restores it).
fn show_lines_js(i: usize, visibility: &str) -> String {
    format!(
        r#"document.querySelectorAll("svg")[{i}].querySelectorAll("polyline, path, line, polygon")
             .forEach(e => e.style.visibility = "{visibility}"); 0"#
    )
}

/// One running chromium and its protocol pipe.
struct Browser {
    child: Child,
    /// Commands to the browser (its fd 3).
    to: File,
    /// Messages from the browser (its fd 4), read by a thread; `None` at EOF.
    from: Receiver<Option<Value>>,
    /// Events read so far, in order.
    events: Vec<Value>,
    next_id: u64,
    deadline: Instant,
    dir: PathBuf,
    reaped: bool,
}

impl Browser {
    fn launch(deadline: Instant) -> Browser {
        let exe = chromium();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("loka-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("chromium temp dir");
        let stderr = File::create(dir.join("stderr.log")).expect("chromium stderr log");
        let (child_reads, we_write) = pipe();
        let (we_read, child_writes) = pipe();
        let mut cmd = Command::new(&exe);
        let (w, h) = PHONE;
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            &format!("--window-size={w},{h}"),
            &format!("--user-data-dir={}", dir.join("profile").display()),
            "about:blank",
        ])
        // Nothing in the user's home: chromium's config and cache dirs (its
        // crash handler's database, dconf's cache) follow these.
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            // SAFETY: fcntl and dup2 are async-signal-safe; the closure only
            // uses copied integers. Each end is first copied to fd 10 or above
            // (close-on-exec), so dup2 onto 3 and 4 cannot clobber the other
            // end and always clears close-on-exec on 3 and 4.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::fcntl(child_reads, libc::F_DUPFD_CLOEXEC, 10);
                    let w = libc::fcntl(child_writes, libc::F_DUPFD_CLOEXEC, 10);
                    if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        // SAFETY: the four descriptors were just made by pipe() and are owned
        // here alone; the child's ends are closed so EOF is seen at its exit.
        let (to, mut reader) = unsafe {
            libc::close(child_reads);
            libc::close(child_writes);
            (File::from_raw_fd(we_write), File::from_raw_fd(we_read))
        };
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0; 256 * 1024];
            loop {
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    let v = serde_json::from_slice(&msg[..msg.len() - 1]).unwrap_or(Value::Null);
                    if tx.send(Some(v)).is_err() {
                        return;
                    }
                }
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        Browser { child, to, from, events: Vec::new(), next_id: 0, deadline, dir, reaped: false }
    }

    /// Panics with `msg` and the end of chromium's stderr (the browser is
    /// killed and its directory removed by `Drop`).
    fn fail(&self, msg: &str) -> ! {
        let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        panic!("chromium: {msg}\n--- chromium stderr (last lines, dbus noise left out):\n{tail}");
    }

    /// The next message, waiting at most until the deadline.
    fn next(&mut self, waiting_for: &str) -> Value {
        match super::deadline_recv(&self.from, self.deadline) {
            Some(Some(v)) => v,
            Some(None) => self.fail(&format!("exited while waiting for {waiting_for}")),
            None => {
                self.fail(&format!("timed out waiting for {waiting_for} ({RENDER_TIMEOUT:?} per render)"))
            }
        }
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes) {
            self.fail(&format!("sending {method}: {e}"));
        }
        self.next_id
    }

    /// Sends a command and returns its `result`, keeping events that come
    /// first.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = self.send(method, params, session);
        loop {
            let msg = self.next(&format!("the answer to {method}"));
            if msg["id"].as_u64() == Some(id) {
                if let Some(e) = msg.get("error") {
                    self.fail(&format!("{method}: {e}"));
                }
                return msg["result"].clone();
            }
            if msg.get("method").is_some() {
                self.events.push(msg);
            }
        }
    }

    /// Waits for the event `method` in `session`.
    fn wait_event(&mut self, method: &str, session: &str) {
        loop {
            let msg = self.next(method);
            let hit = msg["method"] == method && msg["sessionId"] == session;
            self.events.push(msg);
            if hit {
                return;
            }
        }
    }

    /// Evaluates `expr` in the page; a string result that is JSON is parsed.
    fn evaluate(&mut self, expr: &str, session: Option<&str>) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true}), session);
        if let Some(e) = r.get("exceptionDetails") {
            self.fail(&format!("evaluating the harness's script: {e}"));
        }
        let v = r["result"]["value"].clone();
        v.as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(v)
    }

    /// The session's console and log messages: (errors, others, ignored).
    fn messages(&self, session: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut errors, mut other, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
        for e in self.events.iter().filter(|e| e["sessionId"] == session) {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Runtime.consoleAPICalled" => {
                    let kind = p["type"].as_str().unwrap_or("log");
                    let args: Vec<String> =
                        p["args"].as_array().into_iter().flatten().map(arg_text).collect();
                    let line = format!(
                        "{}: {}",
                        if kind == "error" { "console.error" } else { kind },
                        args.join(" ")
                    );
                    if matches!(kind, "error" | "assert") { errors.push(line) } else { other.push(line) }
                }
                "Runtime.exceptionThrown" => {
                    let d = &p["exceptionDetails"];
                    let what = d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("?");
                    errors.push(format!(
                        "uncaught: {what} ({}:{})",
                        d["url"].as_str().unwrap_or(""),
                        d["lineNumber"]
                    ));
                }
                "Log.entryAdded" => {
                    let entry = &p["entry"];
                    let s = |k: &str| entry[k].as_str().unwrap_or_default();
                    let line = format!("{}: {} ({})", s("source"), s("text"), s("url"));
                    match s("level") {
                        "error" if s("url").ends_with("/favicon.ico") => ignored.push(line),
                        "error" => errors.push(line),
                        level => other.push(format!("{level}: {line}")),
                    }
                }
                _ => {}
            }
        }
        (errors, other, ignored)
    }

    /// Asks the browser to close and waits (bounded) for its pipe to end;
    /// `Drop` then kills what is left of its process group and reaps it.
    fn close(mut self) {
        let _ = self.send("Browser.close", json!({}), None);
        let until = self.deadline.min(Instant::now() + Duration::from_secs(10));
        while let Some(Some(_)) = super::deadline_recv(&self.from, until) {}
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.reaped {
            // The leader is not reaped yet, so the group id is still ours.
            // SAFETY: kill with a negative pid signals that process group.
            unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = self.child.wait();
            self.reaped = true;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// A console argument as text: its value, else its description.
fn arg_text(a: &Value) -> String {
    match (&a["value"], a["description"].as_str()) {
        (Value::String(s), _) => s.clone(),
        (Value::Null, Some(d)) => d.to_string(),
        (Value::Null, None) => a["type"].as_str().unwrap_or("?").to_string(),
        (v, _) => v.to_string(),
    }
}

/// Standard base64 (the protocol's screenshot data).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::with_capacity(s.len() * 3 / 4), 0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A tiny HTTP server on 127.0.0.1 port 0 for browser tests: fixed pages by
/// path, 404 for anything else, every request path recorded.
pub struct PageServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    /// Serves `pages` as `(path, html)`, `text/html; charset=utf-8`.
    pub fn start(pages: &[(&str, &str)]) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let addr = listener.local_addr().unwrap();
        let pages: Arc<Vec<(String, String)>> =
            Arc::new(pages.iter().map(|(p, h)| (p.to_string(), h.to_string())).collect());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (pages, seen) = (pages.clone(), seen.clone());
                std::thread::spawn(move || serve_one(conn, &pages, &seen));
            }
        });
        PageServer { addr, requests, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_one(mut conn: TcpStream, pages: &[(String, String)], seen: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    seen.lock().unwrap().push(path.clone());
    let (status, body) = match pages.iter().find(|(p, _)| *p == path) {
        Some((_, html)) => ("200 OK", html.as_str()),
        None => ("404 Not Found", "not found"),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept so the thread sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
