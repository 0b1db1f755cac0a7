//! Splitting a reward in integer satoshis in proportion to accepted
//! difficulty.
//!
//! Largest-remainder method: each worker first gets the floor of its exact
//! quota `reward × weight / total`; the satoshis left over (fewer than the
//! number of workers) go one each to the workers with the largest fractional
//! remainders, ties broken by login in byte order. The result always adds up
//! exactly to the reward and depends only on the inputs, not their order.
//!
//! A reward above [`MAX_REWARD_SATS`] is refused: below it every quota is
//! exact to a satoshi in an `f64` (2.1e15 < 2^53), so the floors add up to at
//! most the reward plus one per worker, and no `u64` sum can overflow.

use super::db::MAX_REWARD_SATS;

/// Why a reward cannot be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// No worker has any accepted difficulty.
    NoWork,
    /// The weights add up to infinity.
    Unbounded,
    /// More satoshis than there will ever be.
    RewardTooLarge(u64),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::NoWork => f.write_str("no accepted shares on that day: nothing to split by"),
            SplitError::Unbounded => f.write_str("the day's accepted difficulty adds up to infinity"),
            SplitError::RewardTooLarge(r) => {
                write!(f, "a reward of {r} sats is more than all bitcoin ({MAX_REWARD_SATS} sats)")
            }
        }
    }
}

impl std::error::Error for SplitError {}

/// Splits `reward` among `(login, weight)` pairs; returns `(login, sats)`
/// sorted by login. Weights that are not finite and positive count as zero.
pub fn split(reward: u64, weights: &[(String, f64)]) -> Result<Vec<(String, u64)>, SplitError> {
    if reward > MAX_REWARD_SATS {
        return Err(SplitError::RewardTooLarge(reward));
    }
    let mut rows: Vec<(&str, f64)> =
        weights.iter().map(|(k, w)| (k.as_str(), if w.is_finite() && *w > 0.0 { *w } else { 0.0 })).collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    if total.is_infinite() {
        return Err(SplitError::Unbounded);
    }
    if total <= 0.0 {
        return Err(SplitError::NoWork);
    }
    // Quotas in f64 are exact to a satoshi: rewards are below 2^53 sats.
    let mut shares: Vec<(String, u64, f64)> = rows
        .iter()
        .map(|&(login, w)| {
            let quota = reward as f64 * (w / total);
            let base = (quota.floor() as u64).min(reward);
            (login.to_string(), base, quota - base as f64)
        })
        .collect();
    let given: u64 = shares.iter().map(|s| s.1).sum();
    // Rounding could overshoot by a satoshi in pathological inputs: take it back
    // from the smallest remainders first.
    let mut over = given.saturating_sub(reward);
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[a].2.total_cmp(&shares[b].2).then_with(|| shares[a].0.cmp(&shares[b].0)));
    for &i in &order {
        if over == 0 {
            break;
        }
        if shares[i].1 > 0 {
            shares[i].1 -= 1;
            over -= 1;
        }
    }
    let mut left = reward - shares.iter().map(|s| s.1).sum::<u64>();
    order.sort_by(|&a, &b| shares[b].2.total_cmp(&shares[a].2).then_with(|| shares[a].0.cmp(&shares[b].0)));
    for &i in order.iter().cycle().take(order.len() * 2) {
        if left == 0 {
            break;
        }
        if rows[i].1 > 0.0 {
            shares[i].1 += 1;
            left -= 1;
        }
    }
    // Only reachable if every remainder slot was used twice, which needs more
    // left-over satoshis than workers: give the rest to the heaviest worker.
    if left > 0 {
        let heaviest = (0..rows.len()).max_by(|&a, &b| rows[a].1.total_cmp(&rows[b].1)).unwrap_or(0);
        shares[heaviest].1 += left;
    }
    Ok(shares.into_iter().map(|(login, sats, _)| (login, sats)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn exact_and_proportional() {
        let got = split(100, &w(&[("b", 1.0), ("a", 1.0), ("c", 2.0)])).unwrap();
        assert_eq!(got, vec![("a".into(), 25), ("b".into(), 25), ("c".into(), 50)]);
        // 10 sats in thirds: 3.33 each, the extra one goes to the first login.
        let got = split(10, &w(&[("x", 1.0), ("y", 1.0), ("z", 1.0)])).unwrap();
        assert_eq!(got, vec![("x".into(), 4), ("y".into(), 3), ("z".into(), 3)]);
        assert_eq!(split(5, &w(&[("a", 0.0)])), Err(SplitError::NoWork));
        // Zero-weight workers get nothing.
        let got = split(7, &w(&[("a", 0.0), ("b", 3.0)])).unwrap();
        assert_eq!(got, vec![("a".into(), 0), ("b".into(), 7)]);
    }

    #[test]
    fn refuses_what_cannot_be_split_exactly() {
        let ws = w(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        assert_eq!(split(u64::MAX, &ws), Err(SplitError::RewardTooLarge(u64::MAX)));
        assert_eq!(split(MAX_REWARD_SATS + 1, &ws), Err(SplitError::RewardTooLarge(MAX_REWARD_SATS + 1)));
        let got = split(MAX_REWARD_SATS, &ws).unwrap();
        assert_eq!(got.iter().map(|r| r.1).sum::<u64>(), MAX_REWARD_SATS);
        assert_eq!(split(10, &w(&[("a", f64::MAX), ("b", f64::MAX)])), Err(SplitError::Unbounded));
    }

    #[test]
    fn always_sums_and_ignores_input_order() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let n = (next() % 12 + 1) as usize;
            let reward = next() % 400_000_000;
            let mut ws: Vec<(String, f64)> =
                (0..n).map(|i| (format!("w{i}"), (next() % 1_000_000) as f64 / 7.0 + 0.0001)).collect();
            let a = split(reward, &ws).unwrap();
            assert_eq!(a.iter().map(|r| r.1).sum::<u64>(), reward);
            let total: f64 = ws.iter().map(|r| r.1).sum();
            for (login, sats) in &a {
                let weight = ws.iter().find(|r| &r.0 == login).unwrap().1;
                let quota = reward as f64 * weight / total;
                assert!((*sats as f64 - quota).abs() < 1.0 + 1e-6, "{sats} vs {quota}");
            }
            ws.reverse();
            assert_eq!(split(reward, &ws).unwrap(), a);
        }
    }
}
