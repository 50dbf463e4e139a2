//! Batch workers: a `batch = true` client stack keeps one long-lived process for a run (started
//! on first use, in its own process group, ended and reaped when the run ends) that runs each
//! cell's contract argv and answers with what the one-shot program would have exited with and
//! printed, so a slow start (a JVM's) is paid once per run instead of once per cell.
//!
//! The protocol, one line each, the worker's stdout carrying nothing else:
//! - worker: `READY`, once it takes requests;
//! - harness: `RUN <id> <argv as a JSON array of strings>`, the argv a one-shot run would get;
//! - worker: `ANSWER <id> {"exit":N,"stdout":"…","stderr":"…"}`, in any order (requests run
//!   concurrently: the runner serves several profiles at once);
//! - harness: `CANCEL <id>` when the cell's timeout passed: the worker closes that cell's
//!   socket, as killing a one-shot process would, and the cell is a timeout;
//! - harness: end of stdin when the run is over: the worker exits.
//!
//! A worker that dies makes the cells it was running harness errors and is restarted for the
//! next cell, at most [`MAX_DEATHS`] times a run; a worker that cannot start, or dies too often,
//! leaves the stack's remaining cells to the one-shot way (one process per cell).

use procs::LongLived;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The flag that makes a contract program a batch worker.
pub const BATCH_FLAG: &str = "--batch";
/// How long a worker may take to say READY (a JVM on a loaded machine).
const START_BOUND: Duration = Duration::from_secs(60);
/// Deaths of a stack's worker a run tolerates before its cells go back to one process each.
pub const MAX_DEATHS: u32 = 3;
/// The longest protocol line (an answer carries a cell's whole stdout and stderr).
const MAX_LINE: u64 = 4 << 20;
/// The stderr kept to say why a worker died.
const STDERR_TAIL: usize = 4096;
/// How long a worker told to stop may take to exit by itself before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a CANCEL may take to write (a worker that reads no more is dying anyway).
const CANCEL_BOUND: Duration = Duration::from_secs(1);

/// What one cell's request gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// What the one-shot program would have exited with and printed.
    Answer { exit: i32, stdout: String, stderr: String },
    /// No answer within the cell's timeout: the request was cancelled.
    TimedOut(Duration),
    /// The worker died while the cell ran: a harness error (the next cell gets a new worker).
    Died(String),
    /// There is no worker to ask (it cannot start, or died too often): run the cell one-shot.
    Unavailable(String),
}

#[derive(Debug, serde::Deserialize)]
struct Answer {
    exit: i32,
    stdout: String,
    stderr: String,
}

/// What a worker's request readers and its owner share.
#[derive(Default)]
struct Shared {
    /// Requests awaiting an answer; `None` once the worker is dead.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>,
    /// Why the worker stopped answering, when it was not asked to.
    broken: Mutex<Option<String>>,
    stderr: Mutex<VecDeque<u8>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn alive(&self) -> bool {
        lock(&self.pending).is_some()
    }

    /// No more answers: every waiting request learns the worker died.
    fn mark_dead(&self, why: Option<String>) {
        if let Some(why) = why {
            lock(&self.broken).get_or_insert(why);
        }
        lock(&self.pending).take();
    }

    fn forget(&self, id: u64) {
        if let Some(p) = lock(&self.pending).as_mut() {
            p.remove(&id);
        }
    }

    /// The last lines of the worker's stderr, on one line.
    fn stderr_tail(&self) -> String {
        let bytes: Vec<u8> = lock(&self.stderr).iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }
}

/// One running worker process.
struct Worker {
    pid: Option<u32>,
    process: tokio::sync::Mutex<Option<LongLived>>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    shared: Arc<Shared>,
    /// The task keeping its stderr's tail: done once its stderr closed.
    stderr_task: Mutex<Option<JoinHandle<()>>>,
    /// How it ended, once it was reaped after dying.
    ended: Mutex<Option<String>>,
}

/// Let the stderr reader take a reaped worker's last words (its pipe closes with the group).
async fn last_words(task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
}

/// One protocol line, without its line end; `None` at end of output.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *reader).take(MAX_LINE).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && n as u64 >= MAX_LINE {
        return Err(std::io::Error::other(format!("a line longer than {MAX_LINE} bytes")));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Hand each ANSWER to the request waiting for it, until the worker's output ends.
async fn read_answers(shared: Arc<Shared>, mut out: BufReader<ChildStdout>) {
    let why = loop {
        let line = match read_line(&mut out).await {
            Ok(Some(line)) => line,
            Ok(None) => break None,
            Err(e) => break Some(format!("its output was unreadable: {e}")),
        };
        let Some(rest) = line.strip_prefix("ANSWER ") else { continue };
        let parsed = rest
            .split_once(' ')
            .and_then(|(id, json)| Some((id.parse::<u64>().ok()?, serde_json::from_str::<Answer>(json).ok()?)));
        let Some((id, answer)) = parsed else {
            let shown: String = line.chars().take(200).collect();
            break Some(format!("it wrote an unreadable answer: {shown}"));
        };
        // A request that timed out is forgotten: its late answer goes nowhere.
        let waiting = lock(&shared.pending).as_mut().and_then(|p| p.remove(&id));
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    };
    shared.mark_dead(why);
}

/// Keep the last [`STDERR_TAIL`] bytes of the worker's stderr.
async fn keep_stderr(shared: Arc<Shared>, mut err: ChildStderr) {
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = err.read(&mut chunk).await {
        let mut tail = lock(&shared.stderr);
        tail.extend(&chunk[..n]);
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
    }
}

impl Worker {
    /// Start `program --batch` and wait for its READY.
    async fn start(program: &Path, base: &[OsString], env: &[(String, String)]) -> Result<Worker, String> {
        let mut args = base.to_vec();
        args.push(OsString::from(BATCH_FLAG));
        let mut process = LongLived::spawn(program, &args, env).map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared { pending: Mutex::new(Some(HashMap::new())), ..Shared::default() });
        let (stdin, stdout, stderr) = (process.take_stdin(), process.take_stdout(), process.take_stderr());
        let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            process.end(Duration::ZERO).await;
            return Err("its pipes were not set up".into());
        };
        let stderr_task = tokio::spawn(keep_stderr(shared.clone(), stderr));
        let mut out = BufReader::new(stdout);
        let first = tokio::time::timeout(START_BOUND, read_line(&mut out)).await;
        if !matches!(&first, Ok(Ok(Some(line))) if line == "READY") {
            let what = match first {
                Err(_) => format!("no READY within {START_BOUND:?}"),
                Ok(Ok(Some(line))) => {
                    format!("it said {:?} instead of READY", line.chars().take(200).collect::<String>())
                }
                Ok(Ok(None)) => "its output ended before READY".into(),
                Ok(Err(e)) => format!("its output was unreadable: {e}"),
            };
            let status = process.end(Duration::from_millis(500)).await;
            last_words(Some(stderr_task)).await;
            return Err(format!(
                "{} {BATCH_FLAG} did not start: {what} ({}); stderr: {}",
                program.display(),
                status.map_or_else(|| "not reaped".into(), |s| s.to_string()),
                shared.stderr_tail()
            ));
        }
        tokio::spawn(read_answers(shared.clone(), out));
        Ok(Worker {
            pid: process.id(),
            process: tokio::sync::Mutex::new(Some(process)),
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            shared,
            stderr_task: Mutex::new(Some(stderr_task)),
            ended: Mutex::new(None),
        })
    }

    async fn send(&self, line: &str) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else { return Err(std::io::Error::other("the worker was stopped")) };
        pipe.write_all(line.as_bytes()).await?;
        pipe.flush().await
    }

    /// Run one request within `timeout`.
    async fn call(&self, id: u64, argv: &[String], timeout: Duration) -> Reply {
        let (tx, rx) = oneshot::channel();
        let registered = lock(&self.shared.pending).as_mut().map(|pending| pending.insert(id, tx)).is_some();
        if !registered {
            return Reply::Died(self.death().await);
        }
        let line = format!("RUN {id} {}\n", serde_json::to_string(argv).expect("strings serialise"));
        let started = Instant::now();
        let exchange = async {
            if self.send(&line).await.is_err() {
                return None;
            }
            rx.await.ok()
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some(Answer { exit, stdout, stderr })) => Reply::Answer { exit, stdout, stderr },
            Ok(None) => {
                self.shared.forget(id);
                Reply::Died(self.death().await)
            }
            Err(_) => {
                self.shared.forget(id);
                let _ = tokio::time::timeout(CANCEL_BOUND, self.send(&format!("CANCEL {id}\n"))).await;
                Reply::TimedOut(started.elapsed())
            }
        }
    }

    /// The worker died: reap it (once) and say how, for every cell it took down.
    async fn death(&self) -> String {
        self.shared.mark_dead(None);
        // Held while the first caller reaps it: the others then read how it ended.
        let mut process = self.process.lock().await;
        if let Some(p) = process.take() {
            let status = p.end(Duration::from_secs(1)).await;
            let task = lock(&self.stderr_task).take();
            last_words(task).await;
            *lock(&self.ended) = Some(status.map_or_else(|| "not reaped".into(), |s| s.to_string()));
        }
        drop(process);
        let pid = self.pid.map_or_else(String::new, |p| format!(" (pid {p})"));
        let ended = lock(&self.ended).clone().unwrap_or_else(|| "ended".into());
        let broken = lock(&self.shared.broken).clone().map_or_else(String::new, |b| format!("; {b}"));
        format!(
            "the batch worker{pid} died while running this cell ({ended}{broken}); stderr: {}",
            self.shared.stderr_tail()
        )
    }

    /// Close its stdin (it exits), give it [`STOP_GRACE`], then kill its group and reap it.
    async fn stop(&self) {
        self.stdin.lock().await.take();
        let process = self.process.lock().await.take();
        if let Some(process) = process {
            process.end(STOP_GRACE).await;
        }
        self.shared.mark_dead(None);
    }
}

/// A stack's batch worker for a run: none until the first cell asks.
pub struct Pool {
    program: PathBuf,
    base: Vec<OsString>,
    env: Vec<(String, String)>,
    next_id: AtomicU64,
    state: tokio::sync::Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    worker: Option<Arc<Worker>>,
    deaths: u32,
    /// Why the remaining cells run one-shot.
    given_up: Option<String>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("program", &self.program).finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `program` (run as `program --batch`) with `env` added.
    /// A pool for `program BASE… --batch` (`base`: the harness's `client openssl-client` for a
    /// built-in client, nothing for a program of its own).
    pub fn new(program: PathBuf, base: Vec<OsString>, env: Vec<(String, String)>) -> Pool {
        Pool { program, base, env, next_id: AtomicU64::new(1), state: tokio::sync::Mutex::new(PoolState::default()) }
    }

    /// Run one cell's argv in the worker (starting it if none runs), within `timeout`.
    pub async fn call(&self, argv: &[OsString], timeout: Duration) -> Reply {
        let Some(argv) = argv.iter().map(|a| a.to_str().map(str::to_string)).collect::<Option<Vec<_>>>() else {
            return Reply::Unavailable("an argument is not UTF-8, which the batch protocol cannot carry".into());
        };
        let worker = match self.worker().await {
            Ok(w) => w,
            Err(why) => return Reply::Unavailable(why),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        worker.call(id, &argv, timeout).await
    }

    /// The running worker, or a new one; an error when there is none to be had.
    async fn worker(&self) -> Result<Arc<Worker>, String> {
        let mut state = self.state.lock().await;
        if let Some(why) = &state.given_up {
            return Err(why.clone());
        }
        match state.worker.take() {
            Some(w) if w.shared.alive() => {
                state.worker = Some(w.clone());
                return Ok(w);
            }
            Some(dead) => {
                dead.stop().await;
                state.deaths += 1;
            }
            None => {}
        }
        if state.deaths >= MAX_DEATHS {
            let why =
                format!("the batch worker died {} times; this stack's cells run one process each now", state.deaths);
            state.given_up = Some(why.clone());
            return Err(why);
        }
        match Worker::start(&self.program, &self.base, &self.env).await {
            Ok(w) => {
                let w = Arc::new(w);
                state.worker = Some(w.clone());
                Ok(w)
            }
            Err(why) => {
                state.given_up = Some(why.clone());
                Err(why)
            }
        }
    }

    /// End the worker, if one runs (the end of a run); a later call starts a new one.
    pub async fn stop(&self) {
        let worker = self.state.lock().await.worker.take();
        if let Some(w) = worker {
            w.stop().await;
        }
    }

    /// The running worker's process id.
    pub async fn worker_pid(&self) -> Option<u32> {
        self.state.lock().await.worker.as_ref().filter(|w| w.shared.alive()).and_then(|w| w.pid)
    }
}
