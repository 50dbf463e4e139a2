//! `list`: the cells of the matrix (or a selection, or a shard), one id per line.

use super::common::{Exit, Format, json, load_matrix, usage};
use super::run::Select;
use anyhow::Context as _;
use harness::classify::Tables;
use harness::plan::Plan;
use harness::shard::Shard;

/// `list`'s flags.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub select: Select,
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn main(a: ListArgs, tables: &Tables) -> Result<i32, Exit> {
    let matrix = load_matrix(&a.select.matrix, tables)?;
    let plan = Plan::new(&matrix, &a.select.servers, &a.select.clients).context("select cells").map_err(usage)?;
    let plan = a.shard.map_or(plan.clone(), |s| s.apply(&plan));
    let ids: Vec<String> = plan.cells.iter().map(ToString::to_string).collect();
    match a.format {
        Format::Json => println!("{}", json(&ids)?),
        Format::Table | Format::Md => ids.iter().for_each(|id| println!("{id}")),
    }
    Ok(0)
}
