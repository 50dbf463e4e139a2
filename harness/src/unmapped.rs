//! `--record-unmapped`: every error text no table knew, from a report, written out as draft rules
//! for the table that should know it — the stack, the cell, the stage and the exact words, ready
//! to be given a class and moved into `harness/classify/`.

use report_format::{ErrorClass, Outcome, Report, Stage};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One text no table knew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// The table that should have known it (the stack's, `harness/classify/NAME.toml`).
    pub table: String,
    pub stage: Option<Stage>,
    /// The stack's words, verbatim.
    pub text: String,
    /// What the server said of the same connection, if it said anything.
    pub server_text: Option<String>,
    /// Every cell it came from.
    pub cells: Vec<String>,
}

/// Every unmapped text of a report, once per table, stage and text, in table order.
pub fn collect(report: &Report) -> Vec<Unmapped> {
    let mut found: BTreeMap<(String, Option<Stage>, String), Unmapped> = BTreeMap::new();
    let mut note = |table: &str, stage: Option<Stage>, text: &str, server_text: Option<&String>, cell: &str| {
        let table = if table.is_empty() { "common" } else { table };
        let entry = found.entry((table.to_string(), stage, text.to_string())).or_insert_with(|| Unmapped {
            table: table.to_string(),
            stage,
            text: text.to_string(),
            server_text: server_text.cloned(),
            cells: Vec::new(),
        });
        entry.cells.push(cell.to_string());
    };
    for (id, cell) in &report.cells {
        let table = report.clients.get(&cell.client).map_or("", |c| c.errors.as_str());
        if let Outcome::Failed { class: ErrorClass::Unmapped, stage, client_error, server_error, .. } = &cell.outcome {
            note(table, Some(*stage), client_error, server_error.as_ref(), id);
        }
        for attempt in cell.delivery.iter().flat_map(|d| &d.attempts) {
            if let (Some(ErrorClass::Unmapped), Some(error)) = (attempt.class, &attempt.error) {
                note(table, None, error, None, id);
            }
        }
    }
    found.into_values().collect()
}

/// The texts as draft `[[rule]]` entries, each headed by the table it belongs in.
pub fn render(report: &Report, texts: &[Unmapped]) -> String {
    let mut out = format!(
        "# Error texts no classification table knew, from {} run {} (--record-unmapped).\n\
         # Each is a draft rule: give it its class and side, narrow its pattern if the text carries\n\
         # details that vary, and move it into the table named above it.\n",
        report.run.mode, report.run.id
    );
    if texts.is_empty() {
        out.push_str("# None: every text was known.\n");
    }
    for u in texts {
        let _ = writeln!(out, "\n# harness/classify/{}.toml — {}", u.table, u.cells.join(", "));
        if let Some(server) = &u.server_text {
            let _ = writeln!(out, "# the server said: {}", one_line(server));
        }
        let _ = writeln!(out, "[[rule]]");
        let _ = writeln!(out, "pattern = {}", quote(&regex::escape(&first_line(&u.text))));
        let _ = writeln!(out, "class = \"unmapped\"");
        let _ = writeln!(out, "side = \"unknown\"");
        if let Some(stage) = u.stage {
            let _ = writeln!(out, "stage = [\"{stage}\"]");
        }
        let _ = writeln!(out, "examples = [{}]", quote(&u.text));
    }
    out
}

/// The first line that says something, at most 120 characters.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().take(120).collect()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::{CellReport, ClientInfo, Expected, ExpectedOutcome, Side, Verdict};

    fn report(texts: &[(&str, &str)]) -> Report {
        let mut r: Report = serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "run": {"id": "r1", "mode": "run", "started": "", "finished": "", "wall_ms": 1, "matrix": "m.toml",
                "tool_versions": {}, "server_order": [], "client_order": [], "jobs": 1, "cores": 1},
            "servers": {}, "clients": {}, "cells": {}
        }))
        .expect("a minimal report");
        for (i, (client, text)) in texts.iter().enumerate() {
            r.clients.insert(
                client.to_string(),
                ClientInfo {
                    kind: "builtin".into(),
                    program: client.to_string(),
                    args: vec![],
                    env: Default::default(),
                    description: String::new(),
                    version: None,
                    policy: serde_json::Value::Null,
                    readiness: report_format::Availability::Ready,
                    errors: client.to_string(),
                },
            );
            r.cells.insert(
                format!("{client}/s{i}"),
                CellReport {
                    client: client.to_string(),
                    server: format!("s{i}"),
                    outcome: Outcome::Failed {
                        class: ErrorClass::Unmapped,
                        side: Side::Unknown,
                        stage: Stage::Handshake,
                        client_error: text.to_string(),
                        server_error: Some("no shared cipher".into()),
                    },
                    expected: Expected::new(ExpectedOutcome::Connected, "r"),
                    verdict: Verdict::UnexpectedFailure,
                    duration_ms: 1,
                    server_log: vec![],
                    repeats: vec![],
                    delivery: None,
                    blind_check: None,
                    rate: None,
                    rare: Vec::new(),
                    left_to_chance: Vec::new(),
                },
            );
        }
        r
    }

    #[test]
    fn each_text_once_with_its_cells_as_a_draft_rule_that_loads_and_decides() {
        let text = "error:0A0000FF:SSL routines::a \"new\" failure (x+y)\nsecond line";
        let r = report(&[("openssl", text), ("openssl", text), ("rustls", "Io(Custom)")]);
        let found = collect(&r);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].table, "openssl");
        assert_eq!(found[0].cells, ["openssl/s0", "openssl/s1"]);
        let drafts = render(&r, &found);
        assert!(drafts.contains("# harness/classify/openssl.toml"), "{drafts}");
        // Each draft, given a class, is a rule the tables accept and that decides its own text.
        let openssl = drafts.split("\n# harness/classify/").nth(1).unwrap();
        let rule = openssl.split_once('\n').unwrap().1.replace("class = \"unmapped\"", "class = \"handshake_failure\"");
        let table: toml::Table = toml::from_str(&rule).expect("the draft is TOML");
        let draft = &table["rule"][0];
        let pattern = regex::Regex::new(draft["pattern"].as_str().unwrap()).unwrap();
        assert!(pattern.is_match(text));
        assert_eq!(draft["examples"][0].as_str(), Some(text));
        assert_eq!(draft["stage"][0].as_str(), Some("handshake"));
    }

    #[test]
    fn a_report_without_unknown_words_says_so() {
        let r = report(&[]);
        assert!(render(&r, &collect(&r)).contains("None: every text was known."));
    }
}
