//! A diff shown as people read it: newly broken cells first, then newly fixed, then changed,
//! then cells in one run only; and the same two-dimensional table as the main one, with every
//! changed cell marked (`✗` broke, `✓` fixed, `~` changed) and showing old → new.

use super::markdown::escape;
use crate::diff::{Change, ChangeKind, Diff};
use std::fmt::Write;

fn mark(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Broken => "✗",
        ChangeKind::Fixed => "✓",
        ChangeKind::Changed => "~",
    }
}

/// The text of one grid cell.
fn cell_text(diff: &Diff, cell: &str) -> String {
    match diff.change(cell) {
        Some(c) => format!("{} {} → {}", mark(c.kind), c.old.label.clone(), c.new.label.clone()),
        None if diff.only_in_old.iter().any(|x| x == cell) => "(gone)".into(),
        None if diff.only_in_new.iter().any(|x| x == cell) => {
            format!("(new) {}", diff.labels.get(cell).cloned().unwrap_or_default())
        }
        None => diff.labels.get(cell).cloned().unwrap_or_else(|| "-".into()),
    }
}

fn section(out: &mut String, title: &str, changes: &[Change], md: bool) {
    if changes.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}{title} ({}):", if md { "### " } else { "" }, changes.len());
    if md {
        out.push('\n');
    }
    for c in changes {
        let (cell, old, new) = if md {
            (format!("`{}`", escape(&c.cell)), escape(&c.old.label), escape(&c.new.label))
        } else {
            (c.cell.clone(), c.old.label.clone(), c.new.label.clone())
        };
        let _ = writeln!(out, "{}{cell}: {old} → {new}", if md { "- " } else { "  " });
    }
    out.push('\n');
}

fn lists(diff: &Diff, md: bool) -> String {
    let mut out = String::new();
    section(&mut out, "newly broken", &diff.newly_broken, md);
    section(&mut out, "newly fixed", &diff.newly_fixed, md);
    section(&mut out, "changed", &diff.changed, md);
    for (title, cells) in [("only in the old run", &diff.only_in_old), ("only in the new run", &diff.only_in_new)] {
        if !cells.is_empty() {
            let _ = writeln!(out, "{}{title} ({}): {}\n", if md { "### " } else { "" }, cells.len(), cells.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "{} broken, {} fixed, {} changed, {} unchanged, {} only old, {} only new",
        diff.newly_broken.len(),
        diff.newly_fixed.len(),
        diff.changed.len(),
        diff.unchanged,
        diff.only_in_old.len(),
        diff.only_in_new.len()
    );
    out
}

/// For the terminal.
pub fn table(diff: &Diff) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    let mut header = vec!["server \\ client".to_string()];
    header.extend(diff.client_order.iter().cloned());
    t.set_header(header);
    for s in &diff.server_order {
        let mut row = vec![s.clone()];
        row.extend(diff.client_order.iter().map(|c| cell_text(diff, &format!("{c}/{s}"))));
        t.add_row(row);
    }
    format!("{} → {}\n{t}\n\n{}", diff.old_run, diff.new_run, lists(diff, false))
}

/// For a README or an issue comment.
pub fn markdown(diff: &Diff) -> String {
    let mut out = format!("## `{}` → `{}`\n\n| server \\ client |", escape(&diff.old_run), escape(&diff.new_run));
    for c in &diff.client_order {
        let _ = write!(out, " {} |", escape(c));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(diff.client_order.len()));
    out.push('\n');
    for s in &diff.server_order {
        let _ = write!(out, "| **{}** |", escape(s));
        for c in &diff.client_order {
            let cell = format!("{c}/{s}");
            let text = escape(&cell_text(diff, &cell));
            let text = if diff.change(&cell).is_some() { format!("**{text}**") } else { text };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out.push_str("\n✗ newly broken, ✓ newly fixed, ~ changed class or parameters.\n\n");
    out.push_str(&lists(diff, true));
    out
}
