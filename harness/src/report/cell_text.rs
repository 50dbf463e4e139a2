//! One cell in plain text, for a terminal: what happened and in whose words — for a sender, the
//! message's fate, each attempt with the sender's words and the server's record of the same
//! connection, the sender's own log lines and what its queue said at the end.

use report_format::{CellReport, DeliveryAttempt, Outcome};
use std::fmt::Write;

/// The whole story of one cell.
pub fn render(id: &str, cell: &CellReport) -> String {
    let mut out = format!("{id}: {} — {}\n", cell.label(), cell.verdict.as_str());
    let _ = writeln!(out, "  expected: {} ({})", cell.expected.outcome, cell.expected.reason);
    match &cell.outcome {
        Outcome::Failed { class, side, stage, client_error, server_error } if cell.delivery.is_none() => {
            let _ = writeln!(out, "  {class} at {stage}, refused by {side:?}: {}", class.explanation());
            let _ = writeln!(out, "  client said: {}", indent(client_error));
            if let Some(s) = server_error {
                let _ = writeln!(out, "  server said: {}", indent(s));
            }
        }
        Outcome::HarnessError { detail } => {
            let _ = writeln!(out, "  HARNESS ERROR (we could not run or judge it): {}", indent(detail));
        }
        Outcome::Unsupported { reason } | Outcome::Skipped { reason } => {
            let _ = writeln!(out, "  {}: {}", cell.outcome.kind(), indent(reason));
        }
        _ => {}
    }
    for hello in cell.client_hellos() {
        let _ = writeln!(out, "  the server read: {hello}");
    }
    for choice in cell.encodings() {
        let _ = writeln!(out, "  the server chose: {choice}");
    }
    if let Some(rate) = &cell.rate {
        let _ = writeln!(out, "  over {} runs: {}", rate.runs, rate.summary());
    }
    if let Some(t) = cell.expected.rare {
        let _ = writeln!(out, "  tolerated: {} about 1 run in {}", t.class, t.one_in);
    }
    for note in &cell.rare {
        let _ = writeln!(out, "  rare: {}", note.summary());
    }
    if !cell.left_to_chance.is_empty() {
        let cases: Vec<&str> = cell.left_to_chance.iter().map(|c| c.words()).collect();
        let _ = writeln!(out, "  left to chance (the server does not choose): {}", cases.join("; "));
    }
    if let Some(d) = &cell.delivery {
        let _ = writeln!(out, "  the message: {}", d.result.explanation());
        if let Some(class) = d.class {
            let _ = writeln!(out, "  {class}: {} — {}", class.explanation(), class.remedy());
        }
        for (i, a) in d.attempts.iter().enumerate() {
            let _ = writeln!(out, "  attempt {}: {}", i + 1, attempt(a));
        }
        if !d.timeline.is_empty() {
            let _ = writeln!(out, "  timeline:");
            for s in &d.timeline {
                let _ = writeln!(out, "    {:>6} ms  {}", s.at_ms, s.what);
            }
        }
        let _ = writeln!(out, "  sender's log:");
        for line in &d.sender_log {
            let _ = writeln!(out, "    {line}");
        }
        let _ = writeln!(out, "  queue at the end: {}", indent(&d.queue));
    }
    out
}

fn attempt(a: &DeliveryAttempt) -> String {
    let mut parts = Vec::new();
    if !a.connected {
        parts.push("no connection (decided by the sender's queue manager)".to_string());
    }
    parts.push(match (&a.tls, a.tls_tried) {
        (Some(n), _) => format!("over TLS ({})", n.label()),
        (None, Some(true)) => "STARTTLS tried, no TLS".into(),
        (None, Some(false)) => "in clear".into(),
        (None, None) => "TLS not said".into(),
    });
    if let Some(class) = a.class {
        parts.push(class.to_string());
    }
    let mut text = parts.join(", ");
    if let Some(e) = &a.error {
        let _ = write!(text, "\n      sender said: {}", e.replace('\n', "\n        "));
    }
    if !a.status.is_empty() && a.error.as_deref() != Some(a.status.as_str()) {
        let _ = write!(text, "\n      status: {}", a.status);
    }
    if let Some(r) = &a.server {
        let tls = r.tls.as_ref().map_or_else(|| "no TLS".to_string(), |n| n.label());
        let messages = r.messages.map_or_else(|| "messages not logged".to_string(), |m| format!("{m} message(s)"));
        let _ = write!(text, "\n      server recorded: {} {tls}, {messages}", r.peer.as_deref().unwrap_or("?"));
        if let Some(e) = &r.error {
            let _ = write!(text, "; it said: {}", e.replace('\n', " | "));
        }
        if let Some(f) = &r.refusal {
            let _ = write!(text, "; it refused at {}: {}", f.stage, f.reply);
        }
    }
    text
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n    ")
}
