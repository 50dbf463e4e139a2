//! The default matrix as a test target: one trial per cell of `matrix.toml` — client programs'
//! cells and senders' delivery cells alike — judged against its expectation. `--list` and
//! `--exact` are cheap: nothing starts until a trial runs; each server profile then starts once
//! and serves its cells one at a time, and is stopped at the end, as are the senders. As in a
//! run, the first delivery trial of a profile delivers every sender's message to it at once;
//! the profile's other delivery trials judge their share.
//!
//! A cell whose stack or MTA is not installed here (a program not on PATH or not built, an MTA
//! not extracted: `harness::availability`, from the files alone) is listed as ignored, the reason
//! in its kind (`[openssl; skipped: curl is not installed (not on PATH)] curl/dhe512`), and does
//! not run; `--include-ignored` runs it anyway. A cell that turns out skipped only when run (an
//! MTA that needs namespaces this machine refuses) is reported ignored with the reason too —
//! never as a pass.

use harness::classify::Tables;
use harness::evidence::CellRun;
use harness::judge::Judge;
use harness::matrix::Matrix;
use harness::plan::{CellId, Plan};
use harness::runner::{Context, ServerState};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

struct Shared {
    rt: tokio::runtime::Runtime,
    matrix: Arc<Matrix>,
    tables: Arc<Tables>,
    clients: Vec<String>,
    ctx: OnceLock<Result<Context, String>>,
    servers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<ServerState>>>>>,
    /// Per profile, the delivery cells' evidence not yet judged.
    deliveries: Mutex<HashMap<String, HashMap<CellId, CellRun>>>,
    /// Every cell of the plan, to find a profile's delivery cells.
    cells: Vec<CellId>,
}

impl Shared {
    fn run(&self, id: &CellId) -> Result<Completion, Failed> {
        let ctx = self
            .ctx
            .get_or_init(|| {
                let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
                let exe = Path::new(env!("CARGO_BIN_EXE_starttls-matrix"));
                self.rt
                    .block_on(Context::prepare(&self.matrix, &self.clients, self.tables.clone(), exe, &tx))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Failed::from(format!("prepare the run: {e}")))?;
        let entry = self.matrix.server(&id.server).ok_or("no such server profile")?;
        let slot = self.servers.lock().map_err(|_| "poisoned")?.entry(id.server.clone()).or_default().clone();
        let started = std::time::Instant::now();
        let run = self.rt.block_on(async {
            let mut state = slot.lock().await;
            if state.is_none() {
                *state = Some(ctx.start_server(&entry.profile).await);
            }
            let server = state.as_mut().expect("set above");
            if !ctx.is_sender(id) {
                let evidence = ctx.run_cell(id, Some(&entry.profile), server).await;
                return Ok(CellRun { id: id.clone(), runs: vec![evidence], duration: started.elapsed() });
            }
            let ran = self.deliveries.lock().map_err(|_| "poisoned")?.get(&id.server).is_some();
            if !ran {
                let ids: Vec<CellId> =
                    self.cells.iter().filter(|c| c.server == id.server && ctx.is_sender(c)).cloned().collect();
                let runs = ctx.run_deliveries(&ids, server, 1).await;
                let runs = runs.into_iter().map(|r| (r.id.clone(), r)).collect();
                self.deliveries.lock().map_err(|_| "poisoned")?.insert(id.server.clone(), runs);
            }
            self.deliveries
                .lock()
                .map_err(|_| "poisoned")?
                .get_mut(&id.server)
                .and_then(|runs| runs.remove(id))
                .ok_or_else(|| Failed::from("the profile's deliveries did not include this cell"))
        })?;
        // The same evidence, blind: what a client alone could say must agree (or coarsen as
        // harness::blind lists).
        let blind_view = harness::derive::derive_cell(&run.runs[0].blind(), &self.tables);
        let informed_view = harness::derive::derive_cell(&run.runs[0], &self.tables);
        let blind_check = harness::blind::compare(
            &id.client,
            (&informed_view.0, informed_view.1.as_ref()),
            (&blind_view.0, blind_view.1.as_ref()),
        );
        let judge = Judge {
            matrix: Some(self.matrix.clone()),
            baseline: None,
            tables: self.tables.clone(),
            view: harness::judge::View::Informed,
        };
        let record = judge.record(run);
        if let Err(why) = blind_check {
            return Err(format!("the blind view disagrees: {why}\nblind outcome: {:#?}", blind_view.0).into());
        }
        if let report_format::Outcome::Skipped { reason } = &record.outcome {
            Ok(Completion::ignored_with(format!("skipped: {reason}")))
        } else if record.verdict.is_as_expected() {
            Ok(Completion::Completed)
        } else {
            Err(format!(
                "{}: outcome {} but expected {} ({})\n{:#?}",
                record.verdict.as_str(),
                record.outcome.label(),
                record.expected.outcome,
                record.expected.reason,
                record.outcome
            )
            .into())
        }
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // As `run` does: twice as many trials at once as cores, since a cell mostly waits.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    args.test_threads.get_or_insert(2 * cores);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml");
    let tables = Arc::new(Tables::builtin().expect("the classification tables load"));
    let matrix = Arc::new(Matrix::load(&path, &tables).expect("the default matrix is valid"));
    let plan = Plan::new(&matrix, &[], &[]).expect("the default matrix has cells");
    let shared = Arc::new(Shared {
        rt: tokio::runtime::Runtime::new().expect("a runtime"),
        matrix: matrix.clone(),
        tables,
        clients: plan.clients.clone(),
        ctx: OnceLock::new(),
        servers: Mutex::new(HashMap::new()),
        deliveries: Mutex::new(HashMap::new()),
        cells: plan.cells.clone(),
    });
    // Trials run in list order, a few at once, and the cells of one profile share its server
    // one at a time: dealt round-robin over the profiles (those that wait longest first), the
    // trials running at once belong to different profiles instead of queueing for one.
    let mut by_profile: Vec<(std::time::Duration, Vec<CellId>)> = plan
        .servers
        .iter()
        .filter_map(|server| {
            let entry = matrix.server(server)?;
            let cells: Vec<CellId> = plan.cells.iter().filter(|c| &c.server == server).cloned().collect();
            Some((harness::runner::schedule::expected_wait(&entry.profile) * cells.len() as u32, cells))
        })
        .collect();
    by_profile.sort_by_key(|(wait, _)| std::cmp::Reverse(*wait));
    let longest = by_profile.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let dealt: Vec<CellId> =
        (0..longest).flat_map(|i| by_profile.iter().filter_map(move |(_, c)| c.get(i).cloned())).collect();
    // Cheap: the file system only, once per stack and profile; nothing starts.
    let skipped = harness::availability::predicted(&matrix, &plan.clients, &plan.servers);
    let trials = dealt
        .iter()
        .map(|id| {
            let (shared, id) = (shared.clone(), id.clone());
            let backend = matrix.server(&id.server).map(|s| s.profile.backend.as_str()).unwrap_or("?");
            let missing = skipped.cell_reason(&id.client, &id.server);
            let kind = match &missing {
                Some(reason) => format!("{backend}; skipped: {reason}"),
                None => backend.to_string(),
            };
            Trial::ignorable_test(id.to_string(), move || shared.run(&id))
                .with_kind(kind)
                .with_ignored_flag(missing.is_some())
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop every server the trials started (real MTAs are processes of their own) and every
    // batch worker: nothing may outlive the test.
    if let Some(Ok(ctx)) = shared.ctx.get() {
        let servers: Vec<_> = shared.servers.lock().map(|mut m| m.drain().collect()).unwrap_or_default();
        shared.rt.block_on(async {
            for (id, slot) in servers {
                if let Some(state) = slot.lock().await.take() {
                    ctx.stop_server(&id, state).await;
                }
            }
            harness::stack::stop_batch_workers(ctx.stacks.values()).await;
            ctx.stop_senders().await;
        });
    }
    // And remove the run's work directory (the PKI, the MTAs' files): exit() runs no destructor.
    if let Ok(shared) = Arc::try_unwrap(shared) {
        drop(shared.ctx.into_inner());
    }
    conclusion.exit();
}
