//! Expectations beyond the matrix's own entries: judging against a baseline run, writing
//! expectations from a run for a maintainer to edit, and finding stale entries (matching no
//! cell, shadowed by an earlier entry, or contradicted by what the cells now do).

use crate::matrix::{Expected, ExpectedKind, Matrix};
use crate::outcome::Outcome;
use crate::report::model::Report;
use serde::Serialize;
use std::fmt::Write;

/// What each cell is judged against: a baseline run's outcome where it has the cell, else the
/// matrix's written expectation.
pub struct Judge {
    pub matrix: std::sync::Arc<Matrix>,
    pub baseline: Option<Report>,
}

impl Judge {
    pub fn expected_for(&self, cell: &str) -> Expected {
        self.baseline
            .as_ref()
            .and_then(|b| {
                let outcome = &b.cells.get(cell)?.outcome;
                expected_from(outcome, format!("baseline run {}", b.run.id))
            })
            .unwrap_or_else(|| self.matrix.expected_for(cell))
    }
}

/// The expectation that an outcome meets, if it can be one (not for skipped or harness errors).
pub fn expected_from(outcome: &Outcome, reason: String) -> Option<Expected> {
    let (kind, class) = match outcome {
        Outcome::Connected(_) => (ExpectedKind::Connected, None),
        Outcome::Failed { class, .. } => (ExpectedKind::Failed, Some(*class)),
        Outcome::Timeout { .. } => (ExpectedKind::Timeout, None),
        Outcome::Unsupported { .. } => (ExpectedKind::Unsupported, None),
        Outcome::Skipped { .. } | Outcome::HarnessError { .. } => return None,
    };
    Some(Expected { outcome: kind, class, reason, link: None })
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// `[[expect]]` entries for every cell of a run that did not connect, each with the reason
/// "recorded from run <id>" and the stack's words as a comment, for a maintainer to edit.
pub fn from_report(report: &Report) -> String {
    let mut out = format!(
        "# Expectations recorded from run {} ({}). Edit each reason to say *why*.\n# Cells not listed are expected to connect.\n",
        report.run.id, report.run.started
    );
    for (id, cell) in &report.cells {
        if matches!(cell.outcome, Outcome::Connected(_)) {
            continue;
        }
        let Some(expected) = expected_from(&cell.outcome, format!("recorded from run {}", report.run.id)) else {
            let _ = writeln!(out, "\n# {id}: {} — not recorded (not an interop outcome)", cell.outcome.kind());
            continue;
        };
        let _ = writeln!(out);
        if let Outcome::Failed { client_error, .. } = &cell.outcome {
            let first = client_error.lines().next().unwrap_or_default();
            let _ = writeln!(out, "# {}", first.chars().take(160).collect::<String>());
        }
        let _ = writeln!(out, "[[expect]]\ncell = {}", toml_string(id));
        let kind = serde_json::to_value(expected.outcome).expect("serialises");
        let _ = writeln!(out, "outcome = {kind}");
        if let Some(class) = expected.class {
            let _ = writeln!(out, "class = \"{class}\"");
        }
        let _ = writeln!(out, "reason = {}", toml_string(&expected.reason));
    }
    out
}

/// Why an expectation entry is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The glob matches no cell of the matrix.
    MatchesNoCell,
    /// Every cell it matches is claimed by an earlier entry: it never applies.
    Shadowed,
    /// Cells it decides no longer behave as it says.
    Differs { cells: Vec<Contradiction> },
}

/// A cell that does not do what its expectation says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contradiction {
    pub cell: String,
    pub verdict: String,
    pub outcome: String,
}

/// One stale entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    /// `file:line`.
    pub at: String,
    pub cell: String,
    #[serde(flatten)]
    pub problem: Problem,
}

/// Find stale entries. With a report, also those its cells contradict.
pub fn check(matrix: &Matrix, report: Option<&Report>) -> Vec<Stale> {
    let cells: Vec<String> = matrix
        .servers
        .iter()
        .flat_map(|s| matrix.clients.iter().map(move |c| format!("{}/{}", c.id, s.profile.id)))
        .collect();
    let first_match = |cell: &str| matrix.expectations.iter().position(|e| e.glob.is_match(cell));
    let mut stale = Vec::new();
    for (i, e) in matrix.expectations.iter().enumerate() {
        let matched: Vec<&String> = cells.iter().filter(|c| e.glob.is_match(c.as_str())).collect();
        let decided: Vec<&String> = matched.iter().copied().filter(|c| first_match(c) == Some(i)).collect();
        let problem = if matched.is_empty() {
            Some(Problem::MatchesNoCell)
        } else if decided.is_empty() {
            Some(Problem::Shadowed)
        } else {
            let contradictions: Vec<Contradiction> = decided
                .iter()
                .filter_map(|c| report?.cells.get(c.as_str()).map(|r| (c, r)))
                .filter(|(_, r)| !r.verdict.is_as_expected() && r.verdict != crate::verdict::Verdict::HarnessError)
                .map(|(c, r)| Contradiction {
                    cell: c.to_string(),
                    verdict: r.verdict.as_str().into(),
                    outcome: r.outcome.label(),
                })
                .collect();
            (!contradictions.is_empty()).then_some(Problem::Differs { cells: contradictions })
        };
        if let Some(problem) = problem {
            stale.push(Stale { at: e.at.clone(), cell: e.pattern.clone(), problem });
        }
    }
    stale
}

/// One line per stale entry, for the terminal.
pub fn render(stale: &[Stale]) -> String {
    let mut out = String::new();
    for s in stale {
        let what = match &s.problem {
            Problem::MatchesNoCell => "matches no cell of the matrix".to_string(),
            Problem::Shadowed => "never applies: an earlier entry decides every cell it matches".to_string(),
            Problem::Differs { cells } => {
                let list: Vec<String> =
                    cells.iter().map(|c| format!("{} is {} ({})", c.cell, c.outcome, c.verdict)).collect();
                format!("cells behave differently now: {}", list.join("; "))
            }
        };
        let _ = writeln!(out, "{}: expect {:?} {what}", s.at, s.cell);
    }
    if stale.is_empty() {
        out.push_str("every expectation applies and holds\n");
    }
    out
}
