//! The relative check on aarch64: the aarch64 proxy and an aarch64 build of
//! the same bare relay, both under `qemu-aarch64`, against the native pool.
//! qemu translates every instruction and turns each system call into a host
//! call, so only the ratio proxy/relay means anything, not the times.
//!
//! The proxy must be built first (minutes, so the bench does not):
//! `cargo build --release --target aarch64-unknown-linux-gnu` (the linker
//! is set in `.cargo/config.toml`; `.ci/arm` installs what it needs). The
//! relay is one file with std only; the bench builds it with `rustc` when
//! it is missing or older than its source (a few seconds).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Failure;
use crate::figures::{Trips, latency, start_proxy, start_relay};
use crate::process::available;

const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Debian's aarch64 libc, where qemu finds the dynamic loader.
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const RELAY_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/floor/relay.rs");

/// What the aarch64 run measured, or why it did not run.
pub enum Outcome {
    /// The proxy binary, how long ago it was built, and the three paths.
    Ran {
        proxy: PathBuf,
        age: Option<Duration>,
        paths: Box<[Trips; 3]>,
    },
    Skipped(String),
}

/// Runs the latency comparison under qemu, or says why it cannot.
pub fn run(
    target_dir: &Path,
    pool: SocketAddr,
    dir: &Path,
    blocks: usize,
    block: usize,
    timeout: Duration,
) -> Result<Outcome, Failure> {
    let proxy = std::env::var_os("LOKA_BENCH_AARCH64")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir.join(TARGET).join("release/loka-stratum"));
    if !proxy.exists() {
        return Ok(Outcome::Skipped(format!(
            "no aarch64 proxy at {} (build it with `cargo build --release --target {TARGET}`, \
             or set LOKA_BENCH_AARCH64)",
            proxy.display()
        )));
    }
    if !available("qemu-aarch64") || !Path::new(SYSROOT).exists() {
        return Ok(Outcome::Skipped(format!("no qemu-aarch64 or no {SYSROOT} (bash .ci/arm installs both)")));
    }
    let relay = match build_relay(target_dir) {
        Ok(relay) => relay,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let runner = ["qemu-aarch64", "-L", SYSROOT].map(String::from);
    let relay = start_relay(&runner, &relay, pool, timeout)?;
    let proxy_server = start_proxy(&runner, &proxy, pool, dir, timeout)?;
    let paths = latency(pool, [&relay, &proxy_server], blocks, block, timeout)?;
    let age = std::fs::metadata(&proxy).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    Ok(Outcome::Ran { proxy, age, paths: Box::new(paths) })
}

/// The aarch64 relay, built with `rustc` unless it is newer than its source.
fn build_relay(target_dir: &Path) -> Result<PathBuf, String> {
    let out = target_dir.join(TARGET).join("floor-relay");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(source)) = (modified(&out), modified(Path::new(RELAY_SOURCE)))
        && built > source
    {
        return Ok(out);
    }
    std::fs::create_dir_all(target_dir.join(TARGET)).map_err(|e| format!("create {}: {e}", out.display()))?;
    let built = Command::new("rustc")
        .args([
            "--edition",
            "2024",
            "-C",
            "opt-level=3",
            "--target",
            TARGET,
            "-C",
            "linker=aarch64-linux-gnu-gcc",
        ])
        .arg(RELAY_SOURCE)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run rustc to build the aarch64 relay: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "building the aarch64 relay failed (rustup target add {TARGET}; aarch64-linux-gnu-gcc): {}",
            String::from_utf8_lossy(&built.stderr).lines().next().unwrap_or("")
        ));
    }
    Ok(out)
}
