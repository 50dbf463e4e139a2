//! Expectations beyond the matrix's own entries: writing expectations from a run for a
//! maintainer to edit, and finding stale entries (matching no cell, shadowed by an earlier
//! entry, or contradicted by what the cells now do).

use crate::judge::expected_from;
use crate::matrix::Matrix;
use report_format::{Outcome, Report};
use serde::Serialize;
use std::fmt::Write;

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
        let _ = writeln!(out, "outcome = \"{}\"", expected.outcome.kind());
        if let Some(class) = expected.class() {
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
                .filter(|(_, r)| !r.verdict.is_as_expected() && r.verdict != report_format::Verdict::HarnessError)
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
