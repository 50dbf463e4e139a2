//! Postfix 3.7 as a sender: an instance of its own (no listener) whose transport map sends mail
//! for `p<PORT>.test` to `[127.0.0.1]:PORT`, `smtp_tls_security_level = may` as Debian's installer
//! sets it (or `encrypt`), retry timers short (2 s) so that a second attempt — the one on which
//! `may` falls back to plaintext once the message is older than `minimal_backoff_time` — can be
//! forced with `postqueue -i` within the cell. Each message is handed over SMTP to the
//! instance's own loopback listener (its `sendmail` runs `postdrop` in an environment Postfix
//! cleans, without the extracted libraries), followed by its queue id through the
//! `postfix/smtp[PID]` lines of each attempt, listed with `postqueue -p` and removed with
//! `postsuper -d`.

use crate::daemon::{Daemon, StartError, StopReport};
use crate::sender::{
    DaemonLog, Destination, FROM, SERVER_WAIT, SenderInfo, SenderOptions, SenderPolicy, SenderView, Timeline,
    TlsPolicy, command, inject, message, token,
};
use crate::translate::{Credentials, Dirs, Prepare};
use report_format::{DeliveryAttempt, Fate, Mta, Negotiated, Protocol};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a message must wait before Postfix at `may` falls back to plaintext: its
/// `minimal_backoff_time` plus a margin. Postfix compares whole seconds (the `tv_sec` of arrival
/// and of activation), so at the 1 s minimum a message that arrived at x.99 s and was first tried
/// at x+1.2 s counts as a second old and falls back on its first attempt (measured: about one cell
/// in five). At 2 s the first attempt always defers, as it does for real mail.
const BACKOFF: Duration = Duration::from_millis(2050);

/// The settings a policy becomes, with the timers and routing the harness needs.
fn settings(
    policy: SenderPolicy,
    ca: &Path,
    routes: u16,
    source: std::net::Ipv4Addr,
) -> Result<Vec<(String, String)>, StartError> {
    if policy.fallback_to_clear == Some(false) && policy.tls == TlsPolicy::May {
        return Err(StartError::Unsupported(
            "Postfix at `may` always falls back to plaintext once a message is older than minimal_backoff_time; only `encrypt` never does".into(),
        ));
    }
    if policy.fallback_to_clear == Some(true) && policy.tls == TlsPolicy::Encrypt {
        return Err(StartError::Unsupported("Postfix at `encrypt` never delivers in clear".into()));
    }
    let level = match policy.tls {
        TlsPolicy::May => "may",
        TlsPolicy::Encrypt => "encrypt",
    };
    let wait = format!("{}s", SERVER_WAIT.as_secs());
    Ok([
        ("smtp_tls_security_level", level.to_string()),
        ("smtp_tls_loglevel", "1".into()),
        ("smtp_tls_note_starttls_offer", "yes".into()),
        ("smtp_tls_CAfile", ca.display().to_string()),
        ("transport_maps", format!("tcp:127.0.0.1:{routes}")),
        ("default_transport", "error:no route: starttls-matrix routes p<PORT>.test only".into()),
        ("myhostname", "sender-postfix.test".into()),
        // Its connections come from its own loopback address.
        ("smtp_bind_address", source.to_string()),
        // Its own listener takes each cell's message from the harness (loopback only).
        ("mynetworks", "127.0.0.0/8".into()),
        ("smtpd_relay_restrictions", "permit_mynetworks, reject".into()),
        ("minimal_backoff_time", "2s".into()),
        ("maximal_backoff_time", "2s".into()),
        // Postfix never retries by itself within a cell: the harness forces each attempt.
        ("queue_run_delay", "3600s".into()),
        ("smtp_connect_timeout", wait.clone()),
        ("smtp_helo_timeout", wait.clone()),
        ("smtp_starttls_timeout", wait.clone()),
        ("smtp_data_done_timeout", wait.clone()),
        ("smtp_quit_timeout", wait),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// The transport for a lookup key: mail for `p<PORT>.test` goes to `[127.0.0.1]:PORT`, bounces
/// (to `sender.test`) are thrown away, anything else has no route.
fn route(key: &str) -> Option<String> {
    let domain = key.rsplit('@').next()?;
    if domain == "sender.test" {
        return Some("discard:".into());
    }
    let port: u16 = domain.strip_prefix('p')?.strip_suffix(".test")?.parse().ok()?;
    Some(format!("smtp:[127.0.0.1]:{port}"))
}

/// Decode a tcp_table key (`%XX` escapes).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = key.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A tcp_table(5) server for `transport_maps`: Postfix refuses `$N` substitution in regexp
/// transport maps, and a table file would have to change under a running instance; a lookup
/// server computes each route from its key instead. Loopback only; it ends with the sender.
async fn route_server() -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            if !peer.ip().is_loopback() {
                continue;
            }
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match line.strip_prefix("get ").map(unescape).as_deref().and_then(route) {
                        Some(transport) => format!("200 {transport}\n"),
                        None => "500 no route\n".to_string(),
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((port, task))
}

/// A running Postfix sender.
pub struct PostfixSender {
    /// Its own listener, where cells hand over their message.
    inject: u16,
    /// The route server for its transport map.
    routes: tokio::task::JoinHandle<()>,
    root: PathBuf,
    etc: PathBuf,
    env: Vec<(String, String)>,
    log: DaemonLog,
    info: SenderInfo,
}

pub async fn start(policy: SenderPolicy, opts: &SenderOptions) -> Result<PostfixSender, StartError> {
    let root = opts.roots.join(Mta::Postfix.name());
    let libs = opts.roots.join("libs");
    let (route_port, routes) = route_server().await.map_err(|e| crate::daemon::harness("start the route server", e))?;
    let role = settings(policy, &opts.ca_cert, route_port, opts.source)?;
    // A sender has no certificate of its own: only the CA it logs verification against.
    let creds = Credentials {
        ca_cert: opts.ca_cert.clone(),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        dh: None,
        server_name: "sender-postfix.test".into(),
    };
    let inject = crate::daemon::free_port().map_err(|e| crate::daemon::harness("find a free port", e))?;
    let d = Dirs { root: &root, libs: &libs, work: &opts.work, port: inject, creds: &creds };
    let listener = format!("127.0.0.1:{inject} inet n - n - - smtpd");
    let mut prepared =
        super::instance(&d, "Postfix as a sender", &role, Some(&listener), role.clone()).map_err(|e| match e {
            Prepare::Unsupported(why) => StartError::Unsupported(why),
            Prepare::Io(e) => StartError::Harness(format!("write Postfix's sender configuration: {e}")),
        })?;
    prepared.env = opts.with_candidate(prepared.env);
    let mut daemon = Daemon::spawn(Mta::Postfix, &prepared, &opts.work).await?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], inject));
    if !daemon.wait_for_banner(addr, Duration::from_secs(15)).await? {
        daemon.stop(Some(addr)).await;
        return Err(StartError::Harness("Postfix as a sender did not answer 220 within 15 s".into()));
    }
    let etc = opts.work.join("etc");
    let env = opts.with_candidate(super::environment(&root, &etc));
    let smtp = root.join("usr/lib/postfix/sbin/smtp");
    let tls_library = crate::sender::tls_library(&smtp, &env, procs::LibraryFamily::Openssl).await;
    let info = SenderInfo {
        mta: Mta::Postfix,
        version: crate::install::package_version(&opts.roots, "postfix").unwrap_or_else(|| "unknown".into()),
        tls_library,
        policy,
        settings: role,
    };
    let sender = PostfixSender { inject, routes, root, etc, env, log: DaemonLog::new(daemon), info };
    sender.log.lines().await;
    Ok(sender)
}

/// `Nov 29 19:00:18 host postfix/smtp[29336]: message` → (`postfix/smtp`, 29336, message).
fn split(line: &str) -> Option<(&str, u32, &str)> {
    let (head, msg) = line.split_once("]: ")?;
    let (prog, pid) = head.rsplit_once('[')?;
    let prog = prog.rsplit(' ').next()?;
    Some((prog, pid.parse().ok()?, msg))
}

/// `status=deferred (…)` lines for a queue id: (program, pid, message).
fn status_lines<'a>(lines: &'a [String], qid: &str) -> Vec<(&'a str, u32, &'a str)> {
    let prefix = format!("{qid}: to=<");
    lines.iter().filter_map(|l| split(l)).filter(|(_, _, m)| m.starts_with(&prefix) && m.contains(" status=")).collect()
}

/// What a status line says became of the message.
fn fate_of(msg: &str) -> Fate {
    match msg.split(" status=").nth(1).and_then(|s| s.split_whitespace().next()) {
        Some("sent") => Fate::Sent,
        Some("bounced") | Some("expired") => Fate::Bounced,
        _ => Fate::Queued,
    }
}

/// "… TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher X (256/256
/// bits) key-exchange X25519 …"
fn negotiated(msg: &str) -> Option<Negotiated> {
    let (_, rest) = msg.split_once("TLS connection established to ")?;
    let (_, rest) = rest.split_once(": ")?;
    let (protocol, rest) = rest.split_once(" with cipher ")?;
    let cipher = rest.split_whitespace().next()?;
    let group = rest.split_once("key-exchange ").and_then(|(_, k)| k.split_whitespace().next());
    let group = group.filter(|g| !g.starts_with("DHE") && !g.starts_with("ECDHE")).map(crate::log::iana_group);
    Some(Negotiated::tls(Protocol::parse(protocol)?, cipher, group, None))
}

/// The connections behind a queue id, in order, and every log line that belongs to the message.
/// Each `postfix/smtp[PID]` status line closes a delivery attempt made of the lines that process
/// logged since its previous status line (for any message); within an attempt, a connection ends
/// at a failed handshake (`SSL_connect error`, then `QID: Cannot start TLS`, after which `may`
/// reconnects in clear) or at the status line. "Host offered STARTTLS" is logged only for a
/// session that did not use it. A status line from the queue manager made no connection.
fn attempts_of(lines: &[String], qid: &str) -> (Vec<DeliveryAttempt>, Vec<String>) {
    let mut out = Vec::new();
    let mut own: Vec<String> = Vec::new();
    let mut pending: std::collections::HashMap<u32, Vec<&String>> = std::collections::HashMap::new();
    let status_prefix = format!("{qid}: to=<");
    for line in lines {
        let Some((prog, pid, msg)) = split(line) else { continue };
        let is_status = msg.contains(": to=<") && msg.contains(" status=");
        if prog == "postfix/smtp" && !is_status {
            pending.entry(pid).or_default().push(line);
            continue;
        }
        if !msg.starts_with(&status_prefix) || !is_status {
            if prog == "postfix/smtp" {
                pending.remove(&pid);
            } else if msg.starts_with(&format!("{qid}:")) {
                own.push(line.clone());
            }
            continue;
        }
        let segment = if prog == "postfix/smtp" { pending.remove(&pid).unwrap_or_default() } else { Vec::new() };
        own.extend(segment.iter().map(|l| l.to_string()));
        own.push(line.clone());
        let status = msg.split_once(", ").map_or(msg, |(_, rest)| rest).to_string();
        if prog != "postfix/smtp" {
            // The queue manager deferred it without a connection (a destination it holds dead).
            out.push(DeliveryAttempt {
                connected: false,
                error: Some(status.clone()),
                status,
                ..DeliveryAttempt::default()
            });
            continue;
        }
        let mut current = DeliveryAttempt::default();
        let mut words: Vec<String> = Vec::new();
        for m in segment.iter().filter_map(|l| split(l).map(|(_, _, m)| m)) {
            if let Some(n) = negotiated(m) {
                current.tls_tried = Some(true);
                current.tls = Some(n);
            } else if m.starts_with("Host offered STARTTLS") {
                current.tls_tried = Some(false);
            } else if m.starts_with(&format!("{qid}: Cannot start TLS")) {
                // The handshake failed; `may` goes on in clear on a new connection.
                current.tls_tried = Some(true);
                current.status = m.trim_start_matches(&format!("{qid}: ")).to_string();
                words.push(current.status.clone());
                current.error = Some(words.join("\n"));
                out.push(std::mem::take(&mut current));
                words.clear();
            } else {
                if m.starts_with("SSL_connect error") {
                    current.tls_tried = Some(true);
                }
                words.push(m.to_string());
            }
        }
        let fate = fate_of(msg);
        if fate != Fate::Sent || !words.is_empty() {
            words.push(format!("status={}", msg.split(" status=").nth(1).unwrap_or_default()));
        }
        if fate != Fate::Sent {
            current.error = Some(words.join("\n"));
        }
        // A session that logged nothing about TLS before it was sent saw no STARTTLS.
        if current.tls_tried.is_none() && fate == Fate::Sent {
            current.tls_tried = Some(false);
        }
        current.status = status;
        out.push(current);
    }
    (out, own)
}

impl PostfixSender {
    /// Stop its daemon and its route server; its port is checked free.
    pub async fn stop(&self) -> StopReport {
        let report = self.log.stop(Some(std::net::SocketAddr::from(([127, 0, 0, 1], self.inject)))).await;
        self.routes.abort();
        report
    }

    pub fn info(&self) -> &SenderInfo {
        &self.info
    }

    fn program(&self, name: &str) -> PathBuf {
        self.root.join("usr/sbin").join(name)
    }

    async fn postqueue(&self, args: &[&str]) -> Result<String, String> {
        let etc = self.etc.display().to_string();
        let mut all = vec!["-c", &etc];
        all.extend_from_slice(args);
        command(&self.program("postqueue"), &all, &self.env, None).await
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
        let deadline = tokio::time::Instant::now() + bound;
        let token = token(cell);
        let etc = self.etc.display().to_string();
        // "250 2.0.0 Ok: queued as 4ABC"
        let queued = inject(self.inject, FROM, &to.recipient(), &message(cell, &token, to)).await?;
        let Some(qid) = queued.rsplit("queued as ").next().filter(|q| *q != queued).map(|q| q.trim().to_string())
        else {
            return Err(format!("Postfix took the message without naming its queue id: {queued}"));
        };
        t.mark(format!("handed over: {queued}"));
        let mut lines;
        let arrived = Instant::now();
        let mut forced = 1;
        let mut settled = false;
        let mut seen = 0;
        while tokio::time::Instant::now() < deadline {
            lines = self.log.lines().await;
            let statuses = status_lines(&lines, &qid);
            if statuses.len() > seen {
                seen = statuses.len();
                let last = statuses[seen - 1].2;
                let status = last.split(" status=").nth(1).unwrap_or(last);
                t.mark(format!("attempt {forced}: status={status}"));
                if fate_of(last) != Fate::Queued || forced >= attempts {
                    settled = true;
                    break;
                }
                // Deferred with attempts left: once the message is older than
                // minimal_backoff_time, force the next attempt.
                let age = arrived.elapsed();
                if age < BACKOFF {
                    tokio::time::sleep(BACKOFF - age).await;
                }
                self.postqueue(&["-i", &qid]).await?;
                forced += 1;
                t.mark(format!("attempt {forced} forced (postqueue -i), the message older than minimal_backoff_time"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lines = self.log.lines().await;
        let statuses = status_lines(&lines, &qid);
        let fate = statuses.last().map_or(Fate::Queued, |(_, _, m)| fate_of(m));
        let listing = self.postqueue(&["-p"]).await.unwrap_or_else(|e| e);
        let queue = queue_entry(&listing, &qid);
        t.mark("queue listed (postqueue -p)");
        let postsuper = self.program("postsuper");
        let _ = command(&postsuper, &["-c", &etc, "-d", &qid], &self.env, None).await;
        let (attempts, log) = attempts_of(&lines, &qid);
        Ok(SenderView {
            queue_id: Some(qid),
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

/// The block `postqueue -p` prints for one queue id (`QID*` when active, `QID!` when held), or
/// that the queue holds nothing of it.
fn queue_entry(listing: &str, qid: &str) -> String {
    let blocks: Vec<&str> = listing.split("\n\n").collect();
    blocks
        .iter()
        .find(|b| b.trim_start().starts_with(qid))
        .map_or_else(|| format!("{qid}: not in the queue"), |b| b.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> String {
        format!("Nov 29 20:00:00 sender-postfix.test {s}")
    }

    #[test]
    fn attempts_are_read_per_smtp_process() {
        let lines = vec![
            l("postfix/cleanup[10]: 4ABC: message-id=<t1@sender.test>"),
            l("postfix/smtp[20]: SSL_connect error to 127.0.0.1[127.0.0.1]:2525: -1"),
            l(
                "postfix/smtp[20]: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:",
            ),
            l(
                "postfix/smtp[20]: 4ABC: to=<postmaster@p2525.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.05, delays=0.01/0/0.04/0, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)",
            ),
            l("postfix/smtp[21]: Host offered STARTTLS: [127.0.0.1]"),
            l(
                "postfix/smtp[21]: 4ABC: to=<postmaster@p2525.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1.2, delays=1.1/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 accepted)",
            ),
        ];
        let (a, own) = attempts_of(&lines, "4ABC");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].tls_tried, Some(true));
        assert!(a[0].error.as_deref().unwrap().contains("dh key too small"));
        assert!(a[0].status.contains("status=deferred"));
        assert_eq!((a[1].tls_tried, a[1].tls.is_some()), (Some(false), false), "offered, not used");
        assert_eq!(fate_of(&lines[5]), Fate::Sent);
        assert_eq!(own.len(), 6, "with the cleanup line, which names the queue id");
    }

    /// What Postfix 3.7.11 logged at `may` against a 512-bit DH server: deferred, then on the
    /// forced second attempt TLS again, refused again, and the same attempt in clear.
    #[test]
    fn the_fallback_is_a_second_connection_of_the_second_attempt() {
        let lines: Vec<String> = [
            "postfix/smtp[23473]: Trusted TLS connection established to 127.0.0.1[127.0.0.1]:41281: TLSv1.2 with cipher DHE-RSA-AES128-GCM-SHA256 (128/128 bits)",
            "postfix/smtp[23473]: 946CE99A0C2: to=<postmaster@p41281.test>, relay=127.0.0.1[127.0.0.1]:41281, delay=0.03, delays=0.01/0.02/0.01/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: counted, not stored)",
            "postfix/smtp[23473]: SSL_connect error to 127.0.0.1[127.0.0.1]:37927: -1",
            "postfix/smtp[23473]: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:",
            "postfix/smtp[23473]: A3AF799A0C5: to=<postmaster@p37927.test>, relay=127.0.0.1[127.0.0.1]:37927, delay=0, delays=0/0/0/0, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)",
            "postfix/qmgr[23466]: A3AF799A0C5: from=<probe@sender.test>, size=462, nrcpt=1 (queue active)",
            "postfix/smtp[23473]: SSL_connect error to 127.0.0.1[127.0.0.1]:37927: -1",
            "postfix/smtp[23473]: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:",
            "postfix/smtp[23473]: A3AF799A0C5: Cannot start TLS: handshake failure",
            "postfix/smtp[23473]: Host offered STARTTLS: [127.0.0.1]",
            "postfix/smtp[23473]: A3AF799A0C5: to=<postmaster@p37927.test>, relay=127.0.0.1[127.0.0.1]:37927, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: counted, not stored)",
        ]
        .iter()
        .map(|m| l(m))
        .collect();
        let (a, own) = attempts_of(&lines, "A3AF799A0C5");
        assert_eq!(a.len(), 3, "{a:#?}");
        assert!(a[0].error.as_deref().unwrap().contains("dh key too small") && a[0].status.contains("deferred"));
        assert!(a[1].error.as_deref().unwrap().contains("dh key too small"));
        assert_eq!(a[1].status, "Cannot start TLS: handshake failure");
        assert_eq!((a[2].tls_tried, a[2].tls.is_some(), a[2].error.is_none()), (Some(false), false, true));
        assert!(own.iter().all(|l| !l.contains("946CE99A0C2") && !l.contains(":41281")), "{own:#?}");
    }

    const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

    #[test]
    fn a_policy_it_cannot_express_is_unsupported() {
        let p = SenderPolicy { tls: TlsPolicy::May, fallback_to_clear: Some(false) };
        assert!(matches!(settings(p, Path::new("/ca"), 1, LOCALHOST), Err(StartError::Unsupported(_))));
        let s = settings(SenderPolicy::default(), Path::new("/ca"), 1, LOCALHOST).unwrap();
        assert!(s.contains(&("smtp_tls_security_level".into(), "may".into())));
    }

    #[test]
    fn routes_are_computed_from_the_key() {
        assert_eq!(route("p2525.test").as_deref(), Some("smtp:[127.0.0.1]:2525"));
        assert_eq!(route(&unescape("postmaster%40p2525.test")).as_deref(), Some("smtp:[127.0.0.1]:2525"));
        assert_eq!(route("sender.test").as_deref(), Some("discard:"));
        assert_eq!(route("example.com"), None);
        assert_eq!(route("p99999.test"), None);
    }

    #[test]
    fn negotiated_to_a_server() {
        let m = "Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1.2 with cipher DHE-RSA-AES256-GCM-SHA384 (256/256 bits)";
        assert_eq!(negotiated(m).unwrap().label(), "TLSv1.2 DHE");
    }
}
