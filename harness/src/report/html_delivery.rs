//! The page's "Mail delivery" section: server profiles × senders, each cell coloured by what
//! became of the message (over TLS, in clear, in clear after a TLS failure, stuck, returned) and
//! opening to its attempts — each connection with the sender's words and the server's record of
//! it — the sender's own log lines and its queue at the end.

use super::html::{cell_classes, compact, dl_row, esc, policy_text};
use super::summary;
use crate::diff::Diff;
use report_format::{CellReport, Delivery, DeliveryAttempt, DeliveryResult, Outcome, Report};
use std::fmt::Write;

/// The section, if the run had senders.
pub fn section(out: &mut String, report: &Report, since: Option<&Diff>) {
    let senders = report.sender_columns();
    if senders.is_empty() {
        return;
    }
    out.push_str("<section id=\"mail-delivery\"><h2>Mail delivery</h2>\n<p>Each cell is what became of one real message a real MTA (column) was given for the server profile (row), read from the MTA's own log and queue and checked against the server's records. <span class=\"d-tls\">delivered over TLS</span> <span class=\"d-plaintext\">delivered in clear: no STARTTLS</span> <span class=\"d-plaintext_fallback\">delivered in clear after a TLS failure: a silent downgrade</span> <span class=\"d-deferred\">still in the sender's queue</span> <span class=\"d-bounced\">returned to its sender</span></p>\n");
    out.push_str("<table id=\"delivery\"><thead><tr><th>server \\ sender</th>");
    for c in &senders {
        let info = report.clients.get(c.as_str());
        let version = info.and_then(|i| i.version.clone()).unwrap_or_else(|| "version unknown".into());
        let policy = info.map(|i| format!("{}\n{}", i.description, policy_text(&i.policy))).unwrap_or_default();
        let _ = write!(
            out,
            "<th class=\"client\">{}<small>{}</small><details><summary>policy</summary><pre>{}</pre></details></th>",
            esc(c),
            esc(&version),
            esc(&policy)
        );
    }
    out.push_str("<th>mail arrives</th></tr></thead>\n<tbody>\n");
    for s in &report.run.server_order {
        let description = report.servers.get(s).map(|p| p.description.as_str()).unwrap_or("");
        let _ = write!(out, "<tr><th class=\"server\">{}<small>{}</small></th>", esc(s), esc(description));
        for c in &senders {
            let id = format!("{c}/{s}");
            match report.cells.get(&id) {
                Some(cell) => delivery_cell(out, &id, cell, since),
                None => out.push_str("<td class=\"cell o-none\">–</td>"),
            }
        }
        let _ = writeln!(
            out,
            "<td class=\"summary\">{}</td></tr>",
            esc(&summary::deliveries_to(report, s).line("senders"))
        );
    }
    out.push_str("</tbody>\n<tfoot><tr><th>the sender's mail</th>");
    for c in &senders {
        let _ = write!(out, "<td>{}</td>", esc(&summary::deliveries_from(report, c).counts("profiles")));
    }
    out.push_str("<td></td></tr></tfoot></table></section>\n");
}

fn delivery_cell(out: &mut String, id: &str, cell: &CellReport, since: Option<&Diff>) {
    let mut classes = cell_classes(cell);
    if let Some(d) = &cell.delivery {
        let _ = write!(classes, " d-{}", d.result);
    }
    let change = since.and_then(|d| d.change(id)).map(|ch| (&ch.old.label, ch.kind));
    if let Some((_, kind)) = change {
        let _ = write!(classes, " ch-{}", format!("{kind:?}").to_lowercase());
    }
    let title = cell.delivery.as_ref().map_or_else(|| cell.outcome.label(), |d| d.result.explanation().to_string());
    let _ = write!(
        out,
        "<td class=\"{}\" id=\"{}\" data-outcome=\"{}\" data-verdict=\"{}\" title=\"{}\"><details><summary>{}</summary><dl>",
        esc(&classes),
        esc(id),
        esc(cell.outcome.kind()),
        esc(cell.verdict.as_str()),
        esc(&title),
        esc(&compact(&cell.label()))
    );
    match &cell.delivery {
        Some(d) => delivery_details(out, d),
        None => match &cell.outcome {
            Outcome::Unsupported { reason } | Outcome::Skipped { reason } => dl_row(out, "why", reason),
            Outcome::HarnessError { detail } => dl_row(out, "we could not run it", detail),
            other => dl_row(out, "outcome", &other.label()),
        },
    }
    if let Outcome::HarnessError { detail } = &cell.outcome
        && cell.delivery.is_some()
    {
        dl_row(out, "we could not judge it", detail);
    }
    dl_row(out, "duration", &format!("{} ms", cell.duration_ms));
    dl_row(out, "expected", &format!("{} ({})", cell.expected.outcome, cell.expected.reason));
    dl_row(out, "verdict", cell.verdict.as_str());
    if let Some((old, kind)) = change {
        dl_row(out, "previous run", &format!("{old} ({kind:?})").to_lowercase());
    }
    out.push_str("</dl></details></td>");
}

fn delivery_details(out: &mut String, d: &Delivery) {
    dl_row(out, "the message", d.result.explanation());
    if !d.settled && d.result == DeliveryResult::Deferred {
        dl_row(out, "note", "the sender was still trying when the cell ended");
    }
    if let Some(class) = d.class {
        dl_row(out, "class", class.as_str());
        dl_row(out, "meaning", class.explanation());
        dl_row(out, "remedy", class.remedy());
    }
    for (i, a) in d.attempts.iter().enumerate() {
        dl_row(out, &format!("attempt {}", i + 1), &attempt_text(a));
    }
    if !d.timeline.is_empty() {
        let steps: Vec<String> = d.timeline.iter().map(|s| format!("{} ms  {}", s.at_ms, s.what)).collect();
        dl_row(out, "timeline", &steps.join("\n"));
    }
    dl_row(out, "sender's log", &d.sender_log.join("\n"));
    dl_row(out, "queue at the end", &d.queue);
}

/// One attempt in words: what the sender did and said, and what the server recorded.
fn attempt_text(a: &DeliveryAttempt) -> String {
    let mut lines = Vec::new();
    if !a.connected {
        lines.push("no connection (the sender's queue manager decided)".to_string());
    }
    lines.push(match (a.tls_tried, &a.tls) {
        (_, Some(n)) => format!("over TLS: {} {}", n.label(), n.cipher.as_deref().unwrap_or("")),
        (Some(true), None) => "STARTTLS tried, no TLS".to_string(),
        (Some(false), None) => "in clear".to_string(),
        (None, None) => "TLS not said".to_string(),
    });
    if let Some(class) = a.class {
        lines.push(format!("class: {class}"));
    }
    if let Some(e) = &a.error {
        lines.push(format!("sender said: {e}"));
    }
    if !a.status.is_empty() {
        lines.push(format!("status: {}", a.status));
    }
    if let Some(r) = &a.server {
        let tls = r.tls.as_ref().map_or_else(|| "no TLS".to_string(), |n| n.label());
        let messages = r.messages.map_or_else(|| "messages not logged".to_string(), |m| format!("{m} message(s)"));
        lines.push(format!("server recorded: {} — {tls}, {messages}", r.peer.as_deref().unwrap_or("?")));
        if let Some(e) = &r.error {
            lines.push(format!("server said: {e}"));
        }
        if let Some(f) = &r.refusal {
            lines.push(format!("server refused at {}: {}", f.stage, f.reply));
        }
    }
    lines.join("\n")
}
