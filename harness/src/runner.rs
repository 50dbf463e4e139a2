//! The runner: prepares a run (test PKI, client stacks resolved), starts each server profile
//! once, runs its cells one after another while profiles run in parallel (bounded), and turns
//! each client's RESULT plus the server's log into an outcome and a verdict. It never prints:
//! it emits [`Event`]s for reporters.

use crate::adapters::Target;
use crate::classify::Tables;
use crate::matrix::{Expected, Matrix};
use crate::outcome::{Connection, ErrorClass, Outcome, Reporter, Side};
use crate::plan::{CellId, Plan};
use crate::stack::{ClientRun, Readiness, ResolvedStack};
use crate::verdict::Verdict;
use crate::verdict::judge;
use servers::{
    Backend, ConnectionRecord, MtaInfo, MtaOptions, MtaStartError, RunningMta, RunningServer, ServeOptions,
    ServerProfile, StartError, StopReport, TestPki,
};
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
    RunStarted {
        cells: usize,
    },
    StackResolved {
        id: String,
        readiness: Readiness,
    },
    ServerStarted {
        id: String,
        addr: String,
    },
    /// A profile's server did not start; every cell of it says why.
    ServerNotStarted {
        id: String,
        why: ServerNotStarted,
    },
    CellStarted {
        id: CellId,
    },
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

/// Why a profile's server is not running; every cell of the profile says so.
#[derive(Debug, Clone)]
pub enum ServerNotStarted {
    /// Not installed here (an MTA not extracted): its cells are skipped.
    Missing(String),
    /// It cannot express the profile (an MTA without such a setting).
    Unsupported(String),
    /// The TLS library or the MTA refused the profile: a finding for every cell.
    Rejected(String),
    /// We could not start it (bind failure…): a harness error for every cell.
    Broken(String),
}

/// Where a cell's server is.
pub enum ServerState {
    Running(RunningServer),
    /// A real MTA, started by its launcher.
    Mta(Box<RunningMta>),
    NotStarted(ServerNotStarted),
    /// A server someone else runs (`probe`).
    External(Target),
}

/// Everything a run needs before its first cell.
pub struct Context {
    pub tables: Arc<Tables>,
    pub pki: TestPki,
    pub cell_timeout: Duration,
    pub stacks: BTreeMap<String, ResolvedStack>,
    /// Where the real MTAs are extracted (`.cache/mta/root` beside the matrix, or
    /// `STARTTLS_MATRIX_MTA_ROOT`).
    pub mta_root: PathBuf,
    /// What each MTA profile ran as (version, TLS library, settings, start and stop times).
    pub mta_runs: std::sync::Mutex<BTreeMap<String, MtaRun>>,
    _work: tempfile::TempDir,
}

/// What an MTA profile ran as, for the report's `server_runs` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MtaRun {
    #[serde(flatten)]
    pub info: MtaInfo,
    pub stop: StopReport,
}

/// The classification table of a server's words (a backend's error queue, an MTA's log).
fn server_table(backend: Backend) -> &'static str {
    match backend {
        // Postfix, sendmail and OpenSMTPD log OpenSSL's error queue.
        Backend::Openssl | Backend::Postfix | Backend::Sendmail | Backend::Opensmtpd => "server-openssl",
        Backend::Rustls => "server-rustls",
        Backend::Exim => "server-exim",
    }
}

/// An MTA that dropped part of its own configuration at load time (Postfix handed a DH file
/// OpenSSL 3 refuses drops its DHE suites and says so once, in its log): a failure that follows
/// from it is the server's configuration, not the client.
fn config_dropped(outcome: Outcome, warnings: &[String]) -> Outcome {
    match outcome {
        Outcome::Failed { class, stage, client_error, server_error, .. }
            if !warnings.is_empty()
                && matches!(
                    class,
                    ErrorClass::NoSharedCipher | ErrorClass::ConnectionClosed | ErrorClass::Unmapped
                ) =>
        {
            let mut words = warnings.join("\n");
            if let Some(e) = server_error {
                words = format!("{words}\n{e}");
            }
            Outcome::Failed {
                class: ErrorClass::ServerConfigRejected,
                side: Side::Server,
                stage,
                client_error,
                server_error: Some(words),
            }
        }
        other => other,
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
        let mta_root = servers::mta::extracted_roots(matrix.path.parent().unwrap_or(Path::new(".")));
        Ok(Context {
            tables,
            pki,
            cell_timeout: matrix.run.cell_timeout,
            stacks,
            mta_root,
            mta_runs: std::sync::Mutex::new(BTreeMap::new()),
            _work: work,
        })
    }

    /// Start a profile's server on 127.0.0.1: the built-in one on port 0, or a real MTA.
    pub async fn start_server(&self, profile: &ServerProfile) -> ServerState {
        if profile.backend.mta().is_some() {
            let options = MtaOptions {
                root: self.mta_root.clone(),
                work: self._work.path().join("mta").join(&profile.id),
                base: self._work.path().to_path_buf(),
            };
            return match RunningMta::start(profile, &self.pki, &options).await {
                Ok(m) => ServerState::Mta(Box::new(m)),
                Err(MtaStartError::NotInstalled(why)) => ServerState::NotStarted(ServerNotStarted::Missing(why)),
                Err(MtaStartError::Unsupported(why)) => ServerState::NotStarted(ServerNotStarted::Unsupported(why)),
                Err(MtaStartError::ConfigRejected(why)) => ServerState::NotStarted(ServerNotStarted::Rejected(why)),
                Err(MtaStartError::Harness(why)) => ServerState::NotStarted(ServerNotStarted::Broken(why)),
            };
        }
        match servers::start(profile, &self.pki, ServeOptions::default()).await {
            Ok(s) => ServerState::Running(s),
            Err(StartError::ConfigRejected(e)) => ServerState::NotStarted(ServerNotStarted::Rejected(e.to_string())),
            Err(e) => ServerState::NotStarted(ServerNotStarted::Broken(e.to_string())),
        }
    }

    /// Stop a profile's server; an MTA's stop is measured and kept for the report.
    pub async fn stop_server(&self, id: &str, state: ServerState) {
        match state {
            ServerState::Running(s) => s.stop().await,
            ServerState::Mta(m) => {
                let info = m.info().clone();
                let stop = m.stop().await;
                if let Ok(mut runs) = self.mta_runs.lock() {
                    runs.insert(id.to_string(), MtaRun { info, stop });
                }
            }
            ServerState::NotStarted(_) | ServerState::External(_) => {}
        }
    }

    /// Where a client finds one of our servers, and what it trusts.
    fn target(&self, addr: std::net::SocketAddr) -> Target {
        Target {
            connect: addr.to_string(),
            servername: servers::SERVER_NAME.into(),
            cafile: self.pki.ca_cert.clone(),
            ehlo: CLIENT_EHLO.into(),
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
            (Some(_), ServerState::NotStarted(ServerNotStarted::Rejected(detail))) => Outcome::Failed {
                class: ErrorClass::ServerConfigRejected,
                side: Side::Server,
                stage: Stage::Connect,
                client_error: "the client did not run: the server refused its own configuration".into(),
                server_error: Some(detail.clone()),
            },
            (Some(_), ServerState::NotStarted(ServerNotStarted::Broken(detail))) => {
                Outcome::HarnessError { detail: format!("the server did not start: {detail}") }
            }
            (Some(_), ServerState::NotStarted(ServerNotStarted::Unsupported(reason))) => {
                Outcome::Unsupported { reason: reason.clone() }
            }
            (Some(_), ServerState::NotStarted(ServerNotStarted::Missing(reason))) => {
                Outcome::Skipped { reason: reason.clone() }
            }
            (Some(stack), ServerState::Mta(mta)) => {
                let target = self.target(mta.addr());
                let run = stack.run(&target, stack.stack.cell_timeout.unwrap_or(self.cell_timeout)).await;
                mta.quiesce(Duration::from_millis(800)).await;
                server_log = mta.take_records();
                let table = profile.map(|p| server_table(p.backend));
                let outcome = self.outcome(run, stack, table, &server_log, true, None);
                config_dropped(outcome, &mta.info().config_warnings)
            }
            (Some(stack), ServerState::Running(running)) => {
                let target = self.target(running.addr());
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
        let (run, reported_by) = server_reported(run, log);
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
            ClientRun::Result(ClientResult::Ok(n)) => Outcome::Connected(Connection { negotiated: n, reported_by }),
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

/// A client that completed the handshake without saying what it negotiated (lettre): take the
/// parameters from our server's record of the connection, and say that the server reported them.
fn server_reported(run: ClientRun, log: &[ConnectionRecord]) -> (ClientRun, Reporter) {
    match run {
        ClientRun::Result(ClientResult::Ok(n)) if !n.is_reported() => {
            match log.iter().rev().find_map(|r| r.tls.clone()) {
                Some(server) => (ClientRun::Result(ClientResult::Ok(server)), Reporter::Server),
                None => (ClientRun::Result(ClientResult::Ok(n)), Reporter::Client),
            }
        }
        other => (other, Reporter::Client),
    }
}

/// Whether a completed TLS ≤ 1.2 handshake used the server's finite-field DH prime (stacks that
/// do not report the prime's size still name a DHE suite).
fn finite_field_dhe(n: &wire::Negotiated) -> bool {
    let dhe_suite = n.cipher.contains("DHE") && !n.cipher.contains("ECDHE");
    n.protocol != "TLSv1.3" && (n.dh_bits.is_some() || dhe_suite)
}

/// How long one cell of a profile takes beyond the usual, for scheduling: faults that make
/// clients wait, and large finite-field groups (a DHE-8192 handshake costs about half a second
/// of the server's CPU, more for the client's key).
fn expected_wait(profile: &ServerProfile) -> Duration {
    let dh_bits = profile.dh.map_or(0, |d| d.bits());
    match profile.fault {
        // Most clients give up at once on a refusal; a hanging one or two wait out the bound.
        Some(f) if f.cell_timeout() == Some(servers::fault::REFUSAL_BOUND) => Duration::from_millis(400),
        Some(f) => f.cell_timeout().unwrap_or(match f {
            servers::Fault::SlowBanner => servers::fault::SLOW_BANNER_DELAY,
            _ => Duration::ZERO,
        }),
        None if dh_bits >= 8192 => Duration::from_millis(1500),
        None if dh_bits >= 6144 => Duration::from_millis(600),
        None if dh_bits >= 4096 => Duration::from_millis(300),
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
            let id = entry.profile.id.clone();
            let _ = events.send(match &state {
                ServerState::Running(s) => Event::ServerStarted { id, addr: s.addr().to_string() },
                ServerState::Mta(m) => Event::ServerStarted { id, addr: m.addr().to_string() },
                ServerState::NotStarted(why) => Event::ServerNotStarted { id, why: why.clone() },
                ServerState::External(t) => Event::ServerStarted { id, addr: t.connect.clone() },
            });
            let mut records = Vec::new();
            for id in cells {
                let _ = events.send(Event::CellStarted { id: id.clone() });
                let expected = judge.expected_for(&id.to_string());
                let record = run_repeated(&ctx, &id, &entry.profile, &mut state, expected, repeat).await;
                let _ = events.send(Event::CellFinished(Box::new(record.clone())));
                records.push(record);
            }
            ctx.stop_server(&entry.profile.id, state).await;
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
    crate::stack::stop_batch_workers(ctx.stacks.values()).await;
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
    crate::stack::stop_batch_workers(ctx.stacks.values()).await;
    records
}

/// Where the built-in client programs live: the `starttls-matrix` binary itself.
pub fn builtin_exe() -> std::io::Result<PathBuf> {
    std::env::current_exe()
}
