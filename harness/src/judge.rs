//! Judging, a stage of its own: each cell's evidence becomes an outcome ([`derive_outcome`]),
//! and the outcome, held against its expectation, a verdict. "As expected" is a pass, an
//! expected failure or a skip; everything else fails the run (exit 1), a harness error louder
//! (exit 3). A cell whose repeats differ is flaky, never retried into a pass.

use crate::blind::Finding;
use crate::classify::Tables;
use crate::derive::derive_cell;
use crate::evidence::CellRun;
use crate::matrix::Matrix;
use report_format::{
    BlindCheck, CellId, ConnectionRecord, Delivery, DeliveryResult, ErrorClass, Expected, ExpectedOutcome, Outcome,
    Report, Verdict,
};
use std::sync::Arc;
use std::time::Duration;

/// Judge one outcome (a sender's with its delivery).
pub fn judge(outcome: &Outcome, delivery: Option<&Delivery>, expected: &Expected) -> Verdict {
    use ExpectedOutcome as E;
    match (outcome, expected.outcome) {
        (Outcome::HarnessError { .. }, _) => Verdict::HarnessError,
        (Outcome::Skipped { .. }, _) => Verdict::Skipped,
        (Outcome::Unsupported { .. }, E::Delivery { .. }) => Verdict::UnexpectedFailure,
        (_, E::Delivery { result, class }) => match delivery {
            Some(d) => judge_delivery(d, result, class),
            // A sender that gave no account of its message (it timed out as a whole).
            None => Verdict::UnexpectedFailure,
        },
        // A sender cell with no written expectation is expected to deliver over TLS.
        (_, E::Connected) if delivery.is_some() => {
            judge_delivery(delivery.expect("checked"), DeliveryResult::Tls, None)
        }
        // A stack that cannot express a cell, expected so: it is not run, as a skip.
        (Outcome::Unsupported { .. }, E::Unsupported) => Verdict::Skipped,
        // A stack that regressed to "cannot express this" did not do what it should.
        (Outcome::Unsupported { .. }, E::Connected | E::Failed { .. } | E::Timeout) => Verdict::UnexpectedFailure,
        (Outcome::Connected(_), E::Connected) => Verdict::Pass,
        (Outcome::Connected(_), E::Failed { .. } | E::Timeout | E::Unsupported) => Verdict::UnexpectedSuccess,
        (Outcome::Failed { class, .. }, E::Failed { class: expected }) if *class == expected => {
            Verdict::ExpectedFailure
        }
        (Outcome::Failed { .. }, E::Failed { .. }) => Verdict::WrongError,
        (Outcome::Timeout { .. }, E::Timeout) => Verdict::ExpectedFailure,
        (Outcome::Timeout { .. }, E::Failed { .. })
        | (Outcome::Failed { .. } | Outcome::Timeout { .. }, E::Connected | E::Timeout | E::Unsupported) => {
            Verdict::UnexpectedFailure
        }
    }
}

/// A delivery against the fate expected for it: the same fate and class passes (an expected
/// failure where the fate is not TLS); TLS where it was not expected is an unexpected success;
/// any other change of fate — above all to a delivery in clear — is an unexpected failure; the
/// same fate for another reason is a wrong error.
pub fn judge_delivery(d: &Delivery, result: DeliveryResult, class: Option<ErrorClass>) -> Verdict {
    match (d.result == result, d.class == class) {
        (true, true) if result == DeliveryResult::Tls => Verdict::Pass,
        (true, true) => Verdict::ExpectedFailure,
        (true, false) if result == DeliveryResult::Tls => Verdict::UnexpectedFailure,
        (true, false) => Verdict::WrongError,
        (false, _) if d.result == DeliveryResult::Tls && d.class.is_none() => Verdict::UnexpectedSuccess,
        (false, _) => Verdict::UnexpectedFailure,
    }
}

/// What each cell is judged against: a baseline run's outcome where it has the cell, else the
/// matrix's written expectation; with no matrix (`probe`, whose cells are not the matrix's),
/// every cell is expected to connect.
pub struct Judge {
    pub matrix: Option<Arc<Matrix>>,
    pub baseline: Option<Report>,
    pub tables: Arc<Tables>,
    /// Whose words decide.
    pub view: View,
}

/// Whose words decide a cell's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// The client's, with our own server's records where they know better.
    #[default]
    Informed,
    /// The client's alone, as against a server we do not control (`run --blind`, `probe`); the
    /// server's records stay in the report for comparison.
    Blind,
}

impl Judge {
    pub fn expected_for(&self, cell: &str) -> Expected {
        self.baseline
            .as_ref()
            .and_then(|b| {
                let c = b.cells.get(cell)?;
                expected_from(&c.outcome, c.delivery.as_ref(), format!("baseline run {}", b.run.id))
            })
            .unwrap_or_else(|| self.matrix.as_ref().map_or_else(Expected::default_connected, |m| m.expected_for(cell)))
    }

    /// A cell's runs, judged.
    pub fn record(&self, run: CellRun) -> CellRecord {
        let expected = self.expected_for(&run.id.to_string());
        let derived: Vec<(Outcome, Option<Delivery>)> = run
            .runs
            .iter()
            .map(|e| match self.view {
                View::Informed => derive_cell(e, &self.tables),
                View::Blind => derive_cell(&e.blind(), &self.tables),
            })
            .collect();
        let server_log: Vec<ConnectionRecord> = run.runs.iter().flat_map(|e| e.server.records.clone()).collect();
        let (first, delivery) =
            derived.first().cloned().unwrap_or((Outcome::HarnessError { detail: "the cell never ran".into() }, None));
        let fate = |d: &Option<Delivery>| d.as_ref().map(|d| (d.result, d.class));
        let mut verdict = match expected.rare {
            // A known rare failure: judged over every run, by its rate.
            Some(tolerance) if !derived.is_empty() => crate::rate::judge_tolerated(&derived, &expected, tolerance),
            _ => {
                let verdict = judge(&first, delivery.as_ref(), &expected);
                if derived.iter().any(|(o, d)| o.signature() != first.signature() || fate(d) != fate(&delivery)) {
                    Verdict::Flaky
                } else {
                    verdict
                }
            }
        };
        let rate = (derived.len() > 1).then(|| crate::rate::of(&derived));
        // Blind, a finding the list of coarsenings allows for the expected one meets it; and
        // where our server's records say more, the report keeps how the two views compare.
        let mut blind_check = None;
        if self.view == View::Blind {
            let stack = run.id.client.as_str();
            let found = Finding::of(&first, delivery.as_ref());
            let wanted = Finding::expected(expected.outcome, delivery.is_some());
            if !verdict.is_as_expected()
                && verdict != Verdict::Flaky
                && verdict != Verdict::HarnessError
                && crate::blind::allowed(stack, wanted, found).is_some()
            {
                verdict = if found.is_success() { Verdict::Pass } else { Verdict::ExpectedFailure };
            }
            if let Some(e) = run.runs.first() {
                let (outcome, d) = derive_cell(e, &self.tables);
                blind_check = crate::blind::check(stack, (&outcome, d.as_ref()), (&first, delivery.as_ref()));
            }
        }
        let outcomes: Vec<Outcome> = derived.into_iter().map(|(o, _)| o).collect();
        CellRecord {
            id: run.id,
            outcome: first,
            expected,
            verdict,
            duration: run.duration,
            server_log,
            repeats: if outcomes.len() > 1 { outcomes } else { Vec::new() },
            delivery,
            blind_check,
            rate,
        }
    }
}

/// The expectation that an outcome (with a sender's delivery) meets, if it can be one (not for
/// skipped or harness errors).
pub fn expected_from(outcome: &Outcome, delivery: Option<&Delivery>, reason: String) -> Option<Expected> {
    let kind = match (outcome, delivery) {
        (Outcome::Skipped { .. } | Outcome::HarnessError { .. }, _) => return None,
        (_, Some(d)) => ExpectedOutcome::Delivery { result: d.result, class: d.class },
        (outcome, None) => match outcome {
            Outcome::Connected(_) => ExpectedOutcome::Connected,
            Outcome::Failed { class, .. } => ExpectedOutcome::Failed { class: *class },
            Outcome::Timeout { .. } => ExpectedOutcome::Timeout,
            Outcome::Unsupported { .. } => ExpectedOutcome::Unsupported,
            Outcome::Skipped { .. } | Outcome::HarnessError { .. } => return None,
        },
    };
    Some(Expected::new(kind, reason))
}

/// What happened in one cell, judged.
#[derive(Debug, Clone)]
pub struct CellRecord {
    pub id: CellId,
    pub outcome: Outcome,
    pub expected: Expected,
    pub verdict: Verdict,
    pub duration: Duration,
    /// What the server logged for this cell's connections.
    pub server_log: Vec<ConnectionRecord>,
    /// Every repeat's outcome when the cell ran more than once.
    pub repeats: Vec<Outcome>,
    /// What became of a sender's message.
    pub delivery: Option<Delivery>,
    /// Blind, where the informed view differs: how.
    pub blind_check: Option<BlindCheck>,
    /// How often the repeats failed, when the cell ran more than once.
    pub rate: Option<report_format::Rate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::{Negotiated, Protocol, Side, Stage};

    fn expect(outcome: ExpectedOutcome) -> Expected {
        Expected::new(outcome, "r")
    }

    fn failed(class: ErrorClass) -> Outcome {
        Outcome::Failed {
            class,
            side: Side::Client,
            stage: Stage::Handshake,
            client_error: "x".into(),
            server_error: None,
        }
    }

    fn connected() -> Outcome {
        Outcome::Connected(Negotiated::tls(Protocol::Tls12, "c", None, Some(2048)).into())
    }

    #[test]
    fn the_table() {
        let small = expect(ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall });
        let connects = expect(ExpectedOutcome::Connected);
        let timeout = expect(ExpectedOutcome::Timeout);
        assert_eq!(judge(&connected(), None, &connects), Verdict::Pass);
        assert_eq!(judge(&connected(), None, &small), Verdict::UnexpectedSuccess);
        assert_eq!(judge(&failed(ErrorClass::DhTooSmall), None, &small), Verdict::ExpectedFailure);
        assert_eq!(judge(&failed(ErrorClass::NoSharedCipher), None, &small), Verdict::WrongError);
        assert_eq!(judge(&failed(ErrorClass::Unmapped), None, &connects), Verdict::UnexpectedFailure);
        assert_eq!(judge(&Outcome::Timeout { after_ms: 1 }, None, &connects), Verdict::UnexpectedFailure);
        assert_eq!(judge(&Outcome::Timeout { after_ms: 1 }, None, &timeout), Verdict::ExpectedFailure);
        assert_eq!(judge(&Outcome::HarnessError { detail: "x".into() }, None, &small), Verdict::HarnessError);
        assert_eq!(judge(&Outcome::Skipped { reason: "x".into() }, None, &connects), Verdict::Skipped);
        assert!(!Verdict::HarnessError.is_as_expected());
    }

    /// A stack that regresses to exit 89 must not stay green (it used to be `skipped` whatever
    /// the expectation said, which left `outcome = "unsupported"` meaningless).
    #[test]
    fn an_unexpected_unsupported_is_an_unexpected_verdict() {
        let unsupported = Outcome::Unsupported { reason: "exit 89".into() };
        let verdict = judge(&unsupported, None, &expect(ExpectedOutcome::Connected));
        assert_eq!(verdict, Verdict::UnexpectedFailure);
        assert!(!verdict.is_as_expected());
        let failing = expect(ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall });
        assert!(!judge(&unsupported, None, &failing).is_as_expected());
        assert_eq!(judge(&unsupported, None, &expect(ExpectedOutcome::Unsupported)), Verdict::Skipped);
        assert_eq!(judge(&connected(), None, &expect(ExpectedOutcome::Unsupported)), Verdict::UnexpectedSuccess);
    }

    fn delivered(result: DeliveryResult, class: Option<ErrorClass>) -> Delivery {
        Delivery {
            result,
            negotiated: None,
            class,
            attempts: vec![],
            sender_log: vec![],
            queue: String::new(),
            timeline: vec![],
            settled: true,
        }
    }

    fn fate(result: DeliveryResult, class: Option<ErrorClass>) -> Expected {
        expect(ExpectedOutcome::Delivery { result, class })
    }

    /// A change of fate is what a mail admin must see: above all a delivery in clear where the
    /// message used to wait, or to go over TLS.
    #[test]
    fn deliveries_are_judged_by_their_fate() {
        use DeliveryResult as R;
        let small = Some(ErrorClass::DhTooSmall);
        let out = failed(ErrorClass::DhTooSmall);
        let deferred = delivered(R::Deferred, small);
        assert_eq!(judge(&out, Some(&deferred), &fate(R::Deferred, small)), Verdict::ExpectedFailure);
        assert_eq!(
            judge(&out, Some(&delivered(R::PlaintextFallback, small)), &fate(R::Deferred, small)),
            Verdict::UnexpectedFailure
        );
        assert_eq!(
            judge(&out, Some(&delivered(R::Deferred, Some(ErrorClass::NoSharedCipher))), &fate(R::Deferred, small)),
            Verdict::WrongError
        );
        let tls = delivered(R::Tls, None);
        assert_eq!(judge(&connected(), Some(&tls), &fate(R::Deferred, small)), Verdict::UnexpectedSuccess);
        // No written expectation: a sender's message is expected over TLS.
        assert_eq!(judge(&connected(), Some(&tls), &expect(ExpectedOutcome::Connected)), Verdict::Pass);
        assert_eq!(judge(&out, Some(&deferred), &expect(ExpectedOutcome::Connected)), Verdict::UnexpectedFailure);
        // Over TLS with a finding is not the plain success it was expected to be.
        let finding = delivered(R::Tls, Some(ErrorClass::DhInvalidAccepted));
        assert_eq!(judge(&connected(), Some(&finding), &fate(R::Tls, None)), Verdict::UnexpectedFailure);
        // A sender that regressed to "cannot express this" fails a delivery expectation.
        let unsupported = Outcome::Unsupported { reason: "x".into() };
        assert_eq!(judge(&unsupported, None, &fate(R::Tls, None)), Verdict::UnexpectedFailure);
        // What a baseline run's delivery becomes as an expectation.
        let e = expected_from(&out, Some(&deferred), "baseline".into()).unwrap();
        assert_eq!(e.outcome, ExpectedOutcome::Delivery { result: R::Deferred, class: small });
    }
}
