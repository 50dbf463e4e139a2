//! sendmail 8.17 as a sender, with its defaults: STARTTLS whenever the server offers it, and
//! after a failed handshake the message is deferred (`454 4.7.0 TLS handshake failed.`) and stays
//! queued — unless `TLSFallbacktoClear` (`confTLS_FALLBACK_TO_CLEAR`) makes it try again in clear
//! at once. No daemon: a `.cf` is made once with m4, and each cell runs `sendmail -odi` (delivery
//! in the foreground) on a queue of its own, `sendmail -qf` to force a second attempt and
//! `sendmail -bp` for the queue, each in a UTS namespace (a qualified host name) and a mount
//! namespace whose `/dev/log` is our socket: sendmail logs only to syslog.

use crate::daemon::{Daemon, StartError};
use crate::namespace::{NsPlan, PrivateDev};
use crate::sender::{
    Destination, FROM, SERVER_WAIT, SenderInfo, SenderOptions, SenderPolicy, SenderView, Timeline, TlsPolicy, message,
    progress, token,
};
use crate::translate::{LogPlan, Prepared};
use report_format::{DeliveryAttempt, Fate, Mta, Negotiated, Protocol};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The port in the `.cf` m4 makes once, replaced by each cell's.
const PLACEHOLDER_PORT: &str = "65011";
/// Its host name: it must differ from the server's, or sendmail sees mail loop back to it.
const HOSTNAME: &str = "sender-sendmail.test";
/// How long a run's syslog may take to be read to its end: a bound for a reader that has
/// stopped, not a wait (the end is known when the mark sent after the last line comes back).
const LOG_END_BOUND: Duration = Duration::from_secs(10);

/// The `conf…` defines a policy becomes (with the harness's timeouts).
fn settings(policy: SenderPolicy, source: std::net::Ipv4Addr) -> Result<Vec<(String, String)>, StartError> {
    if policy.tls == TlsPolicy::Encrypt {
        return Err(StartError::Unsupported(
            "sendmail requires TLS per destination through access-map rules (TLS_Srv:), which this harness does not write".into(),
        ));
    }
    let wait = format!("{}s", SERVER_WAIT.as_secs());
    let mut out: Vec<(String, String)> = [
        ("confTO_CONNECT", wait.clone()),
        ("confTO_INITIAL", wait.clone()),
        ("confTO_HELO", wait.clone()),
        ("confTO_STARTTLS", wait.clone()),
        ("confTO_MAIL", wait.clone()),
        ("confTO_RCPT", wait.clone()),
        ("confTO_DATAINIT", wait.clone()),
        ("confTO_DATAFINAL", wait.clone()),
        ("confTO_QUIT", wait),
        // Its connections come from its own loopback address.
        ("confCLIENT_OPTIONS", format!("Family=inet, Addr={source}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if policy.fallback_to_clear == Some(true) {
        out.insert(0, ("confTLS_FALLBACK_TO_CLEAR".into(), "true".into()));
    }
    Ok(out)
}

/// The `.mc`: everything but `sender.test` (where bounces are thrown away) goes to the smart host
/// `[127.0.0.1]` on the placeholder port.
fn mc_text(root: &Path, work: &Path, ca: &Path, settings: &[(String, String)]) -> String {
    let mut mc = super::mc_head(root, "sender", HOSTNAME, work, ca);
    mc.push_str(&format!(
        "define(`SMART_HOST', `esmtp:[127.0.0.1]')dnl\n\
         define(`ESMTP_MAILER_ARGS', `TCP $h {PLACEHOLDER_PORT}')dnl\n\
         define(`LOCAL_MAILER_PATH', `/bin/true')dnl\n"
    ));
    for (k, v) in settings {
        mc.push_str(&format!("define(`{k}', `{v}')dnl\n"));
    }
    mc.push_str(
        "FEATURE(`no_default_msa')dnl\nLOCAL_DOMAIN(`sender.test')dnl\nMAILER(`local')dnl\nMAILER(`smtp')dnl\n",
    );
    mc
}

/// sendmail as a sender.
pub struct SendmailSender {
    program: PathBuf,
    work: PathBuf,
    cf: String,
    /// Binds for a resolver that stays on the machine.
    resolver: Vec<(PathBuf, PathBuf)>,
    /// The environment every sendmail run gets (its libraries, a candidate's first).
    env: Vec<(String, String)>,
    next: AtomicU64,
    info: SenderInfo,
}

pub async fn start(policy: SenderPolicy, opts: &SenderOptions) -> Result<SendmailSender, StartError> {
    let root = opts.roots.join(Mta::Sendmail.name());
    let settings = settings(policy, opts.source)?;
    let harness = |what: &str, e: &dyn std::fmt::Display| StartError::Harness(format!("{what}: {e}"));
    let mc = opts.work.join("sender.mc");
    std::fs::write(&mc, mc_text(&root, &opts.work, &opts.ca_cert, &settings))
        .map_err(|e| harness("write the .mc", &e))?;
    let cf = super::m4(&root, &mc).map_err(|e| harness("make the .cf with m4", &format!("{e:?}")))?;
    if !cf.contains(&format!("TCP $h {PLACEHOLDER_PORT}")) {
        return Err(StartError::Harness("the .cf has no mailer line with the placeholder port".into()));
    }
    for (file, text) in [
        ("service.switch", "hosts files\naliases files\n".to_string()),
        ("hosts", format!("127.0.0.1 {HOSTNAME} localhost\n")),
        ("statistics", String::new()),
    ] {
        std::fs::write(opts.work.join(file), text).map_err(|e| harness("write the sender's files", &e))?;
    }
    let resolver = crate::namespace::local_resolver(&opts.work.join("ns-etc"), &[HOSTNAME])
        .map_err(|e| harness("write the sender's resolver files", &e))?;
    let program = root.join("usr/libexec/sendmail/sendmail");
    let env = opts.with_candidate(vec![(
        "LD_LIBRARY_PATH".to_string(),
        opts.roots.join("libs/usr/lib/x86_64-linux-gnu").display().to_string(),
    )]);
    let tls_library = crate::sender::tls_library(&program, &env, procs::LibraryFamily::Openssl).await;
    let info = SenderInfo {
        mta: Mta::Sendmail,
        version: crate::install::package_version(&opts.roots, "sendmail-bin").unwrap_or_else(|| "unknown".into()),
        tls_library,
        policy,
        settings,
    };
    Ok(SendmailSender { program, work: opts.work.clone(), cf, resolver, env, next: AtomicU64::new(0), info })
}

/// `<22>Nov 29 19:00:27 sm-sender[29419]: 6ATJ0RYD029419: to=…` → the message after `]: `.
fn message_of(line: &str) -> &str {
    line.find("]: ").map_or(line, |i| &line[i + 3..])
}

/// "STARTTLS=client, relay=127.0.0.1, version=TLSv1.3, verify=FAIL, cipher=…, bits=256/256"
fn negotiated(msg: &str) -> Option<Negotiated> {
    let rest = msg.strip_prefix("STARTTLS=client, relay=")?;
    let field = |name: &str| rest.split(", ").find_map(|f| f.strip_prefix(name));
    Some(Negotiated::tls(Protocol::parse(field("version=")?)?, field("cipher=")?, None, None))
}

/// The connections its syslog lines tell of, and where the message ended. A failed handshake
/// ends a connection (then the message is deferred, or with TLSFallbacktoClear sent again in
/// clear); a `stat=` line ends an attempt.
fn read_log(lines: &[String]) -> (Vec<DeliveryAttempt>, Fate) {
    let mut out = Vec::new();
    let mut current = DeliveryAttempt::default();
    let mut words: Vec<String> = Vec::new();
    let mut fate = Fate::Queued;
    // The message's queue id, from its first `to=` line: a bounce it causes is another message
    // (its DSN, `to=<the sender>`), whose lines say nothing of ours.
    let mut ours: Option<String> = None;
    for line in lines {
        let msg = message_of(line);
        if let Some((qid, _)) = msg.split_once(": to=") {
            match &ours {
                Some(id) if id != qid => continue,
                Some(_) => {}
                None => ours = Some(qid.to_string()),
            }
        }
        if let Some(n) = negotiated(msg) {
            current.tls_tried = Some(true);
            current.tls = Some(n);
        } else if msg.starts_with("STARTTLS=client, error:") {
            if current.tls_tried == Some(true) && current.tls.is_none() && !words.is_empty() {
                // A second failure: the first connection ended without a status line.
                current.error = Some(words.join("\n"));
                out.push(std::mem::take(&mut current));
                words.clear();
            }
            current.tls_tried = Some(true);
            words.push(msg.to_string());
        } else if msg.starts_with("STARTTLS=client:") || msg.starts_with("ruleset=tls_server") {
            words.push(msg.to_string());
        } else if let Some(stat) = msg.split(", stat=").nth(1).filter(|_| msg.contains(": to=")) {
            let status = msg.split_once(": ").map_or(msg, |(_, s)| s).to_string();
            let sent = stat.starts_with("Sent");
            if sent && current.tls_tried == Some(true) && current.tls.is_none() {
                // TLSFallbacktoClear: the failed handshake was one connection, the clear
                // delivery another.
                current.error = Some(words.join("\n"));
                current.status = "TLS handshake failed; tried again without STARTTLS".into();
                out.push(std::mem::take(&mut current));
                words.clear();
                current.tls_tried = Some(false);
            }
            if !sent {
                // The server's reply when it refused the message ("reply=555 MAIL FROM
                // parameters not recognized or not implemented").
                if let Some(reply) = msg.split(", reply=").nth(1).and_then(|r| r.split(", stat=").next()) {
                    words.push(format!("reply={reply}"));
                }
                words.push(format!("stat={stat}"));
                current.error = Some(words.join("\n"));
            }
            if current.tls_tried.is_none() && sent {
                current.tls_tried = Some(false);
            }
            current.status = status;
            out.push(std::mem::take(&mut current));
            words.clear();
            fate = if sent {
                Fate::Sent
            } else if msg.contains("dsn=5") {
                Fate::Bounced
            } else {
                Fate::Queued
            };
        }
    }
    (out, fate)
}

impl SendmailSender {
    pub fn info(&self) -> &SenderInfo {
        &self.info
    }

    /// Run sendmail once for a cell (in its namespaces, logging to a socket of its own); its
    /// syslog lines and its output.
    async fn run(
        &self,
        cell_dir: &Path,
        step: &str,
        args: &[&str],
        stdin: Option<PathBuf>,
    ) -> Result<(Vec<String>, String), String> {
        let socket = cell_dir.join(format!("{step}.sock"));
        let host_dev = cell_dir.join(format!("{step}-dev"));
        std::fs::create_dir_all(&host_dev).map_err(|e| e.to_string())?;
        let cf = cell_dir.join("sendmail.cf");
        let mut all: Vec<OsString> = vec![
            format!("-C{}", cf.display()).into(),
            format!("-OQueueDirectory={}/mqueue", cell_dir.display()).into(),
            "-L".into(),
            "sm-sender".into(),
        ];
        all.extend(args.iter().map(OsString::from));
        let prepared = Prepared {
            program: self.program.clone(),
            args: all,
            env: self.env.clone(),
            ns: NsPlan {
                hostname: Some(HOSTNAME.into()),
                binds: self.resolver.clone(),
                private_dev: Some(PrivateDev { host_dev, syslog_socket: socket.clone() }),
            },
            log: LogPlan::Syslog(socket),
            settings: Vec::new(),
            stdin,
            gid: None,
        };
        let mut daemon = Daemon::spawn(Mta::Sendmail, &prepared, cell_dir).await.map_err(|e| e.to_string())?;
        let bound = Duration::from_secs(30);
        // A queue run may hand a delivery to a child and return: the guard of its PID namespace
        // ends only when every process in it has, so the run is over when the guard is.
        let done = daemon.wait(bound).await.is_some();
        if !done {
            daemon.stop(None).await;
            return Err(format!("sendmail {} did not finish within 30 s", args.join(" ")));
        }
        // Every process of the run has ended, so every line it logged is on our socket: read up
        // to the last, however far the socket's reader has fallen behind (a pause here once
        // missed the `stat=Sent` of a delivered message, which then read as still queued).
        let lines = daemon.read_syslog_to_end(LOG_END_BOUND).await;
        let output = daemon.output();
        daemon.stop(None).await;
        let lines = lines.map_err(|e| format!("sendmail {}: failed to {e}", args.join(" ")))?;
        Ok((lines, output))
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
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join(format!("cells/{n}"));
        std::fs::create_dir_all(dir.join("mqueue")).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("sendmail.cf"),
            self.cf.replace(&format!("TCP $h {PLACEHOLDER_PORT}"), &format!("TCP $h {}", to.port)),
        )
        .map_err(|e| e.to_string())?;
        let token = token(cell);
        let msg = dir.join("message");
        std::fs::write(&msg, message(cell, &token, to)).map_err(|e| e.to_string())?;
        let rcpt = to.recipient();
        let (mut lines, _) = self.run(&dir, "send", &["-odi", "-oi", "-f", FROM, &rcpt], Some(msg)).await?;
        let (so_far, fate) = read_log(&lines);
        t.mark(format!("sendmail -odi: {}", progress(&so_far, fate)));
        let mut forced = 1;
        while forced < attempts && t.elapsed() < bound && read_log(&lines).1 == Fate::Queued {
            // `-qf`: the queue run stays in the foreground (a plain `-q` hands the delivery to
            // a child of its own and exits).
            let (more, _) = self.run(&dir, &format!("retry{forced}"), &["-qf"], None).await?;
            lines.extend(more);
            forced += 1;
            let (so_far, fate) = read_log(&lines);
            t.mark(format!("sendmail -qf: {}", progress(&so_far, fate)));
        }
        let (attempts, fate) = read_log(&lines);
        let qid =
            lines.iter().map(|l| message_of(l)).find_map(|m| m.split_once(": from=<").map(|(q, _)| q.to_string()));
        let (_, listing) = self.run(&dir, "list", &["-bp"], None).await?;
        t.mark("queue listed (sendmail -bp)");
        let _ = std::fs::remove_dir_all(&dir);
        let took = t.elapsed();
        Ok(SenderView {
            queue_id: qid,
            attempts,
            fate,
            settled: true,
            log: lines,
            queue: listing.trim().to_string(),
            took,
            timeline: t.into_steps(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four lines of the 2015 breakage, as the facts file quotes them from sendmail's source.
    #[test]
    fn a_failed_handshake_defers() {
        let lines: Vec<String> = [
            "<22>Nov 29 20:00:00 sm-sender[1]: 6ATK0001: from=<probe@sender.test>, size=400, class=0, nrcpts=1, msgid=<t@sender.test>, relay=root@localhost",
            "<22>Nov 29 20:00:00 sm-sender[1]: STARTTLS=client, error: connect failed=-1, reason=dh key too small, SSL_error=1, errno=0, retry=-1, relay=127.0.0.1",
            "<22>Nov 29 20:00:00 sm-sender[1]: STARTTLS=client: 1:error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:",
            "<22>Nov 29 20:00:00 sm-sender[1]: ruleset=tls_server, arg1=SOFTWARE, relay=127.0.0.1, reject=454 4.7.0 TLS handshake failed.",
            "<22>Nov 29 20:00:00 sm-sender[1]: 6ATK0001: to=<postmaster@p2525.test>, delay=00:00:00, xdelay=00:00:00, mailer=esmtp, pri=120400, relay=127.0.0.1 [127.0.0.1], dsn=4.0.0, stat=Deferred: 454 4.7.0 TLS handshake failed.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (a, fate) = read_log(&lines);
        assert_eq!(fate, Fate::Queued);
        assert_eq!(a.len(), 1);
        assert!(a[0].error.as_deref().unwrap().contains("dh key too small"));
        assert!(a[0].error.as_deref().unwrap().contains("454 4.7.0 TLS handshake failed."));
    }

    /// Recorded against aiosmtpd 1.4.3, which refuses the `AUTH=<>` sendmail adds to MAIL FROM
    /// once AUTH is offered: the message bounces, and the bounce (another queue id, to the
    /// sender) is queued locally — that is not our message being queued.
    #[test]
    fn a_bounce_is_the_messages_fate_not_its_dsns() {
        let lines: Vec<String> = [
            "<22>Nov 29 22:07:18 sm-sender[30559]: STARTTLS=client, relay=[127.0.0.1], version=TLSv1.2, verify=FAIL, cipher=DHE-RSA-AES128-GCM-SHA256, bits=128/128",
            "<22>Nov 29 22:07:18 sm-sender[30559]: 6ATM7Ibw030559: to=postmaster@p37333.test, delay=00:00:00, xdelay=00:00:00, mailer=esmtp, pri=30248, relay=[127.0.0.1] [127.0.0.1], dsn=5.0.0, reply=555 MAIL FROM parameters not recognized or not implemented, stat=Service unavailable",
            "<22>Nov 29 22:07:18 sm-sender[30559]: 6ATM7Ibw030559: 6ATM7Ibx030559: DSN: Service unavailable",
            "<22>Nov 29 22:07:18 sm-sender[30559]: 6ATM7Ibx030559: to=probe@sender.test, delay=00:00:00, mailer=local, pri=31272, stat=queued",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (a, fate) = read_log(&lines);
        assert_eq!(fate, Fate::Bounced);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].tls.is_some());
        let error = a[0].error.as_deref().unwrap();
        assert!(error.contains("reply=555 MAIL FROM parameters not recognized"), "{error}");
    }

    /// A TLSFallbacktoClear delivery to postfix-dh1024-dhe-only, as recorded: the failed
    /// handshake, then the message sent in clear on a second connection.
    const FALLBACK: [&str; 18] = [
        "<23>Dec  6 04:29:24 sm-sender[2]: engine=(null), path=(null), ispre=1, pre=0, initialized=0",
        "<22>Dec  6 04:29:24 sm-sender[2]: NOQUEUE: connect from root@localhost",
        "<22>Dec  6 04:29:24 sm-sender[2]: 6B64TO0S000002: from=probe@sender.test, size=274, class=0, nrcpts=1, msgid=<sendmail-smtp.fallback.p36657.test.6915.0@sender.test>, relay=root@localhost",
        "<22>Dec  6 04:29:24 sm-sender[2]: 6B64TO0S000002: SMTP outgoing connect on [127.0.0.2]",
        "<20>Dec  6 04:29:24 sm-sender[2]: STARTTLS: ClientCertFile missing",
        "<20>Dec  6 04:29:24 sm-sender[2]: STARTTLS: ClientKeyFile missing",
        "<20>Dec  6 04:29:24 sm-sender[2]: STARTTLS: CRLFile missing",
        "<22>Dec  6 04:29:24 sm-sender[2]: STARTTLS=client, init=1",
        "<23>Dec  6 04:29:24 sm-sender[2]: engine=(null), path=(null), ispre=0, pre=0, initialized=0",
        "<22>Dec  6 04:29:24 sm-sender[2]: tls_clt_features=(null), relay=[127.0.0.1] [127.0.0.1]",
        "<22>Dec  6 04:29:24 sm-sender[2]: tls_clt_features=empty, stat=0, relay=[127.0.0.1] [127.0.0.1]",
        "<22>Dec  6 04:29:24 sm-sender[2]: STARTTLS=client, start=ok",
        "<20>Dec  6 04:29:24 sm-sender[2]: STARTTLS=client, error: connect failed=-1, reason=dh key too small, SSL_error=1, errno=0, retry=-1",
        "<20>Dec  6 04:29:24 sm-sender[2]: STARTTLS=client: error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:",
        "<21>Dec  6 04:29:24 sm-sender[2]: ruleset=tls_server, arg1=SOFTWARE, relay=[127.0.0.1], reject=454 4.7.0 TLS handshake failed.",
        "<22>Dec  6 04:29:24 sm-sender[2]: 6B64TO0S000002: SMTP outgoing connect on [127.0.0.2]",
        "<22>Dec  6 04:29:24 sm-sender[2]: 6B64TO0S000002: to=postmaster@p36657.test, delay=00:00:00, xdelay=00:00:00, mailer=esmtp, pri=30274, relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent (Ok: queued as 558AA98E1B7)",
        "<22>Dec  6 04:29:24 sm-sender[2]: 6B64TO0S000002: done; delay=00:00:00, ntries=1",
    ];

    #[test]
    fn a_fallback_is_two_connections_and_a_sent_message() {
        let lines: Vec<String> = FALLBACK.iter().map(|s| s.to_string()).collect();
        let (a, fate) = read_log(&lines);
        assert_eq!(fate, Fate::Sent);
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[0].error.as_deref().unwrap().contains("dh key too small"));
        assert_eq!((a[1].tls_tried, a[1].error.as_deref()), (Some(false), None));
    }

    /// The flake: the run's log read before its last lines had left the socket (a 30 ms pause
    /// after exit, under load) lacks the status line, and the message, delivered, reads as still
    /// queued with no connection made, against a server that recorded two and a queue that is
    /// empty: "the sender and the server disagree". Hence the log is read to its end
    /// ([`crate::daemon::Daemon::read_syslog_to_end`]), never for a while.
    #[test]
    fn a_log_missing_its_last_lines_reads_as_a_message_still_queued() {
        let cut: Vec<String> = FALLBACK[..FALLBACK.len() - 3].iter().map(|s| s.to_string()).collect();
        assert_eq!(read_log(&cut), (vec![], Fate::Queued));
    }

    const SOURCE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 4);

    #[test]
    fn a_policy_becomes_defines() {
        let s = settings(SenderPolicy { tls: TlsPolicy::May, fallback_to_clear: Some(true) }, SOURCE).unwrap();
        assert_eq!(s[0], ("confTLS_FALLBACK_TO_CLEAR".to_string(), "true".to_string()));
        let mc = mc_text(Path::new("/r"), Path::new("/w"), Path::new("/w/ca.pem"), &s);
        assert!(mc.contains("define(`confTLS_FALLBACK_TO_CLEAR', `true')dnl"), "{mc}");
        assert!(mc.contains(&format!("define(`ESMTP_MAILER_ARGS', `TCP $h {PLACEHOLDER_PORT}')")), "{mc}");
        assert!(mc.contains("define(`confCLIENT_OPTIONS', `Family=inet, Addr=127.0.0.4')dnl"), "{mc}");
        assert!(matches!(
            settings(SenderPolicy { tls: TlsPolicy::Encrypt, fallback_to_clear: None }, SOURCE),
            Err(StartError::Unsupported(_))
        ));
    }
}
