//! Client stacks made ready to run: is the program here (else the stack is skipped), does it
//! keep the client contract (a nonsense flag must exit 89), what version and policy does it
//! report and which TLS library does it load — asked under the stack's own environment, the one
//! its cells run with; then one cell's run of it, read into a RESULT or into "we could not run
//! it" — in a process of its own, or in the stack's batch worker. A sender is started here once
//! for the run, and each of its cells is one message delivered through it.

use crate::adapters::{Located, Target};
use crate::batch::{self, Reply};
use crate::evidence::ClientRun;
use crate::matrix::{ClientStack, StackKind};
use procs::{Exit, Spec};
use report_format::Availability;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wire::{ClientResult, EXIT_UNSUPPORTED};

/// The flag every contract program must refuse with exit 89.
pub const PROBE_FLAG: &str = "--starttls-matrix-probe-nonsense";

/// A stack with what was learnt about it on this machine.
#[derive(Debug, Clone)]
pub struct ResolvedStack {
    pub stack: ClientStack,
    pub availability: Availability,
    /// The program that runs (the harness binary itself for built-ins).
    pub program: PathBuf,
    pub version: Option<String>,
    pub policy: serde_json::Value,
    /// The stack's batch worker for the run (`batch = true` and ready); the contract probe and
    /// `--describe` still run one-shot.
    pub batch: Option<Arc<batch::Pool>>,
    /// What an adapter's program needs to run here (its environment, its private files).
    pub located: Option<Located>,
    /// A sender, started for the run (stopped by [`stop_senders`]).
    pub sender: Option<SenderRef>,
}

/// A running sender, shared by its cells.
#[derive(Clone)]
pub struct SenderRef {
    pub sender: Arc<mta::Sender>,
    /// The loopback address its connections come from: a server's records of it carry it.
    pub source: std::net::Ipv4Addr,
    /// From the start of its start to ready.
    pub ready: Duration,
    /// The run's work directory, written `$WORK` in what the sender says (it means nothing after
    /// the run).
    pub work: PathBuf,
}

impl std::fmt::Debug for SenderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sender({} from {})", self.sender.info().mta.name(), self.source)
    }
}

/// How much longer than its own bound a delivery may take before the harness gives up on it
/// (the queue listing and clean-up after the last attempt).
const DELIVERY_MARGIN: Duration = Duration::from_secs(5);

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The TLS libraries a program resolves under an environment, as the policy shows them: what
/// the cells run on, not what the harness links.
async fn loaded_libraries(program: &Path, env: &[(String, String)]) -> serde_json::Value {
    let loaded = procs::library::resolved_for(program, env).await;
    if loaded.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::Value::Array(loaded.iter().map(|l| serde_json::Value::String(l.describe())).collect())
}

impl ResolvedStack {
    /// Program and leading arguments (the built-in's `client NAME`).
    fn base(&self) -> (PathBuf, Vec<OsString>) {
        match &self.stack.kind {
            StackKind::Builtin(name) => (self.program.clone(), vec!["client".into(), name.into()]),
            StackKind::Program { .. } | StackKind::Adapter(_) | StackKind::Sender { .. } => {
                (self.program.clone(), Vec::new())
            }
        }
    }

    /// The stack's environment, then what its adapter's program needs (which wins): the
    /// environment every run of the stack gets, its version probes included.
    pub fn env(&self) -> Vec<(String, String)> {
        let needed = self.located.as_ref().map_or(&[][..], |l| l.env.as_slice());
        self.stack
            .env
            .iter()
            .filter(|(k, _)| !needed.iter().any(|(n, _)| n == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(needed.iter().cloned())
            .collect()
    }

    /// Find, probe and describe a stack; a sender is started (with `senders`' options).
    pub async fn resolve(
        stack: &ClientStack,
        builtin_exe: &Path,
        senders: Option<mta::SenderOptions>,
    ) -> ResolvedStack {
        let mut resolved = ResolvedStack {
            stack: stack.clone(),
            availability: Availability::Ready,
            program: builtin_exe.to_path_buf(),
            version: None,
            policy: serde_json::Value::Null,
            batch: None,
            located: None,
            sender: None,
        };
        if let Some(missing) = stack.requires.iter().find(|p| procs::which(p).is_none()) {
            resolved.availability =
                Availability::Skipped(format!("{missing} is not installed (scripts/install-stacks installs it)"));
            return resolved;
        }
        match &stack.kind {
            StackKind::Sender { mta, policy, .. } => {
                let Some(opts) = senders else {
                    resolved.availability = Availability::Broken("no place was given to start senders".into());
                    return resolved;
                };
                resolved.start_sender(*mta, *policy, opts).await;
                return resolved;
            }
            StackKind::Adapter(adapter) => {
                let located = match adapter.locate(stack) {
                    Ok(located) => located,
                    Err(not_ready) => {
                        resolved.availability = not_ready;
                        return resolved;
                    }
                };
                resolved.program = located.program.clone();
                resolved.located = Some(located.clone());
                let env = resolved.env();
                let probe = adapter.version_probe(&located);
                let out = procs::capture(&probe.program, &probe.args, &env).await.unwrap_or_default();
                let (version, mut policy) = adapter.describe(&out, &located, &env);
                resolved.version = (!version.is_empty()).then_some(version);
                policy["tls_library_loaded"] = loaded_libraries(&resolved.program, &env).await;
                resolved.policy = policy;
                return resolved;
            }
            StackKind::Program { path, .. } => match procs::which(&path.to_string_lossy()) {
                Some(found) => resolved.program = found,
                None => {
                    resolved.availability = Availability::Skipped(match &stack.build {
                        Some(script) => format!("{} is not built: run {script}", path.display()),
                        None => format!("{} is not installed (not found)", path.display()),
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
            confine: procs::Confine::Group,
        };
        match procs::run(&spec(PROBE_FLAG)).await {
            Ok(Exit::Finished { status, .. }) if status.code() == Some(EXIT_UNSUPPORTED) => {}
            Ok(Exit::Finished { status, stderr, .. }) => {
                resolved.availability = Availability::Broken(format!(
                    "{} does not keep the client contract: the unknown flag {PROBE_FLAG} gave {status}, not exit {EXIT_UNSUPPORTED} ({})",
                    program.display(),
                    tail(&stderr)
                ));
                return resolved;
            }
            Ok(Exit::TimedOut { .. }) => {
                resolved.availability =
                    Availability::Broken(format!("{} hung on the unknown flag {PROBE_FLAG}", program.display()));
                return resolved;
            }
            Err(e) => {
                resolved.availability = Availability::Broken(e.to_string());
                return resolved;
            }
        }
        if let Ok(Exit::Finished { status, stdout, .. }) = procs::run(&spec("--describe")).await
            && status.success()
            && let Some(json) = stdout.lines().find_map(|l| l.strip_prefix("DESCRIBE "))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
        {
            resolved.version = v["library"].as_str().map(str::to_string);
            resolved.policy = v["policy"].clone();
        }
        if resolved.policy.is_object() {
            resolved.policy["tls_library_loaded"] = loaded_libraries(&program, &env).await;
        }
        if stack.batch() {
            let (program, base) = resolved.base();
            resolved.batch = Some(Arc::new(batch::Pool::new(program, base, env)));
        }
        resolved
    }

    /// Start the sender of a sender stack: what it is and the settings its policy became go
    /// into its policy; what it cannot express makes it unsupported, a missing MTA skipped.
    async fn start_sender(&mut self, m: report_format::Mta, policy: mta::SenderPolicy, opts: mta::SenderOptions) {
        self.program = opts.roots.join(m.name());
        let started = std::time::Instant::now();
        let (source, work) = (opts.source, opts.base.clone());
        match mta::sender::start(m, policy, &opts).await {
            Ok(sender) => {
                let info = sender.info().clone();
                self.version = Some(format!("{} {}", m.name(), info.version));
                self.policy = serde_json::json!({
                    "sender": m.name(),
                    "tls": policy.tls.as_str(),
                    "fallback_to_clear": policy.fallback_to_clear,
                    "settings": info.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>(),
                    "tls_library_loaded": [info.tls_library],
                    "source_address": source.to_string(),
                });
                self.sender = Some(SenderRef { sender: Arc::new(sender), source, ready: started.elapsed(), work });
            }
            Err(mta::StartError::NotInstalled(why)) => self.availability = Availability::Skipped(why),
            Err(mta::StartError::Unsupported(why)) => self.availability = Availability::Unsupported(why),
            Err(e) => self.availability = Availability::Broken(format!("start {} as a sender: {e}", m.name())),
        }
    }

    /// Run this stack's client for one cell; a sender delivers one message to the target.
    pub async fn run(&self, target: &Target, timeout: Duration) -> ClientRun {
        if let (Some(s), StackKind::Sender { attempts, .. }) = (&self.sender, &self.stack.kind) {
            return deliver(s, &self.stack.id, target, *attempts, timeout).await;
        }
        // The arguments before the contract's (`client openssl-client` for a built-in client).
        let mut base_len = 0;
        let (program, args, stdin) = match &self.stack.kind {
            StackKind::Sender { .. } => return ClientRun::HarnessError("the sender was not started".into()),
            StackKind::Adapter(adapter) => {
                let (args, stdin) = adapter.command(target, &self.stack.args);
                (self.program.clone(), args, Some(stdin))
            }
            StackKind::Builtin(_) | StackKind::Program { .. } => {
                let (program, mut args) = self.base();
                base_len = args.len();
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
                args.extend(self.stack.args.iter().map(OsString::from));
                (program, args, None)
            }
        };
        // The contract flags and policy args, as the batch worker takes them.
        if let Some(pool) = &self.batch {
            match pool.call(&args[base_len..], timeout).await {
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
            StackKind::Adapter(a) => {
                a.paced_quit().map(|(markers, then)| (markers.iter().map(|m| m.to_string()).collect(), then.to_vec()))
            }
            StackKind::Builtin(_) | StackKind::Program { .. } | StackKind::Sender { .. } => None,
        };
        let spec = Spec { program, args, env: self.env(), stdin, stdin_then, timeout, confine: procs::Confine::Group };
        let exit = match procs::run(&spec).await {
            Ok(exit) => exit,
            Err(e) => return ClientRun::HarnessError(e.to_string()),
        };
        match exit {
            Exit::TimedOut { elapsed } => ClientRun::Timeout(elapsed),
            Exit::Finished { status, stdout, stderr, .. } => match &self.stack.kind {
                StackKind::Adapter(adapter) => match adapter.parse(status.code(), &stdout, &stderr) {
                    Ok(result) => ClientRun::Result(result),
                    Err(why) => {
                        ClientRun::HarnessError(format!("{}: {why}; stderr: {}", adapter.name(), tail(&stderr)))
                    }
                },
                StackKind::Builtin(_) | StackKind::Program { .. } | StackKind::Sender { .. } => {
                    contract_exit(status, &stdout, &stderr)
                }
            },
        }
    }
}

/// One cell of a sender: its message for the target's port, at most `attempts` attempts within
/// `bound`. A sender that does not answer within the bound and a margin is a timeout.
async fn deliver(s: &SenderRef, stack: &str, target: &Target, attempts: u32, bound: Duration) -> ClientRun {
    let (host, port) = target.host_port();
    let Ok(port) = port.parse::<u16>() else {
        return ClientRun::HarnessError(format!("no port in {:?}", target.connect));
    };
    let to = mta::Destination { host: host.to_string(), port };
    let cell = format!("{stack}/{}", to.domain());
    match tokio::time::timeout(bound + DELIVERY_MARGIN, s.sender.deliver(&cell, &to, attempts, bound)).await {
        Ok(Ok(mut view)) => {
            let work = s.work.to_string_lossy().to_string();
            if !work.is_empty() {
                view.queue = view.queue.replace(&work, "$WORK");
                for line in &mut view.log {
                    *line = line.replace(&work, "$WORK");
                }
            }
            ClientRun::Delivery(view)
        }
        Ok(Err(why)) => ClientRun::HarnessError(format!("{} as a sender: {why}", s.sender.info().mta.name())),
        Err(_) => ClientRun::Timeout(bound + DELIVERY_MARGIN),
    }
}

/// Stop the senders of these stacks (the end of a run), each with how its stop went.
pub async fn stop_senders<'a>(
    stacks: impl IntoIterator<Item = &'a ResolvedStack>,
) -> Vec<(String, mta::SenderInfo, Duration, report_format::StopReport)> {
    let mut out = Vec::new();
    for stack in stacks {
        if let Some(s) = &stack.sender {
            let report = s.sender.stop().await;
            out.push((stack.stack.id.clone(), s.sender.info().clone(), s.ready, report));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tables;
    use crate::matrix::Matrix;

    fn stack(text: &str, id: &str) -> ClientStack {
        let m = Matrix::parse(Path::new("/tmp/m.toml"), text, &Tables::builtin().unwrap()).unwrap();
        m.client(id).unwrap().clone()
    }

    const MATRIX: &str = "[[server]]\nid = \"s\"\nbackend = \"openssl\"\n\n[[client]]\nid = \"s_client\"\nadapter = \"openssl-s_client\"\n\n[[client]]\nid = \"s_client@conf\"\nvariant_of = \"s_client\"\nenv = { OPENSSL_CONF = \"/policy/a.cnf\", LD_LIBRARY_PATH = \"/nonexistent/candidate\" }\n";

    /// A variant's version and policy are asked under its own environment (they used to be
    /// asked under the harness's, so a variant published its base's policy).
    #[tokio::test]
    async fn a_variant_is_described_under_its_own_environment() {
        if procs::which("openssl").is_none() {
            eprintln!("skipped: openssl is not installed");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let base = ResolvedStack::resolve(&stack(MATRIX, "s_client"), &exe, None).await;
        let variant = ResolvedStack::resolve(&stack(MATRIX, "s_client@conf"), &exe, None).await;
        assert_eq!(base.policy["openssl_conf"], serde_json::Value::Null, "{:?}", base.policy);
        assert_eq!(variant.policy["openssl_conf"], "/policy/a.cnf", "{:?}", variant.policy);
        assert!(variant.env().contains(&("LD_LIBRARY_PATH".into(), "/nonexistent/candidate".into())));
        let loaded = variant.policy["tls_library_loaded"][0].as_str().unwrap_or_default().to_string();
        assert!(loaded.starts_with("OpenSSL 3"), "what the program loads, read from the library: {loaded}");
    }

    #[test]
    fn contract_exits() {
        let ok = std::process::ExitStatus::from_raw(0);
        let line = ClientResult::error(wire::Stage::Smtp, "421").to_line();
        assert!(matches!(contract_exit(ok, &line, ""), ClientRun::Result(_)));
        assert!(matches!(contract_exit(ok, "no line", ""), ClientRun::HarnessError(_)));
        let unsupported = std::process::ExitStatus::from_raw(EXIT_UNSUPPORTED << 8);
        assert!(matches!(contract_exit(unsupported, "", "cannot express --x"), ClientRun::Unsupported(_)));
        let crashed = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        assert!(matches!(contract_exit(crashed, "", ""), ClientRun::HarnessError(_)));
    }
}
