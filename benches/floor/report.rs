//! The bench's output: the machine, what each figure measured, and one
//! table of floor (the bare relay) against loka-stratum with the targets.

use std::time::Duration;

use crate::arm::Outcome;
use crate::figures::{FleetFigures, Trips};
use crate::table::{Table, Target};
use crate::trace::Syscalls;
use crate::{BIN, Sizes};

/// Targets of issue 16: ratios to the relay, or limits on the proxy.
const MEDIAN_RATIO: f64 = 1.25;
const P99_RATIO: f64 = 2.0;
const CPU_RATIO: f64 = 1.5;
const SYSCALLS_PER_SHARE: f64 = 10.0;
/// "No cross-thread wake-up on the hot path": none but a stray one.
const FUTEX_PER_SHARE: f64 = 0.01;
const IDLE_RSS_KIB: f64 = 2560.0;
const KIB_PER_IDLE_MINER: f64 = 4.0;

/// Everything measured; index 0 is the relay, 1 the proxy.
pub struct Report {
    pub full: bool,
    pub cpu: usize,
    load: String,
    blocks: usize,
    block: usize,
    bursts: usize,
    strace_shares: usize,
    callgrind_shares: Option<[usize; 2]>,
    qemu: Option<(usize, usize)>,
    pub idle_kib: [u64; 2],
    pub fleets: [Option<FleetFigures>; 2],
    pub trips: Option<[Trips; 3]>,
    pub pinned: Vec<(&'static str, String)>,
    pub syscalls: [Option<Syscalls>; 2],
    pub instructions: [Option<[u64; 2]>; 2],
    pub arm: Option<Outcome>,
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
    pub took: Duration,
}

impl Report {
    pub fn new(sizes: &Sizes, cpu: usize) -> Report {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Report {
            full: sizes.full,
            cpu,
            load: load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            blocks: sizes.blocks,
            block: sizes.block,
            bursts: sizes.bursts,
            strace_shares: sizes.strace_shares,
            callgrind_shares: sizes.callgrind_shares,
            qemu: sizes.qemu,
            idle_kib: [0; 2],
            fleets: [None, None],
            trips: None,
            pinned: Vec::new(),
            syscalls: [None, None],
            instructions: [None, None],
            arm: None,
            skipped: Vec::new(),
            notes: Vec::new(),
            took: Duration::ZERO,
        }
    }

    pub fn print(&self) {
        let mode = if self.full { "full run" } else { "smoke run: figures mean nothing" };
        println!("loka-stratum floor bench ({mode}): {BIN} against a bare relay");
        println!("machine:  {}", machine(&self.load));
        let everything = self.pinned.iter().all(|(_, list)| *list == self.cpu.to_string());
        let lists: Vec<String> = self.pinned.iter().map(|(name, list)| format!("{name} {list}")).collect();
        if everything {
            println!(
                "pinned:   everything pinned to CPU {} (Cpus_allowed_list of every thread: {})",
                self.cpu,
                lists.join(", ")
            );
        } else {
            println!(
                "pinned:   NOT everything pinned to CPU {} (Cpus_allowed_list: {})",
                self.cpu,
                lists.join(", ")
            );
        }
        println!();
        self.details();
        println!();
        self.table();
        for why in &self.skipped {
            println!("skipped: {why}");
        }
        for note in &self.notes {
            println!("note: {note}");
        }
        println!("run took {:.0} s", self.took.as_secs_f64());
    }

    fn details(&self) {
        let names = ["relay", "loka-stratum"];
        println!(
            "idle:     VmRSS relay {} KiB, loka-stratum {} KiB (after start and settling, no miner yet)",
            self.idle_kib[0], self.idle_kib[1]
        );
        if let [Some(relay), Some(proxy)] = &self.fleets {
            println!(
                "miners:   {} idle miners on each (subscribed, authorized, got a ~1 KiB job; each its own pool connection)",
                proxy.miners
            );
            for (name, f) in names.iter().zip([relay, proxy]) {
                println!(
                    "          {name:<13} VmRSS {} -> {} KiB, {:.2} KiB per miner",
                    f.before_kib,
                    f.after_kib,
                    f.kib_per_miner()
                );
            }
            println!(
                "at once:  {} bursts: all {} miners submit back to back, then every answer is awaited",
                self.bursts, proxy.miners
            );
            for (name, f) in names.iter().zip([relay, proxy]) {
                let b = &f.burst;
                let (server, bench) = (f.per_share(f.cpu), f.per_share(f.bench_cpu));
                println!(
                    "          {name:<13} {} sent, {} accepted, {} refused, {} closed, {} timed out; \
                     {:.3} s ({:.0} shares/s)",
                    b.sent,
                    b.accepted,
                    b.refused,
                    b.closed,
                    b.timed_out,
                    b.wall.as_secs_f64(),
                    f.shares_per_second(),
                );
                println!(
                    "          {:<13} per share: CPU {:.2} µs, {:.2} wake-ups; the bench (pool, miners) {:.2} µs",
                    "", server.us, server.wakeups, bench.us
                );
            }
        }
        if let Some(trips) = &self.trips {
            println!(
                "latency:  {} blocks x {} sequential submit round trips per path, order rotated, TCP_NODELAY",
                self.blocks, self.block
            );
            print_trips(trips);
            println!(
                "cpu:      one share at a time, per share, over each path's own blocks (schedstat, all threads):"
            );
            for (name, t) in ["direct to pool", "relay", "loka-stratum"].iter().zip(trips) {
                let (server, bench) = (t.per_share(t.cpu), t.per_share(t.bench_cpu));
                println!(
                    "          {name:<15} CPU {:>6.2} µs, {:.2} wake-ups; the bench (pool, miner) {:.2} µs, {:.2} wake-ups",
                    server.us, server.wakeups, bench.us, bench.wakeups
                );
            }
            let threads: Vec<String> = trips[2]
                .by_thread
                .iter()
                .map(|(thread, cpu)| {
                    let per = trips[2].per_share(*cpu);
                    format!("{thread} {:.2} µs, {:.2} wake-ups", per.us, per.wakeups)
                })
                .collect();
            println!("          loka-stratum by thread: {}", threads.join("; "));
            println!(
                "          while the other paths ran (background work): relay {:.1} ms, loka-stratum {:.1} ms in all",
                trips[1].idle_cpu.ns as f64 / 1e6,
                trips[2].idle_cpu.ns as f64 / 1e6,
            );
            if trips[1].threads_changed || trips[2].threads_changed {
                println!("          (a thread came or went during a block: its CPU time may be missing)");
            }
        }
        if let [Some(relay), Some(proxy)] = &self.syscalls {
            println!(
                "syscalls: {} round trips under strace -f -c (every thread), nothing subtracted",
                self.strace_shares
            );
            for (name, s) in names.iter().zip([relay, proxy]) {
                println!("          {name:<13} {:.2} per share: {}", s.per_share("total"), s.breakdown());
            }
        }
        if let (Some([n1, n2]), [Some(relay), Some(proxy)]) = (self.callgrind_shares, &self.instructions) {
            println!("instructions: callgrind, fresh process per run: (I({n2}) - I({n1})) / {}", n2 - n1);
            for (name, [i1, i2]) in names.iter().zip([relay, proxy]) {
                println!(
                    "          {name:<13} I({n1}) = {i1}, I({n2}) = {i2}: {:.0} per share",
                    per_share(*i1, *i2, n2 - n1)
                );
            }
        }
        if self.instructions.iter().any(Option::is_some) {
            println!(
                "          (valgrind's CPUID shows no SHA-NI, so the proxy's share check hashes with sha2's \
                 portable code here: most of its count; see benches/README.md)"
            );
        }
        match &self.arm {
            Some(Outcome::Ran { proxy, age, paths }) => {
                let (blocks, block) = self.qemu.unwrap_or_default();
                let age =
                    age.map_or(String::new(), |a| format!(", built {:.0} min ago", a.as_secs_f64() / 60.0));
                println!(
                    "aarch64:  {}{age}, and the relay built for aarch64, under qemu-aarch64; \
                     {blocks} blocks x {block} round trips per path",
                    proxy.display()
                );
                print_trips(paths);
                println!(
                    "          CPU per share, one at a time (the qemu process, all threads): relay {:.1} µs, \
                     loka-stratum {:.1} µs",
                    paths[1].per_share(paths[1].cpu).us,
                    paths[2].per_share(paths[2].cpu).us
                );
            }
            Some(Outcome::Skipped(why)) => println!("aarch64:  skipped: {why}"),
            None => {}
        }
    }

    fn table(&self) {
        let mut t = Table::default();
        if let Some([direct, relay, proxy]) = &self.trips {
            let added = |p: &Trips, stat: fn(&Trips) -> Duration| us(stat(p)) - us(stat(direct));
            t.row(
                "added latency per round trip, median",
                Some(added(relay, Trips::median)),
                added(proxy, Trips::median),
                "µs",
                1,
                Target::Ratio(MEDIAN_RATIO),
            );
            t.row(
                "added latency per round trip, p99",
                Some(added(relay, Trips::p99)),
                added(proxy, Trips::p99),
                "µs",
                1,
                Target::Ratio(P99_RATIO),
            );
            let (r, p) = (relay.per_share(relay.cpu), proxy.per_share(proxy.cpu));
            t.row("CPU per share, one at a time", Some(r.us), p.us, "µs", 2, Target::Ratio(CPU_RATIO));
            t.row(
                "  wake-ups per share (threads scheduled in)",
                Some(r.wakeups),
                p.wakeups,
                "",
                2,
                Target::None,
            );
        }
        if let [Some(relay), Some(proxy)] = &self.syscalls {
            t.row(
                "system calls per share and its answer",
                Some(relay.per_share("total")),
                proxy.per_share("total"),
                "",
                2,
                Target::Max(SYSCALLS_PER_SHARE),
            );
            t.row(
                "  of which futex (cross-thread wake-ups)",
                Some(relay.per_share("futex")),
                proxy.per_share("futex"),
                "",
                2,
                Target::Max(FUTEX_PER_SHARE),
            );
        }
        if let (Some([n1, n2]), [Some([r1, r2]), Some([p1, p2])]) =
            (self.callgrind_shares, &self.instructions)
        {
            t.row(
                "instructions per share (callgrind)",
                Some(per_share(*r1, *r2, n2 - n1)),
                per_share(*p1, *p2, n2 - n1),
                "",
                0,
                Target::None,
            );
        }
        t.row(
            "idle RSS",
            Some(self.idle_kib[0] as f64),
            self.idle_kib[1] as f64,
            "KiB",
            0,
            Target::Max(IDLE_RSS_KIB),
        );
        if let [Some(relay), Some(proxy)] = &self.fleets {
            let n = proxy.miners;
            t.row(
                &format!("RSS per idle miner ({n} miners)"),
                Some(relay.kib_per_miner()),
                proxy.kib_per_miner(),
                "KiB",
                2,
                Target::Max(KIB_PER_IDLE_MINER),
            );
            t.row(
                &format!("{n} miners at once: errors"),
                Some(relay.burst.errors() as f64),
                proxy.burst.errors() as f64,
                "",
                0,
                Target::Max(0.0),
            );
            t.row(
                &format!("{n} miners at once: shares/s"),
                Some(relay.shares_per_second()),
                proxy.shares_per_second(),
                "",
                0,
                Target::None,
            );
            let (r, p) = (relay.per_share(relay.cpu).us, proxy.per_share(proxy.cpu).us);
            t.row(&format!("{n} miners at once: CPU per share"), Some(r), p, "µs", 2, Target::None);
        }
        if let Some(Outcome::Ran { paths, .. }) = &self.arm {
            let [direct, relay, proxy] = &**paths;
            let added = |p: &Trips| us(p.median()) - us(direct.median());
            t.row(
                "aarch64 (qemu): added latency, median",
                Some(added(relay)),
                added(proxy),
                "µs",
                1,
                Target::None,
            );
            let (r, p) = (relay.per_share(relay.cpu).us, proxy.per_share(proxy.cpu).us);
            t.row("aarch64 (qemu): CPU per share, one at a time", Some(r), p, "µs", 1, Target::None);
        }
        t.print();
        println!(
            "added = the path's figure minus direct to the pool's (for p99: p99 of the path - p99 direct, \
             not the p99 of differences); ratio = loka-stratum / relay"
        );
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn per_share(i1: u64, i2: u64, shares: usize) -> f64 {
    (i2 as f64 - i1 as f64) / shares as f64
}

fn print_trips(trips: &[Trips; 3]) {
    let direct = &trips[0];
    for (name, t) in ["direct to pool", "relay", "loka-stratum"].iter().zip(trips) {
        println!(
            "          {name:<15} median {:>8.1} µs (added {:>6.1})   p99 {:>8.1} µs (added {:>6.1})",
            us(t.median()),
            us(t.median()) - us(direct.median()),
            us(t.p99()),
            us(t.p99()) - us(direct.p99()),
        );
    }
}

/// CPUs, model, kernel, the load average at the start, and this
/// process's nice value.
fn machine(load: &str) -> String {
    // SAFETY: sysconf and getpriority have no memory effects.
    let (cpus, nice) =
        unsafe { (libc::sysconf(libc::_SC_NPROCESSORS_ONLN), libc::getpriority(libc::PRIO_PROCESS, 0)) };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({}), Linux {}, load average {load} at the start, nice {nice}",
        model.unwrap_or("?"),
        kernel.trim()
    )
}
