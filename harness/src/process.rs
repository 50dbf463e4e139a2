//! Child processes: each in its own process group, with its output read to the end (bounded),
//! a timeout, and the whole group killed and reaped afterwards. A registry of live groups lets
//! Ctrl-C and panics end everything we started, and nothing else.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The most output kept from one stream of one child.
const MAX_OUTPUT: u64 = 1 << 20;

static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// SIGKILL every process group we started and have not reaped yet (Ctrl-C, panic).
pub fn kill_all() {
    let groups = LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        // SAFETY: killpg on a group whose leader we have not reaped: the id cannot be reused.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

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

async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = reader {
        let _ = r.take(MAX_OUTPUT).read_to_end(&mut out).await;
    }
    out
}

/// Run a child to completion or timeout; the whole group is killed and reaped either way.
pub async fn run(spec: &Spec) -> Result<Exit, SpawnError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|cause| SpawnError { program: spec.program.display().to_string(), cause })?;
    let pgid = child.id().map(|id| id as i32);
    if let Some(pgid) = pgid {
        LIVE_GROUPS.lock().map(|mut g| g.insert(pgid)).ok();
    }
    if let (Some(input), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        let input = input.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Both pipes reach end of file when every process holding them has exited or closed them.
    let output =
        tokio::time::timeout(spec.timeout, async { tokio::join!(read_bounded(stdout), read_bounded(stderr)) }).await;
    // Kill the whole group while its leader is not yet reaped, so the id cannot have been
    // reused: this ends stragglers of a program that exited, and a program that timed out.
    if let Some(pgid) = pgid {
        // SAFETY: the leader is our unreaped child; ESRCH (nothing left) is harmless.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    let status = child.wait().await;
    let elapsed = started.elapsed();
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
        LIVE_GROUPS.lock().map(|mut g| g.remove(&pgid)).ok();
    }
    result
}

/// Run a short command and return its stdout, or `None` if it cannot be run (for versions).
pub async fn capture(program: &str, args: &[&str]) -> Option<String> {
    let spec = Spec {
        program: program.into(),
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        stdin: None,
        timeout: Duration::from_secs(10),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Spec {
        Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            stdin: None,
            timeout,
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
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A grandchild that would outlive its parent if only the parent were killed.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let exit = run(&sh(&script, Duration::from_millis(500))).await.unwrap();
        assert!(matches!(exit, Exit::TimedOut { .. }));
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A zombie waiting for its reaper is dead; anything else is still running.
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false);
        assert!(!alive, "the grandchild {pid} must be gone");
        assert!(LIVE_GROUPS.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let spec = Spec {
            program: "/nonexistent/x".into(),
            args: vec![],
            env: vec![],
            stdin: None,
            timeout: Duration::from_secs(1),
        };
        assert!(run(&spec).await.is_err());
    }
}
