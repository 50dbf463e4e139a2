//! Start, watch and stop one real MTA for one server profile: a free 127.0.0.1 port, the
//! profile translated into the MTA's files under the profile's work directory, the daemon in
//! the foreground in its own process group (and namespaces where it needs them), ready when it
//! answers `220`; stopped with SIGTERM, SIGKILL after a bound, every process of its group
//! reaped and the port checked free. A registry lets Ctrl-C and panics end every daemon.

use super::log::{LineKind, LogReader, kind, message};
use super::translate::{Dirs, LogPlan, Prepare, Prepared};
use super::{Mta, exim, opensmtpd, postfix, sendmail};
use crate::pki::TestPki;
use crate::profile::ServerProfile;
use crate::record::{ConnectionRecord, End};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixDatagram};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wire::Stage;

/// How long a daemon may take to answer its first `220`.
const READY_BOUND: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM before its group is killed.
const TERM_BOUND: Duration = Duration::from_secs(5);
/// Ports tried when another program takes ours between choosing and binding it.
const PORT_ATTEMPTS: usize = 3;

static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// SIGKILL every MTA process group we started and have not stopped (Ctrl-C, panic).
pub fn kill_all() {
    let groups = LIVE.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        for pid in group_members(pgid) {
            // SAFETY: a process of a group we created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SAFETY: the group leader is ours and not yet reaped.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
}

/// Processes whose process group is `pgid` (read from /proc).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // `pid (comm) state ppid pgrp …`: comm may hold spaces, so split after ')'.
                // A zombie has ended; its parent reaps it.
                let fields: Vec<&str> =
                    stat.rsplit_once(')').map_or(Vec::new(), |(_, r)| r.split_whitespace().collect());
                fields.first().is_some_and(|s| *s != "Z")
                    && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            })
        })
        .collect()
}

/// Where the MTAs are and where a profile may write.
#[derive(Debug, Clone)]
pub struct MtaOptions {
    /// The extracted roots (`.cache/mta/root`): `<mta>/` and `libs/`.
    pub root: PathBuf,
    /// The profile's own work directory (made here; nothing is written outside it).
    pub work: PathBuf,
    /// The run's own directory that holds `work`: directories from `work` up to it are opened
    /// to the MTA's unprivileged users (`o+x`), none beyond.
    pub base: PathBuf,
}

/// Why an MTA did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MtaStartError {
    /// Not extracted on this machine: its cells are skipped.
    #[error("{0}")]
    NotInstalled(String),
    /// The MTA cannot express the profile: its cells are unsupported, with this reason.
    #[error("{0}")]
    Unsupported(String),
    /// The MTA refused its own configuration at start-up: a finding.
    #[error("{0}")]
    ConfigRejected(String),
    /// We could not run it (files, spawn, port, no banner).
    #[error("{0}")]
    Harness(String),
}

/// What the report shows of an MTA that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaInfo {
    pub mta: Mta,
    /// The Debian package version (e.g. `3.7.11-0+deb12u1`).
    pub version: String,
    /// The TLS library it uses, as measured where possible.
    pub tls_library: String,
    /// Its TLS settings as written into its configuration.
    pub settings: Vec<(String, String)>,
    /// What it said about its own configuration (e.g. a DH file OpenSSL refused).
    pub config_warnings: Vec<String>,
    /// From exec to the first `220`.
    pub ready_ms: u64,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReport {
    pub stop_ms: u64,
    /// Killed with SIGKILL after not ending on SIGTERM within the bound.
    pub killed: bool,
    pub port_free: bool,
    /// Processes of its group still there after the stop (should be none).
    pub leftovers: Vec<i32>,
}

/// A started MTA.
pub struct RunningMta {
    mta: Mta,
    addr: SocketAddr,
    child: Option<tokio::process::Child>,
    pgid: i32,
    log: LogReader,
    pending: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
    info: MtaInfo,
}

impl Drop for RunningMta {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if self.pgid > 0 {
            for pid in group_members(self.pgid) {
                // SAFETY: a process of a group we created and have not stopped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            unregister(self.pgid);
        }
    }
}

fn register(pgid: i32) {
    if let Ok(mut g) = LIVE.lock() {
        g.insert(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = LIVE.lock() {
        g.remove(&pgid);
    }
}

/// `libnss_wrapper.so` among the extracted libraries.
pub fn nss_wrapper(libs: &Path) -> Option<PathBuf> {
    let p = libs.join("usr/lib/x86_64-linux-gnu/libnss_wrapper.so");
    p.exists().then_some(p)
}

/// passwd and group files for nss_wrapper: the system's (read only) plus the MTA's users.
pub(super) fn nss_files(d: &Dirs<'_>, users: &[String], groups: &[String]) -> Result<(PathBuf, PathBuf), Prepare> {
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for u in users {
        passwd.push_str(u);
        passwd.push('\n');
    }
    for g in groups {
        group.push_str(g);
        group.push('\n');
    }
    Ok((d.file("nss/passwd", &passwd, 0o644)?, d.file("nss/group", &group, 0o644)?))
}

/// The package version recorded by `scripts/install-mtas` in `.cache/mta/stamp`.
fn package_version(root: &Path, mta: Mta) -> String {
    // `<cache>/root/<mta>` → `<cache>/stamp`
    let stamp = root.parent().and_then(Path::parent).and_then(|p| std::fs::read_to_string(p.join("stamp")).ok());
    stamp
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(&format!("{}=", mta.package())).map(str::to_string)))
        .unwrap_or_else(|| "unknown (no .cache/mta/stamp)".into())
}

async fn tls_library(mta: Mta, prepared: &Prepared) -> String {
    let system = format!("system {}", openssl::version::version());
    match mta {
        Mta::Postfix | Mta::Sendmail => system,
        // Its own copy of libtls (compiled in), over the system libssl.
        Mta::Opensmtpd => format!("bundled libtls on {system}"),
        Mta::Exim => {
            // `exim4 -d -bV` names the GnuTLS it was built with and runs on (on stdout):
            // `Library version: GnuTLS: Compile: 3.7.9` / `Runtime: 3.7.9`.
            let mut cmd = tokio::process::Command::new(&prepared.program);
            cmd.args(["-d", "-bV"]).env_clear().envs(prepared.env.iter().cloned()).stdin(Stdio::null());
            cmd.kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0);
            let out = match tokio::time::timeout(Duration::from_secs(5), async { cmd.output().await }).await {
                Ok(Ok(o)) => String::from_utf8_lossy(&o.stdout).into_owned(),
                _ => String::new(),
            };
            let mut lines = out.lines().skip_while(|l| !l.contains("Library version: GnuTLS"));
            let compile = lines.next().and_then(|l| l.split("Compile:").nth(1)).map(str::trim);
            let runtime = lines.next().and_then(|l| l.split("Runtime:").nth(1)).map(str::trim);
            match (compile, runtime) {
                (Some(c), Some(r)) => Some(format!("GnuTLS {r} (built with {c})")),
                _ => None,
            }
            .unwrap_or_else(|| "GnuTLS (version not reported)".into())
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Read one (possibly multiline) SMTP reply; its code.
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

impl RunningMta {
    /// Start `profile`'s MTA. See [`MtaStartError`] for what a failure means.
    pub async fn start(profile: &ServerProfile, pki: &TestPki, opts: &MtaOptions) -> Result<RunningMta, MtaStartError> {
        let mta = profile
            .backend
            .mta()
            .ok_or_else(|| MtaStartError::Harness(format!("{} is not an MTA", profile.backend.as_str())))?;
        let root = opts.root.join(mta.root_dir());
        if !root.join(mta.daemon()).exists() {
            return Err(MtaStartError::NotInstalled(format!(
                "{} is not extracted in {}: run scripts/install-stacks",
                mta.name(),
                opts.root.display()
            )));
        }
        let libs = opts.root.join("libs");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let _ = std::fs::remove_dir_all(&opts.work);
            std::fs::create_dir_all(&opts.work).map_err(|e| harness("make the work directory", e))?;
            traversable(&opts.work, &opts.base)?;
            let port = free_port().map_err(|e| harness("find a free port", e))?;
            let dirs = Dirs { root: &root, libs: &libs, work: &opts.work, port, pki };
            let prepared = match mta {
                Mta::Postfix => postfix::prepare(profile, &dirs),
                Mta::Exim => exim::prepare(profile, &dirs),
                Mta::Sendmail => sendmail::prepare(profile, &dirs),
                Mta::Opensmtpd => opensmtpd::prepare(profile, &dirs),
            };
            let prepared = match prepared {
                Ok(p) => p,
                Err(Prepare::Unsupported(why)) => return Err(MtaStartError::Unsupported(why)),
                Err(Prepare::Io(e)) => {
                    return Err(MtaStartError::Harness(format!("write {}'s configuration: {e}", mta.name())));
                }
            };
            match launch(mta, &root, &opts.work, port, prepared).await {
                Err(Launch::PortTaken(detail)) => last = detail,
                Err(Launch::Failed(e)) => return Err(e),
                Ok(running) => return Ok(running),
            }
        }
        Err(MtaStartError::Harness(format!(
            "{}: port taken by another program {PORT_ATTEMPTS} times: {last}",
            mta.name()
        )))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn info(&self) -> &MtaInfo {
        &self.info
    }

    /// Wait until the log shows the cell's connection ended (or failed), at most `bound`.
    pub async fn quiesce(&mut self, bound: Duration) -> bool {
        let started = Instant::now();
        loop {
            let new = self.log.read_new();
            let ended =
                new.iter().any(|l| matches!(kind(self.mta, message(self.mta, l)), LineKind::End | LineKind::Error));
            self.pending.extend(new);
            if ended {
                // Lines a daemon writes right after (Postfix: the error, then the disconnect).
                tokio::time::sleep(Duration::from_millis(20)).await;
                let more = self.log.read_new();
                self.pending.extend(more);
                return true;
            }
            if started.elapsed() >= bound {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The server's errors since the last call, one record each, and one record for each
    /// handshake it logged as completed (with what it negotiated); warnings about its own
    /// configuration are kept in [`MtaInfo::config_warnings`].
    pub fn take_records(&mut self) -> Vec<ConnectionRecord> {
        let new = self.log.read_new();
        self.pending.extend(new);
        let lines = std::mem::take(&mut self.pending);
        let Digest { errors, warnings, handshakes } = digest(self.mta, &lines);
        // Every new server process says it again (Postfix: each smtpd): keep it once.
        for w in warnings {
            if !self.info.config_warnings.contains(&w) {
                self.info.config_warnings.push(w);
            }
        }
        let failed = errors.into_iter().map(|e| record(None, Some(e)));
        failed.chain(handshakes.into_iter().map(|tls| record(Some(tls), None))).collect()
    }

    /// SIGTERM, wait, SIGKILL after a bound; reap the group; check the port.
    pub async fn stop(mut self) -> StopReport {
        self.stop_inner().await
    }

    async fn stop_inner(&mut self) -> StopReport {
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
            let left = group_members(self.pgid);
            if left.is_empty() || Instant::now() > bound {
                break;
            }
            for pid in left {
                // SAFETY: a process of a group we created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let leftovers = group_members(self.pgid);
        unregister(self.pgid);
        self.pgid = 0;
        let mut port_free = false;
        for _ in 0..100 {
            if std::net::TcpListener::bind(self.addr).is_ok() {
                port_free = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        StopReport { stop_ms: started.elapsed().as_millis() as u64, killed, port_free, leftovers }
    }
}

/// The server's errors and its configuration warnings among log lines. A Postfix "TLS library
/// problem" right after a configuration warning is that warning's detail.
/// One connection as an MTA's log tells it: what it negotiated, or the error it logged.
fn record(tls: Option<wire::Negotiated>, error: Option<String>) -> ConnectionRecord {
    let completed = tls.is_some();
    ConnectionRecord {
        peer: "127.0.0.1".into(),
        client_name: None,
        starttls: true,
        pipelined_plaintext_bytes: 0,
        tls,
        stage: if completed { Stage::PostTls } else { Stage::Handshake },
        end: if completed { End::Quit } else { End::HandshakeFailed },
        error,
        commands: 0,
        messages: 0,
        duration_ms: 0,
        refusal: None,
    }
}

/// What a stretch of an MTA's log says.
struct Digest {
    errors: Vec<String>,
    warnings: Vec<String>,
    handshakes: Vec<wire::Negotiated>,
}

fn digest(mta: Mta, lines: &[String]) -> Digest {
    let (mut errors, mut warnings, mut handshakes) = (Vec::new(), Vec::<String>::new(), Vec::new());
    let mut after_warning = false;
    for line in lines {
        let msg = message(mta, line);
        handshakes.extend(super::log::negotiated(mta, msg));
        match kind(mta, msg) {
            LineKind::ConfigWarning => {
                warnings.push(msg.to_string());
                after_warning = true;
                continue;
            }
            LineKind::Error if after_warning && msg.contains("TLS library problem") => {
                if let Some(w) = warnings.last_mut() {
                    w.push_str(": ");
                    w.push_str(msg);
                }
            }
            LineKind::Error => errors.push(msg.to_string()),
            LineKind::End | LineKind::Info => {}
        }
        after_warning = false;
    }
    Digest { errors, warnings, handshakes }
}

fn harness(what: &str, e: std::io::Error) -> MtaStartError {
    MtaStartError::Harness(format!("{what}: {e}"))
}

/// Let the MTA's unprivileged users reach their files: every directory from `work` up to
/// `base` (the run's own) gets `o+x`; directories above `base` are only checked.
fn traversable(work: &Path, base: &Path) -> Result<(), MtaStartError> {
    use std::os::unix::fs::PermissionsExt;
    let open = |e| harness("open the work directory to the MTA's users", e);
    for d in work.ancestors() {
        let mode = std::fs::metadata(d).map_err(open)?.permissions().mode();
        if d.starts_with(base) {
            if mode & 0o001 == 0 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011)).map_err(open)?;
            }
        } else if mode & 0o001 == 0 {
            return Err(MtaStartError::Harness(format!(
                "the MTA's users cannot reach {}: {} is not world-searchable (set TMPDIR to a directory that is)",
                work.display(),
                d.display()
            )));
        }
    }
    Ok(())
}

enum Launch {
    PortTaken(String),
    Failed(MtaStartError),
}

async fn launch(mta: Mta, root: &Path, work: &Path, port: u16, prepared: Prepared) -> Result<RunningMta, Launch> {
    let fail = |e: MtaStartError| Launch::Failed(e);
    let tls_library = tls_library(mta, &prepared).await;
    let out_path = work.join("daemon.out");
    let out = std::fs::File::create(&out_path).map_err(|e| fail(harness("create daemon.out", e)))?;
    let err = out.try_clone().map_err(|e| fail(harness("create daemon.out", e)))?;
    let mut tasks = Vec::new();
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let mut log = match &prepared.log {
        LogPlan::File(path) => LogReader::File { path: path.clone(), offset: 0, partial: String::new() },
        LogPlan::Stderr | LogPlan::Syslog(_) => LogReader::Lines(rx),
    };
    if let LogPlan::Syslog(path) = &prepared.log {
        let sock = UnixDatagram::bind(path).map_err(|e| fail(harness("bind the syslog socket", e)))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = sock.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).trim_end_matches(['\n', '\0']).to_string();
                if tx.send(text).is_err() {
                    break;
                }
            }
        }));
    }
    let mut cmd = tokio::process::Command::new(&prepared.program);
    cmd.args(&prepared.args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C")
        .envs(prepared.env.iter().cloned())
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(out)
        .process_group(0);
    if matches!(prepared.log, LogPlan::Stderr) {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(err);
    }
    let hook = prepared.ns.hook().map_err(|e| fail(harness("prepare the namespaces", e)))?;
    // SAFETY: the hook makes only syscalls on memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || hook.enter());
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !prepared.ns.is_empty() => {
            return Err(fail(MtaStartError::NotInstalled(format!(
                "{} needs private namespaces (unshare, mount: CAP_SYS_ADMIN), which this machine does not allow: {e}",
                mta.name()
            ))));
        }
        Err(e) => return Err(fail(harness(&format!("start {}", prepared.program.display()), e))),
    };
    let pid = child.id().unwrap_or(0) as i32;
    register(pid);
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
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let info = MtaInfo {
        mta,
        version: package_version(root, mta),
        tls_library,
        // Paths under the run's temporary directory mean nothing after the run: `$WORK`.
        settings: prepared
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.replace(&*work.to_string_lossy(), "$WORK")))
            .collect(),
        config_warnings: Vec::new(),
        ready_ms: 0,
    };
    let mut running = RunningMta {
        mta,
        addr,
        child: Some(child),
        pgid: pid,
        log: LogReader::File { path: PathBuf::new(), offset: 0, partial: String::new() },
        pending: Vec::new(),
        tasks,
        info,
    };
    std::mem::swap(&mut running.log, &mut log);
    // Ready: a 220 on the port, while the daemon is alive.
    loop {
        if let Some(child) = running.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let said = format!(
                "{} {}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                running.log.read_new().join("\n")
            );
            running.child = None;
            let detail = format!("{} exited at start ({status}): {}", mta.name(), tail(&said, 6));
            let lower = said.to_lowercase();
            return Err(if lower.contains("address already in use") {
                Launch::PortTaken(detail)
            } else if ["tls", "ssl", "certificate", "cipher", "dh ", "pki", "key"].iter().any(|w| lower.contains(w)) {
                Launch::Failed(MtaStartError::ConfigRejected(detail))
            } else {
                Launch::Failed(MtaStartError::Harness(detail))
            });
        }
        if started.elapsed() > READY_BOUND {
            let said = std::fs::read_to_string(&out_path).unwrap_or_default();
            let _ = running.stop_inner().await;
            return Err(fail(MtaStartError::Harness(format!(
                "{} did not answer 220 on {addr} within {} s: {}",
                mta.name(),
                READY_BOUND.as_secs(),
                tail(&said, 4)
            ))));
        }
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            let mut stream = BufReader::new(stream);
            let banner = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut stream)).await.ok().flatten();
            if banner.as_deref().is_some_and(|b| b.starts_with("220")) {
                running.info.ready_ms = started.elapsed().as_millis() as u64;
                let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
                let _ = tokio::time::timeout(Duration::from_secs(1), read_reply(&mut stream)).await;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The readiness connection's own lines (and any warning about the configuration, which
    // the daemon gives when it first sets up TLS) do not belong to the first cell.
    running.quiesce(Duration::from_millis(500)).await;
    let _ = running.take_records();
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postfix_dh_warning_keeps_its_detail() {
        let lines = vec![
            "Nov 28 18:40:01 mx postfix/smtpd[12]: warning: error configuring explicit DH parameters".to_string(),
            "Nov 28 18:40:01 mx postfix/smtpd[12]: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/ssl_lib.c:6016:".to_string(),
            "Nov 28 18:40:02 mx postfix/smtpd[12]: warning: TLS library problem: error:0A0000C1:SSL routines::no shared cipher:x".to_string(),
        ];
        let Digest { errors, warnings, .. } = digest(Mta::Postfix, &lines);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("dh key too small"), "{warnings:?}");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("no shared cipher"));
    }
}
