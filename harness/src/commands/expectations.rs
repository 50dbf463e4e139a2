//! `expectations --check` (stale entries: matching nothing, shadowed, or contradicted by a
//! run) and `expectations --from REPORT` (entries recorded from a run, to edit).

use super::common::{Exit, Format, harness, json, load_matrix, load_report, usage};
use super::run::{execute, jobs};
use anyhow::Context as _;
use harness::classify::Tables;
use harness::expectations::{self, Judge};
use harness::plan::Plan;
use harness::runner::RunOptions;
use std::path::PathBuf;
use std::sync::Arc;

/// What `expectations` was asked.
pub struct ExpectationsArgs {
    pub matrix: PathBuf,
    pub check: bool,
    pub report: Option<PathBuf>,
    pub from: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub format: Format,
}

pub async fn main(a: ExpectationsArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    if let Some(from) = &a.from {
        let text = expectations::from_report(&load_report(from)?);
        match &a.output {
            Some(path) => harness::report::write::atomic(path, text.as_bytes()).map_err(harness)?,
            None => print!("{text}"),
        }
        return Ok(0);
    }
    if !a.check {
        return Err(usage(anyhow::anyhow!("expectations: say --check or --from REPORT")));
    }
    let matrix = Arc::new(load_matrix(&a.matrix, &tables)?);
    let report = match &a.report {
        Some(path) => load_report(path)?,
        None => {
            let plan = Plan::new(&matrix, &[], &[]).context("plan the matrix").map_err(usage)?;
            let judge = Arc::new(Judge { matrix: matrix.clone(), baseline: None });
            let options = RunOptions { jobs: jobs(None, &matrix), repeat: 1 };
            execute(matrix.clone(), &plan, &plan, tables, judge, options, None).await?
        }
    };
    let stale = expectations::check(&matrix, Some(&report));
    match a.format {
        Format::Json => println!("{}", json(&stale)?),
        Format::Table | Format::Md => print!("{}", expectations::render(&stale)),
    }
    Ok(i32::from(!stale.is_empty()))
}
