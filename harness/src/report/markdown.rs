//! `results/README.md`: the tables a mail admin reads (server profiles as rows, client stacks as
//! columns; then "Mail delivery", real MTAs as senders as columns), the stacks and profiles that
//! ran, and what each failure class means.

use report_format::{ErrorClass, Outcome};
use report_format::{Report, Section};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Make text safe inside a Markdown table cell: no pipes, no markup, one line.
pub fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "'")
        .replace(['\r', '\n'], " ")
}

/// The label of a cell in the table, marked when the verdict is not as expected.
pub fn cell_label(report: &Report, server: &str, client: &str) -> String {
    match report.cell(server, client) {
        Some(c) if c.verdict.is_as_expected() => escape(&c.label()),
        Some(c) => format!("**{}** ❗", escape(&c.label())),
        None => "–".into(),
    }
}

/// A server profile's settings in one line.
pub fn profile_summary(p: &servers::ServerProfile) -> String {
    let tls = if p.min_tls == p.max_tls { p.min_tls.to_string() } else { format!("{}–{}", p.min_tls, p.max_tls) };
    let mut parts = vec![format!("{} backend", p.backend.as_str()), tls];
    if let Some(dh) = p.dh {
        parts.push(format!("DH {} ({} bits)", dh.name(), dh.bits()));
    }
    if let Some(c) = &p.ciphers {
        parts.push(c.join(", "));
    }
    if let Some(g) = &p.groups {
        parts.push(format!("groups {}", g.iter().map(|g| g.name()).collect::<Vec<_>>().join(", ")));
    }
    parts.push(format!("{:?} certificate", p.cert).to_lowercase());
    if let Some(fault) = p.fault {
        parts.push(format!("fault {}", fault.name()));
    }
    if let Some(level) = p.security_level {
        parts.push(format!("openssl.cnf security level {level}"));
    }
    if let Some(dhe) = p.dhe {
        parts.push(format!("pki dhe {}", dhe.as_str()));
    }
    parts.join("; ")
}

/// A table's header and separator lines.
fn header(out: &mut String, corner: &str, columns: &[&String], last: &str) {
    let _ = write!(out, "| {corner} |");
    for c in columns {
        let _ = write!(out, " {} |", escape(c));
    }
    let _ = write!(out, " {last} |\n|---|");
    for _ in columns {
        out.push_str("---|");
    }
    out.push_str("---|\n");
}

/// "Mail delivery": what became of a real message each sender was given for each profile.
fn mail_delivery(out: &mut String, report: &Report) {
    let senders = report.sender_columns();
    if senders.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Mail delivery\n\nEach cell is what became of one real message a real MTA (column) was given for the server profile (row), read from the MTA's own log and queue and checked against the server's records: `TLSv1.2 DHE-2048` delivered over TLS; `plaintext` delivered in clear because STARTTLS was not offered; `plaintext after dh_too_small` delivered in clear after a failed handshake — a silent downgrade; `deferred: dh_too_small` still in the sender's queue after its attempts; `bounced` returned to its sender.\n"
    );
    header(out, "server \\ sender", &senders, "mail arrives");
    for s in &report.run.server_order {
        let _ = write!(out, "| **{}** |", escape(s));
        for c in &senders {
            let _ = write!(out, " {} |", cell_label(report, s, c));
        }
        let _ = writeln!(out, " {} |", escape(&super::summary::deliveries_to(report, s).line("senders")));
    }
    let _ = write!(out, "| *the sender's mail* |");
    for c in &senders {
        let _ = write!(out, " {} |", escape(&super::summary::deliveries_from(report, c).counts("profiles")));
    }
    out.push_str(" |\n\n");
    let _ = writeln!(out, "| sender | what it is | policy |\n|---|---|---|");
    for c in &senders {
        if let Some(info) = report.clients.get(c.as_str()) {
            let settings = info.policy["settings"]
                .as_array()
                .map(|s| s.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join("; "))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| **{}** | {} | {} |",
                escape(c),
                escape(&format!(
                    "{} on {}",
                    info.version.as_deref().unwrap_or("unknown"),
                    info.policy["tls_library_loaded"][0].as_str().unwrap_or("an unknown TLS library")
                )),
                escape(&if settings.is_empty() {
                    info.description.clone()
                } else {
                    format!("{} — {settings}", info.description)
                })
            );
        }
    }
}

/// Render the whole page.
/// The cells that connected but are known to fail a rare encoding, and the rates of repeated
/// cells that did not always do the same thing.
fn rare_and_rates(out: &mut String, report: &Report) {
    let rare: Vec<_> = report.cells.iter().filter(|(_, c)| !c.rare.is_empty()).collect();
    if !rare.is_empty() {
        let _ = writeln!(
            out,
            "\n## Rare failures\n\nThese cells connected, but their stack fails a rare encoding their handshakes meet by chance (a forced profile shows it every time):\n\n| cell | outcome | rare failure |\n|---|---|---|"
        );
        for (id, c) in rare {
            let notes: Vec<String> = c.rare.iter().map(|n| n.summary()).collect();
            let _ =
                writeln!(out, "| `{}` | {} | {} |", escape(id), escape(&c.outcome_label()), escape(&notes.join("; ")));
        }
    }
    let rates: Vec<_> = report.cells.iter().filter_map(|(id, c)| Some((id, c, c.rate.as_ref()?))).collect();
    if !rates.is_empty() {
        let _ = writeln!(
            out,
            "\n## Rates over {} runs a cell\n\n| cell | outcome | rate | verdict |\n|---|---|---|---|",
            report.run.repeat
        );
        for (id, c, rate) in rates {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                escape(id),
                escape(&c.outcome_label()),
                escape(&rate.summary()),
                c.verdict.as_str()
            );
        }
    }
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let r = &report.run;
    let _ = writeln!(out, "# starttls-matrix results\n");
    let _ = writeln!(
        out,
        "Run `{}` ({}), started {}, {} cells in {:.1} s, matrix `{}`.\n",
        escape(&r.id),
        escape(&r.mode),
        escape(&r.started),
        report.cells.len(),
        r.wall_ms as f64 / 1000.0,
        escape(&r.matrix)
    );
    let _ = writeln!(
        out,
        "Each cell is what a real client stack (column) did against a server profile (row): the negotiated protocol and key exchange (`TLSv1.2 DHE-2048`, `TLSv1.3 x25519`), or the error class of the failure. **Bold ❗** marks a cell that did not do what its expectation says.\n"
    );
    let programs = report.program_columns();
    if !programs.is_empty() {
        let sections = report.sections();
        let titled = sections.len() > 1;
        for (i, (title, rows)) in sections.into_iter().enumerate() {
            if titled {
                let _ = writeln!(out, "{}### {title}\n", if i > 0 { "\n" } else { "" });
            }
            header(&mut out, "server \\ client", &programs, "reached by");
            for s in rows {
                let _ = write!(out, "| **{}** |", escape(s));
                for c in &programs {
                    let _ = write!(out, " {} |", cell_label(report, s, c));
                }
                let _ = writeln!(out, " {} |", escape(&super::summary::server(report, s).line()));
            }
            if title == Section::ClientUpdates.title() {
                let _ = write!(out, "| *ClientHello as sent* |");
                for c in &programs {
                    let _ = write!(out, " {} |", escape(&report.client_hello_line(c).unwrap_or_else(|| "–".into())));
                }
                out.push_str(" |\n");
            }
        }
        let _ = write!(out, "| *accepted by the stack* |");
        for c in &programs {
            let _ = write!(out, " {} |", escape(&super::summary::client(report, c).line()));
        }
        out.push_str(" |\n\n");
        let _ = writeln!(
            out,
            "Legend: `TLSv1.2 DHE-2048` connected with that protocol and key exchange; a class name (`dh_too_small`) failed, explained below; `unsupported` the stack cannot express the cell; `skipped` the stack is not installed; `HARNESS ERROR` we could not run the cell; **bold ❗** not as expected. The page `index.html` beside this file has every cell's details."
        );
    }
    mail_delivery(&mut out, report);

    let _ = writeln!(out, "\n## Verdicts\n");
    for (v, n) in report.verdict_counts() {
        let _ = writeln!(out, "- {}: {n}", v.as_str());
    }

    let unexpected: Vec<_> = report.cells.iter().filter(|(_, c)| !c.verdict.is_as_expected()).collect();
    if !unexpected.is_empty() {
        let _ = writeln!(
            out,
            "\n## Not as expected\n\n| cell | verdict | outcome | expected | detail |\n|---|---|---|---|---|"
        );
        for (id, c) in unexpected {
            let detail = match &c.outcome {
                Outcome::Failed { client_error, server_error, .. } => {
                    format!(
                        "client: {}{}",
                        client_error,
                        server_error.as_ref().map(|s| format!("; server: {s}")).unwrap_or_default()
                    )
                }
                Outcome::HarnessError { detail } => detail.clone(),
                other => other.label(),
            };
            let expected = c.expected.outcome.to_string();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} ({}) | {} |",
                escape(id),
                c.verdict.as_str(),
                escape(&c.outcome.label()),
                escape(&expected),
                escape(&c.expected.reason),
                escape(&detail)
            );
        }
    }

    rare_and_rates(&mut out, report);

    let mut classes: BTreeMap<ErrorClass, Vec<&str>> = BTreeMap::new();
    for (id, c) in &report.cells {
        if let Outcome::Failed { class, .. } = &c.outcome {
            classes.entry(*class).or_default().push(id);
        }
    }
    if !classes.is_empty() {
        let _ = writeln!(
            out,
            "\n## What the failures mean\n\n| class | what happened | what to do | cells |\n|---|---|---|---|"
        );
        for (class, cells) in classes {
            let _ = writeln!(out, "| `{}` | {} | {} | {} |", class, class.explanation(), class.remedy(), cells.len());
        }
    }

    let _ = writeln!(out, "\n## Client stacks\n\n| id | version | policy | status |\n|---|---|---|---|");
    for id in &r.client_order {
        if let Some(c) = report.clients.get(id) {
            let status = match &c.readiness {
                report_format::Availability::Ready => "ready".to_string(),
                other => other.to_string(),
            };
            let _ = writeln!(
                out,
                "| **{}** | {} | `{}` | {} |",
                escape(id),
                escape(c.version.as_deref().unwrap_or("unknown")),
                escape(&c.policy.to_string()),
                escape(&status)
            );
        }
    }
    let _ = writeln!(out, "\n## Server profiles\n\n| id | settings | stands for |\n|---|---|---|");
    for id in &r.server_order {
        if let Some(p) = report.servers.get(id) {
            let mut settings = profile_summary(p);
            if let Some(run) = report.server_run_summary(id) {
                settings = format!("{settings} — {run}");
            }
            let _ = writeln!(out, "| **{}** | {} | {} |", escape(id), escape(&settings), escape(&p.description));
        }
    }
    let _ = writeln!(
        out,
        "\nTools: {}",
        escape(&r.tool_versions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("; "))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_table_breakers_and_markup() {
        assert_eq!(escape("a|b<script>\nc"), "a\\|b&lt;script&gt; c");
    }
}
