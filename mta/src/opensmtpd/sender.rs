//! OpenSMTPD 7.4 as a sender: `relay host smtp://127.0.0.1:PORT` (opportunistic: on a failed
//! handshake it downgrades to plaintext at once, on a new connection) or with `tls no-verify`
//! (mandatory: the message stays queued). OpenSMTPD disables a whole route (source and
//! destination address) for 15 s after a connection error, which would hold back every other
//! cell's delivery to 127.0.0.1; so each cell gets a daemon of its own, with its destination
//! written in: the message is handed over SMTP to the daemon's loopback listener, a second
//! attempt is asked with `smtpctl schedule`, the queue listed with `smtpctl show queue`. Its log
//! (`-v`, on stderr) names each session and says why a handshake failed.

use super::instance;
use crate::daemon::{Daemon, StartError};
use crate::namespace::NsPlan;
use crate::sender::{
    Destination, FROM, SenderInfo, SenderOptions, SenderPolicy, SenderView, Timeline, TlsPolicy, inject, message,
    progress, token,
};
use crate::translate::{Credentials, Dirs, LogPlan, Prepare, Prepared};
use report_format::{DeliveryAttempt, Fate, Mta, Negotiated, Protocol};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The relay action's options a policy becomes.
fn relay_options(policy: SenderPolicy) -> Result<&'static str, StartError> {
    match (policy.tls, policy.fallback_to_clear) {
        (TlsPolicy::May, None | Some(true)) => Ok(""),
        (TlsPolicy::May, Some(false)) => Err(StartError::Unsupported(
            "OpenSMTPD's smtp:// always downgrades to plaintext after a failed handshake; only `tls` never does".into(),
        )),
        (TlsPolicy::Encrypt, None | Some(false)) => Ok(" tls no-verify"),
        (TlsPolicy::Encrypt, Some(true)) => {
            Err(StartError::Unsupported("OpenSMTPD with `tls` never delivers in clear".into()))
        }
    }
}

/// Delivery pacing (not TLS policy): no waiting between connections, none kept open.
const LIMITS: &str = "session-keepalive 0 conn-delay-route 0 conn-delay-relay 0 reconn-delay-route 0";

/// A cell's `smtpd.conf`: a plain loopback listener for the harness, bounces thrown away, and
/// everything else relayed to the cell's server.
fn conf_text(listen_port: u16, to: &Destination, relay: &str, source: std::net::Ipv4Addr) -> String {
    format!(
        "# starttls-matrix: OpenSMTPD as a sender\n\
         mta limit {LIMITS}\n\
         listen on 127.0.0.1 port {listen_port} hostname sender-opensmtpd.test\n\
         action \"sink\" mda \"cat >/dev/null\" virtual {{ \"@\" = nobody }} user nobody\n\
         action \"matrix\" relay host smtp://{host}:{port} helo sender-opensmtpd.test src {source}{relay}\n\
         match from any for domain \"sender.test\" action \"sink\"\n\
         match from any for domain \"{domain}\" action \"matrix\"\n",
        host = to.host,
        port = to.port,
        domain = to.domain(),
    )
}

/// OpenSMTPD as a sender: a daemon per cell.
pub struct OpensmtpdSender {
    root: PathBuf,
    roots: PathBuf,
    work: PathBuf,
    ca: PathBuf,
    relay: &'static str,
    source: std::net::Ipv4Addr,
    /// A candidate TLS library's directory, first on every instance's `LD_LIBRARY_PATH`.
    candidate: Option<PathBuf>,
    next: AtomicU64,
    info: SenderInfo,
}

pub async fn start(policy: SenderPolicy, opts: &SenderOptions) -> Result<OpensmtpdSender, StartError> {
    let relay = relay_options(policy)?;
    let root = opts.roots.join(Mta::Opensmtpd.name());
    if crate::users::nss_wrapper(&opts.roots.join("libs")).is_none() {
        return Err(StartError::Unsupported(
            "libnss_wrapper is not extracted (scripts/install-stacks): OpenSMTPD needs its users".into(),
        ));
    }
    let tls_library = crate::sender::tls_library(
        &root.join("usr/sbin/smtpd"),
        &opts.with_candidate(vec![]),
        procs::LibraryFamily::Openssl,
    )
    .await;
    let settings = vec![
        (
            "action".into(),
            format!("relay host smtp://127.0.0.1:PORT helo sender-opensmtpd.test src {}{relay}", opts.source),
        ),
        ("mta limit".into(), LIMITS.into()),
    ];
    let info = SenderInfo {
        mta: Mta::Opensmtpd,
        version: crate::install::package_version(&opts.roots, "opensmtpd").unwrap_or_else(|| "unknown".into()),
        tls_library,
        policy,
        settings,
    };
    Ok(OpensmtpdSender {
        root,
        roots: opts.roots.clone(),
        work: opts.work.clone(),
        ca: opts.ca_cert.clone(),
        relay,
        source: opts.source,
        candidate: opts.candidate.clone(),
        next: AtomicU64::new(0),
        info,
    })
}

/// A session's lines are `<16 hex digits> <what>`: (session, what).
fn split(line: &str) -> Option<(&str, &str)> {
    let (id, rest) = line.split_once(' ')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((id, rest))
}

/// "mta tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256"
fn negotiated(rest: &str) -> Option<Negotiated> {
    let x = rest.strip_prefix("mta tls ciphers=")?;
    let mut parts = x.split_whitespace().next()?.split(':');
    Some(Negotiated::tls(Protocol::parse(parts.next()?)?, parts.next()?, None, None))
}

/// The connections to `port` its log tells of, where the message `msgid` ended, and the lines.
fn read_log(lines: &[String], port: u16, msgid: &str) -> (Vec<DeliveryAttempt>, Fate, Vec<String>) {
    let target = format!("://127.0.0.1:{port} ");
    let sessions: Vec<&str> = lines
        .iter()
        .filter_map(|l| split(l))
        .filter(|(_, rest)| rest.starts_with("mta connecting") && rest.contains(&target))
        .map(|(id, _)| id)
        .collect();
    let mut out: Vec<DeliveryAttempt> = Vec::new();
    let mut own = Vec::new();
    let mut fate = Fate::Queued;
    let mut current: Option<DeliveryAttempt> = None;
    for line in lines {
        let downgrade = line.contains("opportunistic TLS failed, downgrading to plain");
        // The reason of a failed handshake is a debug line naming the session by address only
        // (`debug: mta: 0x…: IO error: handshake failed: …`); a cell's daemon has only its sessions.
        if line.starts_with("debug: mta: ") && line.contains("handshake failed") {
            if let Some(c) = current.as_mut() {
                let words = line.trim_start_matches("debug: mta: ").split_once(": ").map_or(line.as_str(), |(_, w)| w);
                c.error = Some(c.error.take().map_or_else(|| words.to_string(), |e| format!("{e}\n{words}")));
                c.tls_tried = Some(true);
                own.push(line.clone());
            }
            continue;
        }
        let ours = match split(line) {
            Some((id, _)) => sessions.contains(&id),
            None => downgrade && sessions.iter().any(|s| line.contains(s)),
        };
        if !ours {
            continue;
        }
        own.push(line.clone());
        let rest = split(line).map_or(line.as_str(), |(_, r)| r);
        if rest.starts_with("mta connecting") {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = Some(DeliveryAttempt { tls_tried: Some(false), ..DeliveryAttempt::default() });
        } else if let Some(n) = negotiated(rest) {
            if let Some(c) = current.as_mut() {
                c.tls_tried = Some(true);
                c.tls = Some(n);
            }
        } else if downgrade || rest.starts_with("mta error") {
            if let Some(c) = current.as_mut() {
                c.tls_tried =
                    Some(c.tls_tried == Some(true) || rest.contains("TLS") || rest.contains("handshake") || downgrade);
                let words = c.error.take().map_or_else(|| rest.to_string(), |e| format!("{e}\n{rest}"));
                c.error = Some(words);
                c.status = rest.to_string();
            }
        } else if rest.starts_with("mta delivery") && rest.contains(&format!("evpid={msgid}")) {
            let result = rest.split("result=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
            fate = match result {
                "Ok" => Fate::Sent,
                "PermFail" => Fate::Bounced,
                _ => Fate::Queued,
            };
            if let Some(c) = current.as_mut() {
                c.status = rest.to_string();
                if fate != Fate::Sent {
                    let words = c.error.take().map_or_else(|| rest.to_string(), |e| format!("{e}\n{rest}"));
                    c.error = Some(words);
                }
            }
        }
    }
    if let Some(done) = current.take() {
        out.push(done);
    }
    (out, fate, own)
}

/// One cell's daemon.
struct Cell {
    daemon: Daemon,
    listen: u16,
    env: Vec<(String, String)>,
    ns: NsPlan,
    dir: PathBuf,
    lines: Vec<String>,
}

impl Cell {
    fn read(&mut self) -> &[String] {
        let new = self.daemon.log.read_new();
        self.lines.extend(new);
        &self.lines
    }

    /// Run `smtpctl ARGS` in the daemon's namespace (its control socket is our `/run`).
    async fn smtpctl(&self, smtpctl: &Path, step: &str, args: &[&str]) -> Result<String, String> {
        let dir = self.dir.join("smtpctl").join(step);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let prepared = Prepared {
            program: smtpctl.to_path_buf(),
            args: args.iter().map(Into::into).collect(),
            env: self.env.clone(),
            ns: self.ns.clone(),
            log: LogPlan::File(dir.join("log")),
            settings: Vec::new(),
            stdin: None,
            // It refuses to run unless its group is the queue's ("must be setgid opensmtpq").
            gid: Some(super::SMTPQ_ID),
        };
        let mut run = Daemon::spawn(Mta::Opensmtpd, &prepared, &dir).await.map_err(|e| e.to_string())?;
        let status = run.wait(Duration::from_secs(15)).await;
        let out = run.output();
        run.stop(None).await;
        match status {
            Some(s) if s.success() => Ok(out),
            Some(s) => Err(format!("smtpctl {} ended with {s}: {}", args.join(" "), out.trim())),
            None => Err(format!("smtpctl {} did not finish within 15 s", args.join(" "))),
        }
    }
}

/// Whether the log shows an attempt on a session to `port` ended: delivered, refused, failed.
fn attempts_ended(lines: &[String], port: u16, msgid: &str) -> usize {
    read_log(lines, port, msgid).0.iter().filter(|a| !a.status.is_empty()).count()
}

impl OpensmtpdSender {
    pub fn info(&self) -> &SenderInfo {
        &self.info
    }

    async fn start_cell(&self, to: &Destination) -> Result<Cell, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join(format!("cells/{n}"));
        let libs = self.roots.join("libs");
        let creds = Credentials {
            ca_cert: self.ca.clone(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            dh: None,
            server_name: "sender-opensmtpd.test".into(),
        };
        let listen = crate::daemon::free_port().map_err(|e| e.to_string())?;
        let d = Dirs { root: &self.root, libs: &libs, work: &dir, port: listen, creds: &creds };
        let mut inst = instance(&d).map_err(|e| match e {
            Prepare::Unsupported(why) | Prepare::Io(why) => why,
        })?;
        if let Some(dir) = &self.candidate {
            crate::server::prepend_library_dir(&mut inst.env, dir);
        }
        let conf = dir.join("smtpd.conf");
        std::fs::write(&conf, conf_text(listen, to, self.relay, self.source)).map_err(|e| e.to_string())?;
        let prepared = Prepared {
            program: self.root.join("usr/sbin/smtpd"),
            args: vec!["-d".into(), "-v".into(), "-f".into(), conf.into_os_string()],
            env: inst.env.clone(),
            ns: inst.ns.clone(),
            log: LogPlan::Stderr,
            settings: Vec::new(),
            stdin: None,
            gid: None,
        };
        let mut daemon = Daemon::spawn(Mta::Opensmtpd, &prepared, &dir).await.map_err(|e| e.to_string())?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], listen));
        if !daemon.wait_for_banner(addr, Duration::from_secs(15)).await.map_err(|e| e.to_string())? {
            daemon.stop(Some(addr)).await;
            return Err("OpenSMTPD as a sender did not answer 220 within 15 s".into());
        }
        Ok(Cell { daemon, listen, env: inst.env, ns: inst.ns, dir, lines: Vec::new() })
    }

    /// One cell's message: see [`crate::sender::Sender::deliver`].
    pub async fn deliver(
        &self,
        cell: &str,
        to: &Destination,
        attempts: u32,
        bound: Duration,
    ) -> Result<SenderView, String> {
        let mut t = Timeline::start();
        let mut c = self.start_cell(to).await?;
        t.mark("the cell's smtpd answered 220");
        let result = self.deliver_on(&mut c, cell, to, attempts, bound, t).await;
        let listener = std::net::SocketAddr::from(([127, 0, 0, 1], c.listen));
        c.daemon.stop(Some(listener)).await;
        let _ = std::fs::remove_dir_all(&c.dir);
        result
    }

    async fn deliver_on(
        &self,
        c: &mut Cell,
        cell: &str,
        to: &Destination,
        attempts: u32,
        bound: Duration,
        mut t: Timeline,
    ) -> Result<SenderView, String> {
        let smtpctl = self.root.join("usr/sbin/smtpctl");
        let token = token(cell);
        // "250 2.0.0 5a1c0a63 Message accepted for delivery"
        let accepted = inject(c.listen, FROM, &to.recipient(), &message(cell, &token, to)).await?;
        let msgid = accepted
            .split_whitespace()
            .nth(2)
            .filter(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("OpenSMTPD took the message without naming it: {accepted}"))?
            .to_string();
        t.mark(format!("handed over: {accepted}"));
        let mut forced = 1;
        let mut settled = false;
        let mut seen = 0;
        while t.elapsed() < bound {
            let ended = attempts_ended(c.read(), to.port, &msgid);
            let (so_far, fate, _) = read_log(&c.lines, to.port, &msgid);
            if fate != Fate::Queued {
                t.mark(progress(&so_far, fate));
                settled = true;
                break;
            }
            if ended > seen {
                seen = ended;
                t.mark(progress(&so_far, fate));
                if forced >= attempts {
                    settled = true;
                    break;
                }
                c.smtpctl(&smtpctl, &format!("schedule-{forced}"), &["schedule", &msgid]).await?;
                forced += 1;
                t.mark(format!("attempt {forced} forced (smtpctl schedule)"));
                // A route it disabled after an error makes no new session: give it a moment.
                let asked = tokio::time::Instant::now();
                while asked.elapsed() < Duration::from_secs(1) && attempts_ended(c.read(), to.port, &msgid) == seen {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if attempts_ended(&c.lines, to.port, &msgid) == seen {
                    t.mark("no new session within 1 s: OpenSMTPD holds the route down after an error");
                    settled = true;
                    break;
                }
                continue;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.read();
        let (attempts, fate, log) = read_log(&c.lines, to.port, &msgid);
        let listing = c.smtpctl(&smtpctl, "show", &["show", "queue"]).await.unwrap_or_else(|e| e);
        let queue: Vec<&str> = listing.lines().filter(|l| l.starts_with(&msgid)).collect();
        let queue = if queue.is_empty() { format!("{msgid}: not in the queue") } else { queue.join("\n") };
        t.mark("queue listed (smtpctl show queue)");
        Ok(SenderView {
            queue_id: Some(msgid),
            attempts,
            fate,
            settled: settled || fate != Fate::Queued,
            log,
            queue,
            took: t.elapsed(),
            timeline: t.into_steps(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_becomes_relay_options() {
        assert_eq!(relay_options(SenderPolicy::default()).unwrap(), "");
        assert_eq!(
            relay_options(SenderPolicy { tls: TlsPolicy::Encrypt, fallback_to_clear: None }).unwrap(),
            " tls no-verify"
        );
        assert!(relay_options(SenderPolicy { tls: TlsPolicy::May, fallback_to_clear: Some(false) }).is_err());
        let to = Destination { host: "127.0.0.1".into(), port: 2525 };
        let conf = conf_text(2600, &to, " tls no-verify", std::net::Ipv4Addr::new(127, 0, 0, 8));
        assert!(
            conf.contains(
                "action \"matrix\" relay host smtp://127.0.0.1:2525 helo sender-opensmtpd.test src 127.0.0.8 tls no-verify\n"
            ),
            "{conf}"
        );
        assert!(conf.contains("match from any for domain \"p2525.test\" action \"matrix\"\n"), "{conf}");
    }
}
