//! `fuzz --cases N --seed S`: generated server profiles against the chosen client stacks,
//! judged by each stack's declared policy; findings are shrunk and written as replayable
//! matrices under `results/fuzz/`.

use super::common::{Exit, Format, harness, json, load_matrix, usage};
use anyhow::Context as _;
use harness::classify::Tables;
use harness::fuzz::{self, Diagnosis, StackSummary};
use harness::oracle::Policy;
use harness::report::write;
use harness::runner::{self, Context};
use std::path::PathBuf;
use std::sync::Arc;

/// `fuzz`'s flags.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    #[arg(long, default_value = "matrix.toml")]
    pub matrix: PathBuf,
    /// Only client stacks whose id matches this glob (repeatable); default: all with a policy.
    #[arg(long = "client", value_name = "GLOB")]
    pub clients: Vec<String>,
    /// Generated profiles per client stack.
    #[arg(long, default_value_t = 100)]
    pub cases: u32,
    /// The seed: the same seed generates the same profiles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Judge CLIENT by this policy file instead of its declared one (repeatable).
    #[arg(long = "policy", value_name = "CLIENT=FILE")]
    pub policies: Vec<String>,
    /// Where replayable findings are written.
    #[arg(long, default_value = "results/fuzz")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn main(a: FuzzArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    let rt = tokio::runtime::Runtime::new().context("start the async runtime").map_err(harness)?;
    let matrix = load_matrix(&a.matrix, &tables)?;
    let mut policies = Policy::builtin().context("load the shipped policies").map_err(harness)?;
    let mut overrides = std::collections::BTreeMap::new();
    for spec in &a.policies {
        let (client, file) =
            spec.split_once('=').ok_or_else(|| usage(anyhow::anyhow!("fuzz: --policy {spec:?} is not CLIENT=FILE")))?;
        let policy = Policy::load(std::path::Path::new(file)).context("load --policy").map_err(usage)?;
        let name = format!("file:{file}");
        policies.insert(name.clone(), policy);
        overrides.insert(client.to_string(), name);
    }
    let globs = super::common::client_globs(&a.clients)?;
    let stacks: Vec<(harness::matrix::ClientStack, String)> = matrix
        .clients
        .iter()
        .filter(|c| globs.is_empty() || globs.iter().any(|g| g.is_match(&c.id)))
        .filter_map(|c| overrides.get(&c.id).cloned().or_else(|| c.policy.clone()).map(|p| (c.clone(), p)))
        .collect();
    if stacks.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "fuzz: no selected client stack declares a policy (`policy = \"…\"` in the matrix, or --policy CLIENT=FILE)"
        )));
    }
    let exe = runner::builtin_exe().context("find the starttls-matrix binary").map_err(harness)?;
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let ids: Vec<String> = stacks.iter().map(|(s, _)| s.id.clone()).collect();
    let ctx = rt
        .block_on(Context::prepare(&matrix, &ids, tables, &exe, &events))
        .context("prepare the run")
        .map_err(harness)?;
    let mut summaries: Vec<StackSummary> = Vec::new();
    for (stack, policy_name) in &stacks {
        eprintln!("fuzzing {} against policy {policy_name}: {} cases, seed {}", stack.id, a.cases, a.seed);
        let summary = fuzz::fuzz_stack(&rt, &ctx, stack, policy_name, &policies[policy_name], a.cases, a.seed);
        for f in &summary.findings {
            let path = a.out.join(format!("{}.toml", f.id));
            write::atomic(&path, fuzz::replay_matrix(f, stack).as_bytes()).map_err(harness)?;
        }
        summaries.push(summary);
    }
    match a.format {
        Format::Json => println!("{}", json(&summaries)?),
        Format::Table | Format::Md => {
            for s in &summaries {
                println!(
                    "{}: {} cases, {} as the policy {} predicts, {} not judged, {} finding(s)",
                    s.client,
                    s.cases,
                    s.agreed,
                    s.policy,
                    s.unjudged,
                    s.findings.len()
                );
                for f in &s.findings {
                    let what = match &f.diagnosis {
                        Diagnosis::PolicyWrong { field } => format!("the declared policy is wrong: check `{field}`"),
                        Diagnosis::Inconsistent { outcomes } => {
                            format!("the stack is inconsistent: {}", outcomes.join(" / "))
                        }
                    };
                    println!(
                        "  {}: predicted {:?} ({}), observed {} — {what}\n    minimal profile: {}\n    replay: starttls-matrix run --matrix {}",
                        f.id,
                        f.predicted.outcome,
                        f.predicted.because,
                        f.observed.label(),
                        harness::report::markdown::profile_summary(&f.profile),
                        a.out.join(format!("{}.toml", f.id)).display()
                    );
                }
            }
        }
    }
    Ok(i32::from(summaries.iter().any(|s| !s.findings.is_empty())))
}
