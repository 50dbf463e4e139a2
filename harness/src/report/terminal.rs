//! The terminal tables (server profiles as rows, client stacks as columns; then "Mail delivery",
//! the senders as columns) and the summary that follows them: verdict counts, wall time, the
//! slowest cells, and every cell that is not as expected — harness errors and unmapped errors
//! loudest.

use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use report_format::{CellReport, DeliveryResult, ErrorClass, Outcome, Report, Verdict};
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
        Verdict::UnexpectedFailure | Verdict::UnexpectedSuccess | Verdict::WrongError | Verdict::Flaky => Color::Red,
    }
}
use std::fmt::Write;

/// The tables (one per section, then "Mail delivery"), coloured by verdict when `colour`.
pub fn table(report: &Report, colour: bool) -> String {
    let sections = report.sections();
    let programs = report.program_columns();
    let senders = report.sender_columns();
    let titled = sections.len() > 1 || !senders.is_empty();
    let mut out = String::new();
    if !programs.is_empty() {
        for (title, rows) in &sections {
            let corner = if titled { title.to_string() } else { "server \\ client".to_string() };
            let _ = writeln!(out, "{}", grid(report, &corner, rows, &programs, colour));
        }
    }
    if !senders.is_empty() {
        let rows: Vec<&String> = report.run.server_order.iter().collect();
        let _ = writeln!(out, "{}", grid(report, "Mail delivery: server \\ sender", &rows, &senders, colour));
    }
    out.trim_end().to_string()
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
