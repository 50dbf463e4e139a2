//! Expectations beyond the matrix's own entries: writing expectations from a run for a
//! maintainer to edit, and finding stale entries (matching no cell, shadowed by an earlier
//! entry, or contradicted by what the cells now do).

use crate::judge::expected_from;
use crate::matrix::Matrix;
use report_format::{DeliveryResult, ExpectedOutcome, Outcome, Report};
use serde::Serialize;
use std::fmt::Write;

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// `[[expect]]` entries for every cell of a run that did not connect (or whose sender did not
/// deliver over TLS), each with the reason
/// "recorded from run <id>" and the stack's words as a comment, for a maintainer to edit.
pub fn from_report(report: &Report) -> String {
    let mut out = format!(
        "# Expectations recorded from run {} ({}). Edit each reason to say *why*.\n# Cells not listed are expected to connect.\n",
        report.run.id, report.run.started
    );
    for (id, cell) in &report.cells {
        let delivered_over_tls =
            cell.delivery.as_ref().is_some_and(|d| d.result == DeliveryResult::Tls && d.class.is_none());
        if (matches!(cell.outcome, Outcome::Connected(_)) && cell.delivery.is_none()) || delivered_over_tls {
            continue;
        }
        let reason = format!("recorded from run {}", report.run.id);
        let Some(expected) = expected_from(&cell.outcome, cell.delivery.as_ref(), reason) else {
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
        if let ExpectedOutcome::Delivery { result, .. } = expected.outcome {
            let _ = writeln!(out, "result = \"{result}\"");
        }
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
    let first_match = |cell: &str| {
        let decides = matrix.deciding(cell)?;
        matrix.expectations.iter().position(|e| std::ptr::eq(e, decides))
    };
    let mut stale = Vec::new();
    for (i, e) in matrix.expectations.iter().enumerate() {
        let sender = |c: &str| matrix.client(c.split('/').next().unwrap_or_default()).is_some_and(|s| s.is_sender());
        let matched: Vec<&String> =
            cells.iter().filter(|c| e.glob.is_match(c.as_str()) && e.applies_to(sender(c))).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tables;
    use report_format::{
        CellReport, ErrorClass, Expected, ExpectedOutcome, Negotiated, Protocol, RunInfo, Side, Stage, Verdict,
    };
    use std::collections::BTreeMap;
    use std::path::Path;

    const MATRIX: &str = r#"
[[server]]
id = "dhe512"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "custom-512"

[[client]]
id = "openssl"
builtin = "openssl-client"

[[expect]]
cell = "openssl/dhe*"
outcome = "failed"
class = "dh_too_small"
reason = "level 2"

[[expect]]
cell = "openssl/dhe512"
outcome = "connected"
reason = "shadowed by the entry above"

[[expect]]
cell = "gnutls/*"
outcome = "connected"
reason = "no such stack"
"#;

    fn matrix() -> Matrix {
        Matrix::parse(Path::new("m.toml"), MATRIX, &Tables::builtin().unwrap()).unwrap()
    }

    fn report(outcome: Outcome, verdict: Verdict) -> Report {
        let cell = CellReport {
            client: "openssl".into(),
            server: "dhe512".into(),
            outcome,
            expected: Expected::new(ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall }, "level 2"),
            verdict,
            duration_ms: 1,
            server_log: vec![],
            repeats: vec![],
            delivery: None,
            blind_check: None,
            rate: None,
            rare: Vec::new(),
            left_to_chance: Vec::new(),
        };
        Report {
            schema_version: 1,
            run: RunInfo {
                id: "r1".into(),
                mode: "run".into(),
                started: "s".into(),
                finished: "f".into(),
                wall_ms: 1,
                matrix: "m.toml".into(),
                tool_versions: BTreeMap::new(),
                server_order: vec!["dhe512".into()],
                client_order: vec!["openssl".into()],
                jobs: 1,
                cores: 1,
                matrix_digest: String::new(),
                shard: None,
                merged_from: vec![],
                repeat: 1,
                blind: false,
            },
            servers: BTreeMap::new(),
            server_runs: BTreeMap::new(),
            sender_runs: Default::default(),
            clients: BTreeMap::new(),
            cells: BTreeMap::from([("openssl/dhe512".to_string(), cell)]),
        }
    }

    fn failed(class: ErrorClass) -> Outcome {
        Outcome::Failed {
            class,
            side: Side::Client,
            stage: Stage::Handshake,
            client_error: "error:0A00018A:SSL routines::dh key too small".into(),
            server_error: None,
        }
    }

    #[test]
    fn stale_entries_are_found_each_for_its_reason() {
        let stale = check(&matrix(), None);
        let problems: Vec<(&str, &Problem)> = stale.iter().map(|s| (s.cell.as_str(), &s.problem)).collect();
        assert_eq!(problems, vec![("openssl/dhe512", &Problem::Shadowed), ("gnutls/*", &Problem::MatchesNoCell)]);
        assert!(stale[0].at.ends_with(":19"), "file:line of the entry: {}", stale[0].at);
    }

    #[test]
    fn a_run_that_contradicts_an_entry_is_named() {
        let connected = Outcome::Connected(Negotiated::tls(Protocol::Tls12, "x", None, Some(512)).into());
        let stale = check(&matrix(), Some(&report(connected, Verdict::UnexpectedSuccess)));
        let differs: Vec<&Stale> = stale.iter().filter(|s| matches!(s.problem, Problem::Differs { .. })).collect();
        assert_eq!(differs.len(), 1);
        assert_eq!(differs[0].cell, "openssl/dhe*");
        let as_expected = check(&matrix(), Some(&report(failed(ErrorClass::DhTooSmall), Verdict::ExpectedFailure)));
        assert!(as_expected.iter().all(|s| !matches!(s.problem, Problem::Differs { .. })));
        assert!(render(&[]).contains("every expectation applies"));
    }

    #[test]
    fn recorded_expectations_read_back_as_a_matrix_file() {
        let text = from_report(&report(failed(ErrorClass::DhTooSmall), Verdict::ExpectedFailure));
        assert!(text.contains("# error:0A00018A:SSL routines::dh key too small"), "the stack's words: {text}");
        let source = format!("{}\n{text}", MATRIX.split("[[expect]]").next().unwrap());
        let m = Matrix::parse(Path::new("m.toml"), &source, &Tables::builtin().unwrap()).unwrap();
        let e = m.expected_for("openssl/dhe512");
        assert_eq!(e.outcome, ExpectedOutcome::Failed { class: ErrorClass::DhTooSmall });
        assert_eq!(e.reason, "recorded from run r1");
    }
}
