//! The runner: prepares a run (test PKI, client stacks resolved), starts each server profile
//! once, runs its cells one after another while profiles run in parallel (bounded), and turns
//! each client's RESULT plus the server's log into an outcome and a verdict. It never prints:
//! it emits [`Event`]s for reporters.

use crate::adapters::Target;
use crate::classify::Tables;
use crate::matrix::{Expected, Matrix};
use crate::outcome::{ErrorClass, Outcome, Side};
use crate::plan::{CellId, Plan};
use crate::stack::{ClientRun, Readiness, ResolvedStack};
use crate::verdict::Verdict;
use crate::verdict::judge;
use servers::{Backend, ConnectionRecord, RunningServer, ServeOptions, ServerProfile, StartError, TestPki};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use wire::{ClientResult, Stage};

/// The EHLO name every client sends.
pub const CLIENT_EHLO: &str = "client.test";

/// What happened in one cell, judged.
#[derive(Debug, Clone)]
pub struct CellRecord {
    pub id: CellId,
    pub outcome: Outcome,
    pub expected: Expected,
    pub verdict: Verdict,
    pub duration: Duration,
    /// What the server logged for this cell's connections.
    pub server_log: Vec<ConnectionRecord>,
    /// Every repeat's outcome when the cell ran more than once.
    pub repeats: Vec<Outcome>,
}

/// What the runner tells reporters.
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted { cells: usize },
    StackResolved { id: String, readiness: Readiness },
    ServerStarted { id: String, addr: String },
    CellStarted { id: CellId },
    CellFinished(Box<CellRecord>),
}

/// Why a run could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("create the run's work directory: {0}")]
    WorkDir(std::io::Error),
    #[error("make the test PKI: {0}")]
    Pki(#[from] servers::pki::PkiError),
}

/// Where a cell's server is.
pub enum ServerState {
    Running(RunningServer),
    /// The TLS library refused the profile: a finding for every cell of the profile.
    Rejected(String),
    /// We could not start it (bind failure…): a harness error for every cell.
    Broken(String),
    /// A server someone else runs (`probe`).
    External(Target),
}

/// Everything a run needs before its first cell.
pub struct Context {
    pub tables: Arc<Tables>,
    pub pki: TestPki,
    pub cell_timeout: Duration,
    pub stacks: BTreeMap<String, ResolvedStack>,
    _work: tempfile::TempDir,
}

/// The classification table of a server backend's words.
fn server_table(backend: Backend) -> &'static str {
    match backend {
        Backend::Openssl => "server-openssl",
        Backend::Rustls => "server-rustls",
    }
}

impl Context {
    /// Make the test PKI and resolve the given client stacks (concurrently).
    pub async fn prepare(
        matrix: &Matrix,
        clients: &[String],
        tables: Arc<Tables>,
        builtin_exe: &Path,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<Context, RunError> {
        let work = tempfile::Builder::new().prefix("starttls-matrix-").tempdir().map_err(RunError::WorkDir)?;
        let pki = TestPki::generate(work.path())?;
        let mut set = tokio::task::JoinSet::new();
        for stack in matrix.clients.iter().filter(|c| clients.contains(&c.id)) {
            let (stack, exe) = (stack.clone(), builtin_exe.to_path_buf());
            set.spawn(async move { ResolvedStack::resolve(&stack, &exe).await });
        }
        let mut stacks = BTreeMap::new();
        while let Some(Ok(r)) = set.join_next().await {
            let _ = events.send(Event::StackResolved { id: r.stack.id.clone(), readiness: r.readiness.clone() });
            stacks.insert(r.stack.id.clone(), r);
        }
        Ok(Context { tables, pki, cell_timeout: matrix.run.cell_timeout, stacks, _work: work })
    }

    /// Start the built-in server for a profile on 127.0.0.1, port 0.
    pub async fn start_server(&self, profile: &ServerProfile) -> ServerState {
        match servers::start(profile, &self.pki, ServeOptions::default()).await {
            Ok(s) => ServerState::Running(s),
            Err(StartError::ConfigRejected(e)) => ServerState::Rejected(e.to_string()),
            Err(e) => ServerState::Broken(e.to_string()),
        }
    }

    /// Run one cell against a server and judge it.
    pub async fn run_cell(
        &self,
        id: &CellId,
        profile: Option<&ServerProfile>,
        server: &mut ServerState,
        expected: Expected,
    ) -> CellRecord {
        let backend = profile.map(|p| p.backend);
        let fault = profile.and_then(|p| p.fault);
        let started = Instant::now();
        let mut server_log = Vec::new();
        let outcome = match (self.stacks.get(&id.client), &mut *server) {
            (None, _) => Outcome::HarnessError { detail: format!("client stack {} was not prepared", id.client) },
            (Some(stack), _) if matches!(stack.readiness, Readiness::Skipped(_)) => {
                let Readiness::Skipped(reason) = &stack.readiness else { unreachable!() };
                Outcome::Skipped { reason: reason.clone() }
            }
            (Some(stack), _) if matches!(stack.readiness, Readiness::Broken(_)) => {
                let Readiness::Broken(detail) = &stack.readiness else { unreachable!() };
                Outcome::HarnessError { detail: detail.clone() }
            }
            (Some(_), ServerState::Rejected(detail)) => Outcome::Failed {
                class: ErrorClass::ServerConfigRejected,
                side: Side::Server,
                stage: Stage::Connect,
                client_error: "the client did not run: the server refused its own configuration".into(),
                server_error: Some(detail.clone()),
            },
            (Some(_), ServerState::Broken(detail)) => {
                Outcome::HarnessError { detail: format!("the server did not start: {detail}") }
            }
            (Some(stack), ServerState::Running(running)) => {
                let target = Target {
                    connect: running.addr().to_string(),
                    servername: servers::SERVER_NAME.into(),
                    cafile: self.pki.ca_cert.clone(),
                    ehlo: CLIENT_EHLO.into(),
                };
                let stack_bound = stack.stack.cell_timeout.unwrap_or(self.cell_timeout);
                let timeout = fault.and_then(servers::Fault::cell_timeout).map_or(stack_bound, |t| t.min(stack_bound));
                let run = stack.run(&target, timeout).await;
                running.quiesce(Duration::from_secs(2)).await;
                server_log = running.take_records();
                let invalid_dh = profile.and_then(|p| p.dh).filter(|d| d.kind().is_invalid());
                self.outcome(run, stack, backend.map(server_table), &server_log, true, invalid_dh)
            }
            (Some(stack), ServerState::External(target)) => {
                let run = stack.run(target, stack.stack.cell_timeout.unwrap_or(self.cell_timeout)).await;
                self.outcome(run, stack, None, &[], false, None)
            }
        };
        let verdict = judge(&outcome, &expected);
        CellRecord {
            id: id.clone(),
            outcome,
            expected,
            verdict,
            duration: started.elapsed(),
            server_log,
            repeats: Vec::new(),
        }
    }

    fn outcome(
        &self,
        run: ClientRun,
        stack: &ResolvedStack,
        server_table: Option<&str>,
        log: &[ConnectionRecord],
        own_server: bool,
        invalid_dh: Option<servers::DhGroup>,
    ) -> Outcome {
        // Mail that crossed without TLS is a downgrade, whatever the client says of it.
        let in_clear: usize = log.iter().filter(|r| r.tls.is_none()).map(|r| r.messages).sum();
        let claims_plaintext = matches!(&run, ClientRun::Result(ClientResult::Ok(n)) if n.protocol == "plaintext");
        if in_clear > 0 || claims_plaintext {
            let client_error = match &run {
                ClientRun::Result(ClientResult::Ok(n)) => {
                    format!("the client reported success with protocol {:?}", n.protocol)
                }
                ClientRun::Result(ClientResult::Error { error, .. }) => error.clone(),
                other => format!("{other:?}"),
            };
            return Outcome::Failed {
                class: ErrorClass::DowngradedToPlaintext,
                side: Side::Client,
                stage: Stage::Starttls,
                client_error,
                server_error: (in_clear > 0).then(|| format!("the server accepted {in_clear} message(s) without TLS")),
            };
        }
        // The server refused at the SMTP level (banner, EHLO, STARTTLS): that is what happened,
        // whatever words the client found for it afterwards ("wrong version number"…).
        let refusal = log.iter().find_map(|r| r.refusal.clone());
        match run {
            // A DHE handshake over a composite or small-subgroup prime should never complete.
            // (TLS 1.3 negotiates a named group, not the profile's prime.)
            ClientRun::Result(ClientResult::Ok(n)) if finite_field_dhe(&n) && invalid_dh.is_some() => {
                let dh = invalid_dh.expect("checked");
                Outcome::Failed {
                    class: ErrorClass::DhInvalidAccepted,
                    side: Side::Client,
                    stage: Stage::Handshake,
                    client_error: format!(
                        "the client completed the handshake ({}) over the server's {} group",
                        n.label(),
                        dh.name()
                    ),
                    server_error: None,
                }
            }
            ClientRun::Result(ClientResult::Ok(n)) => Outcome::Connected(n),
            ClientRun::Result(ClientResult::Error { stage, error }) if refusal.is_some() => {
                let refusal = refusal.expect("checked");
                let c = self.tables.classify("common", refusal.stage, &refusal.reply, None, &[]);
                Outcome::Failed {
                    class: c.class,
                    side: c.side,
                    stage,
                    client_error: error,
                    server_error: Some(refusal.reply),
                }
            }
            ClientRun::Result(ClientResult::Error { stage: Stage::Connect, error }) if own_server => {
                Outcome::HarnessError { detail: format!("the client could not reach our own server: {error}") }
            }
            ClientRun::Result(ClientResult::Error { stage, error }) => {
                let server_errors: Vec<String> = log.iter().filter_map(|r| r.error.clone()).collect();
                let c = self.tables.classify(&stack.stack.errors, stage, &error, server_table, &server_errors);
                Outcome::Failed {
                    class: c.class,
                    side: c.side,
                    stage,
                    client_error: error,
                    server_error: (!server_errors.is_empty()).then(|| server_errors.join("\n")),
                }
            }
            ClientRun::Unsupported(reason) => Outcome::Unsupported { reason },
            ClientRun::Timeout(after) => Outcome::Timeout { after_ms: after.as_millis() as u64 },
            ClientRun::HarnessError(detail) => Outcome::HarnessError { detail },
        }
    }
}

/// Whether a completed TLS ≤ 1.2 handshake used the server's finite-field DH prime (stacks that
/// do not report the prime's size still name a DHE suite).
fn finite_field_dhe(n: &wire::Negotiated) -> bool {
    let dhe_suite = n.cipher.contains("DHE") && !n.cipher.contains("ECDHE");
    n.protocol != "TLSv1.3" && (n.dh_bits.is_some() || dhe_suite)
}

/// How long one cell of a profile waits by design (faults that delay), for scheduling.
fn expected_wait(profile: &ServerProfile) -> Duration {
    match profile.fault {
        Some(f) => f.cell_timeout().unwrap_or(match f {
            servers::Fault::SlowBanner => servers::fault::SLOW_BANNER_DELAY,
            _ => Duration::ZERO,
        }),
        None => Duration::ZERO,
    }
}

/// How to run a plan.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Server profiles served at once.
    pub jobs: usize,
    /// Times each cell runs; differing outcomes make the cell flaky.
    pub repeat: u32,
}

/// Run a cell `repeat` times; a cell whose repeats differ is flaky, never retried into a pass.
async fn run_repeated(
    ctx: &Context,
    id: &CellId,
    profile: &ServerProfile,
    state: &mut ServerState,
    expected: Expected,
    repeat: u32,
) -> CellRecord {
    let mut first = ctx.run_cell(id, Some(profile), state, expected.clone()).await;
    if repeat <= 1 {
        return first;
    }
    let mut outcomes = vec![first.outcome.clone()];
    for _ in 1..repeat {
        let again = ctx.run_cell(id, Some(profile), state, expected.clone()).await;
        first.duration += again.duration;
        first.server_log.extend(again.server_log);
        outcomes.push(again.outcome);
    }
    if outcomes.iter().any(|o| o.signature() != outcomes[0].signature()) {
        first.verdict = Verdict::Flaky;
    }
    first.repeats = outcomes;
    first
}

/// Run a plan: each server profile once, its cells in order, profiles `jobs` at a time; each
/// cell is judged by `judge`.
pub async fn run(
    judge: Arc<crate::expectations::Judge>,
    plan: &Plan,
    ctx: Arc<Context>,
    options: RunOptions,
    events: mpsc::UnboundedSender<Event>,
) -> Vec<CellRecord> {
    let RunOptions { jobs, repeat } = options;
    let matrix = judge.matrix.clone();
    let _ = events.send(Event::RunStarted { cells: plan.cells.len() });
    let permits = Arc::new(Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    // Profiles whose cells wait longest start first, so they overlap the rest instead of
    // trailing at the end (a fair semaphore hands out permits in this order).
    let mut order: Vec<&String> = plan.servers.iter().collect();
    order.sort_by_key(|id| std::cmp::Reverse(matrix.server(id).map_or(Duration::ZERO, |e| expected_wait(&e.profile))));
    for server_id in order {
        let Some(entry) = matrix.server(server_id).cloned() else { continue };
        let cells: Vec<CellId> = plan.cells.iter().filter(|c| &c.server == server_id).cloned().collect();
        let (ctx, permits, events, judge) = (ctx.clone(), permits.clone(), events.clone(), judge.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            let mut state = ctx.start_server(&entry.profile).await;
            if let ServerState::Running(s) = &state {
                let _ = events.send(Event::ServerStarted { id: entry.profile.id.clone(), addr: s.addr().to_string() });
            }
            let mut records = Vec::new();
            for id in cells {
                let _ = events.send(Event::CellStarted { id: id.clone() });
                let expected = judge.expected_for(&id.to_string());
                let record = run_repeated(&ctx, &id, &entry.profile, &mut state, expected, repeat).await;
                let _ = events.send(Event::CellFinished(Box::new(record.clone())));
                records.push(record);
            }
            if let ServerState::Running(s) = state {
                s.stop().await;
            }
            records
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(records) => all.extend(records),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// Run every given client stack against a server that is already running (`probe`).
pub async fn probe(
    ctx: Arc<Context>,
    clients: &[String],
    target: Target,
    events: mpsc::UnboundedSender<Event>,
) -> Vec<CellRecord> {
    let server_id = target.connect.clone();
    let _ = events.send(Event::RunStarted { cells: clients.len() });
    let mut state = ServerState::External(target);
    let mut records = Vec::new();
    for client in clients {
        let id = CellId { client: client.clone(), server: server_id.clone() };
        let _ = events.send(Event::CellStarted { id: id.clone() });
        let record = ctx.run_cell(&id, None, &mut state, Expected::default_connected()).await;
        let _ = events.send(Event::CellFinished(Box::new(record.clone())));
        records.push(record);
    }
    records
}

/// Where the built-in client programs live: the `starttls-matrix` binary itself.
pub fn builtin_exe() -> std::io::Result<PathBuf> {
    std::env::current_exe()
}
