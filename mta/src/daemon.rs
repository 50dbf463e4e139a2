//! One MTA process tree's life: started from a prepared launch in the foreground, under the guard
//! program in a PID namespace of its own (so that it ends with the harness, however the harness dies,
//! and whichever users, groups or sessions its processes move to), in its own process group
//! (registered so that Ctrl-C and panics end it) and the other namespaces it needs, its log read
//! as it is written; stopped with SIGTERM, SIGKILL after a bound, every process of it reaped.
//! Servers and senders both run on it.

use crate::log::{LogEndError, LogReader};
use crate::translate::{LogPlan, Prepared};
use report_format::Mta;
pub use report_format::StopReport;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a daemon may take to exit after SIGTERM before its group is killed.
const TERM_BOUND: Duration = Duration::from_secs(5);

/// Why an MTA did not start. Whether words it said on the way out are a finding (it refused
/// its own configuration) or ours to fix is for the classification tables to say.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// Not extracted on this machine: its cells are skipped.
    #[error("{0}")]
    NotInstalled(String),
    /// The MTA cannot express the profile: its cells are unsupported, with this reason.
    #[error("{0}")]
    Unsupported(String),
    /// It exited while starting, saying `words` (the end of its output and log).
    #[error("{mta} exited at start ({status}): {words}")]
    Exited { mta: Mta, status: String, words: String },
    /// We could not run it (files, spawn, port, no banner).
    #[error("{0}")]
    Harness(String),
}

pub(crate) fn harness(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Harness(format!("{what}: {e}"))
}

/// A running MTA process tree.
pub struct Daemon {
    pub mta: Mta,
    child: Option<tokio::process::Child>,
    pgid: i32,
    pub log: LogReader,
    /// The socket it logs to, if it logs through syslog.
    syslog: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
    /// Its stdout (and stderr, unless that is its log).
    out_path: PathBuf,
    started: Instant,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if self.pgid > 0 {
            for pid in procs::group_members(self.pgid) {
                // SAFETY: a process of a group we created and have not stopped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            procs::guard::reaped(self.pgid);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

impl Daemon {
    /// Start a prepared launch in `work`.
    pub async fn spawn(mta: Mta, prepared: &Prepared, work: &Path) -> Result<Daemon, StartError> {
        let out_path = work.join("daemon.out");
        let out = std::fs::File::create(&out_path).map_err(|e| harness("create daemon.out", e))?;
        let err = out.try_clone().map_err(|e| harness("create daemon.out", e))?;
        let mut tasks = Vec::new();
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let log = match &prepared.log {
            LogPlan::File(path) => LogReader::File { path: path.clone(), offset: 0, partial: String::new() },
            LogPlan::Stderr | LogPlan::Syslog(_) => LogReader::Lines(rx),
        };
        let syslog = match &prepared.log {
            LogPlan::Syslog(path) => {
                let reader =
                    crate::log::listen_syslog(path, tx.clone()).map_err(|e| harness("bind the syslog socket", e))?;
                tasks.push(reader);
                Some(path.clone())
            }
            LogPlan::File(_) | LogPlan::Stderr => None,
        };
        let setup = prepared.ns.setup(prepared.gid);
        let mut cmd = procs::guard::command(&prepared.program, &prepared.args, procs::Confine::PidNamespace, &setup)
            .map_err(|e| harness(&format!("start {}", prepared.program.display()), e))?;
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .env(procs::watchdog::MARKER_VAR, procs::watchdog::marker())
            .envs(prepared.env.iter().cloned())
            .current_dir(work)
            .stdout(out);
        match &prepared.stdin {
            Some(path) => cmd.stdin(std::fs::File::open(path).map_err(|e| harness("open the message", e))?),
            None => cmd.stdin(Stdio::null()),
        };
        if matches!(prepared.log, LogPlan::Stderr) {
            cmd.stderr(Stdio::piped());
        } else {
            cmd.stderr(err);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| harness(&format!("start {}", prepared.program.display()), e))?;
        let pgid = child.id().unwrap_or(0) as i32;
        procs::guard::started(pgid);
        if let Some(stderr) = child.stderr.take() {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stderr.take(16 << 20)).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        Ok(Daemon { mta, child: Some(child), pgid, log, syslog, tasks, out_path, started })
    }

    /// Its process group: its guard's, whose PID it is ([`procs::guard::program_processes`]
    /// finds the MTA's own processes from it).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// How long since it was started.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// If it has exited: how, and its last words (output and log).
    pub fn exited(&mut self) -> Option<(String, String)> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let said = format!(
            "{} {}",
            std::fs::read_to_string(&self.out_path).unwrap_or_default(),
            self.log.read_new().join("\n")
        );
        self.child = None;
        Some((status.to_string(), tail(&said, 6)))
    }

    /// Whether it never ran because this machine refused the namespaces it needs (the guard
    /// program's words on its way out).
    pub fn namespaces_refused(words: &str) -> bool {
        ["unshare", "mount", "sethostname", "bind"]
            .iter()
            .any(|call| words.contains(&format!("starttls-guard: {call}")))
            && words.contains("Operation not permitted")
    }

    /// Wait for it to exit by itself, at most `bound` (then it is killed): its status, or `None`.
    pub async fn wait(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(bound, child.wait()).await.ok().and_then(Result::ok);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// The lines of its syslog not read yet, to the last that reached the socket: once its
    /// processes have all ended, the rest of its log, whatever the socket's reader task is late
    /// by ([`crate::log::read_syslog_to_end`]).
    pub async fn read_syslog_to_end(&mut self, bound: Duration) -> Result<Vec<String>, LogEndError> {
        let Some(path) = self.syslog.clone() else { return Err(LogEndError::NotSyslog) };
        crate::log::read_syslog_to_end(&mut self.log, &path, bound).await
    }

    /// The whole of what it printed on stdout (and stderr, unless that is its log).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    /// The end of what it printed on stdout.
    pub fn output_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.out_path).unwrap_or_default(), 4)
    }

    /// Wait until `addr` answers with a `220` banner while the daemon lives, at most `bound`.
    /// `Err` with its words if it exited first; `Ok(false)` if the bound passed.
    pub async fn wait_for_banner(&mut self, addr: SocketAddr, bound: Duration) -> Result<bool, StartError> {
        let started = Instant::now();
        loop {
            if let Some((status, words)) = self.exited() {
                if Daemon::namespaces_refused(&words) {
                    return Err(StartError::NotInstalled(format!(
                        "{} needs private namespaces (unshare, mount: CAP_SYS_ADMIN), which this machine does not allow: {words}",
                        self.mta.name()
                    )));
                }
                return Err(StartError::Exited { mta: self.mta, status, words });
            }
            if started.elapsed() > bound {
                return Ok(false);
            }
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                let mut stream = BufReader::new(stream);
                let banner = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut stream)).await.ok().flatten();
                if banner.as_deref().is_some_and(|b| b.starts_with("220")) {
                    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
                    let _ = tokio::time::timeout(Duration::from_secs(1), read_reply(&mut stream)).await;
                    return Ok(true);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, wait, SIGKILL after a bound; reap the group; check `port` (if it listened).
    pub async fn stop(&mut self, addr: Option<SocketAddr>) -> StopReport {
        let started = Instant::now();
        let mut killed = false;
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: our child, not yet reaped.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if tokio::time::timeout(TERM_BOUND, child.wait()).await.is_err() {
                killed = true;
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        // Children that outlive the leader (a connection's process) go too.
        let bound = Instant::now() + Duration::from_secs(2);
        loop {
            let left = procs::group_members(self.pgid);
            if left.is_empty() || Instant::now() > bound {
                break;
            }
            for pid in left {
                // SAFETY: a process of a group we created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let leftovers = procs::group_members(self.pgid);
        procs::guard::reaped(self.pgid);
        self.pgid = 0;
        let mut port_free = true;
        if let Some(addr) = addr {
            port_free = false;
            for _ in 0..100 {
                if std::net::TcpListener::bind(addr).is_ok() {
                    port_free = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for t in &self.tasks {
            t.abort();
        }
        StopReport { stop_ms: started.elapsed().as_millis() as u64, killed, port_free, leftovers }
    }
}

/// Read one (possibly multiline) SMTP reply; its last line.
async fn read_reply(stream: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stream.read_line(&mut line).await.ok()?;
        if n == 0 || line.len() > 1000 {
            return None;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Some(line.trim_end().to_string());
        }
    }
}

/// A free port on 127.0.0.1 (another program may take it before the MTA binds it: callers retry).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Let the MTA's unprivileged users reach their files: every directory from `work` up to
/// `base` (the run's own) gets `o+x`; directories above `base` are only checked.
pub fn traversable(work: &Path, base: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let open = |e| harness("open the work directory to the MTA's users", e);
    for d in work.ancestors() {
        let mode = std::fs::metadata(d).map_err(open)?.permissions().mode();
        if d.starts_with(base) {
            if mode & 0o001 == 0 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011)).map_err(open)?;
            }
        } else if mode & 0o001 == 0 {
            return Err(StartError::Harness(format!(
                "the MTA's users cannot reach {}: {} is not world-searchable (set TMPDIR to a directory that is)",
                work.display(),
                d.display()
            )));
        }
    }
    Ok(())
}
