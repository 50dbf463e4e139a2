//! JUnit XML for CI systems: one test case per cell (class name = server profile), failures
//! carrying both sides' words, skipped cells skipped, harness errors as errors.

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use report_format::Outcome;
use report_format::Report;
use report_format::Verdict;
use std::time::Duration;

fn detail(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { class, side, stage, client_error, server_error } => format!(
            "{class} ({side:?} side, at {stage})\nclient: {client_error}\nserver: {}",
            server_error.as_deref().unwrap_or("(nothing logged)")
        ),
        Outcome::HarnessError { detail } => detail.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The report as JUnit XML.
pub fn render(report: &Report) -> Result<String, quick_junit::SerializeError> {
    let mut junit = quick_junit::Report::new("starttls-matrix");
    let mut suite = TestSuite::new(format!("starttls-matrix {}", report.run.id));
    for (id, cell) in &report.cells {
        let status = match cell.verdict {
            Verdict::Pass | Verdict::ExpectedFailure => TestCaseStatus::success(),
            Verdict::Skipped => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(cell.outcome.label());
                s
            }
            Verdict::HarnessError => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message("harness error: we could not run this cell").set_description(detail(&cell.outcome));
                s
            }
            Verdict::UnexpectedFailure
            | Verdict::UnexpectedSuccess
            | Verdict::WrongError
            | Verdict::Flaky
            | Verdict::RateExceeded => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let expected =
                    cell.expected.class().map_or_else(|| cell.expected.outcome.kind().to_string(), |c| c.to_string());
                s.set_message(format!(
                    "{}: got {}, expected {expected} ({})",
                    cell.verdict.as_str(),
                    cell.outcome.label(),
                    cell.expected.reason
                ))
                .set_type(cell.verdict.as_str())
                .set_description(detail(&cell.outcome));
                s
            }
        };
        let mut case = TestCase::new(id.clone(), status);
        case.set_classname(cell.server.clone()).set_time(Duration::from_millis(cell.duration_ms));
        suite.add_test_case(case);
    }
    junit.add_test_suite(suite);
    junit.to_string()
}
