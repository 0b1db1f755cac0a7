use super::*;

const T0: u64 = 1_800_000_000 / BUCKET_SECS * BUCKET_SECS;

#[test]
fn a_ring_keeps_one_day_and_forgets_the_rest() {
    let mut r = Ring::default();
    r.add(T0, 2.0, 1);
    r.add(T0 + 10, 3.0, 1);
    r.add(T0 + BUCKET_SECS, 4.0, 1);
    assert_eq!(r.sum(T0 + BUCKET_SECS, BUCKET_SECS), (4.0, 1));
    assert_eq!(r.sum(T0 + BUCKET_SECS, 2 * BUCKET_SECS), (9.0, 3));
    let buckets: Vec<_> = r.buckets(T0 + BUCKET_SECS).collect();
    assert_eq!(buckets.len(), BUCKETS);
    assert_eq!(buckets[BUCKETS - 2..], [(5.0, 2), (4.0, 1)]);
    // A day later the old buckets are gone, even before anything is added.
    assert_eq!(r.sum(T0 + SPAN_SECS, SPAN_SECS), (4.0, 1));
    assert_eq!(r.sum(T0 + SPAN_SECS + BUCKET_SECS, SPAN_SECS), (0.0, 0));
    // A share a day and more older than the newest is not added.
    r.add(T0 + SPAN_SECS, 1.0, 1);
    r.add(T0, 100.0, 1);
    assert_eq!(r.sum(T0 + SPAN_SECS, SPAN_SECS), (5.0, 2));
    // A long silence clears every slot.
    r.add(T0 + 10 * SPAN_SECS, 1.0, 1);
    assert_eq!(r.sum(T0 + 10 * SPAN_SECS, SPAN_SECS), (1.0, 1));
}

#[test]
fn junk_difficulties_are_not_added() {
    let mut r = Ring::default();
    for d in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        r.add(T0, d, 1);
    }
    assert_eq!(r.sum(T0, SPAN_SECS), (0.0, 0));
    assert_eq!(r.first_share(T0), None);
}

#[test]
fn rates_divide_by_the_time_covered() {
    let mut r = Ring::default();
    // One difficulty-1 share a second for an hour: 2^32 H/s.
    for s in 0..3600 {
        r.add(T0 + s, 1.0, 1);
    }
    let now = T0 + 3600;
    let h = 4_294_967_296.0;
    let one_hour = r.rate(now, 3600, 0);
    assert!((one_hour / h - 1.0).abs() < 0.1, "{one_hour}");
    // Known only since T0: the day's rate is the hour's, not a 24th of it.
    assert!((r.rate(now, SPAN_SECS, T0) / h - 1.0).abs() < 0.01);
    assert!((r.rate(now, SPAN_SECS, 0) / h - 1.0 / 24.0).abs() < 0.01);
}

#[test]
fn usual_interval_and_state() {
    let mut r = Ring::default();
    for k in 0..100 {
        r.add(T0 + k * 30, 1.0, 1);
    }
    let last = T0 + 99 * 30;
    let now = last + 7200;
    let usual = r.usual_interval(now, None, last).unwrap();
    assert!((29..=30).contains(&usual.as_secs()), "{usual:?}");
    // A first share later than its bucket's start: measured from the share.
    let mut quick = Ring::default();
    for k in 0..10 {
        quick.add(T0 + 200 + k, 1.0, 1);
    }
    assert_eq!(quick.usual_interval(T0 + 300, Some(T0 + 200), T0 + 209), Some(Duration::from_secs(1)));
    assert_eq!(quick.usual_interval(T0 + 300, None, T0 + 209), Some(Duration::from_secs(23)));
    let down = down_after(Some(usual), Duration::from_secs(600));
    assert_eq!(down, Duration::from_secs(600));
    let s = |quiet| state(Duration::from_secs(quiet), Some(usual), down);
    assert_eq!(s(10), State::Hashing);
    assert_eq!(s(85), State::Hashing);
    assert_eq!(s(91), State::Late);
    assert_eq!(s(599), State::Late);
    assert_eq!(s(600), State::Down);
    // A slow rig (a share every 10 minutes) is down after 50 minutes, not 10.
    let slow = Some(Duration::from_secs(600));
    assert_eq!(down_after(slow, Duration::from_secs(600)), Duration::from_secs(3000));
    // Too few shares: no usual interval, only the setting decides.
    let mut few = Ring::default();
    few.add(T0, 1.0, 3);
    assert_eq!(few.usual_interval(T0 + 10, None, T0), None);
    assert_eq!(state(Duration::from_secs(299), None, Duration::from_secs(600)), State::Hashing);
    assert_eq!(state(Duration::from_secs(300), None, Duration::from_secs(600)), State::Late);
}

#[test]
fn an_idle_ring_hashes_plus_zero() {
    let r = Ring::default();
    for rate in [r.rate(T0, 3600, 0), r.whole_rate(T0, 6)] {
        assert!(rate == 0.0 && rate.is_sign_positive(), "{rate}");
    }
}
