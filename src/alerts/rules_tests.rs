use super::*;
use crate::stats::WorkerView;

const DAY: Duration = Duration::from_secs(86_400);

fn view(login: &str, state: State) -> WorkerView {
    WorkerView {
        login: crate::worker::display_login(login),
        state,
        hashrate_10m: 1e12,
        hashrate_1h: 1e12,
        hashrate_24h: 1e12,
        accepted: 10,
        rejected: 0,
        stale: 0,
        best_share: 1.0,
        last_share: Some(1_800_000_000.0),
        usual_interval: Some(10),
        down_after: 600,
        hashrate_30m: 1e12,
    }
}

fn look(rules: &mut Rules, views: &[WorkerView]) -> Vec<(Event, String)> {
    let mut out = Vec::new();
    rules.workers(views, (DAY, DAY), 0.5, 1_800_000_600, &mut out);
    out.into_iter().map(|a| (a.event, a.subject)).collect()
}

#[test]
fn one_alert_per_change_never_one_per_look() {
    let mut rules = Rules::default();
    let rig = |s| [view("alice.rig1", s), view("bob.rig2", State::Hashing)];
    assert!(look(&mut rules, &rig(State::Hashing)).is_empty());
    assert!(look(&mut rules, &rig(State::Late)).is_empty());
    assert_eq!(look(&mut rules, &rig(State::Down)), [(Event::WorkerDown, "alice.rig1".to_string())]);
    for _ in 0..10 {
        assert!(look(&mut rules, &rig(State::Down)).is_empty());
    }
    assert_eq!(look(&mut rules, &rig(State::Hashing)), [(Event::WorkerBack, "alice.rig1".to_string())]);
    assert!(look(&mut rules, &rig(State::Hashing)).is_empty());
}

#[test]
fn a_worker_first_seen_down_raises_nothing_and_the_overflow_never() {
    let mut rules = Rules::default();
    assert!(look(&mut rules, &[view("gone.rig", State::Down)]).is_empty());
    assert!(look(&mut rules, &[view("_other", State::Hashing)]).is_empty());
    assert!(look(&mut rules, &[view("_other", State::Down)]).is_empty());
    // Forgotten when no longer shown: the memory is bounded by the views.
    assert!(look(&mut rules, &[]).is_empty());
    assert!(rules.workers.is_empty());
}

#[test]
fn a_drop_alerts_once_and_rearms_only_well_above_the_threshold() {
    let mut rules = Rules::default();
    let at = |rate: f64| {
        let mut v = view("alice.rig1", State::Hashing);
        v.hashrate_30m = rate;
        [v]
    };
    assert!(look(&mut rules, &at(1e12)).is_empty());
    assert_eq!(look(&mut rules, &at(0.4e12)), [(Event::HashrateDrop, "alice.rig1".to_string())]);
    assert!(look(&mut rules, &at(0.3e12)).is_empty());
    // Just above the threshold: not re-armed, so no new alert on the next dip.
    assert!(look(&mut rules, &at(0.55e12)).is_empty());
    assert!(look(&mut rules, &at(0.45e12)).is_empty());
    // Well above: re-armed.
    assert!(look(&mut rules, &at(0.9e12)).is_empty());
    assert_eq!(look(&mut rules, &at(0.2e12)).len(), 1);
}

#[test]
fn no_drop_without_enough_history_or_shares() {
    let mut rules = Rules::default();
    let mut v = view("slow.cpu", State::Hashing);
    v.usual_interval = Some(300); // six shares in 30 minutes: too few to judge
    v.hashrate_30m = 0.0;
    assert!(look(&mut rules, std::slice::from_ref(&v)).is_empty());
    let mut out = Vec::new();
    let mut fast = view("fast.asic", State::Hashing);
    fast.hashrate_30m = 0.0;
    rules.workers(std::slice::from_ref(&fast), (Duration::from_secs(3600), DAY), 0.5, 0, &mut out);
    assert!(out.is_empty(), "an hour of history is too little: {out:?}");
    rules.workers(&[fast], (DAY, Duration::from_secs(600)), 0.5, 0, &mut out);
    assert!(out.is_empty(), "ten minutes after a start is too early: {out:?}");
}

#[test]
fn blocks_alert_once_per_new_count() {
    let mut rules = Rules::default();
    let mut out = Vec::new();
    rules.blocks(0, None, 1, &mut out);
    assert!(out.is_empty());
    rules.blocks(1, Some(("alice.rig1", "00ab")), 1, &mut out);
    rules.blocks(1, Some(("alice.rig1", "00ab")), 2, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, Event::BlockFound);
    assert!(out[0].message.contains("00ab"), "{}", out[0].message);
}

#[test]
fn human_units() {
    assert_eq!(human_rate(0.0), "0.00 H/s");
    assert_eq!(human_rate(-0.0), "0.00 H/s");
    assert_eq!(human_rate(1.5e12), "1.50 TH/s");
    assert_eq!(human_duration(59), "59 s");
    assert_eq!(human_duration(600), "10 min");
    assert_eq!(human_duration(7260), "2 h 1 min");
    assert_eq!(human_duration(200_000), "2 d 7 h");
}
