//! `diff OLD.json NEW.json`: what changed between two runs; exit 1 if anything broke.

use super::common::{Exit, Format, json, load_report};
use harness::diff::Diff;
use harness::report::diff_view;
use std::path::PathBuf;

/// Print a diff in the chosen format.
pub fn print(diff: &Diff, format: Format) -> Result<(), Exit> {
    match format {
        Format::Table => print!("{}", diff_view::table(diff)),
        Format::Md => print!("{}", diff_view::markdown(diff)),
        Format::Json => println!("{}", json(diff)?),
    }
    Ok(())
}

/// `diff`'s flags.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    pub old: PathBuf,
    pub new: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn main(a: DiffArgs) -> Result<i32, Exit> {
    let diff = Diff::reports(&load_report(&a.old)?, &load_report(&a.new)?);
    print(&diff, a.format)?;
    Ok(diff.exit_code())
}
