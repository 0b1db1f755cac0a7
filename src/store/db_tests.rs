//! The books against a plain model, pruning, and distributions.

use super::*;
use crate::check::Verdict;
use crate::worker::display_login;
use redb::TableHandle;

fn setting() -> Setting {
    Setting { pools: vec![pool("p")], settlement: 3600, keep_raw_secs: 172_800, max_new_workers_per_day: 64 }
}

/// A pool named `name`, at `name.example:3333`, account `acct-name`.
fn pool(name: &str) -> PoolSetting {
    PoolSetting {
        name: name.into(),
        address: format!("{name}.example:3333"),
        username: format!("acct-{name}"),
    }
}

/// The harness pool alone, as the 0.1.0 fixture was written with.
fn harness() -> Setting {
    Setting { pools: vec![pool("harness_pool")], settlement: 0, ..setting() }
}

/// A sane unix time: 2025-11-24 16:00 UTC.
const T0: u64 = 1_764_000_000;

fn share(login: &str, outcome: Outcome, at_ms: u64) -> Event {
    Event::Share { login: display_login(login), outcome, check: None, pool: 0, at_ms }
}

fn seen(login: &str, at: u64) -> Event {
    let (address, agent) = ("10.0.0.5:4000".into(), "bitaxe/2.4".into());
    Event::WorkerSeen { login: login.into(), address, agent, pool: 0, at }
}

/// Every bucket of recent shares: (start, pool, login) -> row.
fn recent_rows(books: &Books) -> BTreeMap<(u64, String, String), TotalsRow> {
    let tx = books.db.begin_read().unwrap();
    let table = tx.open_table(RECENT).unwrap();
    let rows = table.iter().unwrap().map(|r| {
        let (k, v) = r.unwrap();
        let (bucket, pool, login) = k.value();
        ((u64::from(bucket) * RECENT_SECS, pool.to_string(), login.to_string()), v.value())
    });
    rows.collect()
}

/// Shares held in the buckets of recent shares (accepted, rejected, stale).
fn raw_rows(books: &Books) -> u64 {
    recent_rows(books).values().map(|r| r.0 + r.2.iter().sum::<u64>() + r.3).sum()
}

/// Totals by login for `day`.
fn totals(books: &Books, day: Day) -> BTreeMap<String, DayTotals> {
    books.day_totals(day).unwrap().into_iter().map(|(l, _, t, _)| (l, t)).collect()
}

/// Random shares for random logins over three days, committed in random
/// batches, against a plain map kept beside the store. The model's rules: a
/// login is listed from its first accepted share on (the cap is not reached
/// here); shares of unlisted logins count under `_other`; accepted shares of
/// difficulty 0 are not booked.
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
        let mut listed: std::collections::BTreeSet<String> = Default::default();
        let base = T0;
        let mut batch = Vec::new();
        for _ in 0..(next() % 300) {
            let login = format!("u{}.w{}", next() % 3, next() % 2);
            let outcome = match next() % 4 {
                0 | 1 => Outcome::Accepted((next() % 1000) as f64 / 16.0),
                2 => Outcome::Rejected((next() % 5) as u8),
                _ => Outcome::Stale,
            };
            let at = base + next() % (3 * 86_400);
            if outcome.is_believable() {
                if matches!(outcome, Outcome::Accepted(_)) {
                    listed.insert(login.clone());
                }
                let name = if listed.contains(&login) { login.clone() } else { OVERFLOW_WORKER.into() };
                model.entry((Day::of(at, 3600), name)).or_default().add(outcome);
            }
            batch.push(Event::Share {
                login: display_login(&login),
                outcome,
                check: None,
                pool: 0,
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
    let accepted = |at: u64| share("ann.rig", Outcome::Accepted(1.0), at * 1000);
    books
        .commit(
            &[Event::PoolConnected { pool: 0, at: T0 + 10 }, seen("ann.rig", T0 + 10), accepted(T0 + 11)],
            T0,
        )
        .unwrap();
    books.commit(&[Event::PoolConnected { pool: 0, at: T0 + 20 }, seen("ann.rig", T0 + 30)], T0).unwrap();
    let tx = books.db.begin_read().unwrap();
    let pool = tx.open_table(POOLS).unwrap().get("p").unwrap().unwrap().value();
    assert_eq!((pool.2, pool.3), (T0 + 10, T0 + 20));
    let worker = tx.open_table(WORKERS).unwrap().get("ann.rig").unwrap().unwrap().value();
    assert_eq!((worker.0.as_str(), worker.2, worker.3), ("ann", T0 + 10, T0 + 30));
    assert_eq!((worker.4.as_str(), worker.5.as_str()), ("10.0.0.5:4000", "bitaxe/2.4"));
    assert_eq!(tx.open_table(MINERS).unwrap().get("ann").unwrap().unwrap().value(), (T0 + 10, T0 + 30));
}

/// Recent shares go in whole buckets once past the retention, an hour's
/// worth at a time; the day's totals stay.
#[test]
fn raw_shares_are_pruned_but_day_totals_stay() {
    let mut books = Books::in_memory(Setting { keep_raw_secs: 100, ..setting() }).unwrap();
    let a = |at: u64| share("a", Outcome::Accepted(1.0), at * 1000);
    books.commit(&[a(T0 + 1), a(T0 + 500)], T0 + 500).unwrap();
    assert_eq!(recent_rows(&books).keys().map(|k| k.0).collect::<Vec<_>>(), [T0, T0 + 300]);
    // Past the retention, but not yet by an hour: kept.
    books.commit(&[a(T0 + 3000)], T0 + 3000).unwrap();
    assert_eq!(raw_rows(&books), 3);
    // An hour past: every bucket wholly before the retention goes at once.
    books.commit(&[a(T0 + 3950)], T0 + 3600 + 400).unwrap();
    assert_eq!(recent_rows(&books).keys().map(|k| k.0).collect::<Vec<_>>(), [T0 + 3900]);
    let rows = books.day_totals(Day::of(T0, 3600)).unwrap();
    assert_eq!(rows[0].2.accepted, 4);
}

#[test]
fn distribution_needs_earnings_and_work() {
    let mut books = Books::in_memory(setting()).unwrap();
    let day = Day(20_000);
    assert!(matches!(books.distribute(day, "p", 0), Err(StoreError::Refused(_))));
    books.add_earning(day, "p", 100, None).unwrap();
    assert!(matches!(books.distribute(day, "p", 0), Err(StoreError::Refused(_))));
    let at_ms = day.start(3600) * 1000 + 5;
    let share = |login: &str, d| Event::Share {
        login: display_login(login),
        outcome: Outcome::Accepted(d),
        check: None,
        pool: 0,
        at_ms,
    };
    books.commit(&[share("a.1", 1.0), share("b", 3.0)], day.start(3600)).unwrap();
    books.distribute(day, "p", 0).unwrap();
    let text = books.render_distributions(Some(day), None).unwrap();
    assert!(text.contains("a.1") && text.contains(" 25\n") && text.contains(" 75\n"), "{text}");
}

/// A reward no split can pay exactly is refused, at `earnings add` and, for
/// one already stored (by an older version), at `distribute`.
#[test]
fn rewards_beyond_all_bitcoin_are_refused() {
    let mut books = Books::in_memory(setting()).unwrap();
    let day = Day::of(T0, 3600);
    books
        .commit(
            &[share("a", Outcome::Accepted(1.0), T0 * 1000), share("b", Outcome::Accepted(3.0), T0 * 1000)],
            T0,
        )
        .unwrap();
    let err = books.add_earning(day, "p", MAX_REWARD_SATS + 1, None).unwrap_err().to_string();
    assert!(err.contains("more than all bitcoin"), "{err}");
    assert!(books.earnings().unwrap().is_empty());
    let tx = books.db.begin_write().unwrap();
    tx.open_table(EARNINGS).unwrap().insert((day.0, "p"), (u64::MAX, None)).unwrap();
    tx.commit().unwrap();
    match books.distribute(day, "p", T0) {
        Err(StoreError::Refused(m)) => assert!(m.contains("more than all bitcoin"), "{m}"),
        other => panic!("{other:?}"),
    }
    books.add_earning(day, "p", MAX_REWARD_SATS, None).unwrap();
    books.distribute(day, "p", T0).unwrap();
    let text = books.render_distributions(Some(day), None).unwrap();
    assert!(text.contains(" 525000000000000\n") && text.contains(" 1575000000000000\n"), "{text}");
}

/// An accepted share whose difficulty is NaN, infinite, zero or negative is
/// counted, never added: one such share would make the day's sum NaN.
#[test]
fn accepted_shares_of_a_bad_difficulty_are_not_booked() {
    let mut books = Books::in_memory(setting()).unwrap();
    let at = T0 * 1000;
    let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0, -0.0];
    let mut events: Vec<Event> = bad.iter().map(|d| share("a", Outcome::Accepted(*d), at)).collect();
    events.push(share("a", Outcome::Accepted(2.5), at));
    events.push(share("a", Outcome::Stale, at));
    let booked = books.commit(&events, T0).unwrap();
    assert_eq!((booked.bad_difficulty, booked.events), (6, 2));
    let t = totals(&books, Day::of(T0, 3600))["a"];
    assert_eq!((t.accepted, t.difficulty, t.stale), (1, 2.5, 1));
    assert_eq!(raw_rows(&books), 2);
}

/// Before NTP a Pi's clock reads 1970: nothing stamped before 2024 is booked.
#[test]
fn events_before_the_clock_floor_are_not_booked() {
    let mut books = Books::in_memory(setting()).unwrap();
    let early = CLOCK_FLOOR_SECS - 1;
    let events = [
        Event::PoolConnected { pool: 0, at: 5 },
        seen("a", 5),
        share("a", Outcome::Accepted(1.0), 5_000),
        share("a", Outcome::Accepted(1.0), early * 1000 + 999),
        share("a", Outcome::Accepted(1.0), CLOCK_FLOOR_SECS * 1000),
    ];
    let booked = books.commit(&events, 5).unwrap();
    assert_eq!((booked.clock_unset, booked.events), (4, 1));
    assert!(books.day_totals(Day(0)).unwrap().is_empty());
    assert_eq!(totals(&books, Day::of(CLOCK_FLOOR_SECS, 3600))["a"].accepted, 1);
    let tx = books.db.begin_read().unwrap();
    assert!(tx.open_table(POOLS).unwrap().get("p").unwrap().is_none());
}

/// A unique temporary path for a books file.
fn temp_store(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("loka-db-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("books.redb");
    (dir, file)
}

/// After a restart with the clock stepped back, new shares land at the same
/// unix ms as old ones, in the same buckets: they add to them, none replaces
/// another.
#[test]
fn raw_shares_survive_a_restart_at_the_same_time() {
    let (dir, file) = temp_store("seq");
    let at = |i: u64| share("a", Outcome::Accepted(1.0), T0 * 1000 + i % 3);
    let first: Vec<Event> = (0..10).map(at).collect();
    Books::open(&file, setting()).unwrap().commit(&first, T0).unwrap();
    // Reopened: the same milliseconds again, and earlier ones.
    let mut books = Books::open(&file, setting()).unwrap();
    books.commit(&first, T0).unwrap();
    let earlier: Vec<Event> = (0..5).map(|i| share("b", Outcome::Stale, T0 * 1000 - 1 - i % 2)).collect();
    books.commit(&earlier, T0).unwrap();
    drop(books);
    let books = Books::open(&file, setting()).unwrap();
    assert_eq!(raw_rows(&books), 25);
    let t = totals(&books, Day::of(T0, 3600));
    assert_eq!((t["a"].accepted, t[OVERFLOW_WORKER].stale), (20, 5));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The raw shares of an older file (schema 1 or 2), read with redb alone:
/// their unix ms, and the five-minute buckets they should fold into.
fn old_raw_shares(file: &Path) -> (Vec<u64>, BTreeMap<(u64, String, String), TotalsRow>) {
    let db = Database::create(file).unwrap();
    let tx = db.begin_read().unwrap();
    let raw = tx.open_table(RAW).unwrap();
    let (mut at, mut buckets) = (Vec::new(), BTreeMap::new());
    for row in raw.iter().unwrap() {
        let (k, v) = row.unwrap();
        let (ms, (login, pool, kind, reason, difficulty)) = (k.value().0, v.value());
        let start = ms / 1000 / 300 * 300;
        at.push(ms);
        if kind > 2 {
            continue;
        }
        let b: &mut TotalsRow = buckets.entry((start, pool, login)).or_default();
        match kind {
            0 => (b.0, b.1) = (b.0 + 1, b.1 + difficulty),
            1 => b.2[usize::from(reason)] += 1,
            2 => b.3 += 1,
            _ => {}
        }
    }
    (at, buckets)
}

/// Whether the books file still has a table of this name.
fn has_table(books: &Books, name: &str) -> bool {
    let tx = books.db.begin_read().unwrap();
    tx.list_tables().unwrap().any(|t| t.name() == name)
}

/// The file 0.1.0 wrote (store schema 1) opens, shows the same books, its
/// raw shares folded into buckets that hold every figure read from them, and
/// takes new shares at the very milliseconds of the old ones.
#[test]
fn books_written_by_0_1_0_open() {
    let (dir, file) = temp_store("fixture");
    std::fs::write(&file, schema_1_image()).unwrap();
    let (old, folded) = old_raw_shares(&file);
    assert_eq!(old.len(), 10, "the fixture's 6 + 1 + 3 shares");
    let mut books = Books::open(&file, harness()).unwrap();
    assert_eq!(recent_rows(&books), folded);
    assert!(!has_table(&books, "shares_recent"));
    let day: Day = "2026-11-29".parse().unwrap();
    let t = totals(&books, day);
    assert_eq!((t["alice.rig1"].accepted, t["alice.rig1"].stale, t["bob"].accepted), (6, 1, 3));
    assert_eq!(books.day_pools(day).unwrap(), ["harness_pool"]);
    let before = raw_rows(&books);
    assert_eq!(before, 10);
    // New shares at the very milliseconds of the old ones (clock stepped back).
    let again: Vec<Event> = old.iter().map(|ms| share("bob", Outcome::Accepted(1.0), *ms)).collect();
    books.commit(&again, day.start(0)).unwrap();
    assert_eq!(raw_rows(&books), before + again.len() as u64);
    assert_eq!(totals(&books, day)["bob"].accepted, 3 + again.len() as u64);
    let text = books.render_distributions(Some(day), None).unwrap();
    assert!(text.contains("73333") && text.contains("36667"), "{text}");
    // Migrated to the current schema: the check's tables are there and take
    // rows, and the file opens again with everything kept.
    let at_ms = day.start(0) * 1000 + 5;
    books
        .commit(&[checked("bob", Outcome::Accepted(8.0), Verdict::Valid, 900.0, at_ms)], day.start(0))
        .unwrap();
    drop(books);
    let books = Books::open(&file, harness()).unwrap();
    assert_eq!(schema_of(&books), SCHEMA);
    assert_eq!(books.day_checks(day).unwrap()["bob"].checked[Verdict::Valid.index()], 1);
    assert_eq!(totals(&books, day)["alice.rig1"].accepted, 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tests/fixtures/books-schema1.redb`: the books 0.1.0 wrote (a copy of
/// `../shared/fixtures/books-schema1.redb`, as it was given).
fn schema_1_image() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/books-schema1.redb")).unwrap()
}

/// A copy of `tests/fixtures/books-schema2.redb` in a temporary store
/// named `name`: (its directory, the file).
fn schema_2_copy(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/books-schema2.redb");
    let (dir, file) = temp_store(name);
    std::fs::copy(&fixture, &file).unwrap();
    (dir, file)
}

/// The pools the schema 2 fixture was written with.
fn schema_2_setting() -> Setting {
    Setting { pools: vec![pool("main_pool"), pool("backup_pool")], settlement: 0, ..setting() }
}

/// A file of schema 2 (the last with a row per raw share) opens, migrated,
/// with every figure `tests/fixtures/books-schema2.md` lists: per-day totals
/// and checks per pool, best shares, the block, workers, pools, earnings and
/// the distribution, and its raw shares folded into the buckets that restore
/// the page's charts.
#[test]
fn books_written_at_schema_2_open() {
    let (dir, file) = schema_2_copy("fixture2");
    let (old, folded) = old_raw_shares(&file);
    assert_eq!(old.len(), 17);
    let s = schema_2_setting();
    let books = Books::open(&file, s.clone()).unwrap();
    assert_eq!(schema_of(&books), SCHEMA);
    assert!(!has_table(&books, "shares_recent"));
    assert_eq!(recent_rows(&books), folded);
    let day: Day = "2026-11-28".parse().unwrap();
    let t = totals(&books, day);
    assert_eq!(
        (t["carol.s19"].accepted, t["carol.s19"].difficulty, t["carol.s19"].rejected),
        (11, 88.0, [0, 0, 1, 0, 0])
    );
    assert_eq!(
        (t["dave.bitaxe"].accepted, t["dave.bitaxe"].difficulty, t["dave.bitaxe"].stale),
        (4, 16.0, 1)
    );
    assert_eq!(books.day_pools(day).unwrap(), ["main_pool", "backup_pool"]);
    let on_main: BTreeMap<String, f64> =
        books.day_totals_for(day, "main_pool").unwrap().into_iter().map(|(l, t)| (l, t.difficulty)).collect();
    assert_eq!(on_main, BTreeMap::from([("carol.s19".into(), 88.0), ("dave.bitaxe".into(), 12.0)]));
    let c = books.day_checks(day).unwrap()["carol.s19"];
    assert_eq!((c.checked, c.valid_difficulty, c.best), ([11, 1, 0, 0, 0, 0], 88.0, 20.0));
    let best = books.best_shares().unwrap();
    assert_eq!(best.iter().map(|b| (b.0.as_str(), b.1)).collect::<Vec<_>>(), [("carol.s19", 20.0)]);
    let block = books.last_block().unwrap().unwrap();
    assert_eq!(
        (block.login.as_str(), block.pool.as_str(), block.difficulty),
        ("carol.s19", "main_pool", 1.5e14)
    );
    assert!(block.hash.starts_with("00000000000000000001a2b3"));
    assert_eq!(books.earnings().unwrap(), [(day, "main_pool".to_string(), 100_000, Some(2.5e15))]);
    let text = books.render_distributions(Some(day), None).unwrap();
    assert!(text.contains("carol.s19") && text.contains("88000") && text.contains("12000"), "{text}");
    let last_seen = books.day_totals(day).unwrap().into_iter().map(|r| r.3).collect::<Vec<_>>();
    assert_eq!(last_seen, [Some(day.start(0) + 3600); 2]);
    // The charts restore from the buckets as they did from the raw rows.
    let (mut restored, oldest) = books.recent_history(0).unwrap();
    restored.sort_by(|a, b| a.login.cmp(&b.login));
    let bucket = |minutes: u64| (day.start(0) + 3600 + 60 * minutes) / 300;
    assert_eq!(restored[0].buckets, [(bucket(0), 40.0, 5), (bucket(5), 32.0, 4), (bucket(10), 16.0, 2)]);
    assert_eq!(restored[1].buckets, [(bucket(10), 16.0, 4)]);
    // Taken as the last second of its last bucket (01:14:59 for both; the
    // shares came at 01:11:00 and 01:11:30): never older than it was.
    assert_eq!((restored[0].last, restored[1].last), (day.start(0) + 3600 + 899, day.start(0) + 3600 + 899));
    assert_eq!(oldest, Some(day.start(0) + 3600));
    drop(books);
    // It opens again as a file of this schema, unchanged.
    let books = Books::open(&file, s).unwrap();
    assert_eq!(recent_rows(&books), folded);
    let _ = std::fs::remove_dir_all(&dir);
}

fn schema_of(books: &Books) -> u64 {
    let tx = books.db.begin_read().unwrap();
    tx.open_table(META).unwrap().get("schema").unwrap().unwrap().value()
}

/// A share the pool judged `outcome` and the proxy's check `verdict`.
fn checked(login: &str, outcome: Outcome, verdict: Verdict, achieved: f64, at_ms: u64) -> Event {
    let check = CheckNote { verdict: verdict.index() as u8, difficulty: 8.0, achieved };
    Event::Share { login: display_login(login), outcome, check: Some(check), pool: 0, at_ms }
}

/// A file of a schema newer than this program knows is refused, untouched,
/// with a message naming both schemas and what to do.
#[test]
fn a_newer_schema_is_refused() {
    let (dir, file) = temp_store("newer");
    let mut books = Books::open(&file, setting()).unwrap();
    books.commit(&[share("a", Outcome::Accepted(2.0), T0 * 1000)], T0).unwrap();
    let tx = books.db.begin_write().unwrap();
    tx.open_table(META).unwrap().insert("schema", SCHEMA + 1).unwrap();
    tx.commit().unwrap();
    drop(books);
    let refused = Books::open(&file, setting()).err().unwrap();
    assert!(matches!(refused, StoreError::Newer { found, .. } if found == SCHEMA + 1));
    let text = refused.to_string();
    let (newer, known) = (format!("schema {}", SCHEMA + 1), format!("schemas 1 to {SCHEMA}"));
    assert!(text.contains(&newer) && text.contains(&known) && text.contains("upgrade"), "{text}");
    assert!(text.contains(file.to_str().unwrap()), "{text}");
    // redb keeps its own header and allocator state up to date on every
    // open; the books in it are as the newer binary left them.
    let db = Database::create(&file).unwrap();
    let tx = db.begin_read().unwrap();
    assert_eq!(tx.open_table(META).unwrap().get("schema").unwrap().unwrap().value(), SCHEMA + 1);
    assert_eq!(tx.open_table(DAYS).unwrap().iter().unwrap().count(), 1);
    drop((tx, db));
    // `books check` refuses it the same way, and in RAM mode too.
    assert!(matches!(super::super::integrity::check_file(&file, 0), Err(StoreError::Newer { .. })));
    let ram = super::super::backend::Ram::new(std::fs::read(&file).unwrap());
    assert!(matches!(Books::with_backend(ram, setting(), &file), Err(StoreError::Newer { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A settlement moved later (00:00 to 01:00) by a restart at 00:30: the
/// day then holds shares cut both ways, and `books check` does not compare
/// it with its buckets; the next day is compared again.
#[test]
fn the_check_leaves_the_day_of_a_settlement_change_alone() {
    let (dir, file) = temp_store("settle");
    let day = Day::of(T0, 0);
    let at = |secs: u64| (day.start(0) + secs) * 1000;
    let mut books = Books::open(&file, Setting { settlement: 0, ..setting() }).unwrap();
    books.commit(&[seen("a", T0), share("a", Outcome::Accepted(1.0), at(600))], T0).unwrap();
    drop(books);
    let mut books = Books::open(&file, Setting { settlement: 3600, ..setting() }).unwrap();
    let tx = books.db.begin_write().unwrap();
    tx.open_table(META).unwrap().insert("settlement_since", day.start(0) + 1800).unwrap();
    tx.commit().unwrap();
    let later =
        [share("a", Outcome::Accepted(1.0), at(5400)), share("a", Outcome::Accepted(1.0), at(86_400 + 5400))];
    books.commit(&later, T0).unwrap();
    let report = books.check().unwrap();
    assert_eq!(report.problems(), 0, "{}", report.text());
    assert!(report.text().contains("the 1 day totals on days they wholly cover"), "{}", report.text());
    drop(books);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A solo miner's long logins keep their rigs in `distributions`, and a
/// CPU miner's tiny difficulty its digits.
#[test]
fn distributions_show_long_logins_and_tiny_difficulty() {
    let mut books = Books::in_memory(setting()).unwrap();
    let address = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
    let events: Vec<Event> = ["rig1", "bfg"]
        .iter()
        .map(|rig| share(&format!("{address}.{rig}"), Outcome::Accepted(9.54e-7), T0 * 1000))
        .collect();
    books.commit(&events, T0).unwrap();
    let day = Day::of(T0, setting().settlement);
    books.add_earning(day, "p", 1000, None).unwrap();
    books.distribute(day, "p", T0).unwrap();
    let text = books.render_distributions(Some(day), None).unwrap();
    for rig in ["rig1", "bfg"] {
        let row = text
            .lines()
            .find(|l| l.contains(&format!("bc1qar0s…f5mdq.{rig} ")))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(row.contains(" 9.54e-7 ") && row.trim_end().ends_with("500"), "{text}");
    }
    // The miner is who gets paid: whole.
    assert!(text.lines().any(|l| l.split_whitespace().eq([address, "1000"])), "{text}");
    assert!(!text.contains(&format!("{address}.")), "{text}");
}

/// Storage that takes the first `left` writes (and growths), then fails
/// every one: the file a `kill -9` leaves at that point of a commit.
#[derive(Debug, Clone)]
struct CutAfter {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CutAfter {
    fn new(image: Vec<u8>, left: usize) -> CutAfter {
        CutAfter { bytes: std::sync::Arc::new(image.into()), left: std::sync::Arc::new(left.into()) }
    }

    fn take(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        self.left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| std::io::Error::other("killed"))
    }

    fn image(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

impl redb::StorageBackend for CutAfter {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.bytes.lock().unwrap().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let bytes = self.bytes.lock().unwrap();
        let from = bytes
            .get(offset as usize..offset as usize + out.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        out.copy_from_slice(from);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.take()?;
        self.bytes.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.take()?;
        let mut bytes = self.bytes.lock().unwrap();
        let to = bytes
            .get_mut(offset as usize..offset as usize + data.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        to.copy_from_slice(data);
        Ok(())
    }
}

/// The 0.1.0 fixture's books, as `books` shows them: exactly its two
/// workers, its earning and its distribution.
fn assert_fixture_books(books: &Books) {
    let day: Day = "2026-11-29".parse().unwrap();
    let t = totals(books, day);
    let counts: Vec<(&str, u64, u64, u64)> =
        t.iter().map(|(l, t)| (l.as_str(), t.accepted, t.rejected.iter().sum(), t.stale)).collect();
    assert_eq!(counts, [("alice.rig1", 6, 0, 1), ("bob", 3, 0, 0)]);
    assert_eq!((t["alice.rig1"].difficulty, t["bob"].difficulty), (6.0 / 1048576.0, 3.0 / 1048576.0));
    assert_eq!(books.earnings().unwrap(), [(day, "harness_pool".to_string(), 110_000, None)]);
    let text = books.render_distributions(None, None).unwrap();
    let sats: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(sats[2..], ["73333", "36667", "SATS", "73333", "36667"], "{text}");
}

/// A `kill -9` at any write of the migration from schema 1 leaves a file
/// of the old layout or of the new one, never a mix: it opens (migrated, if
/// it was not yet) with every figure of the fixture.
#[test]
fn a_migration_cut_at_any_write_leaves_the_old_layout_or_the_new() {
    let image = schema_1_image();
    let whole = CutAfter::new(image.clone(), usize::MAX);
    drop(Books::on_backend(whole.clone(), harness()).unwrap());
    let writes = usize::MAX - whole.left.load(std::sync::atomic::Ordering::Relaxed);
    assert!(writes >= 2, "{writes} writes");
    let mut schemas = std::collections::BTreeSet::new();
    for cut in 0..writes {
        let killed = CutAfter::new(image.clone(), cut);
        drop(Books::on_backend(killed.clone(), harness()));
        let left = killed.image();
        let db =
            Database::builder().create_with_backend(super::super::backend::Ram::new(left.clone())).unwrap();
        let tx = db.begin_read().unwrap();
        schemas.insert(tx.open_table(META).unwrap().get("schema").unwrap().unwrap().value());
        drop((tx, db));
        let books = Books::on_backend(super::super::backend::Ram::new(left), harness()).unwrap();
        assert_eq!(schema_of(&books), SCHEMA);
        assert_fixture_books(&books);
    }
    assert_eq!(schemas.into_iter().collect::<Vec<_>>(), [1, SCHEMA], "cut before and after the commit");
}

/// `books check` passes sound books, counting the days their buckets wholly
/// cover, and finds each broken invariant: a day total under its buckets or
/// over them on a wholly covered day, an unsound difficulty, a login
/// without a worker, a split that does not add up, and an earning changed
/// after its split.
#[test]
fn the_check_finds_each_broken_invariant() {
    let (dir, file) = temp_store("check");
    let s = Setting { settlement: 0, ..setting() };
    let mut books = Books::open(&file, s.clone()).unwrap();
    let (d0, d1) = (Day::of(T0, 0), Day(Day::of(T0, 0).0 + 1));
    let at = |day: Day, secs: u64| (day.start(0) + secs) * 1000;
    let mut events = vec![seen("a", T0), seen("b", T0)];
    for (day, n) in [(d0, 3), (d1, 5)] {
        events.extend((0..n).map(|i| share("a", Outcome::Accepted(2.0), at(day, 600 * i))));
        events.push(share("b", Outcome::Stale, at(day, 60)));
        events.push(share("b", Outcome::Accepted(0.5), at(day, 7200)));
    }
    books.commit(&events, d1.start(0) + 3600).unwrap();
    books.add_earning(d1, "p", 1000, None).unwrap();
    books.distribute(d1, "p", T0).unwrap();
    let report = books.check().unwrap();
    assert_eq!(report.problems(), 0, "{}", report.text());
    // Day d1 is wholly covered by buckets (d0 holds the oldest): a and b.
    assert!(
        report.text().contains("the 2 day totals on days they wholly cover equal to their sum"),
        "{}",
        report.text()
    );
    assert!(report.verdict().unwrap().ends_with("no problems found\n"));

    let edit = |books: &Books, f: &dyn Fn(&redb::WriteTransaction)| {
        let tx = books.db.begin_write().unwrap();
        f(&tx);
        tx.commit().unwrap();
    };
    let set_day = |books: &Books, day: Day, login: &'static str, row: TotalsRow| {
        edit(books, &|tx| {
            tx.open_table(DAYS).unwrap().insert((day.0, "p", login), row).unwrap();
        })
    };
    let problems = |books: &mut Books| -> String {
        let report = books.check().unwrap();
        let text = report.text().to_string();
        assert!(
            report.problems() > 0,
            "no problem found:
{text}"
        );
        assert!(report.verdict().is_err());
        text
    };
    // Under its buckets (an old day, partly pruned or not).
    set_day(&books, d0, "a", (2, 4.0, [0; 5], 0));
    assert!(problems(&mut books).contains("the day total (2 accepted, difficulty 4) is not the sum of its five-minute buckets (3 accepted, difficulty 6)"));
    set_day(&books, d0, "a", (3, 6.0, [0; 5], 0));
    // Over its buckets on a wholly covered day.
    set_day(&books, d1, "a", (6, 12.0, [0; 5], 0));
    assert!(problems(&mut books).contains("the day total (6 accepted, difficulty 12) is not the sum of its five-minute buckets (5 accepted, difficulty 10)"));
    set_day(&books, d1, "a", (5, 10.0, [0; 5], 0));
    // Difficulty that is not a number, or without accepted shares.
    set_day(&books, d0, "a", (3, f64::NAN, [0; 5], 0));
    assert!(problems(&mut books).contains("3 accepted shares of difficulty NaN"));
    set_day(&books, d0, "a", (3, 6.0, [0; 5], 0));
    // A login with no worker row.
    set_day(&books, Day(d0.0 - 10), "ghost", (1, 1.0, [0; 5], 0));
    assert!(problems(&mut books).contains("ghost has no worker row"));
    edit(&books, &|tx| {
        tx.open_table(DAYS).unwrap().remove((d0.0 - 10, "p", "ghost")).unwrap();
    });
    // A split that pays more than its reward.
    let row = |books: &Books| -> (String, f64, u64) {
        let tx = books.db.begin_read().unwrap();
        tx.open_table(SPLITS).unwrap().get((d1.0, "p", "a")).unwrap().unwrap().value()
    };
    let (miner, difficulty, sats) = row(&books);
    edit(&books, &|tx| {
        tx.open_table(SPLITS)
            .unwrap()
            .insert((d1.0, "p", "a"), (miner.clone(), difficulty, sats + 1))
            .unwrap();
    });
    assert!(problems(&mut books).contains("pays 1001 sats of a 1000 sats reward; the earning is 1000 sats"));
    books.distribute(d1, "p", T0).unwrap();
    assert_eq!(books.check().unwrap().problems(), 0);
    // The reward corrected after the split: distribute again.
    books.add_earning(d1, "p", 1200, None).unwrap();
    let text = problems(&mut books);
    assert!(text.contains(&format!("run `loka-stratum distribute --date {d1} --pool p` again")), "{text}");
    books.distribute(d1, "p", T0).unwrap();
    assert_eq!(books.check().unwrap().problems(), 0);
    drop(books);
    // The same on the file, without the daemon's books open.
    let report = super::super::integrity::check_file(&file, 0).unwrap();
    assert_eq!(report.problems(), 0, "{}", report.text());

    // Opened with another settlement (01:01): the days booked by the old one
    // are not held to the new cut, and the file says from when it applies.
    let mut books = Books::open(&file, Setting { settlement: 3660, ..s.clone() }).unwrap();
    let report = books.check().unwrap();
    assert_eq!(report.problems(), 0, "{}", report.text());
    {
        let tx = books.db.begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        assert_eq!(meta.get("settlement").unwrap().unwrap().value(), 3660);
        assert!(meta.get("settlement_since").unwrap().unwrap().value() >= CLOCK_FLOOR_SECS);
    }
    drop(books);
    let _ = std::fs::remove_dir_all(&dir);

    // A settlement off the five-minute grid (00:01): the bucket across it
    // holds shares of two days, and neither day is called wrong for it.
    let s = Setting { settlement: 60, ..setting() };
    let mut books = Books::in_memory(s).unwrap();
    let start = Day::of(T0, 60).start(60);
    let events: Vec<Event> = [start - 3600, start - 30, start + 30, start + 200, start + 3600]
        .iter()
        .map(|at| share("a", Outcome::Accepted(1.0), at * 1000))
        .collect();
    books.commit(&events, start + 7200).unwrap();
    let report = books.check().unwrap();
    assert_eq!(report.problems(), 0, "{}", report.text());
}

/// The check's books: per-day verdicts and true difficulty, best shares
/// that only rise, disputed shares kept out of the accepted totals, and
/// blocks kept but bounded.
#[test]
fn checks_best_shares_and_blocks_are_booked() {
    let mut books = Books::in_memory(setting()).unwrap();
    let day = Day::of(T0, 3600);
    let ms = T0 * 1000;
    let events = [
        checked("rig", Outcome::Accepted(8.0), Verdict::Valid, 100.0, ms),
        checked("rig", Outcome::Rejected(4), Verdict::Valid, 5000.0, ms),
        checked("rig", Outcome::Rejected(1), Verdict::LowDifficulty, 2.0, ms),
        checked("rig", Outcome::Rejected(0), Verdict::Duplicate, 0.0, ms),
        checked("rig", Outcome::Disputed, Verdict::BadVersion, 0.0, ms),
        // No rows of its own (no accepted share): counted under _other.
        checked("stranger", Outcome::Stale, Verdict::Valid, 9e9, ms),
    ];
    books.commit(&events, T0).unwrap();
    books.commit(&[checked("rig", Outcome::Accepted(8.0), Verdict::Valid, 10.0, ms + 1)], T0).unwrap();
    let c = books.day_checks(day).unwrap();
    assert_eq!(c["rig"].checked, [3, 1, 1, 0, 1, 0]);
    assert_eq!((c["rig"].valid_difficulty, c["rig"].best, c["rig"].disputed), (24.0, 5000.0, 1));
    assert_eq!(c["rig"].hardware_error_ratio(), 3.0 / 6.0);
    assert_eq!(c[OVERFLOW_WORKER].checked[0], 1);
    let t = totals(&books, day);
    assert_eq!((t["rig"].accepted, t["rig"].difficulty), (2, 16.0), "a disputed share is never accepted");
    let best: BTreeMap<String, f64> =
        books.best_shares().unwrap().into_iter().map(|(l, d, _)| (l, d)).collect();
    assert_eq!(best["rig"], 5000.0);
    assert!(!best.contains_key("stranger"));
    // Blocks: every one kept up to the bound, then the oldest go.
    let block = |i: u64| Event::Block {
        login: display_login("rig"),
        hash: heapless::String::try_from(format!("{i:064x}").as_str()).unwrap(),
        difficulty: 1e12,
        pool: 0,
        at_ms: ms + i,
    };
    let all: Vec<Event> = (0..MAX_BLOCKS + 5).map(block).collect();
    books.commit(&all, T0).unwrap();
    let blocks = books.blocks().unwrap();
    assert_eq!(blocks.len() as u64, MAX_BLOCKS);
    assert_eq!(blocks[0].hash, format!("{:064x}", 5));
    assert_eq!(books.last_block().unwrap().as_ref(), blocks.last());
    assert_eq!((blocks[0].login.as_str(), blocks[0].pool.as_str()), ("rig", "p"));
}

/// A login gets rows of its own at its first accepted share, at most
/// `max_new_workers_per_day` new ones a day; the others are booked under
/// `_other`, so the day's totals stay whole. Known logins are never capped.
#[test]
fn new_workers_per_day_are_capped() {
    let mut books = Books::in_memory(Setting { max_new_workers_per_day: 3, ..setting() }).unwrap();
    let day = Day::of(T0, 3600);
    let at = day.start(3600) + 60;
    // A flood of authorizations with rejected shares takes nothing.
    let mut flood: Vec<Event> = (0..300).map(|i| seen(&format!("flood{i}"), at)).collect();
    flood.extend((0..300).map(|i| share(&format!("flood{i}"), Outcome::Rejected(1), at * 1000)));
    assert_eq!(books.commit(&flood, at).unwrap().over_cap, 0);
    assert_eq!(totals(&books, day).keys().collect::<Vec<_>>(), [OVERFLOW_WORKER]);
    // Five rigs with accepted shares: three get rows, two go to _other.
    let rigs: Vec<Event> = (0..5)
        .flat_map(|i| {
            [seen(&format!("rig{i}"), at), share(&format!("rig{i}"), Outcome::Accepted(2.0), at * 1000)]
        })
        .collect();
    let booked = books.commit(&rigs, at).unwrap();
    assert_eq!((booked.over_cap, booked.cap_reached), (2, Some(day)));
    let t = totals(&books, day);
    assert_eq!(t.keys().map(String::as_str).collect::<Vec<_>>(), ["_other", "rig0", "rig1", "rig2"]);
    assert_eq!((t[OVERFLOW_WORKER].accepted, t[OVERFLOW_WORKER].rejected[1]), (2, 300));
    let sum: f64 = t.values().map(|t| t.difficulty).sum();
    assert_eq!(sum, 10.0);
    // The cap is reported once a day.
    let booked = books.commit(&[share("rig4", Outcome::Accepted(1.0), at * 1000)], at).unwrap();
    assert_eq!((booked.over_cap, booked.cap_reached), (1, None));
    // The address and agent of the authorization reach the worker row.
    let tx = books.db.begin_read().unwrap();
    let row = tx.open_table(WORKERS).unwrap().get("rig0").unwrap().unwrap().value();
    assert_eq!((row.2, row.4.as_str(), row.5.as_str()), (at, "10.0.0.5:4000", "bitaxe/2.4"));
    assert!(tx.open_table(WORKERS).unwrap().get("flood0").unwrap().is_none());
    drop(tx);
    // The next day: known rigs keep their rows, three more new ones get theirs.
    let next = (at + 86_400) * 1000;
    let events: Vec<Event> =
        (0..7).map(|i| share(&format!("rig{i}"), Outcome::Accepted(1.0), next)).collect();
    assert_eq!(books.commit(&events, at).unwrap().over_cap, 1);
    let t = totals(&books, Day(day.0 + 1));
    assert_eq!(t.len(), 7, "{t:?}");
    assert_eq!(t[OVERFLOW_WORKER].accepted, 1);
}

/// The day's count of new workers survives a restart: it is read back from
/// the workers' first-seen times.
#[test]
fn the_cap_counts_workers_admitted_before_a_restart() {
    let (dir, file) = temp_store("cap");
    let setting = Setting { max_new_workers_per_day: 2, ..setting() };
    let a = |login: &str| share(login, Outcome::Accepted(1.0), T0 * 1000);
    Books::open(&file, setting.clone()).unwrap().commit(&[a("x")], T0).unwrap();
    let mut books = Books::open(&file, setting).unwrap();
    assert_eq!(books.commit(&[a("y"), a("z"), a("x")], T0).unwrap().over_cap, 1);
    let t = totals(&books, Day::of(T0, 3600));
    assert_eq!((t["x"].accepted, t["y"].accepted, t[OVERFLOW_WORKER].accepted), (2, 1, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Storage the system refuses is worth retrying; a file that is not ours is not.
#[test]
fn storage_failures_are_told_from_foreign_files() {
    let (dir, file) = temp_store("kinds");
    std::fs::write(&file, b"this is not a database, it is a shopping list\n".repeat(100)).unwrap();
    let foreign = Books::open(&file, setting()).err().unwrap();
    assert!(!foreign.is_storage(), "{foreign:?}");
    let blocked = Books::open(&file.join("books.redb"), setting()).err().unwrap();
    assert!(blocked.is_storage(), "{blocked:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pools `a` (primary) and `b` (fallback).
fn two_pools() -> Setting {
    Setting { pools: vec![pool("a"), pool("b")], ..setting() }
}

/// An accepted share of difficulty `d` sent to pool `pool`.
fn sent(login: &str, pool: u8, d: f64, at_ms: u64) -> Event {
    Event::Share { login: display_login(login), outcome: Outcome::Accepted(d), check: None, pool, at_ms }
}

/// Rows of one table's `day`, as (pool, login) -> value.
fn day_rows<V>(
    books: &Books,
    table: TableDefinition<(u32, &str, &str), V>,
    day: Day,
) -> BTreeMap<(String, String), V>
where
    V: for<'a> redb::Value<SelfType<'a> = V> + 'static,
{
    let tx = books.db.begin_read().unwrap();
    let table = tx.open_table(table).unwrap();
    let range = table.range((day.0, "", "")..(day.0 + 1, "", "")).unwrap();
    range
        .map(|r| {
            let (k, v) = r.unwrap();
            let (_, pool, login) = k.value();
            ((pool.to_string(), login.to_string()), v.value())
        })
        .collect()
}

/// One login on two pools: each pool's rows hold the work sent to it, and
/// the day's listing sums them into one row per login.
#[test]
fn shares_on_two_pools_are_booked_under_each_and_summed_per_day() {
    let mut books = Books::in_memory(two_pools()).unwrap();
    let day = Day::of(T0, 3600);
    let ms = T0 * 1000;
    let stale_on_b = Event::Share {
        login: display_login("ann.rig"),
        outcome: Outcome::Stale,
        check: Some(CheckNote { verdict: Verdict::Valid.index() as u8, difficulty: 8.0, achieved: 50.0 }),
        pool: 1,
        at_ms: ms + 3,
    };
    let events = [
        sent("ann.rig", 0, 2.0, ms),
        sent("ann.rig", 0, 2.0, ms + 1),
        sent("ann.rig", 1, 3.0, ms + 2),
        stale_on_b,
        checked("ann.rig", Outcome::Accepted(8.0), Verdict::Valid, 900.0, ms + 4),
        sent("bo", 1, 1.0, ms + 5),
    ];
    books.commit(&events, T0).unwrap();
    let rows = day_rows(&books, DAYS, day);
    let key = |p: &str, l: &str| (p.to_string(), l.to_string());
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[&key("a", "ann.rig")], (3, 12.0, [0; 5], 0));
    assert_eq!(rows[&key("b", "ann.rig")], (1, 3.0, [0; 5], 1));
    assert_eq!(rows[&key("b", "bo")], (1, 1.0, [0; 5], 0));
    let checks = day_rows(&books, CHECKS, day);
    assert_eq!(checks.keys().collect::<Vec<_>>(), [&key("a", "ann.rig"), &key("b", "ann.rig")]);
    // The buckets of recent shares are kept per pool.
    let recent: Vec<_> = recent_rows(&books).into_iter().map(|((_, p, l), r)| (p, l, r.0, r.3)).collect();
    let row = |p: &str, l: &str, accepted, stale| (p.to_string(), l.to_string(), accepted, stale);
    assert_eq!(recent, [row("a", "ann.rig", 3, 0), row("b", "ann.rig", 1, 1), row("b", "bo", 1, 0)]);
    // The day: one row per login, summed over both pools.
    let listed = books.day_totals(day).unwrap();
    assert_eq!(listed.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["ann.rig", "bo"]);
    let t = listed[0].2;
    assert_eq!((t.accepted, t.difficulty, t.stale), (4, 15.0, 1));
    let c = &books.day_checks(day).unwrap()["ann.rig"];
    assert_eq!((c.checked[Verdict::Valid.index()], c.valid_difficulty, c.best), (2, 16.0, 900.0));
    assert_eq!(books.day_pools(day).unwrap(), ["a", "b"]);
    assert!(books.day_pools(Day(day.0 + 1)).unwrap().is_empty());
}

/// A worker's row names the pool it was last seen on; a block the pool it
/// went to; a pool connection writes that pool's own address and account.
#[test]
fn workers_blocks_and_connections_name_their_pool() {
    let mut books = Books::in_memory(two_pools()).unwrap();
    let ms = T0 * 1000;
    let seen_on = |pool: u8, at: u64| Event::WorkerSeen {
        login: "ann.rig".into(),
        address: "10.0.0.5:4000".into(),
        agent: "bitaxe/2.4".into(),
        pool,
        at,
    };
    let block = Event::Block {
        login: display_login("ann.rig"),
        hash: heapless::String::try_from("00ff").unwrap(),
        difficulty: 1e12,
        pool: 1,
        at_ms: ms,
    };
    books
        .commit(&[Event::PoolConnected { pool: 1, at: T0 }, seen_on(1, T0), sent("ann.rig", 1, 1.0, ms)], T0)
        .unwrap();
    books.commit(&[block], T0).unwrap();
    let tx = books.db.begin_read().unwrap();
    let pools = tx.open_table(POOLS).unwrap();
    let b = pools.get("b").unwrap().unwrap().value();
    assert_eq!(b, ("b.example:3333".to_string(), "acct-b".to_string(), T0, T0));
    assert!(pools.get("a").unwrap().is_none());
    assert_eq!(tx.open_table(WORKERS).unwrap().get("ann.rig").unwrap().unwrap().value().1, "b");
    drop((pools, tx));
    assert_eq!(books.last_block().unwrap().map(|b| b.pool), Some("b".into()));
    // Failed over to the primary: seen there next.
    books.commit(&[Event::PoolConnected { pool: 0, at: T0 + 60 }, seen_on(0, T0 + 60)], T0).unwrap();
    let tx = books.db.begin_read().unwrap();
    let a = tx.open_table(POOLS).unwrap().get("a").unwrap().unwrap().value();
    assert_eq!((a.0.as_str(), a.1.as_str()), ("a.example:3333", "acct-a"));
    let row = tx.open_table(WORKERS).unwrap().get("ann.rig").unwrap().unwrap().value();
    assert_eq!((row.1.as_str(), row.2, row.3), ("a", T0, T0 + 60));
    drop(tx);
    // And back on the fallback.
    books.commit(&[seen_on(1, T0 + 120)], T0).unwrap();
    let tx = books.db.begin_read().unwrap();
    let row = tx.open_table(WORKERS).unwrap().get("ann.rig").unwrap().unwrap().value();
    assert_eq!((row.1.as_str(), row.3), ("b", T0 + 120));
}

/// An index past the configured pools is a caller's bug: nothing panics,
/// the work is booked under the primary, and each such event is counted.
#[test]
fn an_unknown_pool_index_is_booked_under_the_primary() {
    let mut books = Books::in_memory(two_pools()).unwrap();
    let day = Day::of(T0, 3600);
    let ms = T0 * 1000;
    let events = [
        Event::PoolConnected { pool: 2, at: T0 },
        Event::WorkerSeen {
            login: "x".into(),
            address: String::new(),
            agent: String::new(),
            pool: 200,
            at: T0,
        },
        sent("x", 255, 2.0, ms),
        sent("x", 1, 1.0, ms),
        Event::Block {
            login: display_login("x"),
            hash: Default::default(),
            difficulty: 1.0,
            pool: 9,
            at_ms: ms,
        },
    ];
    let booked = books.commit(&events, T0).unwrap();
    assert_eq!((booked.unknown_pool, booked.events), (4, 5));
    let rows = day_rows(&books, DAYS, day);
    assert_eq!(rows[&("a".to_string(), "x".to_string())].1, 2.0);
    assert_eq!(rows[&("b".to_string(), "x".to_string())].1, 1.0);
    let tx = books.db.begin_read().unwrap();
    assert_eq!(tx.open_table(POOLS).unwrap().get("a").unwrap().unwrap().value().0, "a.example:3333");
    assert_eq!(tx.open_table(WORKERS).unwrap().get("x").unwrap().unwrap().value().1, "a");
    assert_eq!(books.last_block().unwrap().map(|b| b.pool), Some("a".into()));
}

/// Each pool's reward is split by the work done on that pool only: a
/// worker that sent pool `b` nothing gets nothing of `b`'s reward.
#[test]
fn distribute_splits_a_pool_by_its_own_work() {
    let mut books = Books::in_memory(two_pools()).unwrap();
    let day = Day::of(T0, 3600);
    let ms = T0 * 1000;
    let work =
        [sent("ann", 0, 10.0, ms), sent("bo", 0, 1.0, ms), sent("bo", 1, 1.0, ms), sent("cy", 1, 3.0, ms)];
    books.commit(&work, T0).unwrap();
    books.add_earning(day, "b", 100, None).unwrap();
    books.distribute(day, "b", T0).unwrap();
    books.add_earning(day, "a", 110, None).unwrap();
    books.distribute(day, "a", T0).unwrap();
    let splits = day_rows(&books, SPLITS, day);
    let sats: BTreeMap<(&str, &str), u64> =
        splits.iter().map(|((p, l), (_, _, s))| ((p.as_str(), l.as_str()), *s)).collect();
    let want = BTreeMap::from([(("a", "ann"), 100), (("a", "bo"), 10), (("b", "bo"), 25), (("b", "cy"), 75)]);
    assert_eq!(sats, want);
    // Pool b without work on another day: its own error, not a's work.
    let next = Day(day.0 + 1);
    books.commit(&[sent("ann", 0, 10.0, next.start(3600) * 1000)], T0).unwrap();
    books.add_earning(next, "b", 100, None).unwrap();
    match books.distribute(next, "b", T0) {
        Err(StoreError::Refused(m)) => {
            assert!(m.contains("pool b") && m.contains("no accepted shares"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// `--pool` must name a configured pool or one the books have seen (a pool
/// since removed from the configuration keeps its books); anything else is
/// refused, so a typo cannot store a reward no work matches.
#[test]
fn a_pool_neither_configured_nor_known_is_refused() {
    let (dir, file) = temp_store("pools");
    let day = Day::of(T0, 3600);
    let mut books = Books::open(&file, two_pools()).unwrap();
    books.commit(&[Event::PoolConnected { pool: 1, at: T0 }, sent("bo", 1, 1.0, T0 * 1000)], T0).unwrap();
    for err in [books.add_earning(day, "zz", 1, None), books.distribute(day, "zz", T0)] {
        match err {
            Err(StoreError::Refused(m)) => {
                assert!(m.contains("pool zz is not configured (pools: a, b)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(books.earnings().unwrap().is_empty());
    drop(books);
    // b is no longer configured: its books still take its reward and split it.
    let mut books = Books::open(&file, setting()).unwrap();
    books.add_earning(day, "b", 7, None).unwrap();
    books.distribute(day, "b", T0).unwrap();
    assert_eq!(day_rows(&books, SPLITS, day)[&("b".to_string(), "bo".to_string())].2, 7);
    assert_eq!(books.day_pools(day).unwrap(), ["b"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The books refuse a setting an event's pool index could not name.
#[test]
fn settings_without_a_pool_or_with_a_name_twice_are_refused() {
    let refused = |pools: Vec<PoolSetting>| match Books::in_memory(Setting { pools, ..setting() }) {
        Err(StoreError::Refused(m)) => m,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert!(refused(vec![]).contains("at least one pool"));
    assert!(refused(vec![pool("a"), pool("b"), pool("a")]).contains("\"a\" is given twice"));
    assert!(refused((0..=MAX_POOLS).map(|i| pool(&i.to_string())).collect()).contains("at most 256"));
    assert!(
        Books::in_memory(Setting {
            pools: (0..MAX_POOLS).map(|i| pool(&i.to_string())).collect(),
            ..setting()
        })
        .is_ok()
    );
}

/// Opening books of this schema writes no pages (a start, or a CLI command
/// on a stopped daemon, costs the card only redb's header, which marks the
/// file open); a commit is one fsync.
#[test]
fn opening_current_books_writes_nothing() {
    use std::sync::atomic::Ordering::Relaxed;
    let (dir, file) = temp_store("quiet");
    let first = Arc::new(StoreIo::default());
    drop(Books::open_counted(&file, setting(), first.clone()).unwrap());
    assert!(first.bytes.load(Relaxed) > 0, "a new file is written");
    let io = Arc::new(StoreIo::default());
    let mut books = Books::open_counted(&file, setting(), io.clone()).unwrap();
    let (opened, synced) = (io.bytes.load(Relaxed), io.syncs.load(Relaxed));
    assert!(opened < 4096 && synced <= 1, "{opened} bytes, {synced} syncs: more than the header");
    books.commit(&[share("a", Outcome::Accepted(1.0), T0 * 1000)], T0).unwrap();
    assert_eq!(io.syncs.load(Relaxed), synced + 1);
    assert!(io.bytes.load(Relaxed) > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A schema 2 file with many raw shares (a row each) is migrated into
/// buckets that hold them all.
#[test]
fn migrating_many_raw_shares_folds_them_all() {
    let (dir, file) = schema_2_copy("bigraw");
    let start = Day::of(T0, 0).start(0) * 1000;
    {
        let db = Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut raw = tx.open_table(RAW).unwrap();
            for i in 0..60_000u64 {
                // Accepted, rejected (reason 3), stale and disputed rows.
                let kind = [0, 0, 1, 2, 3][(i % 5) as usize];
                let row =
                    (format!("w{}.rig", i % 20), "main_pool".to_string(), kind, 3 * (kind == 1) as u8, 2.0);
                raw.insert((start + i * 300, i), row).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let (old, folded) = old_raw_shares(&file);
    let books = Books::open(&file, schema_2_setting()).unwrap();
    assert_eq!(recent_rows(&books), folded);
    // Every share but the disputed ones (never accepted in the books): the
    // fixture's 17 and four in five of the 60,000.
    assert_eq!(old.len(), 60_017);
    assert_eq!(raw_rows(&books), 17 + 48_000);
    drop(books);
    let _ = std::fs::remove_dir_all(&dir);
}
