//! Verdicts: an outcome judged against its expectation. "As expected" is a pass, an expected
//! failure or a skip; anything else fails the run.

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
    /// A known rare failure (`rare = "1/N"`) happened far more often than tolerated.
    RateExceeded,
}

impl Verdict {
    pub const ALL: [Verdict; 9] = [
        Verdict::Pass,
        Verdict::ExpectedFailure,
        Verdict::UnexpectedFailure,
        Verdict::UnexpectedSuccess,
        Verdict::WrongError,
        Verdict::Skipped,
        Verdict::HarnessError,
        Verdict::Flaky,
        Verdict::RateExceeded,
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
            Verdict::RateExceeded => "rate_exceeded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for v in Verdict::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(v.as_str().into()));
        }
    }
}
