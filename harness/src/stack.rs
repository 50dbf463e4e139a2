//! Client stacks made ready to run: is the program here (else the stack is skipped), does it
//! keep the client contract (a nonsense flag must exit 89), what version and policy does it
//! report; then one cell's run of it, read into a RESULT or into "we could not run it" — in a
//! process of its own, or in the stack's batch worker (`batch = true`).

use crate::adapters::{Located, NotReady, Target};
use crate::batch::{self, Reply};
use crate::matrix::{ClientStack, StackKind};
use crate::process::{self, Exit, Spec};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wire::{ClientResult, EXIT_UNSUPPORTED};

/// The flag every contract program must refuse with exit 89.
pub const PROBE_FLAG: &str = "--starttls-matrix-probe-nonsense";

/// Whether a stack can run here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    /// Not installed here: its cells are skipped, never failed.
    Skipped(String),
    /// Installed but not keeping the contract: its cells are harness errors.
    Broken(String),
}

/// A stack with what was learnt about it on this machine.
#[derive(Debug, Clone)]
pub struct ResolvedStack {
    pub stack: ClientStack,
    pub readiness: Readiness,
    /// The program that runs (the harness binary itself for built-ins).
    pub program: PathBuf,
    pub version: Option<String>,
    pub policy: serde_json::Value,
    /// The stack's batch worker for the run (`batch = true` and ready); the contract probe and
    /// `--describe` still run one-shot.
    pub batch: Option<Arc<batch::Pool>>,
    /// What an adapter's program needs to run here (its environment, its private files).
    pub located: Option<Located>,
}

/// What running one cell's client gave, before classification.
#[derive(Debug, Clone)]
pub enum ClientRun {
    Result(ClientResult),
    Unsupported(String),
    Timeout(Duration),
    HarnessError(String),
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

impl ResolvedStack {
    /// Program and leading arguments (the built-in's `client NAME`).
    fn base(&self) -> (PathBuf, Vec<OsString>) {
        match &self.stack.kind {
            StackKind::Builtin(name) => (self.program.clone(), vec!["client".into(), name.into()]),
            StackKind::Program(_) | StackKind::Adapter(_) => (self.program.clone(), Vec::new()),
        }
    }

    /// The stack's environment, then what its adapter's program needs (which wins).
    fn env(&self) -> Vec<(String, String)> {
        let needed = self.located.as_ref().map_or(&[][..], |l| l.env.as_slice());
        self.stack
            .env
            .iter()
            .filter(|(k, _)| !needed.iter().any(|(n, _)| n == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(needed.iter().cloned())
            .collect()
    }

    /// Find, probe and describe a stack.
    pub async fn resolve(stack: &ClientStack, builtin_exe: &Path) -> ResolvedStack {
        let mut resolved = ResolvedStack {
            stack: stack.clone(),
            readiness: Readiness::Ready,
            program: builtin_exe.to_path_buf(),
            version: None,
            policy: serde_json::Value::Null,
            batch: None,
            located: None,
        };
        if let Some(missing) = stack.requires.iter().find(|p| process::which(p).is_none()) {
            resolved.readiness =
                Readiness::Skipped(format!("{missing} is not installed (scripts/install-stacks installs it)"));
            return resolved;
        }
        match &stack.kind {
            StackKind::Adapter(kind) => {
                let located = match kind.locate(stack) {
                    Ok(located) => located,
                    Err(NotReady::Missing(why)) => {
                        resolved.readiness = Readiness::Skipped(why);
                        return resolved;
                    }
                    Err(NotReady::Broken(why)) => {
                        resolved.readiness = Readiness::Broken(why);
                        return resolved;
                    }
                };
                resolved.program = located.program.clone();
                if let Some((version, policy)) = kind.describe(&located).await {
                    resolved.version = Some(version);
                    resolved.policy = policy;
                }
                resolved.located = Some(located);
                return resolved;
            }
            StackKind::Program(p) => match process::which(&p.to_string_lossy()) {
                Some(path) => resolved.program = path,
                None => {
                    resolved.readiness = Readiness::Skipped(match &stack.build {
                        Some(script) => format!("{} is not built: run {script}", p.display()),
                        None => format!("{} is not installed (not found)", p.display()),
                    });
                    return resolved;
                }
            },
            StackKind::Builtin(_) => {}
        }
        let (program, args) = resolved.base();
        let env = resolved.env();
        let spec = |extra: &str| Spec {
            program: program.clone(),
            args: {
                let mut a = args.clone();
                a.push(extra.into());
                a
            },
            env: env.clone(),
            stdin: None,
            stdin_then: None,
            // Wrapper programs build themselves on their first call (javac, go build): on a
            // cold cache that is this probe, and it takes seconds.
            timeout: Duration::from_secs(60),
        };
        match process::run(&spec(PROBE_FLAG)).await {
            Ok(Exit::Finished { status, .. }) if status.code() == Some(EXIT_UNSUPPORTED) => {}
            Ok(Exit::Finished { status, stderr, .. }) => {
                resolved.readiness = Readiness::Broken(format!(
                    "{} does not keep the client contract: the unknown flag {PROBE_FLAG} gave {status}, not exit {EXIT_UNSUPPORTED} ({})",
                    program.display(),
                    tail(&stderr)
                ));
                return resolved;
            }
            Ok(Exit::TimedOut { .. }) => {
                resolved.readiness =
                    Readiness::Broken(format!("{} hung on the unknown flag {PROBE_FLAG}", program.display()));
                return resolved;
            }
            Err(e) => {
                resolved.readiness = Readiness::Broken(e.to_string());
                return resolved;
            }
        }
        if let Ok(Exit::Finished { status, stdout, .. }) = process::run(&spec("--describe")).await
            && status.success()
            && let Some(json) = stdout.lines().find_map(|l| l.strip_prefix("DESCRIBE "))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
        {
            resolved.version = v["library"].as_str().map(str::to_string);
            resolved.policy = v["policy"].clone();
        }
        if stack.batch && matches!(stack.kind, StackKind::Program(_)) {
            resolved.batch = Some(Arc::new(batch::Pool::new(resolved.program.clone(), env)));
        }
        resolved
    }

    /// Run this stack's client for one cell.
    pub async fn run(&self, target: &Target, timeout: Duration) -> ClientRun {
        let (program, mut args, stdin) = match &self.stack.kind {
            StackKind::Adapter(kind) => {
                let (args, stdin) = kind.command(target, &self.stack.args);
                (self.program.clone(), args, Some(stdin))
            }
            StackKind::Builtin(_) | StackKind::Program(_) => {
                let (program, mut args) = self.base();
                for (flag, value) in [
                    ("--connect", target.connect.as_str()),
                    ("--servername", target.servername.as_str()),
                    ("--ehlo", target.ehlo.as_str()),
                ] {
                    args.push(flag.into());
                    args.push(value.into());
                }
                args.push("--cafile".into());
                args.push(target.cafile.clone().into_os_string());
                (program, args, None)
            }
        };
        if !matches!(self.stack.kind, StackKind::Adapter(_)) {
            args.extend(self.stack.args.iter().map(OsString::from));
        }
        // A program's argv is all contract flags and policy args: its batch worker takes it as is.
        if let (Some(pool), StackKind::Program(_)) = (&self.batch, &self.stack.kind) {
            match pool.call(&args, timeout).await {
                Reply::Answer { exit, stdout, stderr } => {
                    // The one-shot program's exit status: `exit` where a wait status keeps it.
                    let status = std::process::ExitStatus::from_raw((exit & 0xff) << 8);
                    return contract_exit(status, &stdout, &stderr);
                }
                Reply::TimedOut(after) => return ClientRun::Timeout(after),
                Reply::Died(detail) => return ClientRun::HarnessError(detail),
                // No worker to be had: this cell runs the one-shot way.
                Reply::Unavailable(_) => {}
            }
        }
        let stdin_then = match &self.stack.kind {
            StackKind::Adapter(a) => a.paced_quit().map(|(marker, then)| (marker.to_string(), then.to_vec())),
            _ => None,
        };
        let spec = Spec { program, args, env: self.env(), stdin, stdin_then, timeout };
        let exit = match process::run(&spec).await {
            Ok(exit) => exit,
            Err(e) => return ClientRun::HarnessError(e.to_string()),
        };
        match exit {
            Exit::TimedOut { elapsed } => ClientRun::Timeout(elapsed),
            Exit::Finished { status, stdout, stderr, .. } => match &self.stack.kind {
                StackKind::Adapter(kind) => match kind.parse(status.code(), &stdout, &stderr) {
                    Ok(result) => ClientRun::Result(result),
                    Err(why) => ClientRun::HarnessError(format!("{}: {why}; stderr: {}", kind.name(), tail(&stderr))),
                },
                StackKind::Builtin(_) | StackKind::Program(_) => contract_exit(status, &stdout, &stderr),
            },
        }
    }
}

/// Read a contract program's exit: 0 with one RESULT line, 89 unsupported, else a crash.
fn contract_exit(status: std::process::ExitStatus, stdout: &str, stderr: &str) -> ClientRun {
    match status.code() {
        Some(0) => match ClientResult::from_stdout(stdout) {
            Ok(r) => ClientRun::Result(r),
            Err(e) => ClientRun::HarnessError(format!("client exited 0 but {e}; stderr: {}", tail(stderr))),
        },
        Some(EXIT_UNSUPPORTED) => ClientRun::Unsupported(tail(stderr)),
        _ => ClientRun::HarnessError(format!("client crashed ({status}); stderr: {}", tail(stderr))),
    }
}

/// End the batch workers of these stacks (the end of a run): each is told to stop, then its
/// process group is killed and reaped.
pub async fn stop_batch_workers<'a>(stacks: impl IntoIterator<Item = &'a ResolvedStack>) {
    for stack in stacks {
        if let Some(pool) = &stack.batch {
            pool.stop().await;
        }
    }
}
