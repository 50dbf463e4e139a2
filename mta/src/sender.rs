//! Real MTAs as senders: an MTA configured to relay everything for `p<PORT>.test` to
//! 127.0.0.1:PORT, given one message per cell and watched until its fate is settled — sent,
//! still queued after the cell's attempts, or returned — through its own log and its own queue
//! command. What the sender says is the evidence; the harness classifies and cross-checks it
//! against the server's records.

use crate::daemon::{StartError, StopReport};
use report_format::{DeliveryAttempt, Fate, Mta};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How a sender uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsPolicy {
    /// Opportunistic: STARTTLS when offered (what every MTA here ships with).
    May,
    /// Required: never deliver in clear.
    Encrypt,
}

/// A sender's client-side TLS policy, as a matrix declares it; each MTA translates it into its
/// own settings or says it cannot ([`StartError::Unsupported`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SenderPolicy {
    pub tls: TlsPolicy,
    /// After a failed handshake, deliver in clear on a new connection (sendmail's
    /// `TLSFallbacktoClear`, Exim's `tls_tempfail_tryclear`). `None`: the MTA's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_to_clear: Option<bool>,
}

impl TlsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::May => "may",
            TlsPolicy::Encrypt => "encrypt",
        }
    }
}

impl std::fmt::Display for SenderPolicy {
    /// `tls = may`, `tls = encrypt, fallback_to_clear = true`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls = {}", self.tls.as_str())?;
        match self.fallback_to_clear {
            Some(v) => write!(f, ", fallback_to_clear = {v}"),
            None => Ok(()),
        }
    }
}

impl Default for SenderPolicy {
    fn default() -> Self {
        SenderPolicy { tls: TlsPolicy::May, fallback_to_clear: None }
    }
}

/// Where a sender's files go.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// The extracted roots (`.cache/mta/root`).
    pub roots: PathBuf,
    /// The sender's own work directory (made here).
    pub work: PathBuf,
    /// The run's directory holding `work` (opened to the MTA's users up to here).
    pub base: PathBuf,
    /// The run's CA, for senders that log whether they could verify.
    pub ca_cert: PathBuf,
    /// The loopback address its connections come from (`127.0.0.2`…): what tells a server's
    /// records of this sender from those of other senders delivering at the same time.
    pub source: std::net::Ipv4Addr,
    /// A candidate TLS library's directory, first on its programs' `LD_LIBRARY_PATH`.
    pub candidate: Option<PathBuf>,
}

impl SenderOptions {
    /// Put the candidate library (if any) first on a program's environment.
    pub fn with_candidate(&self, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
        if let Some(dir) = &self.candidate {
            crate::server::prepend_library_dir(&mut env, dir);
        }
        env
    }
}

/// Where one cell's message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// A loopback address.
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// The recipient domain that routes to this destination: `p2525.test`.
    pub fn domain(&self) -> String {
        format!("p{}.test", self.port)
    }

    /// The recipient address of a cell's message.
    pub fn recipient(&self) -> String {
        format!("postmaster@{}", self.domain())
    }
}

/// The address every sender's messages come from; mail to it is thrown away (bounces).
pub const FROM: &str = "probe@sender.test";

/// How long a sender waits for a server that says nothing (its connect, greeting and command
/// timeouts): long enough for any server of ours, short enough that a stalled one settles.
pub const SERVER_WAIT: Duration = Duration::from_secs(5);

/// The message a cell sends: its Message-ID (`<token@sender.test>`) finds its lines in any log.
pub fn message(cell: &str, token: &str, to: &Destination) -> String {
    format!(
        "From: {FROM}\r\nTo: {}\r\nSubject: starttls-matrix delivery {cell}\r\nMessage-ID: <{token}@sender.test>\r\n\r\nOne message from the starttls-matrix sender cell {cell}.\r\n",
        to.recipient(),
    )
}

/// What a sender says became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderView {
    /// Its queue id for the message.
    pub queue_id: Option<String>,
    /// Each connection it made, in order (classes and server records not yet filled in).
    pub attempts: Vec<DeliveryAttempt>,
    /// Where it left the message.
    pub fate: Fate,
    /// Whether it settled within the cell's bound (else `fate` is `Queued`: still trying).
    pub settled: bool,
    /// Its own log lines for the message.
    pub log: Vec<String>,
    /// What its queue command said at the end.
    pub queue: String,
    /// How long the cell took, from handing over the message to the queue listing.
    pub took: Duration,
    /// What the cell did and saw, and when.
    pub timeline: Vec<report_format::Step>,
}

/// Where a message stands, for a timeline: `sent after 2 connection(s)`.
pub fn progress(attempts: &[DeliveryAttempt], fate: Fate) -> String {
    let connections = attempts.iter().filter(|a| a.connected).count();
    let fate = match fate {
        Fate::Sent => "sent",
        Fate::Queued => "still queued",
        Fate::Bounced => "returned",
    };
    format!("{fate} after {connections} connection(s)")
}

/// A cell's timeline as it happens: steps timed from the start.
pub struct Timeline {
    start: tokio::time::Instant,
    steps: Vec<report_format::Step>,
}

impl Timeline {
    pub fn start() -> Timeline {
        Timeline { start: tokio::time::Instant::now(), steps: Vec::new() }
    }

    /// Note a step now.
    pub fn mark(&mut self, what: impl Into<String>) {
        self.steps.push(report_format::Step { at_ms: self.start.elapsed().as_millis() as u64, what: what.into() });
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The steps, in order.
    pub fn into_steps(self) -> Vec<report_format::Step> {
        self.steps
    }
}

/// What the report shows of a sender: what it is and the settings its policy became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderInfo {
    pub mta: Mta,
    pub version: String,
    pub tls_library: String,
    pub policy: SenderPolicy,
    /// The MTA's own settings the policy became (and the harness's timeouts), as written.
    pub settings: Vec<(String, String)>,
}

/// A sender, ready for cells: one of the four MTAs, each driven its own way.
pub enum Sender {
    Postfix(Box<crate::postfix::sender::PostfixSender>),
    Exim(crate::exim::sender::EximSender),
    Sendmail(crate::sendmail::sender::SendmailSender),
    Opensmtpd(crate::opensmtpd::sender::OpensmtpdSender),
}

impl Sender {
    /// What it is, and the settings its policy became.
    pub fn info(&self) -> &SenderInfo {
        match self {
            Sender::Postfix(s) => s.info(),
            Sender::Exim(s) => s.info(),
            Sender::Sendmail(s) => s.info(),
            Sender::Opensmtpd(s) => s.info(),
        }
    }

    /// Give it one message for `to`, force at most `attempts` delivery attempts, and say what
    /// became of it within `bound`; the message is then removed from its queue.
    pub async fn deliver(
        &self,
        cell: &str,
        to: &Destination,
        attempts: u32,
        bound: Duration,
    ) -> Result<SenderView, String> {
        match self {
            Sender::Postfix(s) => s.deliver(cell, to, attempts, bound).await,
            Sender::Exim(s) => s.deliver(cell, to, attempts, bound).await,
            Sender::Sendmail(s) => s.deliver(cell, to, attempts, bound).await,
            Sender::Opensmtpd(s) => s.deliver(cell, to, attempts, bound).await,
        }
    }

    /// Stop it: Postfix's daemon is stopped and reaped; the others run nothing between cells
    /// (each cell's processes ended with it). Once stopped it delivers nothing more.
    pub async fn stop(&self) -> StopReport {
        match self {
            Sender::Postfix(s) => s.stop().await,
            Sender::Exim(_) | Sender::Sendmail(_) | Sender::Opensmtpd(_) => StopReport::nothing_to_stop(),
        }
    }
}

/// Start a sender of `mta` with `policy`.
pub async fn start(mta: Mta, policy: SenderPolicy, opts: &SenderOptions) -> Result<Sender, StartError> {
    let root = opts.roots.join(mta.name());
    let kind = crate::kind::of(mta);
    if !root.join(kind.daemon()).exists() {
        return Err(StartError::NotInstalled(format!(
            "{} is not extracted in {}: run scripts/install-stacks",
            mta.name(),
            opts.roots.display()
        )));
    }
    std::fs::create_dir_all(&opts.work).map_err(|e| crate::daemon::harness("make the sender's directory", e))?;
    crate::daemon::traversable(&opts.work, &opts.base)?;
    Ok(match mta {
        Mta::Postfix => Sender::Postfix(Box::new(crate::postfix::sender::start(policy, opts).await?)),
        Mta::Exim => Sender::Exim(crate::exim::sender::start(policy, opts).await?),
        Mta::Sendmail => Sender::Sendmail(crate::sendmail::sender::start(policy, opts).await?),
        Mta::Opensmtpd => Sender::Opensmtpd(crate::opensmtpd::sender::start(policy, opts).await?),
    })
}

/// The TLS library of `family` a sender's program resolves under its environment (the one its
/// cells run with), as the report names it.
pub(crate) async fn tls_library(
    program: &std::path::Path,
    env: &[(String, String)],
    family: procs::LibraryFamily,
) -> String {
    procs::library::resolved_for(program, env)
        .await
        .into_iter()
        .find(|l| l.family == family)
        .map_or_else(|| format!("{} (not resolved)", family.as_str()), |l| l.describe())
}

/// A sender daemon's log, kept whole: concurrent deliveries each read the lines they need.
pub struct DaemonLog {
    /// `None` once stopped.
    daemon: tokio::sync::Mutex<Option<crate::daemon::Daemon>>,
    lines: std::sync::Mutex<Vec<String>>,
}

impl DaemonLog {
    pub fn new(daemon: crate::daemon::Daemon) -> DaemonLog {
        DaemonLog { daemon: tokio::sync::Mutex::new(Some(daemon)), lines: std::sync::Mutex::new(Vec::new()) }
    }

    /// Every line the daemon has logged so far.
    pub async fn lines(&self) -> Vec<String> {
        let new = self.daemon.lock().await.as_mut().map(|d| d.log.read_new()).unwrap_or_default();
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.extend(new);
        lines.clone()
    }

    /// Stop the daemon (and check its listener's port is free); a second stop does nothing.
    pub async fn stop(&self, listener: Option<std::net::SocketAddr>) -> StopReport {
        match self.daemon.lock().await.take() {
            Some(mut daemon) => daemon.stop(listener).await,
            None => StopReport::nothing_to_stop(),
        }
    }
}

/// Run one of the MTA's commands (a queue listing, a forced retry, a removal) and return its
/// output; `Err` with its words if it failed.
pub async fn command(
    program: &std::path::Path,
    args: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
) -> Result<String, String> {
    let spec = procs::Spec {
        program: program.to_path_buf(),
        args: args.iter().map(Into::into).collect(),
        env: env.to_vec(),
        stdin: stdin.map(|s| s.as_bytes().to_vec()),
        stdin_then: None,
        timeout: Duration::from_secs(15),
        // An MTA's command may deliver, as other users: whatever it starts ends with it.
        confine: procs::Confine::PidNamespace,
    };
    match procs::run(&spec).await {
        Ok(procs::Exit::Finished { status, stdout, stderr, .. }) if status.success() => Ok(format!("{stdout}{stderr}")),
        Ok(procs::Exit::Finished { status, stdout, stderr, .. }) => Err(format!(
            "{} {} ended with {status}: {}{}",
            program.display(),
            args.join(" "),
            stdout.trim(),
            stderr.trim()
        )),
        Ok(procs::Exit::TimedOut { .. }) => {
            Err(format!("{} {} did not finish within 15 s", program.display(), args.join(" ")))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Hand a message to an MTA over SMTP on its own loopback listener (no TLS): EHLO, MAIL, RCPT,
/// DATA (dot-stuffed), QUIT. Returns the reply to the message's final dot (`250 2.0.0 Ok:
/// queued as 4ABC`), which names the queue id for most MTAs.
pub async fn inject(port: u16, from: &str, to: &str, message: &str) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    type Stream = BufReader<tokio::net::TcpStream>;
    async fn reply(s: &mut Stream) -> Result<String, String> {
        let mut last = String::new();
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!("connection closed after {last:?}"));
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            last = line.trim_end().to_string();
            if done {
                return Ok(last);
            }
        }
    }
    async fn say(s: &mut Stream, what: &str, code: &str) -> Result<String, String> {
        s.get_mut().write_all(what.as_bytes()).await.map_err(|e| e.to_string())?;
        let got = reply(s).await?;
        if got.starts_with(code) { Ok(got) } else { Err(format!("{}: expected {code}, got {got:?}", what.trim())) }
    }
    let mut body = String::new();
    for line in message.trim_end_matches("\r\n").split("\r\n") {
        if line.starts_with('.') {
            body.push('.');
        }
        body.push_str(line);
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    let work = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let mut s = BufReader::new(stream);
        let banner = reply(&mut s).await?;
        if !banner.starts_with("220") {
            return Err(format!("banner {banner:?}"));
        }
        say(&mut s, "EHLO harness.test\r\n", "250").await?;
        say(&mut s, &format!("MAIL FROM:<{from}>\r\n"), "250").await?;
        say(&mut s, &format!("RCPT TO:<{to}>\r\n"), "250").await?;
        say(&mut s, "DATA\r\n", "354").await?;
        let queued = say(&mut s, &body, "250").await?;
        let _ = s.get_mut().write_all(b"QUIT\r\n").await;
        Ok(queued)
    };
    match tokio::time::timeout(Duration::from_secs(15), work).await {
        Ok(result) => result.map_err(|e| format!("hand the message to the sender: {e}")),
        Err(_) => Err("hand the message to the sender: no answer within 15 s".into()),
    }
}

/// A token no other message of the run carries (its Message-ID's local part).
pub fn token(cell: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.{}.{n}", cell.replace(['/', '@'], "."), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_route_by_domain() {
        let d = Destination { host: "127.0.0.1".into(), port: 2525 };
        assert_eq!(d.recipient(), "postmaster@p2525.test");
        let t = token("postfix-smtp/dhe512");
        assert!(t.starts_with("postfix-smtp.dhe512."), "{t}");
        assert_ne!(t, token("postfix-smtp/dhe512"), "unique in the run");
        let m = message("postfix-smtp/dhe512", &t, &d);
        assert!(m.contains("Subject: starttls-matrix delivery postfix-smtp/dhe512\r\n"));
        assert!(m.contains(&format!("Message-ID: <{t}@sender.test>")));
    }
}
