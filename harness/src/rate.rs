//! Rates over repeats (`run --repeat N`): how many runs of a cell failed, with a 95 %
//! Clopper–Pearson interval, and the judgement of a known rare failure an expectation tolerates
//! (`rare = "1/256"`): green while the failures are of that class and their count is what that
//! rate makes likely, red when it is far above it (`rate_exceeded`) or far below (the bug went:
//! `unexpected_success`). "Far" is a binomial tail below one in a million, so that a run of a
//! cell with a known 1-in-256 bug is green whatever the draw, and a moved rate is still seen
//! once a few thousand runs make it plain.

use crate::judge::judge;
use report_format::{Delivery, DeliveryResult, Expected, Outcome, Rate, Tolerance, Verdict};
use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF};
use std::collections::BTreeMap;

/// A tail probability below this makes a rate "far" from the tolerated one.
pub const ALPHA: f64 = 1e-6;

/// Whether a run failed: did not connect, or a sender's message did not go over TLS.
fn failed(outcome: &Outcome, delivery: Option<&Delivery>) -> bool {
    match delivery {
        Some(d) => d.result != DeliveryResult::Tls || d.class.is_some(),
        None => !matches!(outcome, Outcome::Connected(_)),
    }
}

/// The name a failed run is counted under.
fn class_of(outcome: &Outcome, delivery: Option<&Delivery>) -> String {
    match (delivery.and_then(|d| d.class), outcome) {
        (Some(c), _) => c.to_string(),
        (None, Outcome::Failed { class, .. }) => class.to_string(),
        (None, other) => other.kind().to_string(),
    }
}

/// The 95 % Clopper–Pearson interval of `k` failures in `n` runs.
pub fn interval(k: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (kf, nf) = (f64::from(k), f64::from(n));
    let low = if k == 0 { 0.0 } else { Beta::new(kf, nf - kf + 1.0).map_or(0.0, |b| b.inverse_cdf(0.025)) };
    let high = if k == n { 1.0 } else { Beta::new(kf + 1.0, nf - kf).map_or(1.0, |b| b.inverse_cdf(0.975)) };
    (low, high)
}

/// The rate of a cell's runs.
pub fn of(runs: &[(Outcome, Option<Delivery>)]) -> Rate {
    let mut by_class = BTreeMap::new();
    let mut k = 0;
    for (o, d) in runs {
        if failed(o, d.as_ref()) {
            k += 1;
            *by_class.entry(class_of(o, d.as_ref())).or_insert(0) += 1;
        }
    }
    let n = runs.len() as u32;
    let (low, high) = interval(k, n);
    Rate { runs: n, failed: k, low, high, by_class }
}

/// P(X ≥ k) and P(X ≤ k) for X ~ Binomial(n, p).
fn tails(k: u32, n: u32, p: f64) -> (f64, f64) {
    let Ok(b) = Binomial::new(p, u64::from(n)) else { return (1.0, 1.0) };
    let at_least = if k == 0 { 1.0 } else { b.sf(u64::from(k) - 1) };
    (at_least, b.cdf(u64::from(k)))
}

/// Judge the runs of a cell whose expectation tolerates a rare failure: each run must connect
/// (be as expected) or fail with the tolerated class, and the count of those failures must be
/// what the tolerated rate makes likely.
pub fn judge_tolerated(runs: &[(Outcome, Option<Delivery>)], expected: &Expected, t: Tolerance) -> Verdict {
    let tolerated = |o: &Outcome, d: Option<&Delivery>| match d {
        Some(d) => d.class == Some(t.class),
        None => matches!(o, Outcome::Failed { class, .. } if *class == t.class),
    };
    let mut k = 0;
    let mut other = Vec::new();
    for (o, d) in runs {
        if tolerated(o, d.as_ref()) {
            k += 1;
            continue;
        }
        let v = judge(o, d.as_ref(), expected);
        if !v.is_as_expected() || v == Verdict::Skipped {
            other.push(v);
        }
    }
    if let Some(first) = other.first() {
        // Something else than the known failure: as a single run would be judged, or flaky
        // when the runs disagree.
        return if runs.len() > 1 && other.len() < runs.len() { Verdict::Flaky } else { *first };
    }
    let n = runs.len() as u32;
    let (at_least, at_most) = tails(k, n, t.rate());
    if at_least < ALPHA {
        Verdict::RateExceeded
    } else if at_most < ALPHA {
        Verdict::UnexpectedSuccess
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::{ErrorClass, ExpectedOutcome, Negotiated, Protocol, Side, Stage};

    fn connected() -> (Outcome, Option<Delivery>) {
        (Outcome::Connected(Negotiated::tls(Protocol::Tls13, "c", Some("ffdhe2048".into()), Some(2048)).into()), None)
    }

    fn failed(class: ErrorClass) -> (Outcome, Option<Delivery>) {
        let o = Outcome::Failed {
            class,
            side: Side::Unknown,
            stage: Stage::Handshake,
            client_error: "x".into(),
            server_error: None,
        };
        (o, None)
    }

    fn runs(n: usize, k: usize, class: ErrorClass) -> Vec<(Outcome, Option<Delivery>)> {
        (0..n).map(|i| if i < k { failed(class) } else { connected() }).collect()
    }

    fn tolerating() -> (Expected, Tolerance) {
        let t = Tolerance { class: ErrorClass::KeyMismatch, one_in: 256 };
        let mut e = Expected::new(ExpectedOutcome::Connected, "JDK-8328046");
        e.rare = Some(t);
        (e, t)
    }

    #[test]
    fn intervals_contain_the_rate_and_narrow_with_runs() {
        let (lo, hi) = interval(0, 1000);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.00368).abs() < 1e-4, "{hi}");
        let (lo, hi) = interval(9, 3000);
        assert!(lo < 0.003 && 0.003 < hi && hi < 0.006, "{lo} {hi}");
        assert_eq!(interval(5, 5).1, 1.0);
    }

    #[test]
    fn a_rate_counts_failures_by_class() {
        let mut r = runs(10, 2, ErrorClass::KeyMismatch);
        r.push((Outcome::Timeout { after_ms: 1 }, None));
        let rate = of(&r);
        assert_eq!((rate.runs, rate.failed), (11, 3));
        assert_eq!(rate.by_class.get("key_mismatch"), Some(&2));
        assert_eq!(rate.by_class.get("timeout"), Some(&1));
    }

    /// A known 1-in-256 failure keeps a run green whatever the draw — one run that fails, a
    /// thousand runs with a few failures — and turns it red when the rate moves far up, or far
    /// down over enough runs.
    #[test]
    fn a_tolerated_rate_is_green_until_it_moves() {
        let (e, t) = tolerating();
        let judge = |r: &[(Outcome, Option<Delivery>)]| judge_tolerated(r, &e, t);
        assert_eq!(judge(&runs(1, 1, ErrorClass::KeyMismatch)), Verdict::Pass);
        assert_eq!(judge(&runs(1, 0, ErrorClass::KeyMismatch)), Verdict::Pass);
        assert_eq!(judge(&runs(1000, 9, ErrorClass::KeyMismatch)), Verdict::Pass);
        assert_eq!(judge(&runs(1000, 40, ErrorClass::KeyMismatch)), Verdict::RateExceeded);
        assert_eq!(judge(&runs(100, 100, ErrorClass::KeyMismatch)), Verdict::RateExceeded);
        assert_eq!(judge(&runs(2000, 0, ErrorClass::KeyMismatch)), Verdict::Pass, "0 in 2000 is still likely");
        assert_eq!(judge(&runs(5000, 0, ErrorClass::KeyMismatch)), Verdict::UnexpectedSuccess, "the bug went");
        // Another failure is not tolerated.
        assert_eq!(judge(&runs(1, 1, ErrorClass::NoSharedGroup)), Verdict::UnexpectedFailure);
        assert_eq!(judge(&runs(10, 1, ErrorClass::NoSharedGroup)), Verdict::Flaky);
    }
}
