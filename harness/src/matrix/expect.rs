//! `[[expect]]` entries: a glob over cell ids, what the cells do, and why. Parsed into
//! [`Expected`] values that cannot hold a class without a failure, nor a delivery's fate
//! without `outcome = "delivery"`.

use super::MatrixError;
use super::raw::{RawExpect, RawOutcome, key_line, line_of};
use globset::{Glob, GlobMatcher};
use report_format::{Expected, ExpectedOutcome, Tolerance};
use std::path::Path;
use toml::Spanned;

/// One `[[expect]]` entry.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub pattern: String,
    pub glob: GlobMatcher,
    pub expected: Expected,
    /// Where it is written: `file:line`.
    pub at: String,
}

impl Expectation {
    /// Whether it speaks of a sender's cell (`sender`) or a client program's.
    pub fn applies_to(&self, sender: bool) -> bool {
        match self.expected.outcome {
            ExpectedOutcome::Delivery { .. } => sender,
            ExpectedOutcome::Unsupported => true,
            ExpectedOutcome::Connected | ExpectedOutcome::Failed { .. } | ExpectedOutcome::Timeout => !sender,
        }
    }
}

/// Validate `[[expect]]` entries written in `path`.
pub fn parse(path: &Path, source: &str, raw: Vec<Spanned<RawExpect>>) -> Result<Vec<Expectation>, MatrixError> {
    let invalid = |line: usize, message: String| MatrixError::Invalid { path: path.to_path_buf(), line, message };
    let mut expectations = Vec::new();
    for e in raw {
        let span = e.span();
        let e = e.into_inner();
        let at = |key: &str| key_line(source, &span, key);
        let glob = Glob::new(&e.cell)
            .map_err(|err| invalid(at("cell"), format!("expect {:?}: {err}", e.cell)))?
            .compile_matcher();
        if e.result.is_some() && e.outcome != RawOutcome::Delivery {
            return Err(invalid(
                at("result"),
                format!("expect {:?}: `result` goes only with outcome \"delivery\" (a sender's cell)", e.cell),
            ));
        }
        // A known rare failure: the cell connects, but fails with `class` about once in N runs.
        let rare = match (&e.rare, e.outcome, e.class) {
            (None, _, _) => None,
            (Some(text), RawOutcome::Connected, Some(class)) => {
                let one_in = Tolerance::parse_rate(text)
                    .map_err(|m| invalid(at("rare"), format!("expect {:?}: {m}", e.cell)))?;
                Some(Tolerance { class, one_in })
            }
            (Some(_), RawOutcome::Connected, None) => {
                return Err(invalid(
                    at("rare"),
                    format!("expect {:?}: `rare` needs the class of the rare failure (class = \"…\")", e.cell),
                ));
            }
            (Some(_), _, _) => {
                return Err(invalid(
                    at("rare"),
                    format!(
                        "expect {:?}: `rare` goes with outcome \"connected\": a cell that connects and fails about once in N runs",
                        e.cell
                    ),
                ));
            }
        };
        let class = if rare.is_some() { None } else { e.class };
        let outcome = match (e.outcome, class) {
            (RawOutcome::Delivery, class) => match e.result {
                Some(result) => ExpectedOutcome::Delivery { result, class },
                None => {
                    let known: Vec<&str> = report_format::DeliveryResult::ALL.iter().map(|r| r.as_str()).collect();
                    return Err(invalid(
                        at("outcome"),
                        format!(
                            "expect {:?}: outcome \"delivery\" needs the message's fate: result = one of {}",
                            e.cell,
                            known.join(", ")
                        ),
                    ));
                }
            },
            (RawOutcome::Failed, Some(class)) => ExpectedOutcome::Failed { class },
            (RawOutcome::Failed, None) => {
                let message = format!(
                    "expect {:?}: outcome \"failed\" needs the error class it fails with (class = \"…\")",
                    e.cell
                );
                return Err(invalid(at("outcome"), message));
            }
            (RawOutcome::Connected | RawOutcome::Timeout | RawOutcome::Unsupported, Some(_)) => {
                return Err(invalid(
                    at("class"),
                    format!(
                        "expect {:?}: `class` goes only with outcome \"failed\" (or with `rare` on a cell that connects)",
                        e.cell
                    ),
                ));
            }
            (RawOutcome::Connected, None) => ExpectedOutcome::Connected,
            (RawOutcome::Timeout, None) => ExpectedOutcome::Timeout,
            (RawOutcome::Unsupported, None) => ExpectedOutcome::Unsupported,
        };
        if e.reason.trim().is_empty() {
            return Err(invalid(at("reason"), format!("expect {:?}: every expectation needs a reason", e.cell)));
        }
        expectations.push(Expectation {
            pattern: e.cell,
            glob,
            expected: Expected { outcome, reason: e.reason, link: e.link, rare },
            at: format!("{}:{}", path.display(), line_of(source, span.start)),
        });
    }
    Ok(expectations)
}
