//! Everything a run needs before its first cell (the test PKI, the client stacks resolved, the
//! work directory), and the one thing it does per cell: run the client against the server and
//! gather the evidence — the client's result, the server's records and state. It judges nothing.

use crate::adapters::Target;
use crate::classify::Tables;
use crate::evidence::{ClientRun, Evidence, ServerEvidence, ServerKind};
use crate::matrix::Matrix;
use crate::runner::Event;
use crate::stack::ResolvedStack;
use mta::{Credentials, MtaServer, ServerOptions, StartError};
use report_format::{Availability, Backend, CellId, DhGroup, MtaRun, ServerProfile, TlsBackend};
use servers::{DhParams, RunningServer, ServeOptions, TestPki};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The EHLO name every client sends.
pub const CLIENT_EHLO: &str = "client.test";

/// How long to wait for the built-in server's record of a cell's connections.
pub(super) const BUILTIN_SETTLE: Duration = Duration::from_secs(2);
/// How long to wait for an MTA's log to show the end of a cell's connection.
pub(super) const MTA_SETTLE: Duration = Duration::from_millis(800);

/// Why a run could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("create the run's work directory: {0}")]
    WorkDir(#[from] procs::workdir::WorkDirError),
    #[error("make the test PKI: {0}")]
    Pki(#[from] servers::pki::PkiError),
}

/// Where a cell's server is.
pub enum ServerState {
    /// The built-in server on one of its TLS backends.
    Builtin { server: RunningServer, backend: TlsBackend, invalid_dh: Option<DhGroup> },
    /// A real MTA, started by its launcher.
    Mta(Box<MtaServer>),
    /// It did not start; every cell says why.
    NotStarted(Availability),
    /// A server someone else runs (`probe`).
    External(Target),
}

impl ServerState {
    /// Whether it serves cells, and if not why.
    pub fn availability(&self) -> Availability {
        match self {
            ServerState::NotStarted(a) => a.clone(),
            ServerState::Builtin { .. } | ServerState::Mta(_) | ServerState::External(_) => Availability::Ready,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> Option<String> {
        match self {
            ServerState::Builtin { server, .. } => Some(server.addr().to_string()),
            ServerState::Mta(m) => Some(m.addr().to_string()),
            ServerState::External(t) => Some(t.connect.clone()),
            ServerState::NotStarted(_) => None,
        }
    }
}

/// The classification table of the built-in server's words on a backend.
pub fn builtin_table(backend: TlsBackend) -> &'static str {
    match backend {
        TlsBackend::Openssl => "server-openssl",
        TlsBackend::Rustls => "server-rustls",
    }
}

/// The classification table of a profile's server's words.
pub fn server_table(backend: Backend) -> &'static str {
    match backend {
        Backend::Builtin(b) => builtin_table(b),
        Backend::Mta(m) => mta::of(m).table(),
    }
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
    /// What each sender ran as, and how its start and stop went, by stack id.
    pub sender_runs: std::sync::Mutex<BTreeMap<String, MtaRun>>,
    work: tempfile::TempDir,
}

/// The loopback address of the run's `n`th sender (from 1): `127.0.0.2`, `127.0.0.3`, … —
/// never `127.0.0.1`, where client programs connect from.
pub fn sender_source(n: usize) -> std::net::Ipv4Addr {
    let m = n.saturating_sub(1);
    std::net::Ipv4Addr::new(127, 0, (m / 250) as u8, (m % 250) as u8 + 2)
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
        Context::prepare_trusting(matrix, clients, tables, builtin_exe, events, None).await
    }

    /// As [`Context::prepare`], with the senders trusting `ca` instead of the run's own test CA
    /// (`probe --cafile`: a server someone else runs has a certificate of its own).
    pub async fn prepare_trusting(
        matrix: &Matrix,
        clients: &[String],
        tables: Arc<Tables>,
        builtin_exe: &Path,
        events: &mpsc::UnboundedSender<Event>,
        ca: Option<&Path>,
    ) -> Result<Context, RunError> {
        // Work directories of runs that died without removing theirs (killed with SIGKILL) go;
        // ours names its owner, so that a later run can tell.
        procs::workdir::remove_stale(&std::env::temp_dir());
        let work = procs::workdir::create(procs::workdir::PREFIX)?;
        let pki = TestPki::generate(work.path())?;
        let mta_root = mta::extracted_roots(matrix.path.parent().unwrap_or(Path::new(".")));
        let mut set = tokio::task::JoinSet::new();
        let mut senders = 0;
        for stack in matrix.clients.iter().filter(|c| clients.contains(&c.id)) {
            let (stack, exe) = (stack.clone(), builtin_exe.to_path_buf());
            // Each sender has its own directory and loopback address (127.0.0.2, .3, …):
            // servers' records of it carry that address.
            let options = stack.is_sender().then(|| {
                senders += 1;
                mta::SenderOptions {
                    roots: mta_root.clone(),
                    work: work.path().join("senders").join(&stack.id),
                    base: work.path().to_path_buf(),
                    ca_cert: ca.map_or_else(|| pki.ca_cert.clone(), Path::to_path_buf),
                    source: sender_source(senders),
                    candidate: stack.library_dir.clone(),
                }
            });
            set.spawn(async move { ResolvedStack::resolve(&stack, &exe, options).await });
        }
        let mut stacks = BTreeMap::new();
        while let Some(joined) = set.join_next().await {
            let r = match joined {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => continue,
            };
            let _ = events.send(Event::StackResolved { id: r.stack.id.clone(), availability: r.availability.clone() });
            stacks.insert(r.stack.id.clone(), r);
        }
        Ok(Context {
            tables,
            pki,
            cell_timeout: matrix.run.cell_timeout,
            stacks,
            mta_root,
            mta_runs: std::sync::Mutex::new(BTreeMap::new()),
            sender_runs: std::sync::Mutex::new(BTreeMap::new()),
            work,
        })
    }

    /// Whether a cell's client is a sender (its cell is a delivery).
    pub fn is_sender(&self, id: &CellId) -> bool {
        self.stacks.get(&id.client).is_some_and(|s| s.stack.is_sender())
    }

    /// The run's own work directory.
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// The test PKI as an MTA needs it for `profile`.
    pub fn credentials(&self, profile: &ServerProfile) -> Credentials {
        Credentials {
            ca_cert: self.pki.ca_cert.clone(),
            cert: self.pki.cert(profile.cert),
            key: self.pki.key(profile.cert),
            dh: profile.dh.map(|d| (d.name().to_string(), d.pem().to_string())),
            server_name: servers::SERVER_NAME.into(),
        }
    }

    /// Start a profile's server on 127.0.0.1: the built-in one on port 0, or a real MTA.
    pub async fn start_server(&self, profile: &ServerProfile) -> ServerState {
        match profile.backend {
            Backend::Mta(m) => {
                let options = ServerOptions {
                    roots: self.mta_root.clone(),
                    work: self.work.path().join("mta").join(&profile.id),
                    base: self.work.path().to_path_buf(),
                    candidate: profile.library_dir.clone(),
                };
                match MtaServer::start(m, profile, &self.credentials(profile), &options).await {
                    Ok(server) => ServerState::Mta(Box::new(server)),
                    Err(e) => ServerState::NotStarted(self.start_failure(m, e)),
                }
            }
            Backend::Builtin(backend) => {
                match servers::start(backend, profile, &self.pki, ServeOptions::default()).await {
                    Ok(server) => ServerState::Builtin {
                        server,
                        backend,
                        invalid_dh: profile.dh.filter(|d| d.kind().is_invalid()),
                    },
                    Err(servers::StartError::ConfigRejected(e)) => {
                        ServerState::NotStarted(Availability::Rejected(e.to_string()))
                    }
                    Err(e) => ServerState::NotStarted(Availability::Broken(e.to_string())),
                }
            }
        }
    }

    /// What an MTA that did not start means for its cells. Whether its last words are a
    /// refusal of its own configuration (a finding) or ours to fix is its table's to say.
    fn start_failure(&self, m: report_format::Mta, e: StartError) -> Availability {
        match e {
            StartError::NotInstalled(why) => Availability::Skipped(why),
            StartError::Unsupported(why) => Availability::Unsupported(why),
            StartError::Exited { ref words, .. } => match self.tables.startup(mta::of(m).table(), words) {
                Some(report_format::ErrorClass::ServerConfigRejected) => Availability::Rejected(e.to_string()),
                _ => Availability::Broken(e.to_string()),
            },
            StartError::Harness(why) => Availability::Broken(why),
        }
    }

    /// Stop the run's senders; how each ran and stopped is kept for the report.
    pub async fn stop_senders(&self) {
        for (id, info, ready, stop) in crate::stack::stop_senders(self.stacks.values()).await {
            let mta_info = report_format::MtaInfo {
                mta: info.mta,
                version: info.version,
                tls_library: info.tls_library,
                loaded: None,
                settings: info.settings,
                config_warnings: Vec::new(),
                ready_ms: ready.as_millis() as u64,
            };
            if let Ok(mut runs) = self.sender_runs.lock() {
                runs.insert(id, MtaRun { info: mta_info, stop });
            }
        }
    }

    /// Stop a profile's server; an MTA's stop is measured and kept for the report.
    pub async fn stop_server(&self, id: &str, state: ServerState) {
        match state {
            ServerState::Builtin { server, .. } => server.stop().await,
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
    pub(super) fn target(&self, addr: std::net::SocketAddr) -> Target {
        Target {
            connect: addr.to_string(),
            servername: servers::SERVER_NAME.into(),
            cafile: self.pki.ca_cert.clone(),
            ehlo: CLIENT_EHLO.into(),
        }
    }

    /// A cell's evidence before it runs, with its stack when both sides are ready to run it
    /// (`None`: the evidence is all there is — a stack or server that is not here).
    pub(super) fn skeleton(&self, id: &CellId, server: &ServerState) -> (Evidence, Option<&ResolvedStack>) {
        let Some(stack) = self.stacks.get(&id.client) else {
            let evidence = Evidence {
                stack: Availability::Broken(format!("client stack {} was not prepared", id.client)),
                client_table: String::new(),
                client: None,
                server: ServerEvidence::external(),
            };
            return (evidence, None);
        };
        let evidence = Evidence {
            stack: stack.availability.clone(),
            client_table: stack.stack.errors.clone(),
            client: None,
            server: ServerEvidence { availability: server.availability(), ..ServerEvidence::external() },
        };
        let ready = evidence.stack.is_ready() && evidence.server.availability.is_ready();
        (evidence, ready.then_some(stack))
    }

    /// Run one cell's client against a server and gather what both sides say (a sender's
    /// cell as a delivery of its own).
    pub async fn run_cell(&self, id: &CellId, profile: Option<&ServerProfile>, server: &mut ServerState) -> Evidence {
        if self.is_sender(id) {
            let run = self.run_deliveries(std::slice::from_ref(id), server, 1).await;
            return run.into_iter().next().and_then(|r| r.runs.into_iter().next()).unwrap_or_else(|| Evidence {
                client: Some(ClientRun::HarnessError("the delivery did not run".into())),
                ..self.skeleton(id, server).0
            });
        }
        let (mut evidence, stack) = self.skeleton(id, server);
        let Some(stack) = stack else { return evidence };
        let stack_bound = stack.stack.cell_timeout.unwrap_or(self.cell_timeout);
        let (run, kind, records, warnings) = match server {
            ServerState::Builtin { server, backend, invalid_dh } => {
                let fault = profile.and_then(|p| p.fault);
                let timeout = fault.and_then(|f| f.cell_timeout()).map_or(stack_bound, |t| t.min(stack_bound));
                let run = stack.run(&self.target(server.addr()), timeout).await;
                server.quiesce(BUILTIN_SETTLE).await;
                let kind = ServerKind::Own { table: builtin_table(*backend).into(), invalid_dh: *invalid_dh };
                (run, kind, server.take_records(), Vec::new())
            }
            ServerState::Mta(m) => {
                let run = stack.run(&self.target(m.addr()), stack_bound).await;
                m.quiesce(MTA_SETTLE).await;
                let records = m.take_records();
                let kind = ServerKind::Own { table: m.table().into(), invalid_dh: None };
                (run, kind, records, m.info().config_warnings.clone())
            }
            ServerState::External(target) => {
                (stack.run(target, stack_bound).await, ServerKind::External, Vec::new(), Vec::new())
            }
            ServerState::NotStarted(_) => (
                ClientRun::HarnessError("the server did not start".into()),
                ServerKind::External,
                Vec::new(),
                Vec::new(),
            ),
        };
        evidence.client = Some(run);
        evidence.server.kind = kind;
        evidence.server.records = records;
        evidence.server.config_warnings = warnings;
        evidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tables;
    use std::os::unix::fs::PermissionsExt;

    /// A contract program in shell: it reads the banner, says QUIT and reports the banner as
    /// an SMTP-stage error, so both sides have something to say.
    const PROGRAM: &str = r#"#!/bin/bash
case "$1" in --starttls-matrix-probe-nonsense) exit 89 ;; --describe) exit 0 ;; esac
while [ $# -gt 0 ]; do [ "$1" = --connect ] && target=$2; shift; done
exec 3<>"/dev/tcp/${target%:*}/${target##*:}"
read -r banner <&3
printf 'QUIT\r\n' >&3
read -r bye <&3
printf 'RESULT {"status":"error","stage":"smtp","error":"banner was %s"}\n' "${banner%$'\r'}"
"#;

    #[tokio::test]
    async fn a_cell_yields_both_sides_and_judges_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("client");
        std::fs::write(&program, PROGRAM).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            "[[server]]\nid = \"s\"\nbackend = \"openssl\"\n\n[[client]]\nid = \"sh\"\nprogram = \"{}\"\nerrors = \"openssl\"\n",
            program.display()
        );
        let tables = Arc::new(Tables::builtin().unwrap());
        let matrix = Matrix::parse(&dir.path().join("m.toml"), &text, &tables).unwrap();
        let (events, mut rx) = mpsc::unbounded_channel();
        let exe = std::env::current_exe().unwrap();
        let ctx = Context::prepare(&matrix, &["sh".into()], tables, &exe, &events).await.unwrap();
        assert!(matches!(rx.try_recv(), Ok(Event::StackResolved { availability: Availability::Ready, .. })));
        let profile = &matrix.servers[0].profile;
        let mut server = ctx.start_server(profile).await;
        let id = CellId::new("sh", "s");
        let evidence = ctx.run_cell(&id, Some(profile), &mut server).await;
        ctx.stop_server("s", server).await;
        match &evidence.client {
            Some(ClientRun::Result(wire::ClientResult::Error { stage: report_format::Stage::Smtp, error })) => {
                assert!(error.starts_with("banner was 220 "), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(evidence.server.kind, ServerKind::Own { table: "server-openssl".into(), invalid_dh: None });
        assert_eq!(evidence.server.records.len(), 1, "the server's record of the cell's one connection");
        assert_eq!(evidence.server.records[0].end, Some(report_format::End::Quit));
        // The same evidence, blind: no records, no ownership.
        let blind = evidence.blind();
        assert!(blind.server.records.is_empty() && blind.server.kind == ServerKind::External);
    }

    #[tokio::test]
    async fn a_server_that_did_not_start_leaves_the_client_unrun() {
        let tables = Arc::new(Tables::builtin().unwrap());
        let text = "[[server]]\nid = \"s\"\nbackend = \"postfix\"\n\n[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n";
        let dir = tempfile::tempdir().unwrap();
        let matrix = Matrix::parse(&dir.path().join("m.toml"), text, &tables).unwrap();
        let (events, _rx) = mpsc::unbounded_channel();
        let exe = std::env::current_exe().unwrap();
        let ctx = Context::prepare(&matrix, &["openssl".into()], tables, &exe, &events).await.unwrap();
        let mut server = ServerState::NotStarted(Availability::Skipped("postfix is not extracted".into()));
        let evidence = ctx.run_cell(&CellId::new("openssl", "s"), None, &mut server).await;
        assert_eq!(evidence.client, None);
        assert_eq!(evidence.server.availability, Availability::Skipped("postfix is not extracted".into()));
    }
}
