//! Exim 4.96 (GnuTLS) as a sender, as Debian ships it: TLS tried whenever the server offers it,
//! `tls_tempfail_tryclear` true (after a failed handshake it delivers in clear at once, on a new
//! connection), or `hosts_require_tls = *`. No daemon: each cell gets a configuration, spool
//! and log of its own and runs `exim4 -odi` (delivery in the foreground), `exim4 -M` to force a
//! second attempt, and `exim4 -bp` for the queue; its mainlog names every attempt by message id.

use super::EXIM_ID;
use crate::daemon::StartError;
use crate::sender::{
    Destination, FROM, SERVER_WAIT, SenderInfo, SenderOptions, SenderPolicy, SenderView, Timeline, TlsPolicy, command,
    message, progress, token,
};
use crate::users::{nss_files, nss_wrapper};
use report_format::{DeliveryAttempt, Fate, Mta, Negotiated, Protocol};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The transport options a policy becomes (the harness's timeouts too).
fn transport_settings(policy: SenderPolicy, source: std::net::Ipv4Addr) -> Vec<(String, String)> {
    let wait = format!("{}s", SERVER_WAIT.as_secs());
    let mut out = vec![
        ("tls_verify_certificates".to_string(), "system (Exim's default; CV=no is logged, not fatal)".to_string()),
        ("interface".into(), source.to_string()),
        ("connect_timeout".into(), wait.clone()),
        ("command_timeout".into(), wait.clone()),
        ("data_timeout".into(), wait),
    ];
    match policy.tls {
        TlsPolicy::May => {}
        TlsPolicy::Encrypt => out.push(("hosts_require_tls".into(), "*".into())),
    }
    let tryclear = policy.fallback_to_clear.unwrap_or(true);
    out.push(("tls_tempfail_tryclear".into(), if tryclear { "true" } else { "false" }.into()));
    out
}

/// A cell's whole configuration: mail for `p<PORT>.test` to 127.0.0.1:PORT, bounces thrown away.
fn conf_text(exim: &Path, spool: &Path, port: u16, settings: &[(String, String)]) -> String {
    let transport: Vec<String> =
        settings.iter().filter(|(k, _)| k != "tls_verify_certificates").map(|(k, v)| format!("  {k} = {v}")).collect();
    format!(
        "# starttls-matrix: Exim as a sender\n\
         primary_hostname = sender-exim.test\n\
         exim_path = {exim}\n\
         exim_user = Debian-exim\n\
         exim_group = Debian-exim\n\
         spool_directory = {spool}\n\
         log_file_path = {spool}/log/%slog\n\
         keep_environment = LD_PRELOAD : LD_LIBRARY_PATH : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP\n\
         host_lookup =\n\
         rfc1413_hosts =\n\
         log_selector = +tls_cipher +tls_peerdn +outgoing_port +smtp_connection\n\
         begin routers\n\
         sink:\n  driver = redirect\n  domains = sender.test\n  data = :blackhole:\n\
         matrix:\n  driver = manualroute\n  domains = p{port}.test\n  transport = matrix_smtp\n  route_list = * 127.0.0.1\n  self = send\n\
         begin transports\n\
         matrix_smtp:\n  driver = smtp\n  port = {port}\n  allow_localhost\n{}\n\
         begin retry\n\
         * * F,1h,1h\n",
        transport.join("\n"),
        exim = exim.display(),
        spool = spool.display(),
    )
}

/// Exim as a sender: its per-cell files go under `work/cells/`.
pub struct EximSender {
    exim: PathBuf,
    work: PathBuf,
    env: Vec<(String, String)>,
    settings: Vec<(String, String)>,
    next: AtomicU64,
    info: SenderInfo,
}

pub async fn start(policy: SenderPolicy, opts: &SenderOptions) -> Result<EximSender, StartError> {
    if policy.tls == TlsPolicy::Encrypt && policy.fallback_to_clear == Some(true) {
        return Err(StartError::Unsupported("Exim with hosts_require_tls never delivers in clear".into()));
    }
    let root = opts.roots.join(Mta::Exim.name());
    let libs = opts.roots.join("libs");
    let Some(nss) = nss_wrapper(&libs) else {
        return Err(StartError::Unsupported(
            "libnss_wrapper is not extracted (scripts/install-stacks): Exim needs its Debian-exim user".into(),
        ));
    };
    let creds = crate::translate::Credentials {
        ca_cert: opts.ca_cert.clone(),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        dh: None,
        server_name: "sender-exim.test".into(),
    };
    let d = crate::translate::Dirs { root: &root, libs: &libs, work: &opts.work, port: 0, creds: &creds };
    let (passwd, group) = nss_files(
        &d,
        &[format!("Debian-exim:x:{EXIM_ID}:{EXIM_ID}::/nonexistent:/usr/sbin/nologin")],
        &[format!("Debian-exim:x:{EXIM_ID}:")],
    )
    .map_err(|_| StartError::Harness("write nss_wrapper's files".into()))?;
    let env = opts.with_candidate(vec![
        ("LD_LIBRARY_PATH".into(), d.lib_path().display().to_string()),
        ("LD_PRELOAD".into(), nss.display().to_string()),
        ("NSS_WRAPPER_PASSWD".into(), passwd.display().to_string()),
        ("NSS_WRAPPER_GROUP".into(), group.display().to_string()),
    ]);
    let exim = root.join("usr/sbin/exim4");
    let tls_library = crate::sender::tls_library(&exim, &env, procs::LibraryFamily::Gnutls).await;
    let settings = transport_settings(policy, opts.source);
    let info = SenderInfo {
        mta: Mta::Exim,
        version: crate::install::package_version(&opts.roots, "exim4-daemon-light").unwrap_or_else(|| "unknown".into()),
        tls_library,
        policy,
        settings: settings.clone(),
    };
    Ok(EximSender { exim, work: opts.work.clone(), env, settings, next: AtomicU64::new(0), info })
}

/// `2026-11-29 19:00:23 1xXk8N-0007dn-0B => …` → (`1xXk8N-0007dn-0B`, `=> …`).
fn split(line: &str) -> Option<(&str, &str)> {
    let msg = line.get(20..)?;
    let (id, rest) = msg.split_once(' ')?;
    (id.len() == 16 && id.as_bytes()[6] == b'-').then_some((id, rest))
}

/// `X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256`
fn negotiated(rest: &str) -> Option<Negotiated> {
    let x = rest.split_whitespace().find_map(|f| f.strip_prefix("X="))?;
    let mut parts = x.split(':');
    Some(Negotiated::tls(Protocol::parse(parts.next()?)?, parts.next()?, None, None))
}

/// The connections a message's mainlog lines tell of, and where it ended.
fn read_log(lines: &[String], qid: &str) -> (Vec<DeliveryAttempt>, Fate, Vec<String>) {
    let mut attempts = Vec::new();
    let mut own = Vec::new();
    let mut fate = Fate::Queued;
    let mut bounced = false;
    for line in lines {
        let Some((id, rest)) = split(line) else { continue };
        if id != qid {
            continue;
        }
        own.push(line.clone());
        if let Some(delivered) = rest.strip_prefix("=> ") {
            let tls = negotiated(delivered);
            attempts.push(DeliveryAttempt {
                tls_tried: Some(
                    tls.is_some()
                        || attempts
                            .last()
                            .is_some_and(|a: &DeliveryAttempt| a.status.contains("delivering unencrypted")),
                ),
                tls,
                status: rest.to_string(),
                ..DeliveryAttempt::default()
            });
        } else if rest.starts_with("== ") || rest.starts_with("** ") {
            // A deferral or a bounce: the reason follows the host.
            let reason = rest.split_once(": ").map_or(rest, |(_, r)| r);
            attempts.push(DeliveryAttempt {
                tls_tried: if reason.contains("did not offer") {
                    Some(false)
                } else {
                    (reason.contains("TLS") || reason.contains("STARTTLS")).then_some(true)
                },
                error: Some(reason.to_string()),
                status: rest.to_string(),
                ..DeliveryAttempt::default()
            });
            bounced |= rest.starts_with("** ");
        } else if rest.contains("delivering unencrypted") || (rest.starts_with("TLS session") && !rest.contains("=>")) {
            // The handshake failed; `tls_tempfail_tryclear` goes on in clear on a new connection.
            attempts.push(DeliveryAttempt {
                tls_tried: Some(true),
                error: Some(rest.to_string()),
                status: rest.to_string(),
                ..DeliveryAttempt::default()
            });
        } else if rest == "Completed" {
            fate = if bounced { Fate::Bounced } else { Fate::Sent };
        }
    }
    // A clear delivery right after a failed handshake was a fallback, the sender's own words say.
    for i in 1..attempts.len() {
        if attempts[i].tls.is_none()
            && attempts[i].error.is_none()
            && attempts[i - 1].status.contains("delivering unencrypted")
        {
            attempts[i].tls_tried = Some(false);
        }
    }
    if fate == Fate::Sent && attempts.iter().any(|a| a.status.starts_with("** ")) {
        fate = Fate::Bounced;
    }
    (attempts, fate, own)
}

impl EximSender {
    pub fn info(&self) -> &SenderInfo {
        &self.info
    }

    async fn exim(&self, conf: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let conf = conf.display().to_string();
        let mut all = vec!["-C", &conf];
        all.extend_from_slice(args);
        command(&self.exim, &all, &self.env, stdin).await
    }

    /// One cell's message: see [`crate::sender::Sender::deliver`].
    pub async fn deliver(
        &self,
        cell: &str,
        to: &Destination,
        attempts: u32,
        bound: Duration,
    ) -> Result<SenderView, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join(format!("cells/{n}"));
        let spool = dir.join("spool");
        for sub in ["", "log", "input", "msglog", "db"] {
            let p = spool.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| format!("make {}: {e}", p.display()))?;
            std::os::unix::fs::chown(&p, Some(EXIM_ID), Some(EXIM_ID))
                .map_err(|e| format!("chown {}: {e}", p.display()))?;
        }
        let conf = dir.join("exim.conf");
        std::fs::write(&conf, conf_text(&self.exim, &spool, to.port, &self.settings)).map_err(|e| e.to_string())?;
        let mut t = Timeline::start();
        let token = token(cell);
        // -odi: the delivery runs before exim returns; a failure leaves the message queued.
        let rcpt = to.recipient();
        let _ = self.exim(&conf, &["-odi", "-oi", "-f", FROM, &rcpt], Some(&message(cell, &token, to))).await;
        let read = || std::fs::read_to_string(spool.join("log/mainlog")).unwrap_or_default();
        let lines: Vec<String> = read().lines().map(str::to_string).collect();
        let qid = lines
            .iter()
            .filter_map(|l| split(l))
            .find(|(_, rest)| rest.starts_with("<= "))
            .map(|(id, _)| id.to_string())
            .ok_or_else(|| format!("Exim logged no received message: {}", lines.join(" | ")))?;
        let mut forced = 1;
        loop {
            let lines: Vec<String> = read().lines().map(str::to_string).collect();
            let (so_far, fate, _) = read_log(&lines, &qid);
            t.mark(format!("{}: {}", if forced == 1 { "exim -odi" } else { "exim -M" }, progress(&so_far, fate)));
            if fate != Fate::Queued || forced >= attempts || t.elapsed() >= bound {
                break;
            }
            let _ = self.exim(&conf, &["-M", &qid], None).await;
            forced += 1;
        }
        let lines: Vec<String> = read().lines().map(str::to_string).collect();
        let (attempts, fate, log) = read_log(&lines, &qid);
        let queue = self.exim(&conf, &["-bp"], None).await.unwrap_or_else(|e| e);
        let queue = if queue.trim().is_empty() { format!("{qid}: not in the queue") } else { queue.trim().to_string() };
        t.mark("queue listed (exim -bp)");
        let _ = std::fs::remove_dir_all(&dir);
        let took = t.elapsed();
        Ok(SenderView {
            queue_id: Some(qid),
            attempts,
            fate,
            settled: true,
            log,
            queue,
            took,
            timeline: t.into_steps(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 3);

    #[test]
    fn a_policy_becomes_transport_options() {
        let may = transport_settings(SenderPolicy::default(), SOURCE);
        assert!(may.contains(&("tls_tempfail_tryclear".into(), "true".into())));
        assert!(!may.iter().any(|(k, _)| k == "hosts_require_tls"));
        let required = transport_settings(SenderPolicy { tls: TlsPolicy::Encrypt, fallback_to_clear: None }, SOURCE);
        assert!(required.contains(&("hosts_require_tls".into(), "*".into())));
        let conf = conf_text(Path::new("/x/exim4"), Path::new("/s"), 2525, &required);
        assert!(conf.contains("  port = 2525\n") && conf.contains("  hosts_require_tls = *\n"), "{conf}");
        assert!(conf.contains("domains = p2525.test"), "{conf}");
        assert!(conf.contains("  interface = 127.0.0.3\n"), "{conf}");
    }
}
