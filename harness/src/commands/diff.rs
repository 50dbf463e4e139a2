//! `diff OLD.json NEW.json`: what changed between two runs; exit 1 if anything broke.

use super::common::{Exit, Format, json, load_report};
use harness::diff::Diff;
use harness::report::diff_view;
use std::path::Path;

/// Print a diff in the chosen format.
pub fn print(diff: &Diff, format: Format) -> Result<(), Exit> {
    match format {
        Format::Table => print!("{}", diff_view::table(diff)),
        Format::Md => print!("{}", diff_view::markdown(diff)),
        Format::Json => println!("{}", json(diff)?),
    }
    Ok(())
}

pub fn main(old: &Path, new: &Path, format: Format) -> Result<i32, Exit> {
    let diff = Diff::reports(&load_report(old)?, &load_report(new)?);
    print(&diff, format)?;
    Ok(diff.exit_code())
}
