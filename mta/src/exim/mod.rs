//! Exim 4.96 as Debian builds it (GnuTLS): a private configuration whose `tls_require_ciphers`
//! is a GnuTLS priority string made from the profile, run as `exim4 -bdf` under the
//! `Debian-exim` user that nss_wrapper provides (no account is created). GnuTLS ≥ 3.6 ignores
//! `tls_dhparam`, so a DH file is expressible only as an RFC 7919 group of the priority string.

pub mod sender;

use crate::kind::MtaKind;
use crate::log::{EndCounts, LogEvent, bracketed_peer};
use crate::namespace::NsPlan;
use crate::translate::{
    Dirs, LogPlan, Prepared, Result, gnutls_group, gnutls_suite, gnutls_version, push_unique, unsupported, versions,
};
use crate::users::{nss_files, nss_wrapper};
use report_format::{End, Group, Mta, Negotiated, Protocol, ServerProfile, TlsVersion};

/// Exim.
pub struct Exim;

impl MtaKind for Exim {
    fn mta(&self) -> Mta {
        Mta::Exim
    }

    fn package(&self) -> &'static str {
        "exim4-daemon-light"
    }

    fn daemon(&self) -> &'static str {
        "usr/sbin/exim4"
    }

    fn table(&self) -> &'static str {
        "server-exim"
    }

    fn prepare_server(&self, profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
        prepare(profile, d)
    }

    /// `2026-11-28 18:40:01 TLS error on …`
    fn message<'a>(&self, line: &'a str) -> &'a str {
        let line = line.trim_end();
        let b = line.as_bytes();
        if b.len() > 20 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' { &line[20..] } else { line }
    }

    /// `[127.0.0.1]:41234` (`+incoming_port`): the daemon logs the connection, a child of it the
    /// rest, so the peer's address and port name it, not a process.
    fn connection<'a>(&self, line: &'a str) -> Option<&'a str> {
        let start = line.find(" [")? + 1;
        let rest = &line[start..];
        let close = rest.find("]:")?;
        let digits = rest[close + 2..].chars().take_while(char::is_ascii_digit).count();
        (digits > 0).then(|| &rest[..close + 2 + digits])
    }

    fn event(&self, msg: &str) -> Option<LogEvent> {
        let has = |s: &str| msg.contains(s);
        if has("cert/key setup") || has("tls_dhparam") || has("error in tls_") {
            Some(LogEvent::ConfigWarning(msg.to_string()))
        } else if has("TLS error") {
            Some(LogEvent::Error(msg.to_string()))
        } else if msg.starts_with("SMTP connection from") && has("connection count") {
            Some(LogEvent::Connect { peer: bracketed_peer(msg) })
        } else if has(" <= ") {
            // A received message: `P=esmtps X=TLS1.3:…` over TLS, `P=esmtp` in clear.
            let tls = negotiated(msg);
            let over_tls = msg.split_whitespace().find_map(|f| f.strip_prefix("P=")).map(|p| p.ends_with('s'));
            Some(LogEvent::Message { over_tls: over_tls.or(tls.as_ref().map(|_| true)), tls })
        } else if has("closed by QUIT") {
            Some(LogEvent::End(EndCounts { end: Some(End::Quit), ..EndCounts::default() }))
        } else if msg.starts_with("SMTP connection from") && (has(" lost") || has("closed")) {
            Some(LogEvent::End(EndCounts { end: Some(End::ClientClosed), ..EndCounts::default() }))
        } else {
            None
        }
    }
}

/// What a received message's line says was negotiated (`X=TLS1.3:ECDHE_X25519__…__AES_256_GCM:256`):
/// Exim logs it only with a message.
fn negotiated(msg: &str) -> Option<Negotiated> {
    let x = msg.split_whitespace().find_map(|f| f.strip_prefix("X="))?;
    let mut parts = x.split(':');
    let protocol = Protocol::parse(parts.next()?)?;
    Some(Negotiated::tls(protocol, parts.next()?, None, None))
}

/// The uid and gid nss_wrapper gives `Debian-exim`.
pub const EXIM_ID: u32 = 60101;

const FFDHE: [Group; 5] = [Group::Ffdhe2048, Group::Ffdhe3072, Group::Ffdhe4096, Group::Ffdhe6144, Group::Ffdhe8192];

/// The GnuTLS priority string for a profile.
pub fn priority(profile: &ServerProfile) -> Result<String> {
    if profile.tls13_suites.is_some() {
        return unsupported(
            "GnuTLS priority strings (Exim's tls_require_ciphers) cannot set TLS 1.3 suites apart from TLS 1.2 ones",
        );
    }
    let mut p = vec!["NORMAL".to_string(), "-VERS-ALL".to_string()];
    p.extend(versions(profile).into_iter().map(|v| format!("+{}", gnutls_version(v))));
    if let Some(ciphers) = &profile.ciphers {
        if profile.max_tls == TlsVersion::Tls13 {
            return unsupported(
                "GnuTLS priority strings share bulk ciphers between TLS 1.2 and 1.3: restrict TLS ≤ 1.2 suites with max_tls = \"1.2\"",
            );
        }
        let (mut kx, mut bulk, mut mac) = (Vec::new(), Vec::new(), Vec::new());
        for suite in ciphers {
            let Some((k, c, m)) = gnutls_suite(suite) else {
                return unsupported(format!("no GnuTLS priority keywords for {suite}"));
            };
            push_unique(&mut kx, k);
            push_unique(&mut bulk, c);
            push_unique(&mut mac, m);
        }
        p.push("-KX-ALL".into());
        p.extend(kx.iter().map(|k| format!("+{k}")));
        p.push("-CIPHER-ALL".into());
        p.extend(bulk.iter().map(|c| format!("+{c}")));
        p.push("-MAC-ALL".into());
        p.extend(mac.iter().map(|m| format!("+{m}")));
    }
    let dh_group = match profile.dh {
        None => None,
        Some(dh) => match Group::for_dh(dh) {
            Some(g) => Some(g),
            None => {
                return unsupported(format!(
                    "Exim on Debian links GnuTLS, which ignores tls_dhparam and serves only RFC 7919 groups: it cannot serve {}",
                    dh.name()
                ));
            }
        },
    };
    let mut groups: Vec<Group> = match &profile.groups {
        Some(g) => g.clone(),
        None if dh_group.is_some() => {
            // Keep GnuTLS's default curves, but only the one finite-field group asked for.
            p.extend(FFDHE.iter().map(|g| format!("-{}", gnutls_group(*g))));
            Vec::new()
        }
        None => Vec::new(),
    };
    if let Some(g) = dh_group
        && !groups.contains(&g)
    {
        groups.push(g);
    }
    if profile.groups.is_some() {
        p.push("-GROUP-ALL".into());
    }
    p.extend(groups.iter().map(|g| format!("+{}", gnutls_group(*g))));
    Ok(p.join(":"))
}

fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
    let priority = priority(profile)?;
    let Some(nss) = nss_wrapper(d.libs) else {
        return unsupported(
            "libnss_wrapper is not extracted (scripts/install-stacks): Exim needs its Debian-exim user",
        );
    };
    let owner = Some((EXIM_ID, EXIM_ID));
    let spool = d.dir("spool", 0o750, owner)?;
    let logs = d.dir("log", 0o750, owner)?;
    let (cert, key) = d.tls_files(owner)?;
    let (passwd, group) = nss_files(
        d,
        &[format!("Debian-exim:x:{EXIM_ID}:{EXIM_ID}::/nonexistent:/usr/sbin/nologin")],
        &[format!("Debian-exim:x:{EXIM_ID}:")],
    )?;
    let exim = d.root.join("usr/sbin/exim4");
    let settings: Vec<(String, String)> = vec![
        ("tls_certificate".into(), cert.display().to_string()),
        ("tls_privatekey".into(), key.display().to_string()),
        ("tls_require_ciphers".into(), priority.clone()),
        ("tls_dhparam".into(), "(not written: GnuTLS ≥ 3.6 ignores it; DH comes from the priority string)".into()),
    ];
    let conf = conf_text(
        &profile.id,
        &d.creds.server_name,
        &Files { exim: &exim, spool: &spool, logs: &logs, work: d.work, cert: &cert, key: &key },
        d.port,
        &priority,
    );
    let conf_path = d.file("exim.conf", &conf, 0o644)?;
    Ok(Prepared {
        program: exim,
        args: vec!["-C".into(), conf_path.into_os_string(), "-bdf".into()],
        env: vec![
            ("LD_LIBRARY_PATH".into(), d.lib_path().display().to_string()),
            ("LD_PRELOAD".into(), nss.display().to_string()),
            ("NSS_WRAPPER_PASSWD".into(), passwd.display().to_string()),
            ("NSS_WRAPPER_GROUP".into(), group.display().to_string()),
        ],
        ns: NsPlan::default(),
        log: LogPlan::File(logs.join("mainlog")),
        settings,
        stdin: None,
        gid: None,
    })
}

/// Where Exim's files are for one profile.
struct Files<'a> {
    exim: &'a std::path::Path,
    spool: &'a std::path::Path,
    logs: &'a std::path::Path,
    work: &'a std::path::Path,
    cert: &'a std::path::Path,
    key: &'a std::path::Path,
}

/// The whole configuration file: a daemon on 127.0.0.1:`port` that accepts mail for anyone and
/// throws it away, TLS from `priority`, logging the TLS parameters of each message.
fn conf_text(id: &str, name: &str, f: &Files<'_>, port: u16, priority: &str) -> String {
    format!(
        "# starttls-matrix: Exim for server profile {id}\n\
         primary_hostname = {name}\n\
         exim_path = {exim}\n\
         exim_user = Debian-exim\n\
         exim_group = Debian-exim\n\
         spool_directory = {spool}\n\
         log_file_path = {logs}/%slog\n\
         pid_file_path = {work}/exim.pid\n\
         daemon_smtp_ports = {port}\n\
         local_interfaces = <; 127.0.0.1\n\
         keep_environment = LD_PRELOAD : LD_LIBRARY_PATH : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP\n\
         host_lookup =\n\
         rfc1413_hosts =\n\
         tls_advertise_hosts = *\n\
         tls_certificate = {cert}\n\
         tls_privatekey = {key}\n\
         tls_require_ciphers = {priority}\n\
         log_selector = +tls_cipher +tls_peerdn +smtp_connection +incoming_port +smtp_protocol_error +smtp_syntax_error\n\
         acl_smtp_rcpt = acl_rcpt\n\
         begin acl\n\
         acl_rcpt:\n  accept\n\
         begin routers\n\
         blackhole:\n  driver = redirect\n  data = :blackhole:\n",
        exim = f.exim.display(),
        spool = f.spool.display(),
        logs = f.logs.display(),
        work = f.work.display(),
        cert = f.cert.display(),
        key = f.key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::records_from;

    /// Lines as Exim 4.96 logged them with `+incoming_port` (a message over TLS, then one in
    /// clear and a failed handshake at the same time, from two peers).
    #[test]
    fn connections_from_its_log() {
        let (r, _) = records_from(
            Mta::Exim,
            &[
                "2026-11-29 18:41:30 SMTP connection from [127.0.0.1]:40001 (TCP/IP connection count = 1)",
                "2026-11-29 18:41:30 1xXjq6-0003Ki-24 <= a@client.test H=(client.test) [127.0.0.1]:40001 P=esmtps X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no S=255",
                "2026-11-29 18:41:30 SMTP connection from (client.test) [127.0.0.1]:40001 closed by QUIT",
                "2026-11-29 18:41:30 1xXjq6-0003Ki-24 => :blackhole: <b@mx.test> R=blackhole",
                "2026-11-29 18:41:30 SMTP connection from [127.0.0.2]:40002 (TCP/IP connection count = 1)",
                "2026-11-29 18:41:30 SMTP connection from [127.0.0.3]:40003 (TCP/IP connection count = 2)",
                "2026-11-29 18:41:30 1xXjq6-0003Km-27 <= a@client.test H=(client.test) [127.0.0.2]:40002 P=esmtp S=201",
                "2026-11-28 18:40:01 TLS error on connection from (client.test) [127.0.0.3]:40003 (gnutls_handshake): No supported cipher suites have been found.",
                "2026-11-29 18:41:30 SMTP connection from (client.test) [127.0.0.2]:40002 closed by QUIT",
            ],
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].peer.as_deref(), Some("127.0.0.1:40001"));
        assert_eq!((r[1].peer.as_deref(), r[2].peer.as_deref()), (Some("127.0.0.2:40002"), Some("127.0.0.3:40003")));
        assert_eq!(r[0].tls.as_ref().and_then(|n| n.protocol), Some(Protocol::Tls13));
        assert_eq!((r[0].messages, r[0].messages_in_clear()), (Some(1), Some(0)));
        assert_eq!((r[1].tls.is_some(), r[1].messages_in_clear()), (false, Some(1)));
        assert_eq!(r[1].starttls, None, "Exim does not log a STARTTLS without a message: not known");
        assert!(r[2].error.as_deref().unwrap().contains("No supported cipher suites"));
        assert_eq!(r[2].messages, None, "the connection did not end in the log");
    }

    fn profile(json: serde_json::Value) -> ServerProfile {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_dhe_only_profile_becomes_a_priority_string() {
        let p = profile(serde_json::json!({"id": "x", "backend": "exim", "max_tls": "1.2",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"], "dh": "ffdhe3072"}));
        assert_eq!(
            priority(&p).unwrap(),
            "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+DHE-RSA:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:-MAC-ALL:+AEAD:\
             -GROUP-FFDHE2048:-GROUP-FFDHE3072:-GROUP-FFDHE4096:-GROUP-FFDHE6144:-GROUP-FFDHE8192:+GROUP-FFDHE3072"
        );
    }

    #[test]
    fn a_profile_becomes_its_configuration_text() {
        let p = std::path::Path::new("/w");
        let files = Files { exim: p, spool: p, logs: p, work: p, cert: &p.join("c.pem"), key: &p.join("k.pem") };
        let conf = conf_text("exim-x", "mx.test", &files, 2525, "NORMAL:-VERS-ALL:+VERS-TLS1.2");
        for line in [
            "primary_hostname = mx.test",
            "daemon_smtp_ports = 2525",
            "local_interfaces = <; 127.0.0.1",
            "tls_require_ciphers = NORMAL:-VERS-ALL:+VERS-TLS1.2",
            "tls_certificate = /w/c.pem",
            "log_selector = +tls_cipher",
        ] {
            assert!(conf.contains(line), "{line} in:\n{conf}");
        }
        assert!(conf.contains("data = :blackhole:"), "mail is thrown away");
    }

    #[test]
    fn a_private_prime_is_unsupported() {
        let p = profile(serde_json::json!({"id": "x", "backend": "exim", "dh": "oakley-1024"}));
        assert!(matches!(priority(&p), Err(crate::translate::Prepare::Unsupported(m)) if m.contains("tls_dhparam")));
    }
}
