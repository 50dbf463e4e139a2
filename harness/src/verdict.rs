//! Judging: an outcome against its expectation gives a verdict. "As expected" is a pass, an
//! expected failure, or a skip; everything else makes the run fail (exit 1), and a harness error
//! makes it fail louder (exit 3).

use crate::matrix::{Expected, ExpectedKind};
use crate::outcome::Outcome;
use serde::{Deserialize, Serialize};

/// An outcome judged against its expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    ExpectedFailure,
    UnexpectedFailure,
    UnexpectedSuccess,
    WrongError,
    Skipped,
    HarnessError,
    /// Repeats of the cell (`run --repeat N`) did not all behave the same.
    Flaky,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Pass,
        Verdict::ExpectedFailure,
        Verdict::UnexpectedFailure,
        Verdict::UnexpectedSuccess,
        Verdict::WrongError,
        Verdict::Skipped,
        Verdict::HarnessError,
        Verdict::Flaky,
    ];

    /// Whether this verdict leaves the run green.
    pub fn is_as_expected(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::ExpectedFailure | Verdict::Skipped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::ExpectedFailure => "expected_failure",
            Verdict::UnexpectedFailure => "unexpected_failure",
            Verdict::UnexpectedSuccess => "unexpected_success",
            Verdict::WrongError => "wrong_error",
            Verdict::Skipped => "skipped",
            Verdict::HarnessError => "harness_error",
            Verdict::Flaky => "flaky",
        }
    }
}

/// Judge one outcome.
pub fn judge(outcome: &Outcome, expected: &Expected) -> Verdict {
    use ExpectedKind as E;
    match (outcome, expected.outcome) {
        (Outcome::HarnessError { .. }, _) => Verdict::HarnessError,
        (Outcome::Skipped { .. } | Outcome::Unsupported { .. }, _) => Verdict::Skipped,
        (Outcome::Connected(_), E::Connected) => Verdict::Pass,
        (Outcome::Connected(_), E::Failed | E::Timeout | E::Unsupported) => Verdict::UnexpectedSuccess,
        (Outcome::Failed { class, .. }, E::Failed) if Some(*class) == expected.class => Verdict::ExpectedFailure,
        (Outcome::Failed { .. }, E::Failed) => Verdict::WrongError,
        (Outcome::Timeout { .. }, E::Timeout) => Verdict::ExpectedFailure,
        (Outcome::Failed { .. } | Outcome::Timeout { .. }, E::Connected | E::Timeout | E::Unsupported | E::Failed) => {
            Verdict::UnexpectedFailure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorClass, Side};
    use wire::{Negotiated, Stage};

    fn expect(outcome: ExpectedKind, class: Option<ErrorClass>) -> Expected {
        Expected { outcome, class, reason: "r".into(), link: None }
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

    #[test]
    fn the_table() {
        let ok = Outcome::Connected(
            Negotiated { protocol: "TLSv1.3".into(), cipher: "c".into(), group: None, dh_bits: None }.into(),
        );
        let small = expect(ExpectedKind::Failed, Some(ErrorClass::DhTooSmall));
        let connects = expect(ExpectedKind::Connected, None);
        assert_eq!(judge(&ok, &connects), Verdict::Pass);
        assert_eq!(judge(&ok, &small), Verdict::UnexpectedSuccess);
        assert_eq!(judge(&failed(ErrorClass::DhTooSmall), &small), Verdict::ExpectedFailure);
        assert_eq!(judge(&failed(ErrorClass::NoSharedCipher), &small), Verdict::WrongError);
        assert_eq!(judge(&failed(ErrorClass::Unmapped), &connects), Verdict::UnexpectedFailure);
        assert_eq!(judge(&Outcome::Timeout { after_ms: 1 }, &connects), Verdict::UnexpectedFailure);
        assert_eq!(
            judge(&Outcome::Timeout { after_ms: 1 }, &expect(ExpectedKind::Timeout, None)),
            Verdict::ExpectedFailure
        );
        assert_eq!(judge(&Outcome::HarnessError { detail: "x".into() }, &small), Verdict::HarnessError);
        assert_eq!(judge(&Outcome::Skipped { reason: "x".into() }, &connects), Verdict::Skipped);
        assert!(!Verdict::HarnessError.is_as_expected());
    }
}
