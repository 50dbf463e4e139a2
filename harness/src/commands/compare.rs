//! `compare --client A --variant B`: run a stack and a policy variant of it against every
//! server profile and print what the variant breaks or fixes. The variant is a matrix entry
//! or is made on the spot from A with `--with-env`, `--with-arg` and `--with-program` (a
//! policy file through OPENSSL_CONF). `compare --candidate openssl=DIR` does it for every stack
//! that uses the library at once, with the loader's proof of what each one loaded
//! ([`harness::candidate`]).

use super::common::{Exit, Format, usage};
use super::run::{execute, jobs};
use anyhow::Context as _;
use harness::classify::Tables;
use harness::diff::Diff;
use harness::judge::Judge;
use harness::matrix::{ClientStack, StackKind};
use harness::plan::Plan;
use harness::runner::RunOptions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// `compare`'s flags.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The client stack as it is; with --candidate, only stacks whose id matches this glob
    /// (repeatable).
    #[arg(long)]
    pub client: Vec<String>,
    /// A candidate build of a TLS library, swapped under every stack that declares it:
    /// openssl=DIR (holding libssl.so.3 and libcrypto.so.3) or gnutls=DIR (libgnutls.so.30).
    #[arg(long, value_name = "LIBRARY=DIR", conflicts_with_all = ["variant", "with_env", "with_args", "with_program"])]
    pub candidate: Option<String>,
    /// A variant declared in the matrix (e.g. `openssl@seclevel1`).
    #[arg(long, visible_alias = "client-variant")]
    pub variant: Option<String>,
    /// Or a variant made here: add KEY=VALUE to the stack's environment (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub with_env: Vec<String>,
    /// Or a variant made here: add an argument to the stack's program (repeatable).
    #[arg(long = "with-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub with_args: Vec<String>,
    /// Or a variant made here: another program speaking the client contract.
    #[arg(long, value_name = "PATH")]
    pub with_program: Option<PathBuf>,
    #[arg(long, default_value = "matrix.toml")]
    pub matrix: PathBuf,
    /// Only server profiles whose id matches this glob (repeatable).
    #[arg(long = "server", value_name = "GLOB")]
    pub servers: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Run the cells of `plan` once, judged by the matrix's expectations with our servers' records:
/// both sides of a comparison in one run.
pub async fn run_both(
    matrix: &Arc<harness::matrix::Matrix>,
    plan: &Plan,
    tables: Arc<Tables>,
    jobs_flag: Option<usize>,
) -> Result<report_format::Report, Exit> {
    let judge = Arc::new(Judge {
        matrix: Some(matrix.clone()),
        baseline: None,
        tables: tables.clone(),
        view: harness::judge::View::Informed,
    });
    let options = RunOptions { jobs: jobs(jobs_flag, matrix), repeat: 1 };
    execute(matrix.clone(), plan, plan, tables, judge, options, None).await
}

pub async fn main(a: CompareArgs, tables: Arc<Tables>) -> Result<i32, Exit> {
    if let Some(candidate) = &a.candidate {
        return super::candidate::main(&a, candidate, tables).await;
    }
    let mut matrix = super::common::load_matrix(&a.matrix, &tables)?;
    let [client] = a.client.as_slice() else {
        return Err(usage(anyhow::anyhow!("compare: give one --client ID (or --candidate LIBRARY=DIR)")));
    };
    let base = matrix
        .client(client)
        .cloned()
        .ok_or_else(|| usage(anyhow::anyhow!("compare: no client stack {client:?} in {}", a.matrix.display())))?;
    let ad_hoc = !a.with_env.is_empty() || !a.with_args.is_empty() || a.with_program.is_some();
    let variant_id = match (&a.variant, ad_hoc) {
        (Some(v), false) => {
            matrix
                .client(v)
                .ok_or_else(|| usage(anyhow::anyhow!("compare: no client stack {v:?} in {}", a.matrix.display())))?;
            v.clone()
        }
        (None, true) => {
            let mut env = base.env.clone();
            for kv in &a.with_env {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| usage(anyhow::anyhow!("compare: --with-env {kv:?} is not KEY=VALUE")))?;
                env.insert(k.to_string(), v.to_string());
            }
            let id = format!("{}@variant", base.id);
            matrix.clients.push(ClientStack {
                id: id.clone(),
                description: format!("{} with {:?} {:?}", base.id, a.with_env, a.with_args),
                // Another program may have no batch mode.
                kind: a
                    .with_program
                    .clone()
                    .map_or(base.kind.clone(), |path| StackKind::Program { path, batch: false }),
                args: base.args.iter().chain(&a.with_args).cloned().collect(),
                env,
                errors: base.errors.clone(),
                variant_of: Some(base.id.clone()),
                policy: None,
                // Another program may link anything.
                library: if a.with_program.is_some() { None } else { base.library },
                library_dir: None,
                cell_timeout: base.cell_timeout,
                requires: base.requires.clone(),
                build: base.build.clone(),
                matrix_dir: base.matrix_dir.clone(),
                line: 0,
            });
            id
        }
        _ => {
            return Err(usage(anyhow::anyhow!(
                "compare: give either --variant ID or --with-env/--with-arg/--with-program"
            )));
        }
    };
    let matrix = Arc::new(matrix);
    let all = Plan::new(&matrix, &a.servers, &[]).context("select server profiles").map_err(usage)?;
    let plan = Plan::with_clients(&all, vec![base.id.clone(), variant_id.clone()]);
    let report = run_both(&matrix, &plan, tables, a.jobs).await?;
    let column = |client: &str| -> BTreeMap<String, harness::diff::Seen> {
        report
            .cells
            .values()
            .filter(|c| c.client == client)
            .map(|c| (format!("{}/{}", base.id, c.server), harness::diff::Seen::cell(c)))
            .collect()
    };
    let diff = Diff::between(
        (&base.id, &column(&base.id)),
        (&variant_id, &column(&variant_id)),
        plan.servers.clone(),
        vec![base.id.clone()],
    );
    super::diff::print(&diff, a.format)?;
    let harness_errors = report.cells.values().any(|c| c.verdict == report_format::Verdict::HarnessError);
    Ok(if harness_errors { report_format::exit::HARNESS_ERROR } else { diff.exit_code() })
}
