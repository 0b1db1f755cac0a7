use super::*;

#[test]
fn backoff_doubles_to_the_cap() {
    let mut pause = None;
    let mut seen = Vec::new();
    for _ in 0..9 {
        let next = backoff(pause);
        seen.push(next.as_millis());
        pause = Some(next);
    }
    assert_eq!(seen, [25, 50, 100, 200, 400, 800, 1000, 1000, 1000]);
}

#[test]
fn budget_warns_when_the_limit_is_too_low() {
    let (level, line) = descriptor_budget(Some(1024), 1000);
    assert_eq!(level, log::Level::Warn);
    assert_eq!(
        line,
        "descriptor limit 1024 allows about 496 miners; server.max_connections is 1000: \
         raise LimitNOFILE (or ulimit -n) to 2032 or more"
    );
    let (level, line) = descriptor_budget(Some(4096), 1000);
    assert_eq!(level, log::Level::Info);
    assert_eq!(line, "descriptor limit 4096 allows about 2032 miners (server.max_connections is 1000)");
    assert_eq!(descriptor_budget(None, 1000).0, log::Level::Info);
    // Fewer descriptors than the daemon's own need: no miners, no underflow.
    assert_eq!(miners_allowed(10), 0);
    assert_eq!(descriptor_budget(Some(2032), 1000).0, log::Level::Info);
    assert_eq!(descriptor_budget(Some(2031), 1000).0, log::Level::Warn);
}

#[test]
fn throttle_passes_one_line_per_interval_and_counts_the_rest() {
    let t = Throttle::new(Duration::from_secs(60));
    let start = Instant::now();
    assert_eq!(t.pass(start), Some(0));
    for s in 1..=5 {
        assert_eq!(t.pass(start + Duration::from_secs(s)), None);
    }
    assert_eq!(t.pass(start + Duration::from_secs(60)), Some(5));
    assert_eq!(t.pass(start + Duration::from_secs(61)), None);
    assert_eq!(t.pass(start + Duration::from_secs(121)), Some(1));
}
