//! `report REPORT.json [--html FILE] [--md FILE] [--previous OLD.json] [--cell GLOB]`: the
//! published tables from a report, without running anything, or the whole story of some cells.

use super::common::{Exit, Format, harness, load_report, print_report, usage};
use harness::diff::Diff;
use harness::report::{cell_text, html, markdown, write};
use std::path::PathBuf;

/// `report`'s flags.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    pub report: PathBuf,
    /// Write the HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the Markdown table here.
    #[arg(long, value_name = "FILE")]
    pub md: Option<PathBuf>,
    /// Mark what changed since this earlier report.
    #[arg(long, value_name = "REPORT")]
    pub previous: Option<PathBuf>,
    /// What to print when no file is asked for.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Print the cells whose id matches this glob in full instead: both sides' words, and for a
    /// sender each attempt, its log and its queue (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub cell: Vec<String>,
}

pub fn main(a: ReportArgs) -> Result<i32, Exit> {
    let report = load_report(&a.report)?;
    if !a.cell.is_empty() {
        let mut globs = globset::GlobSetBuilder::new();
        for g in &a.cell {
            globs.add(globset::Glob::new(g).map_err(|e| usage(anyhow::anyhow!("report --cell {g:?}: {e}")))?);
        }
        let globs = globs.build().map_err(|e| usage(anyhow::anyhow!("report --cell: {e}")))?;
        let cells: Vec<_> = report.cells.iter().filter(|(id, _)| globs.is_match(id.as_str())).collect();
        if cells.is_empty() {
            return Err(usage(anyhow::anyhow!(
                "report --cell: no cell of {} matches {:?}",
                a.report.display(),
                a.cell
            )));
        }
        for (id, c) in cells {
            println!("{}", cell_text::render(id, c));
        }
        return Ok(0);
    }
    let since = a.previous.as_deref().map(load_report).transpose()?.map(|p| Diff::reports(&p, &report));
    if let Some(path) = &a.html {
        write::atomic(path, html::render(&report, since.as_ref()).as_bytes()).map_err(harness)?;
    }
    if let Some(path) = &a.md {
        write::atomic(path, markdown::render(&report).as_bytes()).map_err(harness)?;
    }
    if a.html.is_none() && a.md.is_none() {
        print_report(&report, a.format)?;
    }
    Ok(0)
}
