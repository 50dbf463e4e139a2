//! A real MTA serving one server profile: the profile translated into the MTA's files under the
//! profile's work directory, the daemon started on a free 127.0.0.1 port and ready when it
//! answers `220`; what it loaded, what it said about its configuration, and one record per
//! connection from its log, for each cell.

use crate::daemon::{Daemon, StartError, StopReport, free_port, harness, traversable};
use crate::kind::{MtaKind, of};
use crate::log::{Assembler, LogEvent};
use crate::translate::{Credentials, Dirs, Prepare};
use report_format::{ConnectionRecord, Library, LoadedLibrary, Mta, MtaInfo, ServerProfile};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a daemon may take to answer its first `220`.
const READY_BOUND: Duration = Duration::from_secs(15);
/// Ports tried when another program takes ours between choosing and binding it.
const PORT_ATTEMPTS: usize = 3;

/// Where the MTAs are and where a profile may write.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The extracted roots (`.cache/mta/root`): `<mta>/` and `libs/`.
    pub roots: PathBuf,
    /// The profile's own work directory (made here; nothing is written outside it).
    pub work: PathBuf,
    /// The run's own directory that holds `work`: directories from `work` up to it are opened
    /// to the MTA's unprivileged users (`o+x`), none beyond.
    pub base: PathBuf,
    /// A candidate TLS library's directory, put first on the daemon's `LD_LIBRARY_PATH`.
    pub candidate: Option<PathBuf>,
}

/// Put a candidate library's directory first on a daemon's `LD_LIBRARY_PATH`.
pub fn prepend_library_dir(env: &mut Vec<(String, String)>, dir: &std::path::Path) {
    match env.iter_mut().find(|(k, _)| k == "LD_LIBRARY_PATH") {
        Some((_, v)) if !v.is_empty() => *v = format!("{}:{v}", dir.display()),
        Some((_, v)) => *v = dir.display().to_string(),
        None => env.push(("LD_LIBRARY_PATH".into(), dir.display().to_string())),
    }
}

/// A started MTA serving a profile.
pub struct MtaServer {
    kind: &'static dyn MtaKind,
    daemon: Daemon,
    addr: SocketAddr,
    log: Assembler,
    info: MtaInfo,
    /// Raw log lines kept for [`MtaServer::take_raw`] (`serve --raw-log`), when asked.
    raw: Option<Vec<String>>,
}

/// The TLS library the processes of the MTA started under the guard `guard` loaded, of the
/// family the MTA is built on.
pub fn measure_library(mta: Mta, guard: i32) -> Option<LoadedLibrary> {
    let family = match mta.library() {
        Library::Openssl => procs::LibraryFamily::Openssl,
        Library::Gnutls => procs::LibraryFamily::Gnutls,
        Library::Rustls | Library::Go | Library::Jsse => return None,
    };
    let loaded = procs::library::loaded_by_program(guard).into_iter().find(|l| l.family == family)?;
    Some(LoadedLibrary {
        version: loaded.version.clone().unwrap_or_else(|| format!("{} (version not readable)", family.as_str())),
        path: Some(loaded.path.display().to_string()),
        measured_by: format!("/proc/PID/maps of {}'s processes", mta.name()),
    })
}

impl MtaServer {
    /// Start `mta` for `profile`. See [`StartError`] for what a failure means.
    pub async fn start(
        mta: Mta,
        profile: &ServerProfile,
        creds: &Credentials,
        opts: &ServerOptions,
    ) -> Result<MtaServer, StartError> {
        let kind = of(mta);
        let root = opts.roots.join(mta.name());
        if !root.join(kind.daemon()).exists() {
            return Err(StartError::NotInstalled(format!(
                "{} is not extracted in {}: run scripts/install-stacks",
                mta.name(),
                opts.roots.display()
            )));
        }
        let libs = opts.roots.join("libs");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let _ = std::fs::remove_dir_all(&opts.work);
            std::fs::create_dir_all(&opts.work).map_err(|e| harness("make the work directory", e))?;
            traversable(&opts.work, &opts.base)?;
            let port = free_port().map_err(|e| harness("find a free port", e))?;
            let dirs = Dirs { root: &root, libs: &libs, work: &opts.work, port, creds };
            let mut prepared = match kind.prepare_server(profile, &dirs) {
                Ok(p) => p,
                Err(Prepare::Unsupported(why)) => return Err(StartError::Unsupported(why)),
                Err(Prepare::Io(e)) => {
                    return Err(StartError::Harness(format!("write {}'s configuration: {e}", mta.name())));
                }
            };
            if let Some(dir) = &opts.candidate {
                prepend_library_dir(&mut prepared.env, dir);
            }
            let started = Instant::now();
            let mut daemon = Daemon::spawn(mta, &prepared, &opts.work).await?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match daemon.wait_for_banner(addr, READY_BOUND).await {
                Err(StartError::Exited { words, .. }) if words.to_lowercase().contains("address already in use") => {
                    last = words;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(false) => {
                    let said = daemon.output_tail();
                    daemon.stop(Some(addr)).await;
                    return Err(StartError::Harness(format!(
                        "{} did not answer 220 on {addr} within {} s: {said}",
                        mta.name(),
                        READY_BOUND.as_secs()
                    )));
                }
                Ok(true) => {}
            }
            let ready_ms = started.elapsed().as_millis() as u64;
            let loaded = measure_library(mta, daemon.pgid());
            let version = crate::install::package_version(&opts.roots, kind.package())
                .unwrap_or_else(|| "unknown (no .cache/mta/stamp)".into());
            let info = MtaInfo {
                mta,
                version,
                tls_library: loaded.as_ref().map_or_else(
                    || format!("{} (not measured: no process of it had the library mapped)", mta.library().as_str()),
                    |l| l.version.clone(),
                ),
                loaded,
                settings: with_work(&prepared.settings, &opts.work),
                config_warnings: Vec::new(),
                ready_ms,
            };
            let mut server = MtaServer { kind, daemon, addr, log: Assembler::default(), info, raw: None };
            // The readiness connection's own lines (and any warning about the configuration,
            // which the daemon gives when it first sets up TLS) do not belong to the first cell.
            server.quiesce(Duration::from_millis(500)).await;
            let _ = server.take_records();
            return Ok(server);
        }
        Err(StartError::Harness(format!("{}: port taken by another program {PORT_ATTEMPTS} times: {last}", mta.name())))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn info(&self) -> &MtaInfo {
        &self.info
    }

    /// The classification table for its words.
    pub fn table(&self) -> &'static str {
        self.kind.table()
    }

    /// Keep every raw log line from now on, for [`MtaServer::take_raw`].
    pub fn keep_raw(&mut self) {
        self.raw.get_or_insert_with(Vec::new);
    }

    /// The raw log lines read since the last call (with [`MtaServer::keep_raw`]).
    pub fn take_raw(&mut self) -> Vec<String> {
        self.raw.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn read(&mut self) -> bool {
        let mut settled = false;
        for line in self.daemon.log.read_new() {
            if let Some(raw) = &mut self.raw {
                raw.push(line.clone());
            }
            if let Some(event) = self.kind.event(self.kind.message(&line)) {
                settled |= event.settles();
                self.log.push(self.kind.connection(&line), event);
            }
        }
        settled
    }

    /// Wait until the log shows the cell's connection ended (or failed), at most `bound`.
    pub async fn quiesce(&mut self, bound: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self.read() {
                // Lines a daemon writes right after (Postfix: the error, then the disconnect).
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.read();
                return true;
            }
            if started.elapsed() >= bound {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until every connection the log began has ended in it (some MTAs never log the end
    /// of a normal one), at most `bound`: after concurrent senders, before their records are
    /// taken.
    pub async fn settle(&mut self, bound: Duration) {
        let started = Instant::now();
        loop {
            self.read();
            if self.log.open_count() == 0 || started.elapsed() >= bound {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The connections logged since the last call, one record each with only what the log
    /// said; warnings about its own configuration go to [`MtaInfo::config_warnings`].
    pub fn take_records(&mut self) -> Vec<ConnectionRecord> {
        self.read();
        self.info.config_warnings = self.log.warnings.clone();
        self.log.take(true)
    }

    /// SIGTERM, wait, SIGKILL after a bound; reap the group; check the port.
    pub async fn stop(mut self) -> StopReport {
        self.daemon.stop(Some(self.addr)).await
    }
}

/// Settings as written, with the run's temporary directory as `$WORK` (it means nothing later).
fn with_work(settings: &[(String, String)], work: &Path) -> Vec<(String, String)> {
    settings.iter().map(|(k, v)| (k.clone(), v.replace(&*work.to_string_lossy(), "$WORK"))).collect()
}

/// Feed log messages through an MTA's event parser into records (for tests of each MTA's log).
pub fn records_from(mta: Mta, lines: &[&str]) -> (Vec<ConnectionRecord>, Vec<String>) {
    let kind = of(mta);
    let mut a = Assembler::default();
    for line in lines {
        if let Some(e) = kind.event(kind.message(line)) {
            a.push(kind.connection(line), e);
        }
    }
    let records = a.take(true);
    (records, a.warnings)
}

/// What a log message is, for `serve`'s echo of raw lines.
pub fn describe_line(mta: Mta, line: &str) -> Option<LogEvent> {
    let kind = of(mta);
    kind.event(kind.message(line))
}
