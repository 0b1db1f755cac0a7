//! The books against a plain model, pruning, and distributions.

use super::*;
use crate::worker::display_login;
use redb::ReadableTableMetadata;

fn setting() -> Setting {
    Setting {
        pool: "p".into(),
        address: "p.example:3333".into(),
        username: "acct".into(),
        settlement: 3600,
        keep_raw_secs: 172_800,
    }
}

/// Random shares for random logins over three days, committed in random
/// batches, against a plain map kept beside the store.
#[test]
fn day_totals_match_a_model() {
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20 {
        let mut books = Books::in_memory(setting()).unwrap();
        let mut model: BTreeMap<(Day, String), DayTotals> = BTreeMap::new();
        let base = 1_764_000_000u64;
        let mut batch = Vec::new();
        for _ in 0..(next() % 300) {
            let login = format!("u{}.w{}", next() % 3, next() % 2);
            let outcome = match next() % 4 {
                0 | 1 => Outcome::Accepted((next() % 1000) as f64 / 16.0),
                2 => Outcome::Rejected((next() % 5) as u8),
                _ => Outcome::Stale,
            };
            let at = base + next() % (3 * 86_400);
            model.entry((Day::of(at, 3600), login.clone())).or_default().add(outcome);
            batch.push(Event::Share {
                login: display_login(&login),
                outcome,
                at_ms: at * 1000 + next() % 1000,
            });
            if next() % 7 == 0 {
                books.commit(&batch, base).unwrap();
                batch.clear();
            }
        }
        books.commit(&batch, base).unwrap();
        let mut days: Vec<Day> = model.keys().map(|k| k.0).collect();
        days.dedup();
        for day in days {
            let got: BTreeMap<String, DayTotals> =
                books.day_totals(day).unwrap().into_iter().map(|(l, _, t, _)| (l, t)).collect();
            let want: BTreeMap<String, DayTotals> =
                model.iter().filter(|(k, _)| k.0 == day).map(|(k, v)| (k.1.clone(), *v)).collect();
            assert_eq!(got.len(), want.len(), "round {round} day {day}");
            for (login, w) in want {
                let g = got[&login];
                assert_eq!((g.accepted, g.rejected, g.stale), (w.accepted, w.rejected, w.stale), "{login}");
                assert!((g.difficulty - w.difficulty).abs() < 1e-9, "{login}");
            }
        }
    }
}

#[test]
fn workers_and_pools_are_kept() {
    let mut books = Books::in_memory(setting()).unwrap();
    let seen = |at| Event::WorkerSeen {
        login: "ann.rig".into(),
        address: "10.0.0.5:4000".into(),
        agent: "bitaxe/2.4".into(),
        at,
    };
    books.commit(&[Event::PoolConnected { at: 10 }, seen(10)], 10).unwrap();
    books.commit(&[Event::PoolConnected { at: 20 }, seen(30)], 30).unwrap();
    let tx = books.db.begin_read().unwrap();
    let pool = tx.open_table(POOLS).unwrap().get("p").unwrap().unwrap().value();
    assert_eq!((pool.2, pool.3), (10, 20));
    let worker = tx.open_table(WORKERS).unwrap().get("ann.rig").unwrap().unwrap().value();
    assert_eq!((worker.0.as_str(), worker.2, worker.3), ("ann", 10, 30));
    assert_eq!(worker.5, "bitaxe/2.4");
    assert_eq!(tx.open_table(MINERS).unwrap().get("ann").unwrap().unwrap().value(), (10, 30));
}

#[test]
fn raw_shares_are_pruned_but_day_totals_stay() {
    let mut books = Books::in_memory(Setting { keep_raw_secs: 100, ..setting() }).unwrap();
    let share = |at_ms| Event::Share { login: display_login("a"), outcome: Outcome::Accepted(1.0), at_ms };
    books.commit(&[share(1_000), share(500_000)], 500).unwrap();
    books.commit(&[], 700).unwrap();
    let tx = books.db.begin_read().unwrap();
    assert_eq!(ReadableTableMetadata::len(&tx.open_table(RAW).unwrap()).unwrap(), 0);
    drop(tx);
    let rows = books.day_totals(Day(0)).unwrap();
    assert_eq!(rows[0].2.accepted, 2);
}

#[test]
fn distribution_needs_earnings_and_work() {
    let mut books = Books::in_memory(setting()).unwrap();
    let day = Day(20_000);
    assert!(matches!(books.distribute(day, "p", 0), Err(StoreError::Refused(_))));
    books.add_earning(day, "p", 100, None).unwrap();
    assert!(matches!(books.distribute(day, "p", 0), Err(StoreError::Refused(_))));
    let at_ms = day.start(3600) * 1000 + 5;
    let share =
        |login: &str, d| Event::Share { login: display_login(login), outcome: Outcome::Accepted(d), at_ms };
    books.commit(&[share("a.1", 1.0), share("b", 3.0)], day.start(3600)).unwrap();
    books.distribute(day, "p", 0).unwrap();
    let text = books.render_distributions(Some(day)).unwrap();
    assert!(text.contains("a.1") && text.contains(" 25\n") && text.contains(" 75\n"), "{text}");
}
