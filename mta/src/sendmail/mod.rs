//! sendmail 8.17 (OpenSSL): a `.mc` made from the profile and compiled with the extracted m4,
//! `sendmail -bD` in its own UTS namespace (a qualified host name, else it sleeps 60 s) and
//! mount namespace (a private `/dev` whose `log` is our syslog socket — sendmail logs only to
//! syslog — and, for a `security_level`, its own `openssl.cnf` bound over the system's:
//! sendmail wipes its environment, so `OPENSSL_CONF` cannot reach it). Its curve is fixed.

pub mod sender;

use crate::kind::MtaKind;
use crate::log::{EndCounts, LogEvent, bracketed_peer};
use crate::namespace::{NsPlan, PrivateDev};
use crate::translate::{Dirs, LogPlan, Prepare, Prepared, Result, openssl_ciphers, unsupported};
use report_format::{End, Group, Mta, Negotiated, Protocol, ServerProfile, TlsVersion};
use std::path::Path;
use std::time::Duration;

/// sendmail.
pub struct Sendmail;

impl MtaKind for Sendmail {
    fn mta(&self) -> Mta {
        Mta::Sendmail
    }

    fn package(&self) -> &'static str {
        "sendmail-bin"
    }

    fn daemon(&self) -> &'static str {
        "usr/libexec/sendmail/sendmail"
    }

    fn table(&self) -> &'static str {
        "server-sendmail"
    }

    fn prepare_server(&self, profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
        prepare(profile, d)
    }

    /// `<22>Nov 28 18:40:01 sm-matrix[12]: 5ASIe1: …`
    fn message<'a>(&self, line: &'a str) -> &'a str {
        let line = line.trim_end();
        line.find("]: ").map_or(line, |i| &line[i + 3..])
    }

    /// `sm-matrix[12]`: one sendmail process per connection.
    fn connection<'a>(&self, line: &'a str) -> Option<&'a str> {
        crate::log::program_pid(line)
    }

    fn event(&self, msg: &str) -> Option<LogEvent> {
        let has = |s: &str| msg.contains(s);
        // "STARTTLS=server, error: SSL_CTX_use_certificate_file(…/tls/server.pem) failed": at a
        // security level its key does not meet, it serves without STARTTLS.
        let setup = ["CERTFILE", "KEYFILE", "unsafe", "init failed", "SSL_CTX_use_certificate_file"];
        if has("STARTTLS") && setup.iter().any(|s| has(s)) {
            Some(LogEvent::ConfigWarning(msg.to_string()))
        } else if has("STARTTLS=server, error") || has("STARTTLS=server: error") {
            Some(LogEvent::Error(msg.to_string()))
        } else if msg.contains(": connect from ") {
            // `NOQUEUE: connect from localhost [127.0.0.1]`: one sendmail process per connection.
            Some(LogEvent::Connect { peer: bracketed_peer(msg) })
        } else if has("STARTTLS=server, relay=") {
            negotiated(msg).map(LogEvent::Tls)
        } else if has("from=<") && has("proto=") {
            // `proto=ESMTPS` over TLS, `proto=ESMTP` or `SMTP` in clear.
            let proto = msg.split(", ").find_map(|f| f.strip_prefix("proto="));
            Some(LogEvent::Message { over_tls: proto.map(|p| p.ends_with('S')), tls: None })
        } else if has("did not issue")
            || has("lost input channel")
            || has("ruleset=check_relay")
            || (has(": to=") && has(", stat="))
        {
            // A session's last words: without MAIL, cut off, refused at connect, or the status of
            // the message it accepted (a normal QUIT logs nothing after it). Other rulesets
            // (`trust_auth` refusing a client's AUTH) do not end the session.
            Some(LogEvent::End(EndCounts { end: Some(End::ClientClosed), ..EndCounts::default() }))
        } else {
            None
        }
    }
}

/// "STARTTLS=server, relay=…, version=TLSv1.3, verify=NO, cipher=X, bits=256/256".
fn negotiated(msg: &str) -> Option<Negotiated> {
    let field = |name: &str| msg.split(", ").find_map(|f| f.strip_prefix(name));
    Some(Negotiated::tls(Protocol::parse(field("version=")?)?, field("cipher=")?, None, None))
}

/// The system OpenSSL configuration a `security_level` replaces, in sendmail's namespace only.
const SYSTEM_OPENSSL_CNF: &str = "/etc/ssl/openssl.cnf";

/// `SSL_OP_NO_*` options that keep the server inside the profile's versions.
fn version_options(profile: &ServerProfile) -> Vec<&'static str> {
    [
        (TlsVersion::Tls10, "+SSL_OP_NO_TLSv1"),
        (TlsVersion::Tls11, "+SSL_OP_NO_TLSv1_1"),
        (TlsVersion::Tls12, "+SSL_OP_NO_TLSv1_2"),
        (TlsVersion::Tls13, "+SSL_OP_NO_TLSv1_3"),
    ]
    .into_iter()
    .filter(|(v, _)| !(profile.min_tls..=profile.max_tls).contains(v))
    .map(|(_, o)| o)
    .collect()
}

/// The start of every `.mc` of ours, server or sender: the cf macros, a host name, logging,
/// and every file sendmail keeps (queue, statistics, pid, service switch, hosts) under `work`.
pub(crate) fn mc_head(root: &Path, id: &str, host_name: &str, work: &Path, ca: &Path) -> String {
    let w = work.display();
    format!(
        "divert(-1)\ndivert(0)dnl\ninclude(`{root}/usr/share/sendmail/cf/m4/cf.m4')dnl\n\
         VERSIONID(`starttls-matrix {id}')dnl\nOSTYPE(`linux')dnl\n\
         define(`confDOMAIN_NAME', `{host_name}')dnl\n\
         define(`confDONT_PROBE_INTERFACES', `True')dnl\n\
         define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl\n\
         define(`confLOG_LEVEL', `14')dnl\n\
         define(`QUEUE_DIR', `{w}/mqueue')dnl\n\
         define(`MSP_QUEUE_DIR', `{w}/clientmqueue')dnl\n\
         define(`STATUS_FILE', `{w}/statistics')dnl\n\
         define(`ALIAS_FILE', `')dnl\ndefine(`HELP_FILE', `')dnl\n\
         define(`confPID_FILE', `{w}/sendmail.pid')dnl\n\
         define(`confSERVICE_SWITCH_FILE', `{w}/service.switch')dnl\n\
         define(`confHOSTS_FILE', `{w}/hosts')dnl\n\
         define(`confTO_IDENT', `0s')dnl\n\
         define(`confCACERT_PATH', `{ca_dir}')dnl\n\
         define(`confCACERT', `{ca}')dnl\n",
        root = root.display(),
        ca_dir = ca.parent().unwrap_or(Path::new("/")).display(),
        ca = ca.display(),
    )
}

/// Tells the watchdog a group was reaped when it goes out of scope (every way out of [`m4`]).
struct Reaped(i32);

impl Drop for Reaped {
    fn drop(&mut self) {
        procs::guard::reaped(self.0);
    }
}

pub(crate) fn m4(root: &Path, mc: &Path) -> Result<String> {
    let m4 = root.join("usr/bin/m4");
    let mut cmd = procs::guard::std_command(&m4, &[mc.into()], procs::Confine::Group, &procs::Setup::default())
        .map_err(|e| Prepare::Io(e.to_string()))?;
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let pgid = child.id() as i32;
    procs::guard::started(pgid);
    let _reaped = Reaped(pgid);
    let started = std::time::Instant::now();
    // m4 takes about 30 ms; a bound in case it hangs.
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Prepare::Io("m4 did not finish within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Prepare::Io(format!("m4 failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
    if profile.tls13_suites.is_some() {
        return unsupported("sendmail 8.17 has no setting for TLS 1.3 cipher suites");
    }
    if let Some(groups) = &profile.groups
        && groups != &[Group::Secp256r1]
    {
        return unsupported(
            "sendmail 8.17's ECDHE curve is hard-wired to prime256v1 (secp256r1): it cannot offer other groups",
        );
    }
    let root = d.root;
    d.dir("mqueue", 0o700, None)?;
    d.dir("clientmqueue", 0o700, None)?;
    let (cert, key) = d.tls_files(None)?;
    let tls = d.work.join("tls");
    let mut settings: Vec<(String, String)> = vec![
        ("confSERVER_CERT".into(), cert.display().to_string()),
        ("confSERVER_KEY".into(), key.display().to_string()),
        ("confTLS_SRV_OPTIONS".into(), "V".into()),
    ];
    if let Some(dh) = d.dh_file()? {
        settings.push(("confDH_PARAMETERS".into(), dh.display().to_string()));
    }
    if let Some(list) = openssl_ciphers(profile)? {
        settings.push(("confCIPHER_LIST".into(), list));
    }
    let options = version_options(profile);
    if !options.is_empty() {
        settings.push(("confSERVER_SSL_OPTIONS".into(), options.join(" ")));
    }
    let mut binds = Vec::new();
    if let Some(level) = profile.security_level {
        let cnf = d.openssl_cnf(level)?;
        settings.push((format!("{SYSTEM_OPENSSL_CNF} (its namespace only)"), cnf.display().to_string()));
        binds.push((cnf, SYSTEM_OPENSSL_CNF.into()));
    }
    let mc = mc_text(profile, &d.creds.server_name, root, d.work, &tls, d.port, &settings);
    let mc_path = d.file("sendmail.mc", &mc, 0o644)?;
    let cf = m4(root, &mc_path)?;
    let cf_path = d.file("sendmail.cf", &cf, 0o644)?;
    d.file("service.switch", "hosts files\naliases files\n", 0o644)?;
    // Its STATUS_FILE: without one, every connection logs "poststats: … No such file".
    d.file("statistics", "", 0o644)?;
    d.file("hosts", &format!("127.0.0.1 {0} localhost\n", d.creds.server_name), 0o644)?;
    binds.extend(crate::namespace::local_resolver(&d.work.join("ns/etc"), &[&d.creds.server_name])?);
    let host_dev = d.dir("ns/dev", 0o755, None)?;
    let socket = d.work.join("syslog.sock");
    Ok(Prepared {
        program: root.join("usr/libexec/sendmail/sendmail"),
        args: vec![format!("-C{}", cf_path.display()).into(), "-bD".into(), "-L".into(), "sm-matrix".into()],
        env: vec![("LD_LIBRARY_PATH".into(), d.lib_path().display().to_string())],
        ns: NsPlan {
            hostname: Some(d.creds.server_name.clone()),
            binds,
            private_dev: Some(PrivateDev { host_dev, syslog_socket: socket.clone() }),
        },
        log: LogPlan::Syslog(socket),
        settings,
        stdin: None,
        gid: None,
    })
}

/// The `.mc` file m4 turns into `sendmail.cf`: a daemon on 127.0.0.1:`port` that relays for
/// anyone and queues what it accepts, with the profile's TLS settings (`conf…` defines).
fn mc_text(
    profile: &ServerProfile,
    name: &str,
    root: &Path,
    work: &Path,
    tls: &Path,
    port: u16,
    settings: &[(String, String)],
) -> String {
    let mut mc = mc_head(root, &profile.id, name, work, &tls.join("ca.pem"));
    mc.push_str("define(`confDELIVERY_MODE', `queueonly')dnl\n");
    for (k, v) in settings {
        if k.starts_with("conf") {
            mc.push_str(&format!("define(`{k}', `{v}')dnl\n"));
        }
    }
    mc.push_str(&format!(
        "FEATURE(`no_default_msa')dnl\nFEATURE(`promiscuous_relay')dnl\n\
         FEATURE(`accept_unresolvable_domains')dnl\nFEATURE(`accept_unqualified_senders')dnl\n\
         define(`LOCAL_MAILER_PATH', `/bin/true')dnl\n\
         DAEMON_OPTIONS(`Family=inet, Name=MTA-matrix, Port={port}, Addr=127.0.0.1')dnl\n\
         MAILER(`local')dnl\nMAILER(`smtp')dnl\n",
        port = port
    ));
    mc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::records_from;

    #[test]
    fn connections_from_its_log() {
        // Lines as sendmail 8.17.1.9 logged them (a message over TLS, then a failed handshake).
        let (r, _) = records_from(
            Mta::Sendmail,
            &[
                "<22>Nov 29 19:00:27 sm-matrix[29419]: NOQUEUE: connect from localhost [127.0.0.1]",
                "<22>Nov 29 19:00:27 sm-matrix[29419]: STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.3, verify=NOT, cipher=TLS_AES_256_GCM_SHA384, bits=256/256",
                "<22>Nov 29 19:00:27 sm-matrix[29419]: 6ATJ0RYD029419: from=<probe@client.test>, size=214, class=0, nrcpts=1, msgid=<202611291900.6ATJ0RYD029419@mx.test>, proto=ESMTPS, daemon=MTA-matrix, relay=localhost [127.0.0.1]",
                "<22>Nov 29 19:00:27 sm-matrix[29419]: 6ATJ0RYD029419: to=<postmaster@mx.test>, delay=00:00:00, mailer=local, pri=30214, stat=queued",
                "<22>Nov 29 19:59:29 sm-matrix[11869]: NOQUEUE: connect from [127.0.0.2]",
                "<22>Nov 29 19:59:29 sm-matrix[11869]: STARTTLS=server, relay=[127.0.0.2], version=TLSv1.3, verify=NOT, cipher=TLS_AES_256_GCM_SHA384, bits=256/256",
                "<21>Nov 29 19:59:29 sm-matrix[11869]: ruleset=trust_auth, arg1=probe@sender.test, relay=[127.0.0.2], reject=550 5.7.1 <probe@sender.test>... not authenticated",
                "<22>Nov 29 19:59:29 sm-matrix[11869]: 6ATJxT9W011869: from=<probe@sender.test>, size=438, class=0, nrcpts=1, msgid=<x@sender.test>, proto=ESMTPS, daemon=MTA-matrix, relay=[127.0.0.2]",
                "<22>Nov 29 19:59:29 sm-matrix[11869]: 6ATJxT9W011869: to=<postmaster@p36879.test>, delay=00:00:00, mailer=esmtp, pri=30438, stat=queued",
                "<22>Nov 29 19:59:40 sm-matrix[11901]: 6ATJxT9W011869: to=<postmaster@p36879.test>, delay=00:00:11, mailer=esmtp, pri=30438, stat=Deferred",
                "<22>Nov 29 19:00:28 sm-matrix[29423]: NOQUEUE: connect from localhost [127.0.0.1]",
                "<22>Nov 28 18:40:01 sm-matrix[29423]: 5ASIe1: STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=localhost [127.0.0.1]",
            ],
        );
        assert_eq!(r.len(), 3, "a refused AUTH does not end a session, a later queue run is none: {r:#?}");
        assert_eq!((r[0].messages, r[0].messages_in_clear()), (Some(1), Some(0)));
        assert_eq!(r[0].peer.as_deref(), Some("127.0.0.1"));
        assert_eq!((r[1].peer.as_deref(), r[1].messages, r[1].tls.is_some()), (Some("127.0.0.2"), Some(1), true));
        assert!(r[2].error.as_deref().unwrap().contains("no shared cipher"));
        let s = "STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.2, verify=NOT, cipher=DHE-RSA-AES128-SHA, bits=128/128";
        assert_eq!(negotiated(s).unwrap().cipher.as_deref(), Some("DHE-RSA-AES128-SHA"));
        let m = "5ATA1: from=<a@client.test>, size=255, class=0, nrcpts=1, msgid=<x@y>, proto=ESMTPS, daemon=MTA-matrix, relay=localhost [127.0.0.1]";
        assert_eq!(Sendmail.event(m), Some(LogEvent::Message { over_tls: Some(true), tls: None }));
    }

    #[test]
    fn a_profile_becomes_its_mc_text() {
        let p: ServerProfile = serde_json::from_value(serde_json::json!({"id": "s", "backend": "sendmail",
            "max_tls": "1.2", "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "dh": "oakley-1024"}))
        .unwrap();
        let settings = vec![
            ("confCIPHER_LIST".to_string(), "DHE-RSA-AES128-GCM-SHA256".to_string()),
            ("/etc/ssl/openssl.cnf (its namespace only)".to_string(), "/w/openssl.cnf".to_string()),
        ];
        let mc = mc_text(&p, "mx.test", Path::new("/root"), Path::new("/w"), Path::new("/w/tls"), 2525, &settings);
        assert!(mc.contains("define(`confCIPHER_LIST', `DHE-RSA-AES128-GCM-SHA256')dnl"), "{mc}");
        assert!(mc.contains("DAEMON_OPTIONS(`Family=inet, Name=MTA-matrix, Port=2525, Addr=127.0.0.1')"), "{mc}");
        assert!(mc.contains("define(`confDOMAIN_NAME', `mx.test')"), "{mc}");
        assert!(!mc.contains("openssl.cnf"), "only conf… settings are m4 defines");
    }

    #[test]
    fn version_options_keep_it_inside_the_profile() {
        let p: ServerProfile =
            serde_json::from_value(serde_json::json!({"id": "s", "backend": "sendmail", "max_tls": "1.2"})).unwrap();
        assert_eq!(version_options(&p), vec!["+SSL_OP_NO_TLSv1", "+SSL_OP_NO_TLSv1_1", "+SSL_OP_NO_TLSv1_3"]);
    }
}
