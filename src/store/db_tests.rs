//! The books against a plain model, pruning, and distributions.

use super::*;
use crate::check::Verdict;
use crate::worker::display_login;
use redb::ReadableTableMetadata;

fn setting() -> Setting {
    Setting {
        pool: "p".into(),
        address: "p.example:3333".into(),
        username: "acct".into(),
        settlement: 3600,
        keep_raw_secs: 172_800,
        max_new_workers_per_day: 64,
    }
}

/// A sane unix time: 2025-11-24 16:00 UTC.
const T0: u64 = 1_764_000_000;

fn share(login: &str, outcome: Outcome, at_ms: u64) -> Event {
    Event::Share { login: display_login(login), outcome, check: None, at_ms }
}

fn seen(login: &str, at: u64) -> Event {
    Event::WorkerSeen { login: login.into(), address: "10.0.0.5:4000".into(), agent: "bitaxe/2.4".into(), at }
}

fn raw_rows(books: &Books) -> u64 {
    let tx = books.db.begin_read().unwrap();
    ReadableTableMetadata::len(&tx.open_table(RAW).unwrap()).unwrap()
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
        .commit(&[Event::PoolConnected { at: T0 + 10 }, seen("ann.rig", T0 + 10), accepted(T0 + 11)], T0)
        .unwrap();
    books.commit(&[Event::PoolConnected { at: T0 + 20 }, seen("ann.rig", T0 + 30)], T0).unwrap();
    let tx = books.db.begin_read().unwrap();
    let pool = tx.open_table(POOLS).unwrap().get("p").unwrap().unwrap().value();
    assert_eq!((pool.2, pool.3), (T0 + 10, T0 + 20));
    let worker = tx.open_table(WORKERS).unwrap().get("ann.rig").unwrap().unwrap().value();
    assert_eq!((worker.0.as_str(), worker.2, worker.3), ("ann", T0 + 10, T0 + 30));
    assert_eq!((worker.4.as_str(), worker.5.as_str()), ("10.0.0.5:4000", "bitaxe/2.4"));
    assert_eq!(tx.open_table(MINERS).unwrap().get("ann").unwrap().unwrap().value(), (T0 + 10, T0 + 30));
}

#[test]
fn raw_shares_are_pruned_but_day_totals_stay() {
    let mut books = Books::in_memory(Setting { keep_raw_secs: 100, ..setting() }).unwrap();
    let a = |at: u64| share("a", Outcome::Accepted(1.0), at * 1000);
    books.commit(&[a(T0 + 1), a(T0 + 500)], T0 + 500).unwrap();
    assert_eq!(raw_rows(&books), 1);
    books.commit(&[], T0 + 700).unwrap();
    assert_eq!(raw_rows(&books), 0);
    let rows = books.day_totals(Day::of(T0, 3600)).unwrap();
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
    let share = |login: &str, d| Event::Share {
        login: display_login(login),
        outcome: Outcome::Accepted(d),
        check: None,
        at_ms,
    };
    books.commit(&[share("a.1", 1.0), share("b", 3.0)], day.start(3600)).unwrap();
    books.distribute(day, "p", 0).unwrap();
    let text = books.render_distributions(Some(day)).unwrap();
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
    let text = books.render_distributions(Some(day)).unwrap();
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
        Event::PoolConnected { at: 5 },
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

/// After a restart with the clock stepped back, new raw shares land on the
/// same (unix ms) as old ones: none may overwrite another.
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

/// The file 0.1.0 wrote (store schema 1) opens, shows the same books, and
/// takes new shares beside its old raw rows.
#[test]
fn books_written_by_0_1_0_open() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/books-schema1.redb");
    if !fixture.exists() {
        eprintln!("skipped: {} is not here", fixture.display());
        return;
    }
    let (dir, file) = temp_store("fixture");
    std::fs::copy(&fixture, &file).unwrap();
    let setting = Setting { pool: "harness_pool".into(), settlement: 0, ..setting() };
    let mut books = Books::open(&file, setting).unwrap();
    let day: Day = "2026-11-29".parse().unwrap();
    let t = totals(&books, day);
    assert_eq!((t["alice.rig1"].accepted, t["alice.rig1"].stale, t["bob"].accepted), (6, 1, 3));
    let before = raw_rows(&books);
    let old: Vec<(u64, u64)> = {
        let tx = books.db.begin_read().unwrap();
        let raw = tx.open_table(RAW).unwrap();
        raw.iter().unwrap().map(|r| r.unwrap().0.value()).collect()
    };
    // New shares at the very milliseconds of the old ones (clock stepped back).
    let again: Vec<Event> = old.iter().map(|(ms, _)| share("bob", Outcome::Accepted(1.0), *ms)).collect();
    books.commit(&again, day.start(0)).unwrap();
    assert_eq!(raw_rows(&books), before + again.len() as u64);
    assert_eq!(totals(&books, day)["bob"].accepted, 3 + again.len() as u64);
    let text = books.render_distributions(Some(day)).unwrap();
    assert!(text.contains("73333") && text.contains("36667"), "{text}");
    // Migrated to schema 2: the check's tables are there and take rows, and
    // the file opens again as a schema 2 file with everything kept.
    let at_ms = day.start(0) * 1000 + 5;
    books
        .commit(&[checked("bob", Outcome::Accepted(8.0), Verdict::Valid, 900.0, at_ms)], day.start(0))
        .unwrap();
    drop(books);
    let setting = Setting { pool: "harness_pool".into(), settlement: 0, ..self::setting() };
    let books = Books::open(&file, setting).unwrap();
    assert_eq!(schema_of(&books), SCHEMA);
    assert_eq!(books.day_checks(day).unwrap()["bob"].checked[Verdict::Valid.index()], 1);
    assert_eq!(totals(&books, day)["alice.rig1"].accepted, 6);
    let _ = std::fs::remove_dir_all(&dir);
}

fn schema_of(books: &Books) -> u64 {
    let tx = books.db.begin_read().unwrap();
    tx.open_table(META).unwrap().get("schema").unwrap().unwrap().value()
}

/// A share the pool judged `outcome` and the proxy's check `verdict`.
fn checked(login: &str, outcome: Outcome, verdict: Verdict, achieved: f64, at_ms: u64) -> Event {
    let check = CheckNote { verdict: verdict.index() as u8, difficulty: 8.0, achieved };
    Event::Share { login: display_login(login), outcome, check: Some(check), at_ms }
}

/// A file of a schema newer than this program knows is refused, untouched.
#[test]
fn a_newer_schema_is_refused() {
    let (dir, file) = temp_store("newer");
    let books = Books::open(&file, setting()).unwrap();
    let tx = books.db.begin_write().unwrap();
    tx.open_table(META).unwrap().insert("schema", SCHEMA + 1).unwrap();
    tx.commit().unwrap();
    drop(books);
    assert!(matches!(Books::open(&file, setting()), Err(StoreError::Foreign(_))));
    let _ = std::fs::remove_dir_all(&dir);
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
