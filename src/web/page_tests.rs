use super::*;
use crate::history::State;

fn worker(login: &str, state: State) -> (WorkerView, Vec<f32>) {
    let v = WorkerView {
        login: crate::worker::display_login(login),
        state,
        hashrate_10m: 1.2e12,
        hashrate_1h: 1.1e12,
        hashrate_24h: 1.0e12,
        accepted: 100,
        rejected: 2,
        stale: 1,
        best_share: 9.54e-7,
        last_share: Some(1_799_999_990.0),
        usual_interval: Some(10),
        down_after: 600,
        hashrate_30m: 1e12,
    };
    (v, (0..SPARK_POINTS).map(|i| i as f32 * 1e10).collect())
}

fn page(workers: Vec<(WorkerView, Vec<f32>)>) -> String {
    let p = Page {
        name: "gw<1>",
        uptime: 3600,
        connections: 3,
        pools: vec![PoolRow {
            name: "main",
            address: "127.0.0.1:3333".into(),
            state: "up",
            active: true,
            connected: 3,
        }],
        workers,
        last_block: None,
        now: 1_800_000_000,
    };
    let mut out = String::new();
    render(&mut out, &p);
    out
}

#[test]
fn hostile_logins_render_as_text() {
    let out = page(vec![worker("<script>alert(1)</script>.rig", State::Hashing)]);
    assert!(!out.contains("<script"), "{out}");
    assert!(out.contains("&lt;script&gt;"));
    assert!(out.contains("gw&lt;1&gt;"));
    assert!(out.contains("<polyline points=\""));
}

#[test]
fn the_page_stays_under_its_cap_and_trouble_comes_first() {
    let many: Vec<_> = (0..300)
        .map(|i| worker(&format!("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig{i:03}"), State::Hashing))
        .chain([worker("zz.down", State::Down)])
        .collect();
    let out = page(many);
    assert!(out.len() <= MAX_PAGE_BYTES, "{}", out.len());
    assert!(out.contains("more workers not shown"));
    let down = out.find("zz.down").unwrap();
    let first_hashing = out.find("rig000").unwrap();
    assert!(down < first_hashing, "a down worker is shown before the hashing ones");
    assert!(out.ends_with("</html>"));
}

#[test]
fn long_logins_keep_the_rig() {
    let check = |login: &str, want: &str| assert_eq!(short_login(login), want, "{login}");
    check("alice.rig1", "alice.rig1");
    check("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1", "bc1qar0s…f5mdq.rig1");
    check("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.bfg", "bc1qar0s…f5mdq.bfg");
    check("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "bc1qar0s…f5mdq");
    // Farm rigs that differ at the end stay apart.
    check("acct.s19jpro-rack01-slot01", "acct.s19jpro-rack01-slot01");
    let (a, b) = (
        short_login("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.s19jpro-rack01-shelf-a-slot01"),
        short_login("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.s19jpro-rack01-shelf-a-slot02"),
    );
    assert_ne!(a, b);
    assert_eq!(a, "bc1qar0s…f5mdq.s19jpro-rac…elf-a-slot01");
}

#[test]
fn difficulties_keep_significant_digits() {
    let check = |d: f64, want: &str| assert_eq!(Difficulty(d).to_string(), want, "{d}");
    check(9.54e-7, "9.54e-7");
    check(0.5, "0.50");
    check(1234.0, "1.23k");
    check(2.5e12, "2.50T");
    check(0.0, "0");
    check(-0.0, "0");
    check(f64::NAN, "0");
}
