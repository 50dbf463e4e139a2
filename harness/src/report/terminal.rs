//! The terminal tables (server profiles as rows, client stacks as columns; then "Mail delivery",
//! the senders as columns) and the summary that follows them: verdict counts, wall time, the
//! slowest cells, and every cell that is not as expected — harness errors and unmapped errors
//! loudest. The tables fit the machine they ran on: a stack (or a profile) every cell of which
//! was skipped is left out and named in one line after them, with what installs it; the
//! Markdown and HTML keep every column.

use super::skipped::{Missing, grouped};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use report_format::{Availability, CellReport, DeliveryResult, ErrorClass, Outcome, Report, Section, Verdict};
use std::fmt::Write;
use std::io::IsTerminal;

/// Colour only on a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn colour_of(verdict: Verdict, connected: bool) -> Color {
    match verdict {
        Verdict::Pass | Verdict::ExpectedFailure if connected => Color::Green,
        Verdict::Pass | Verdict::ExpectedFailure => Color::Yellow,
        Verdict::Skipped => Color::DarkGrey,
        Verdict::HarnessError => Color::Magenta,
        Verdict::UnexpectedFailure
        | Verdict::UnexpectedSuccess
        | Verdict::WrongError
        | Verdict::Flaky
        | Verdict::RateExceeded => Color::Red,
    }
}

/// What the terminal tables leave out: the stacks (columns) and the profiles (rows) every cell
/// of which was skipped here, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    pub stacks: Vec<Missing>,
    pub servers: Vec<Missing>,
}

impl Folded {
    /// A column goes when it has cells and all were skipped; a row when its cells under the
    /// remaining columns all were (an MTA not extracted).
    pub fn of(report: &Report) -> Folded {
        let skip_reason = |c: &CellReport| match &c.outcome {
            Outcome::Skipped { reason } => Some(reason.clone()),
            _ => None,
        };
        fn column<'a>(report: &'a Report, id: &'a str) -> impl Iterator<Item = &'a CellReport> {
            report.cells.values().filter(move |c| c.client == id)
        }
        let stacks: Vec<Missing> = report
            .run
            .client_order
            .iter()
            .filter(|id| column(report, id).next().is_some() && column(report, id).all(|c| skip_reason(c).is_some()))
            .map(|id| {
                let reason = match report.clients.get(id).map(|c| &c.readiness) {
                    Some(Availability::Skipped(reason)) => reason.clone(),
                    _ => column(report, id).find_map(skip_reason).unwrap_or_default(),
                };
                Missing { id: id.clone(), reason }
            })
            .collect();
        let servers = report
            .run
            .server_order
            .iter()
            .filter_map(|id| {
                let row: Vec<&CellReport> = report
                    .cells
                    .values()
                    .filter(|c| &c.server == id && !stacks.iter().any(|m| m.id == c.client))
                    .collect();
                let reasons: Vec<String> = row.iter().filter_map(|c| skip_reason(c)).collect();
                (!row.is_empty() && reasons.len() == row.len())
                    .then(|| Missing { id: id.clone(), reason: reasons[0].clone() })
            })
            .collect();
        Folded { stacks, servers }
    }

    fn has_stack(&self, id: &str) -> bool {
        self.stacks.iter().any(|m| m.id == id)
    }

    fn has_server(&self, id: &str) -> bool {
        self.servers.iter().any(|m| m.id == id)
    }

    /// The lines after the tables that name what was left out and what installs it.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        if !self.stacks.is_empty() {
            let _ = writeln!(
                out,
                "not installed here, left out of the table (every cell skipped; README.md and index.html keep them): {}",
                grouped(&self.stacks)
            );
        }
        if !self.servers.is_empty() {
            let _ = writeln!(
                out,
                "server profiles not available here, left out of the table (every cell skipped): {}",
                grouped(&self.servers)
            );
        }
        out
    }
}

/// The tables (one per section, then "Mail delivery"), coloured by verdict when `colour`;
/// stacks and profiles every cell of which was skipped are left out and named after them.
pub fn table(report: &Report, colour: bool) -> String {
    let folded = Folded::of(report);
    let sections: Vec<(&str, Vec<&String>)> = report
        .sections()
        .into_iter()
        .map(|(title, rows)| (title, rows.into_iter().filter(|s| !folded.has_server(s)).collect::<Vec<_>>()))
        .filter(|(_, rows)| !rows.is_empty())
        .collect();
    let programs: Vec<&String> = report.program_columns().into_iter().filter(|c| !folded.has_stack(c)).collect();
    let senders: Vec<&String> = report.sender_columns().into_iter().filter(|c| !folded.has_stack(c)).collect();
    let titled = sections.len() > 1 || !senders.is_empty();
    let mut out = String::new();
    if !programs.is_empty() {
        for (title, rows) in &sections {
            let corner = if titled { title.to_string() } else { "server \\ client".to_string() };
            let mut t = grid(report, &corner, rows, &programs, colour);
            if *title == Section::ClientUpdates.title() {
                t.add_row(hello_row(report, &programs));
            }
            let _ = writeln!(out, "{t}");
        }
    }
    let rows: Vec<&String> = report.run.server_order.iter().filter(|s| !folded.has_server(s)).collect();
    if !senders.is_empty() && !rows.is_empty() {
        let _ = writeln!(out, "{}", grid(report, "Mail delivery: server \\ sender", &rows, &senders, colour));
    }
    out.push_str(&folded.lines());
    out.trim_end().to_string()
}

/// The row under "Client updates that break servers": each stack's ClientHello, as the server
/// read it (why a fault broke it).
fn hello_row(report: &Report, columns: &[&String]) -> Vec<String> {
    let mut row = vec!["(ClientHello as sent)".to_string()];
    row.extend(columns.iter().map(|c| report.client_hello_line(c).unwrap_or_else(|| "-".into())));
    row
}

/// One table: `rows` (server profiles) × `columns` (stacks).
fn grid(report: &Report, corner: &str, rows: &[&String], columns: &[&String], colour: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    let mut header = vec![corner.to_string()];
    header.extend(columns.iter().map(|c| c.to_string()));
    t.set_header(header);
    for s in rows {
        let mut row = vec![Cell::new(s)];
        for c in columns {
            row.push(match report.cell(s, c) {
                Some(cell) => {
                    let text =
                        if cell.verdict.is_as_expected() { cell.label() } else { format!("{} (!)", cell.label()) };
                    if colour { Cell::new(text).fg(colour_of(cell.verdict, secure(cell))) } else { Cell::new(text) }
                }
                None => Cell::new("-"),
            });
        }
        t.add_row(row);
    }
    t
}

/// Whether the cell ended well: connected, or the message delivered over TLS.
fn secure(cell: &CellReport) -> bool {
    match &cell.delivery {
        Some(d) => d.result == DeliveryResult::Tls && d.class.is_none(),
        None => matches!(cell.outcome, Outcome::Connected(_)),
    }
}

/// The summary after the table.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let counts: Vec<String> = report.verdict_counts().iter().map(|(v, n)| format!("{n} {}", v.as_str())).collect();
    let _ = writeln!(
        out,
        "{} cells in {:.2} s wall ({} server profiles at a time, {} cores): {}",
        report.cells.len(),
        report.run.wall_ms as f64 / 1000.0,
        report.run.jobs,
        report.run.cores,
        counts.join(", ")
    );
    let slow: Vec<String> = report.slowest(5).iter().map(|(id, ms)| format!("{id} {ms} ms")).collect();
    let _ = writeln!(out, "slowest: {}", slow.join(", "));
    for (id, c) in report.cells.iter().filter(|(_, c)| !c.verdict.is_as_expected()) {
        let what = match &c.outcome {
            Outcome::Failed { class: ErrorClass::Unmapped, client_error, server_error, .. } => format!(
                "UNMAPPED error text — add it to harness/classify/: client: {client_error}{}",
                server_error.as_ref().map(|s| format!(" | server: {s}")).unwrap_or_default()
            ),
            Outcome::HarnessError { detail } => format!("HARNESS ERROR (we could not run it): {detail}"),
            _ if let Some(d) = &c.delivery => {
                let words = d.attempts.iter().filter_map(|a| a.error.as_deref()).next_back().unwrap_or(&d.queue);
                format!("{} — {}", d.label(), words.replace('\n', " | "))
            }
            Outcome::Failed { class, stage, client_error, .. } => format!("{class} at {stage}: {client_error}"),
            other => other.label(),
        };
        let expected = match c.expected.outcome {
            report_format::ExpectedOutcome::Delivery { .. } => c.expected.outcome.to_string(),
            _ => c.expected.class().map_or_else(|| c.expected.outcome.kind().to_string(), |k| k.to_string()),
        };
        let _ = writeln!(
            out,
            "  {} {id}: {what} (expected {expected}: {})",
            c.verdict.as_str().to_uppercase(),
            c.expected.reason
        );
    }
    if report.run.blind {
        blind_summary(&mut out, report);
    }
    // A handful of cells (a run narrowed to a question): each one's whole story.
    if report.cells.len() <= DETAILED {
        for (id, c) in &report.cells {
            let _ = write!(out, "\n{}", super::cell_text::render(id, c));
        }
    }
    out
}

/// A blind run: how many cells the client's words alone classified as our server's records do,
/// how many coarsened as harness/src/blind.rs allows, and every disagreement (a defect).
fn blind_summary(out: &mut String, report: &Report) {
    use report_format::BlindAgreement;
    let checks: Vec<(&String, &report_format::BlindCheck)> =
        report.cells.iter().filter_map(|(id, c)| Some((id, c.blind_check.as_ref()?))).collect();
    let disagree: Vec<_> = checks.iter().filter(|(_, b)| b.disagrees()).collect();
    let _ = writeln!(
        out,
        "blind: {} cells classified from the client's words as with our servers' records, {} coarsened as harness/src/blind.rs allows, {} disagree",
        report.cells.len() - checks.len(),
        checks.len() - disagree.len(),
        disagree.len()
    );
    for (id, b) in disagree {
        if let BlindAgreement::Disagrees { why } = &b.agreement {
            let _ = writeln!(out, "  BLIND DISAGREES {id}: {why}");
        }
    }
}

/// Up to this many cells, the summary tells each one's story.
const DETAILED: usize = 8;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::skipped::Skipped;
    use serde_json::{Value, json};

    const NOT_EXTRACTED: &str = "postfix is not extracted in /x/.cache/mta/root: run scripts/install-stacks";

    fn client(kind: &str, readiness: Value) -> Value {
        json!({"kind": kind, "program": "p", "args": [], "version": null, "policy": null, "readiness": readiness})
    }

    fn cell(client: &str, server: &str, outcome: Value, verdict: &str) -> (String, Value) {
        let expected = json!({"outcome": "connected", "reason": "no expectation written"});
        let c = json!({"client": client, "server": server, "outcome": outcome, "expected": expected,
                       "verdict": verdict, "duration_ms": 1});
        (format!("{client}/{server}"), c)
    }

    fn skipped(reason: &str) -> Value {
        json!({"kind": "skipped", "reason": reason})
    }

    /// A run on a fresh machine, in small: the built-in `openssl` stack ran; `curl` is not on
    /// PATH, `openssl-3.6` not built, and Postfix not extracted, so its profile and its sender
    /// were skipped whole.
    pub(crate) fn fresh_machine() -> Report {
        let curl = "curl is not installed (not on PATH)";
        let unbuilt = ".cache/openssl/3.6/bin/openssl-client is not built: run scripts/build-openssl-clients";
        let connected = json!({"kind": "connected", "protocol": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "group": "x25519", "dh_bits": null});
        let mut cells = serde_json::Map::new();
        for server in ["x25519", "postfix-default"] {
            let (ran, verdict) =
                if server == "x25519" { (connected.clone(), "pass") } else { (skipped(NOT_EXTRACTED), "skipped") };
            for (client, outcome, verdict) in [
                ("openssl", ran, verdict),
                ("curl", skipped(curl), "skipped"),
                ("openssl-3.6", skipped(unbuilt), "skipped"),
                ("postfix-smtp", skipped(NOT_EXTRACTED), "skipped"),
            ] {
                let (id, c) = cell(client, server, outcome, verdict);
                cells.insert(id, c);
            }
        }
        let profile = |id: &str, backend: &str| json!({"id": id, "description": "", "backend": backend, "min_tls": "1.2", "max_tls": "1.3", "cert": "rsa"});
        serde_json::from_value(json!({
            "schema_version": 1,
            "run": {"id": "20261130T100000Z-0001", "mode": "run", "started": "2026-11-30T10:00:00.000Z", "finished": "f",
                    "wall_ms": 1, "matrix": "m", "tool_versions": {}, "server_order": ["x25519", "postfix-default"],
                    "client_order": ["openssl", "curl", "openssl-3.6", "postfix-smtp"], "jobs": 1, "cores": 1},
            "servers": {"x25519": profile("x25519", "openssl"), "postfix-default": profile("postfix-default", "postfix")},
            "clients": {
                "openssl": client("builtin", json!({"status": "ready"})),
                "curl": client("adapter", json!({"status": "skipped", "reason": curl})),
                "openssl-3.6": client("program", json!({"status": "skipped", "reason": unbuilt})),
                "postfix-smtp": client("sender", json!({"status": "skipped", "reason": NOT_EXTRACTED})),
            },
            "cells": cells,
        }))
        .unwrap()
    }

    #[test]
    fn stacks_and_profiles_skipped_whole_are_folded_into_a_line() {
        let text = table(&fresh_machine(), false);
        let header = text.lines().find(|l| l.contains("server \\ client")).expect(&text);
        assert!(header.contains("openssl") && !header.contains("curl") && !header.contains("openssl-3.6"), "{text}");
        assert!(text.contains("x25519") && text.contains("TLSv1.3 x25519"), "{text}");
        assert!(!text.contains("Mail delivery"), "the only sender was skipped: no delivery table\n{text}");
        assert!(!text.contains("┆ skipped"), "no skipped cell is left in the grid\n{text}");
        let folded: Vec<&str> = text.lines().filter(|l| l.contains("left out of the table")).collect();
        assert_eq!(folded.len(), 2, "{text}");
        assert!(
            folded[0].ends_with(
                "curl, postfix-smtp (scripts/install-stacks installs them); openssl-3.6 (run scripts/build-openssl-clients)"
            ),
            "{}",
            folded[0]
        );
        assert!(folded[1].ends_with("postfix-default (scripts/install-stacks installs it)"), "{}", folded[1]);
    }

    #[test]
    fn a_machine_with_everything_keeps_every_column_and_says_nothing_more() {
        let mut report = fresh_machine();
        report.cells.retain(|id, _| id == "openssl/x25519");
        report.run.client_order.retain(|c| c == "openssl");
        report.run.server_order.retain(|s| s == "x25519");
        let text = table(&report, false);
        assert!(!text.contains("left out"), "{text}");
        assert_eq!(Folded::of(&report), Folded::default());
    }

    #[test]
    fn a_column_with_one_cell_that_ran_stays() {
        let mut report = fresh_machine();
        let c = report.cells.get_mut("curl/x25519").unwrap();
        c.outcome = Outcome::Timeout { after_ms: 10 };
        let folded = Folded::of(&report);
        assert!(!folded.stacks.iter().any(|m| m.id == "curl"), "{folded:?}");
        assert!(table(&report, false).lines().any(|l| l.contains("server \\ client") && l.contains("curl")));
    }

    #[test]
    fn skipped_stacks_and_profiles_are_read_from_the_cells() {
        let s = Skipped::of(&fresh_machine());
        let ids = |m: &[Missing]| m.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&s.stacks), ["curl", "openssl-3.6", "postfix-smtp"]);
        assert_eq!(ids(&s.servers), ["postfix-default"]);
        assert_eq!(s.remedies(), ["scripts/install-stacks", "scripts/build-openssl-clients"]);
    }
}
