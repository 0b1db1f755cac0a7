use super::*;
use crate::history::{BUCKET_SECS, Restored, State};

const T0: u64 = 1_800_000_000;

fn state_of(workers: &Workers, now: Instant, unix: u64, login: &str) -> State {
    let views = workers.view(now, unix);
    views.iter().find(|v| v.login.as_str() == login).map(|v| v.state).expect("a view")
}

#[test]
fn a_clock_step_makes_no_worker_late_or_down() {
    let workers = Workers::default();
    let now = Instant::now();
    for k in 0..10 {
        workers.record("alice.rig1", ShareOutcome::Accepted(1.0), now, (T0 + k) as f64);
    }
    // NTP steps the wall clock two days ahead; no time passed.
    assert_eq!(state_of(&workers, now, T0 + 2 * 86_400, "alice.rig1"), State::Hashing);
    // Ten minutes later on the monotonic clock, it is down.
    assert_eq!(state_of(&workers, now + Duration::from_secs(601), T0 + 9, "alice.rig1"), State::Down);
}

#[test]
fn only_accepted_shares_keep_a_worker_up() {
    let workers = Workers::default();
    let now = Instant::now();
    workers.record("bob.rig", ShareOutcome::Accepted(1.0), now, T0 as f64);
    let later = now + Duration::from_secs(700);
    workers.record("bob.rig", ShareOutcome::Rejected(23), later, (T0 + 700) as f64);
    assert_eq!(state_of(&workers, later, T0 + 700, "bob.rig"), State::Down);
}

#[test]
fn restored_workers_get_time_to_come_back_unless_already_down() {
    let workers = Workers::default();
    workers.set_down_after(Duration::from_secs(600));
    let now = Instant::now();
    let bucket = |at: u64| at / BUCKET_SECS;
    let rows = vec![
        // Hashing until a minute before the restart.
        Restored { login: "fresh.rig".into(), last: T0 - 60, buckets: vec![(bucket(T0 - 60), 50.0, 50)] },
        // Quiet for an hour before it.
        Restored { login: "gone.rig".into(), last: T0 - 3600, buckets: vec![(bucket(T0 - 3600), 50.0, 50)] },
    ];
    workers.restore(rows, T0 - 86_400, now, T0);
    assert_eq!(state_of(&workers, now, T0, "fresh.rig"), State::Hashing);
    assert_eq!(state_of(&workers, now, T0, "gone.rig"), State::Down);
    let view = workers.view(now, T0);
    assert!(view.iter().all(|v| v.hashrate_24h > 0.0), "the day is restored: {view:?}");
    // Its next share brings it back.
    workers.record("gone.rig", ShareOutcome::Accepted(1.0), now, T0 as f64);
    assert_eq!(state_of(&workers, now, T0, "gone.rig"), State::Hashing);
}

#[test]
fn the_usual_interval_holds_still_while_a_worker_is_quiet() {
    let workers = Workers::default();
    workers.set_down_after(Duration::from_secs(600));
    let now = Instant::now();
    // A bursty slow rig: 20 shares 19 hours back, then one every 4 hours.
    for k in 0..20 {
        workers.record("slow.cpu", ShareOutcome::Accepted(1.0), now, (T0 - 19 * 3600 + k) as f64);
    }
    for h in [12, 8, 4, 0] {
        workers.record("slow.cpu", ShareOutcome::Accepted(1.0), now, (T0 - h * 3600) as f64);
    }
    let view = |hours: u64| {
        let v = workers.view(now + Duration::from_secs(hours * 3600 / 2), T0 + hours * 3600 / 2);
        (v[0].state, v[0].usual_interval)
    };
    let (first_state, usual) = view(9);
    assert_eq!(first_state, State::Down, "{usual:?}");
    for half_hours in 9..40 {
        assert_eq!(view(half_hours), (State::Down, usual), "no false back at {half_hours} half hours");
    }
}
