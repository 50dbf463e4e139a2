//! Judging, a stage of its own: each cell's evidence becomes an outcome ([`derive_outcome`]),
//! and the outcome, held against its expectation, a verdict. "As expected" is a pass, an
//! expected failure or a skip; everything else fails the run (exit 1), a harness error louder
//! (exit 3). A cell whose repeats differ is flaky, never retried into a pass.

use crate::classify::Tables;
use crate::derive::derive_outcome;
use crate::evidence::CellRun;
use crate::matrix::Matrix;
use report_format::{CellId, ConnectionRecord, Expected, ExpectedOutcome, Outcome, Report, Verdict};
use std::sync::Arc;
use std::time::Duration;

/// Judge one outcome.
pub fn judge(outcome: &Outcome, expected: &Expected) -> Verdict {
    use ExpectedOutcome as E;
    match (outcome, expected.outcome) {
        (Outcome::HarnessError { .. }, _) => Verdict::HarnessError,
        (Outcome::Skipped { .. }, _) => Verdict::Skipped,
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

/// What each cell is judged against: a baseline run's outcome where it has the cell, else the
/// matrix's written expectation; with no matrix (`probe`, whose cells are not the matrix's),
/// every cell is expected to connect.
pub struct Judge {
    pub matrix: Option<Arc<Matrix>>,
    pub baseline: Option<Report>,
    pub tables: Arc<Tables>,
}

impl Judge {
    pub fn expected_for(&self, cell: &str) -> Expected {
        self.baseline
            .as_ref()
            .and_then(|b| {
                let outcome = &b.cells.get(cell)?.outcome;
                expected_from(outcome, format!("baseline run {}", b.run.id))
            })
            .unwrap_or_else(|| self.matrix.as_ref().map_or_else(Expected::default_connected, |m| m.expected_for(cell)))
    }

    /// A cell's runs, judged.
    pub fn record(&self, run: CellRun) -> CellRecord {
        let expected = self.expected_for(&run.id.to_string());
        let outcomes: Vec<Outcome> = run.runs.iter().map(|e| derive_outcome(e, &self.tables)).collect();
        let server_log: Vec<ConnectionRecord> = run.runs.iter().flat_map(|e| e.server.records.clone()).collect();
        let first = outcomes.first().cloned().unwrap_or(Outcome::HarnessError { detail: "the cell never ran".into() });
        let mut verdict = judge(&first, &expected);
        if outcomes.iter().any(|o| o.signature() != first.signature()) {
            verdict = Verdict::Flaky;
        }
        CellRecord {
            id: run.id,
            outcome: first,
            expected,
            verdict,
            duration: run.duration,
            server_log,
            repeats: if outcomes.len() > 1 { outcomes } else { Vec::new() },
        }
    }
}

/// The expectation that an outcome meets, if it can be one (not for skipped or harness errors).
pub fn expected_from(outcome: &Outcome, reason: String) -> Option<Expected> {
    let kind = match outcome {
        Outcome::Connected(_) => ExpectedOutcome::Connected,
        Outcome::Failed { class, .. } => ExpectedOutcome::Failed { class: *class },
        Outcome::Timeout { .. } => ExpectedOutcome::Timeout,
        Outcome::Unsupported { .. } => ExpectedOutcome::Unsupported,
        Outcome::Skipped { .. } | Outcome::HarnessError { .. } => return None,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::{ErrorClass, Negotiated, Protocol, Side, Stage};

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
        assert_eq!(judge(&connected(), &connects), Verdict::Pass);
        assert_eq!(judge(&connected(), &small), Verdict::UnexpectedSuccess);
        assert_eq!(judge(&failed(ErrorClass::DhTooSmall), &small), Verdict::ExpectedFailure);
        assert_eq!(judge(&failed(ErrorClass::NoSharedCipher), &small), Verdict::WrongError);
        assert_eq!(judge(&failed(ErrorClass::Unmapped), &connects), Verdict::UnexpectedFailure);
        assert_eq!(judge(&Outcome::Timeout { after_ms: 1 }, &connects), Verdict::UnexpectedFailure);
        assert_eq!(judge(&Outcome::Timeout { after_ms: 1 }, &timeout), Verdict::ExpectedFailure);
        assert_eq!(judge(&Outcome::HarnessError { detail: "x".into() }, &small), Verdict::HarnessError);
        assert_eq!(judge(&Outcome::Skipped { reason: "x".into() }, &connects), Verdict::Skipped);
        assert!(!Verdict::HarnessError.is_as_expected());
    }

    /// A stack that regresses to exit 89 must not stay green (it used to be `skipped` whatever
    /// the expectation said, which left `outcome = "unsupported"` meaningless).
    #[test]
    fn an_unexpected_unsupported_is_an_unexpected_verdict() {
        let unsupported = Outcome::Unsupported { reason: "exit 89".into() };
        let verdict = judge(&unsupported, &expect(ExpectedOutcome::Connected));
        assert_eq!(verdict, Verdict::UnexpectedFailure);
        assert!(!verdict.is_as_expected());
        let failing = expect(ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall });
        assert!(!judge(&unsupported, &failing).is_as_expected());
        assert_eq!(judge(&unsupported, &expect(ExpectedOutcome::Unsupported)), Verdict::Skipped);
        assert_eq!(judge(&connected(), &expect(ExpectedOutcome::Unsupported)), Verdict::UnexpectedSuccess);
    }
}
