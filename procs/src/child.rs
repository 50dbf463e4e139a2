//! Child processes: each started as [`crate::guard`] says (directly by `posix_spawn`, or under the
//! guard program) in its own process group, with its output read to the end (bounded), a
//! timeout, and the whole group killed and reaped afterwards; long-lived ones (batch workers) are
//! ended the same way when their run ends. Every live group is in the [`crate::registry`] and
//! known to the run's [`crate::watchdog`].

use crate::guard::{Confine, Setup, reaped, started};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The most output kept from one stream of one child.
const MAX_OUTPUT: u64 = 1 << 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    /// More input, written once stdout shows the marker (a reply), with stdin kept open
    /// until the output ends: for programs that would otherwise pipeline SMTP commands the
    /// server did not offer pipelining for, or end the session at end of input.
    pub stdin_then: Option<(Vec<String>, Vec<u8>)>,
    pub timeout: Duration,
    /// What ends with it: its process group, or everything it starts (a PID namespace).
    pub confine: Confine,
}

/// How long a program that closed its output may take to be seen exiting (through its guard)
/// before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// How a child ended.
#[derive(Debug, Clone)]
pub enum Exit {
    /// It ended by itself (status), with its output.
    Finished { status: ExitStatus, stdout: String, stderr: String, elapsed: Duration },
    /// It did not end within the timeout and was killed.
    TimedOut { elapsed: Duration },
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
#[error("start {program}: {cause}")]
pub struct SpawnError {
    pub program: String,
    pub cause: std::io::Error,
}

/// Read to the end (bounded), signalling once when the text read so far contains `marker`.
async fn read_watching<R: AsyncRead + Unpin>(
    reader: Option<R>,
    mut marker: Option<(Vec<String>, tokio::sync::oneshot::Sender<()>)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(r) = reader else { return out };
    let mut r = r.take(MAX_OUTPUT);
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if marker.as_ref().is_some_and(|(ms, _)| ms.iter().any(|m| out.windows(m.len()).any(|w| w == m.as_bytes())))
            && let Some((_, tx)) = marker.take()
        {
            let _ = tx.send(());
        }
    }
    out
}

async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = reader {
        let _ = r.take(MAX_OUTPUT).read_to_end(&mut out).await;
    }
    out
}

/// Run a child to completion or timeout; the whole group is killed and reaped either way.
/// A command for `program ARGS` as `confine` says, or the error a spawn would give.
fn launch(program: &Path, args: &[OsString], confine: Confine) -> Result<Command, SpawnError> {
    crate::guard::command(program, args, confine, &Setup::default()).map_err(|e| SpawnError {
        program: program.display().to_string(),
        cause: match e {
            crate::guard::LaunchError::NotFound(_) => std::io::Error::from(std::io::ErrorKind::NotFound),
            other => std::io::Error::other(other.to_string()),
        },
    })
}

pub async fn run(spec: &Spec) -> Result<Exit, SpawnError> {
    let mut cmd = launch(&spec.program, &spec.args, spec.confine)?;
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let began = Instant::now();
    let mut child = cmd.spawn().map_err(|cause| SpawnError { program: spec.program.display().to_string(), cause })?;
    let pgid = child.id().map(|id| id as i32);
    if let Some(pgid) = pgid {
        started(pgid);
    }
    let (marker_tx, marker_rx) = tokio::sync::oneshot::channel::<()>();
    let mut writer = None;
    if let (Some(input), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        let (input, then) = (input.clone(), spec.stdin_then.as_ref().map(|(_, t)| t.clone()));
        writer = Some(tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let Some(then) = then else {
                // No continuation: end of input now.
                drop(stdin);
                return None;
            };
            if marker_rx.await.is_ok() {
                let _ = stdin.write_all(&then).await;
            }
            // Returned, the pipe stays open until the task's handle is dropped.
            Some(stdin)
        }));
    }
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let marker = spec.stdin_then.as_ref().map(|(m, _)| (m.clone(), marker_tx));
    // Both pipes reach end of file when every process holding them has exited or closed them.
    let output =
        tokio::time::timeout(spec.timeout, async { tokio::join!(read_watching(stdout, marker), read_bounded(stderr)) })
            .await;
    drop(writer);
    // A program that closed its output has usually exited: its status comes through its guard
    // a moment later (killing the group first would make it SIGKILL).
    if let (Ok(_), Some(pgid)) = (&output, pgid) {
        until_exited(pgid, EXIT_GRACE).await;
    }
    // Kill the whole group while its leader is not yet reaped, so the id cannot have been
    // reused: this ends stragglers of a program that exited, and a program that timed out.
    if let Some(pgid) = pgid {
        // SAFETY: the leader is our unreaped child; ESRCH (nothing left) is harmless.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    let status = child.wait().await;
    let elapsed = began.elapsed();
    let result = match (output, status) {
        (Ok((out, err)), Ok(status)) => Ok(Exit::Finished {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            elapsed,
        }),
        (Err(_), Ok(_)) => Ok(Exit::TimedOut { elapsed }),
        (_, Err(cause)) => Err(SpawnError { program: spec.program.display().to_string(), cause }),
    };
    if let Some(pgid) = pgid {
        reaped(pgid);
    }
    result
}

/// Run a short command with `env` added (a stack's own environment: versions must come from the
/// environment its cells run with) and return its stdout, or `None` if it cannot be run.
pub async fn capture(program: &Path, args: &[&str], env: &[(String, String)]) -> Option<String> {
    let spec = Spec {
        program: program.into(),
        args: args.iter().map(OsString::from).collect(),
        env: env.to_vec(),
        stdin: None,
        stdin_then: None,
        timeout: Duration::from_secs(10),
        confine: Confine::Group,
    };
    match run(&spec).await.ok()? {
        Exit::Finished { status, stdout, .. } if status.success() => Some(stdout),
        _ => None,
    }
}

/// Find a program on PATH (or take a path as it is).
pub fn which(program: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(program)).find(|c| c.is_file()))
}

/// Whether our child `pid` has exited (or is not ours to wait for), without reaping it.
fn exited(pid: i32) -> bool {
    // SAFETY: a zeroed siginfo_t is valid; WNOWAIT leaves the child unreaped.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        r != 0 || info.si_pid() != 0
    }
}

/// Wait, at most `bound`, until our child `pid` has exited, without reaping it: its pidfd turns
/// readable then (without one, look every millisecond).
async fn until_exited(pid: i32, bound: Duration) {
    use std::os::fd::FromRawFd;
    let deadline = Instant::now() + bound;
    // SAFETY: pidfd_open returns a new descriptor (close-on-exec), owned from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: the descriptor is ours alone, and stays open as long as the AsyncFd holds it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: as above.
        let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
        if let Ok(fd) = registered {
            let _ = tokio::time::timeout(bound, fd.readable()).await;
            return;
        }
    }
    while !exited(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A long-lived child (a batch worker) with piped stdin, stdout and stderr, in its own process
/// group, registered for [`crate::kill_all`] until [`LongLived::end`] (or, failing that, drop) kills the
/// group and reaps the leader.
#[derive(Debug)]
pub struct LongLived {
    child: tokio::process::Child,
    pgid: Option<i32>,
    reaped: bool,
}

impl LongLived {
    /// Start `program ARGS` with `env` added.
    pub fn spawn(program: &Path, args: &[OsString], env: &[(String, String)]) -> Result<LongLived, SpawnError> {
        let mut cmd = launch(program, args, Confine::Group)?;
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|cause| SpawnError { program: program.display().to_string(), cause })?;
        let pgid = child.id().map(|id| id as i32);
        if let Some(pgid) = pgid {
            started(pgid);
        }
        Ok(LongLived { child, pgid, reaped: false })
    }

    /// Its process id (also its process group's).
    pub fn id(&self) -> Option<u32> {
        self.pgid.map(|p| p as u32)
    }

    pub fn take_stdin(&mut self) -> Option<tokio::process::ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Give the child `grace` to exit by itself (its stdin closed, say), then kill its whole
    /// group and reap it. `None` if it could not be reaped.
    pub async fn end(mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        while !self.exited() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The leader is not reaped yet (`exited` only looks), so the group id is still ours.
        self.kill_group();
        let status = self.child.wait().await.ok();
        self.reaped = true;
        self.untrack();
        status
    }

    /// Whether the leader has exited, without reaping it.
    fn exited(&self) -> bool {
        self.pgid.is_none_or(exited)
    }

    fn kill_group(&self) {
        if let (false, Some(pgid)) = (self.reaped, self.pgid) {
            // SAFETY: the leader is our unreaped child: the group id cannot have been reused.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }

    fn untrack(&self) {
        if let Some(pgid) = self.pgid {
            reaped(pgid);
        }
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.kill_group();
        // SIGKILL is quick: reap it here; should it not be, tokio's kill-on-drop reaps it later.
        for _ in 0..250 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.untrack();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Spec {
        Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            stdin: None,
            stdin_then: None,
            timeout,
            confine: Confine::Group,
        }
    }

    #[tokio::test]
    async fn output_and_status() {
        match run(&sh("echo out; echo err >&2; exit 3", Duration::from_secs(5))).await.unwrap() {
            Exit::Finished { status, stdout, stderr, .. } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!((stdout.as_str(), stderr.as_str()), ("out\n", "err\n"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hung_group_is_killed_within_the_timeout() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let dir = tempfile::tempdir().unwrap();
            let pidfile = dir.path().join("pid");
            // A grandchild that would outlive its parent if only the parent were killed; its PID
            // as /proc (the host's) names it, whatever namespace it is in.
            let script = format!(
                "sh -c 'read pid rest < /proc/self/stat; echo $pid > {}; exec sleep 300' & wait",
                pidfile.display()
            );
            let started = Instant::now();
            let exit = run(&Spec { confine, ..sh(&script, Duration::from_millis(500)) }).await.unwrap();
            assert!(matches!(exit, Exit::TimedOut { .. }));
            assert!(started.elapsed() < Duration::from_secs(5));
            let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!crate::registry::alive(pid), "{confine:?}: the grandchild {pid} must be gone");
        }
    }

    #[tokio::test]
    async fn a_program_that_closed_its_output_keeps_its_own_status() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let exit =
                run(&Spec { confine, ..sh("exec >&- 2>&-; sleep 0.2; exit 4", Duration::from_secs(5)) }).await.unwrap();
            assert!(matches!(exit, Exit::Finished { status, .. } if status.code() == Some(4)), "{confine:?}: {exit:?}");
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let spec = Spec {
            program: "/nonexistent/x".into(),
            args: vec![],
            env: vec![],
            stdin: None,
            stdin_then: None,
            timeout: Duration::from_secs(1),
            confine: Confine::Group,
        };
        assert!(run(&spec).await.is_err());
    }
}
