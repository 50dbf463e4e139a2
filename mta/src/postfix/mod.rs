//! Postfix 3.7 (OpenSSL): a private `main.cf`/`master.cf` and queue under the work directory,
//! `master -d` in the foreground, the log in `maillog_file`. Mail is accepted and discarded. Its
//! log: `connect from`, `TLS connection established from …`, warnings, and `disconnect from …
//! ehlo=2 starttls=1 data=1 commands=7` with the connection's counts.

pub mod sender;

use crate::kind::MtaKind;
use crate::log::{EndCounts, LogEvent, bracketed_peer, count, iana_group};
use crate::namespace::NsPlan;
use crate::translate::{Dirs, LogPlan, Prepared, Result, openssl_ciphers, openssl_group, unsupported};
use crate::users::{gid_of, uid_gid};
use report_format::{End, Mta, Negotiated, Protocol, ServerProfile};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Postfix.
pub struct Postfix;

impl MtaKind for Postfix {
    fn mta(&self) -> Mta {
        Mta::Postfix
    }

    fn package(&self) -> &'static str {
        "postfix"
    }

    fn daemon(&self) -> &'static str {
        "usr/lib/postfix/sbin/master"
    }

    fn table(&self) -> &'static str {
        "server-postfix"
    }

    fn prepare_server(&self, profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
        prepare(profile, d)
    }

    /// `Nov 28 18:40:01 host postfix/smtpd[12]: …`
    fn message<'a>(&self, line: &'a str) -> &'a str {
        let line = line.trim_end();
        line.find("]: ").map_or(line, |i| &line[i + 3..])
    }

    /// `postfix/smtpd[12]`: an smtpd process serves one connection at a time.
    fn connection<'a>(&self, line: &'a str) -> Option<&'a str> {
        crate::log::program_pid(line)
    }

    fn event(&self, msg: &str) -> Option<LogEvent> {
        let has = |s: &str| msg.contains(s);
        if has("error configuring") || has("cannot load") || has("cannot get RSA") || has("disabling TLS") {
            Some(LogEvent::ConfigWarning(msg.to_string()))
        } else if msg.starts_with("connect from ") {
            Some(LogEvent::Connect { peer: bracketed_peer(msg) })
        } else if has("TLS connection established from ") {
            negotiated(msg).map(LogEvent::Tls)
        } else if msg.starts_with("disconnect from ") {
            Some(LogEvent::End(EndCounts {
                starttls: Some(count(msg, "starttls").is_some_and(|n| n > 0)),
                // A message sent with BDAT (CHUNKING: Exim does) is counted in chunks, not
                // messages: then the count is not known.
                messages: count(msg, "bdat").is_none().then(|| count(msg, "data").unwrap_or(0)),
                commands: count(msg, "commands"),
                end: Some(if count(msg, "quit").is_some_and(|n| n > 0) { End::Quit } else { End::ClientClosed }),
            }))
        } else if msg.starts_with("warning: TLS library problem") {
            Some(LogEvent::WarningDetail(msg.to_string()))
        } else if (msg.starts_with("warning:") && (has("TLS") || has("SSL")))
            || has("SSL_accept error")
            || msg.starts_with("fatal:")
            || has("lost connection after STARTTLS")
        {
            Some(LogEvent::Error(msg.to_string()))
        } else {
            None
        }
    }
}

/// "… TLS connection established from …: TLSv1.3 with cipher X (256/256 bits) key-exchange
/// X25519 …" (the key exchange is logged for named groups only).
fn negotiated(msg: &str) -> Option<Negotiated> {
    let (_, rest) = msg.split_once("TLS connection established from ")?;
    let (_, rest) = rest.split_once(": ")?;
    let (protocol, rest) = rest.split_once(" with cipher ")?;
    let cipher = rest.split_whitespace().next()?;
    let group = rest.split_once("key-exchange ").and_then(|(_, k)| k.split_whitespace().next());
    let group = group.filter(|g| !g.starts_with("DHE") && !g.starts_with("ECDHE")).map(iana_group);
    Some(Negotiated::tls(Protocol::parse(protocol)?, cipher, group, None))
}

/// The stock services of Debian's master.cf, none chrooted.
pub(crate) const SERVICES: &str = "\
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
virtual   unix - n n - - virtual
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
";

fn protocols(profile: &ServerProfile) -> String {
    format!(">={}, <={}", profile.min_tls.protocol_name(), profile.max_tls.protocol_name())
}

/// The profile's TLS settings as `main.cf` lines (`tls/server.pem`, `tls/server.key` and the DH
/// file are where [`Dirs::tls_files`] and [`Dirs::dh_file`] put them).
fn settings(
    profile: &ServerProfile,
    work: &std::path::Path,
    dh: Option<std::path::PathBuf>,
) -> Result<Vec<(String, String)>> {
    let tls = work.join("tls");
    let mut settings: Vec<(String, String)> = vec![
        ("smtpd_tls_security_level".into(), "may".into()),
        ("smtpd_tls_cert_file".into(), tls.join("server.pem").display().to_string()),
        ("smtpd_tls_key_file".into(), tls.join("server.key").display().to_string()),
        ("smtpd_tls_protocols".into(), protocols(profile)),
        ("smtpd_tls_mandatory_protocols".into(), protocols(profile)),
    ];
    if let Some(dh) = dh {
        settings.push(("smtpd_tls_dh1024_param_file".into(), dh.display().to_string()));
    }
    if let Some(list) = openssl_ciphers(profile)? {
        settings.push(("smtpd_tls_ciphers".into(), "high".into()));
        settings.push(("smtpd_tls_mandatory_ciphers".into(), "high".into()));
        settings.push(("tls_high_cipherlist".into(), list));
    }
    if let Some(groups) = &profile.groups {
        let names: Vec<&str> = groups.iter().map(|g| openssl_group(*g)).collect();
        settings.push(("tls_eecdh_auto_curves".into(), names.join(" ")));
    }
    Ok(settings)
}

fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
    if profile.tls13_suites.is_some() {
        return unsupported("Postfix 3.7 has no setting for TLS 1.3 cipher suites (OpenSSL's defaults apply)");
    }
    if let Some(g) = profile.groups.iter().flatten().find(|g| g.ffdhe().is_some()) {
        return unsupported(format!(
            "Postfix 3.7 cannot offer {} as a named group (tls_ffdhe_auto_groups arrived in 3.8)",
            g.name()
        ));
    }
    let settings = settings(profile, d.work, d.dh_file()?)?;
    d.tls_files(None)?;
    let role: Vec<(String, String)> = [
        ("myhostname", d.creds.server_name.clone()),
        ("mynetworks", "127.0.0.0/8".to_string()),
        ("inet_interfaces", "127.0.0.1".to_string()),
        ("smtpd_tls_loglevel", "1".to_string()),
        // The peer's port too, so each connection's record names it.
        ("smtpd_client_port_logging", "yes".to_string()),
        ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination".to_string()),
        // Accepted mail is thrown away: never delivered anywhere.
        ("default_transport", "discard".to_string()),
        ("relay_transport", "discard".to_string()),
        ("local_transport", "discard".to_string()),
        ("virtual_transport", "discard".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(settings.iter().cloned())
    .collect();
    let inet = format!("127.0.0.1:{} inet n - n - - smtpd", d.port);
    instance(d, &format!("Postfix for server profile {}", profile.id), &role, Some(&inet), settings)
}

/// A Postfix instance of its own under `d.work`: its queue, a `main.cf` with what every instance
/// needs then `role`'s settings, a `master.cf` with the stock services (after `inet`, a listener,
/// if any), its log in `maillog_file`. `report` is what the report shows of its settings.
pub(crate) fn instance(
    d: &Dirs<'_>,
    heading: &str,
    role: &[(String, String)],
    inet: Option<&str>,
    report: Vec<(String, String)>,
) -> Result<Prepared> {
    // The users Postfix runs as: existing system accounts, none created.
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (mail_owner, setgid_group) = match accounts(&read("/etc/passwd"), &read("/etc/group")) {
        Ok(pair) => pair,
        Err(why) => return unsupported(why),
    };
    let (Some((mail_uid, _)), Some(daemon_gid)) = (uid_gid(&mail_owner), gid_of(&setgid_group)) else {
        return unsupported(format!("this machine cannot look up {mail_owner} or {setgid_group}"));
    };
    let root = d.root.display().to_string();
    let etc = d.dir("etc", 0o755, None)?;
    let spool = d.dir("spool", 0o755, None)?;
    for q in
        ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"]
    {
        d.dir(&format!("spool/{q}"), 0o700, Some((mail_uid, 0)))?;
    }
    d.dir("spool/maildrop", 0o730, Some((mail_uid, daemon_gid)))?;
    d.dir("spool/public", 0o710, Some((mail_uid, daemon_gid)))?;
    d.dir("spool/pid", 0o755, None)?;
    let data = d.dir("data", 0o700, Some((mail_uid, 0)))?;
    let log = d.work.join("postfix.log");
    let mut main = String::new();
    let w = &mut main;
    let _ = writeln!(w, "# starttls-matrix: {heading}");
    let base = [
        ("compatibility_level", "3.6".to_string()),
        ("config_directory", etc.display().to_string()),
        ("meta_directory", etc.display().to_string()),
        ("queue_directory", spool.display().to_string()),
        ("data_directory", data.display().to_string()),
        ("command_directory", format!("{root}/usr/sbin")),
        ("daemon_directory", format!("{root}/usr/lib/postfix/sbin")),
        ("shlib_directory", format!("{root}/usr/lib/postfix")),
        ("mail_owner", mail_owner.clone()),
        ("setgid_group", setgid_group.clone()),
        ("default_privs", "nobody".into()),
        (
            "import_environment",
            // LD_LIBRARY_PATH as master got it (environment() below, and a candidate library
            // before it when one is swapped in).
            "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH".to_string(),
        ),
        ("maillog_file", log.display().to_string()),
        ("maillog_file_prefixes", d.work.display().to_string()),
        ("mydestination", String::new()),
        ("inet_protocols", "ipv4".into()),
        // No name service off the machine: clients are not looked up, destinations are numeric.
        ("smtpd_peername_lookup", "no".into()),
        ("smtp_dns_support_level", "disabled".into()),
        ("alias_maps", String::new()),
        ("alias_database", String::new()),
        ("biff", "no".into()),
    ];
    for (k, v) in base.iter().map(|(k, v)| (k.to_string(), v.clone())).chain(role.iter().cloned()) {
        let _ = writeln!(w, "{k} = {v}");
    }
    let main_cf = d.file("etc/main.cf", &main, 0o644)?;
    let master = match inet {
        Some(line) => format!("{line}\n{SERVICES}"),
        None => SERVICES.to_string(),
    };
    let master_cf = d.file("etc/master.cf", &master, 0o644)?;
    let maps = std::fs::read_to_string(d.root.join("usr/share/postfix/dynamicmaps.cf")).unwrap_or_default();
    let maps_cf = d.file("etc/dynamicmaps.cf", &maps, 0o644)?;
    d.dir("etc/dynamicmaps.cf.d", 0o755, None)?;
    // Postfix re-reads a configuration file younger than a second, in 300 ms steps (about
    // 1.8 s at start): date ours back.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    for f in [&main_cf, &master_cf, &maps_cf] {
        std::fs::File::options().write(true).open(f)?.set_modified(past)?;
    }
    Ok(Prepared {
        program: d.root.join("usr/lib/postfix/sbin/master"),
        args: vec!["-c".into(), etc.clone().into_os_string(), "-d".into()],
        env: environment(d.root, &etc),
        ns: NsPlan::default(),
        log: LogPlan::File(log),
        settings: report,
        stdin: None,
        gid: None,
    })
}

/// What every Postfix program of an instance needs: its libraries and its configuration.
pub(crate) fn environment(root: &Path, etc: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_LIBRARY_PATH".into(), root.join("usr/lib/postfix").display().to_string()),
        ("MAIL_CONFIG".into(), etc.display().to_string()),
    ]
}

/// A `main.cf` for Postfix's command-line tools (posttls-finger), in a new temporary directory
/// named after `tool`: they read nothing else of Postfix's configuration (no master.cf, no
/// queue, no daemons).
pub fn tool_config(root: &Path, tool: &str) -> std::result::Result<tempfile::TempDir, String> {
    let dir = procs::workdir::create(&format!("{}{tool}-", procs::workdir::PREFIX)).map_err(|e| e.to_string())?;
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("read {p}: {e}"));
    let (owner, group) = accounts(&read("/etc/passwd")?, &read("/etc/group")?)?;
    let (dir_s, root_s) = (dir.path().display(), root.display());
    let text = format!(
        "# Written by starttls-matrix for the posttls-finger stack; removed after the run.\n\
         compatibility_level = 3.6\n\
         config_directory = {dir_s}\n\
         meta_directory = {dir_s}\n\
         shlib_directory = {root_s}/usr/lib/postfix\n\
         daemon_directory = {root_s}/usr/lib/postfix/sbin\n\
         command_directory = {root_s}/usr/sbin\n\
         # Postfix refuses to start unless these name an existing user and group.\n\
         mail_owner = {owner}\n\
         setgid_group = {group}\n\
         # Never the machine's own name; each cell sets its EHLO name with -o myhostname=.\n\
         myhostname = localhost.localdomain\n\
         # Destinations are [address]:port: no DNS, and no DNSSEC probe either.\n\
         dnssec_probe =\n"
    );
    let path = dir.path().join("main.cf");
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    // Postfix waits for a main.cf younger than a second to settle: 1.8 s on every start.
    let settled = SystemTime::now() - Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(settled))
        .map_err(|e| format!("date back {}: {e}", path.display()))?;
    Ok(dir)
}

/// Postfix wants an unprivileged `mail_owner` other than `default_privs` (nobody), and a
/// `setgid_group` that is neither its group nor nobody's: pick them from the accounts there are.
pub fn accounts(passwd: &str, group: &str) -> std::result::Result<(String, String), String> {
    // name:x:uid:gid:…
    let users: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((*f.first()?, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .collect();
    let groups: Vec<(&str, u32)> = group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((*f.first()?, f.get(2)?.parse().ok()?))
        })
        .collect();
    let nobody_gid = users.iter().find(|u| u.0 == "nobody").map(|u| u.2);
    let owner = ["postfix", "mail", "daemon"]
        .iter()
        .find_map(|name| users.iter().find(|u| u.0 == *name && u.1 != 0))
        .ok_or("no account for Postfix's mail_owner (postfix, mail or daemon)")?;
    let setgid = ["postdrop", "daemon", "mail", "adm"]
        .iter()
        .find_map(|name| groups.iter().find(|g| g.0 == *name && g.1 != owner.2 && Some(g.1) != nobody_gid))
        .ok_or("no group for Postfix's setgid_group (postdrop, daemon, mail or adm)")?;
    Ok((owner.0.to_string(), setgid.0.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::records_from;
    use crate::translate::Credentials;

    #[test]
    fn picks_accounts_postfix_accepts() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nmail:x:8:8:mail:/var/mail:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        let group = "root:x:0:\ndaemon:x:1:\nmail:x:8:\nnogroup:x:65534:\n";
        assert_eq!(accounts(passwd, group).unwrap(), ("mail".to_string(), "daemon".to_string()));
        let with_postfix = format!("{passwd}postfix:x:107:113::/var/spool/postfix:/usr/sbin/nologin\n");
        let groups = format!("{group}postfix:x:113:\npostdrop:x:114:\n");
        assert_eq!(accounts(&with_postfix, &groups).unwrap(), ("postfix".to_string(), "postdrop".to_string()));
        assert!(accounts("root:x:0:0::/:/bin/sh\n", group).is_err());
    }

    #[test]
    fn the_tool_config_is_written_aside_and_settled() {
        let root = Path::new("/opt/extracted/postfix");
        let dir = tool_config(root, "posttls-finger").unwrap();
        let path = dir.path().join("main.cf");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("shlib_directory = /opt/extracted/postfix/usr/lib/postfix\n"), "{text}");
        assert!(text.contains(&format!("config_directory = {}\n", dir.path().display())));
        assert!(!dir.path().starts_with("/etc"));
        let age = std::fs::metadata(&path).unwrap().modified().unwrap().elapsed().unwrap();
        assert!(age >= Duration::from_secs(5), "Postfix would wait for a fresh main.cf to settle");
    }

    const LOG: &[&str] = &[
        "Nov 29 18:41:22 mx postfix/smtpd[12768]: connect from localhost[127.0.0.1]",
        "Nov 29 18:41:23 mx postfix/smtpd[12768]: Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: 08A0498C0C7: client=localhost[127.0.0.1]",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: connect from localhost[127.0.0.1]",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: connect from localhost[127.0.0.1]",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: warning: TLS library problem: error:0A0000C1:SSL routines::no shared cipher:../ssl/statem/statem_srvr.c:2220:",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: lost connection after STARTTLS from localhost[127.0.0.1]",
        "Nov 29 18:41:24 mx postfix/smtpd[12768]: disconnect from localhost[127.0.0.1] ehlo=1 starttls=0/1 commands=1/2",
    ];

    /// Lines as Postfix 3.7.11 logged them (a TLS message, a plaintext message, a failed handshake).
    #[test]
    fn connections_from_its_log() {
        let (r, warnings) = records_from(Mta::Postfix, LOG);
        assert!(warnings.is_empty());
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].tls.as_ref().unwrap().label(), "TLSv1.3 x25519");
        assert_eq!(r[0].peer.as_deref(), Some("127.0.0.1"));
        assert_eq!((r[0].starttls, r[0].messages, r[0].commands), (Some(true), Some(1), Some(7)));
        assert_eq!((r[1].tls.is_some(), r[1].starttls, r[1].messages), (false, Some(false), Some(1)));
        assert_eq!(r[1].messages_in_clear(), Some(1), "mail in clear is seen from the server's side");
        assert!(r[2].error.as_deref().unwrap().contains("no shared cipher"));
        assert_eq!((r[2].starttls, r[2].messages), (Some(false), Some(0)));
        let (r, _) = records_from(
            Mta::Postfix,
            &[
                "Nov 29 19:42:22 mx postfix/smtpd[7]: connect from unknown[127.0.0.4]:48471",
                "Nov 29 19:42:22 mx postfix/smtpd[7]: disconnect from unknown[127.0.0.4]:48471 ehlo=2 starttls=1 mail=1 rcpt=1 bdat=1 quit=1 commands=7",
            ],
        );
        assert_eq!(r[0].messages, None, "BDAT chunks are not messages: not known");
        assert_eq!(r[0].peer.as_deref(), Some("127.0.0.4:48471"));
    }

    #[test]
    fn a_dh_warning_keeps_its_detail() {
        let (_, warnings) = records_from(
            Mta::Postfix,
            &[
                "Nov 28 18:40:01 mx postfix/smtpd[12]: warning: error configuring explicit DH parameters",
                "Nov 28 18:40:01 mx postfix/smtpd[12]: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/ssl_lib.c:6016:",
            ],
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("dh key too small"), "{warnings:?}");
    }

    #[test]
    fn a_dhe_only_profile_becomes_main_cf_text() {
        let work = tempfile::tempdir().unwrap();
        let creds = Credentials {
            ca_cert: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/server.pem".into(),
            key: "/nonexistent/server.key".into(),
            dh: Some(("oakley-1024".into(), "-----BEGIN DH PARAMETERS-----\n".into())),
            server_name: "mx.test".into(),
        };
        let p: ServerProfile = serde_json::from_value(serde_json::json!({"id": "p", "backend": "postfix",
            "max_tls": "1.2", "ciphers": ["TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"], "dh": "oakley-1024"}))
        .unwrap();
        // Copying the certificate fails on purpose: the settings are made before.
        let d = Dirs { root: work.path(), libs: work.path(), work: work.path(), port: 2525, creds: &creds };
        let settings = settings(&p, d.work, d.dh_file().unwrap()).unwrap();
        let get = |k: &str| settings.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("smtpd_tls_protocols"), Some(">=TLSv1.2, <=TLSv1.2"));
        assert_eq!(get("tls_high_cipherlist"), Some("DHE-RSA-AES256-GCM-SHA384"));
        assert_eq!(get("smtpd_tls_ciphers"), Some("high"));
        assert!(get("smtpd_tls_dh1024_param_file").unwrap().ends_with("tls/oakley-1024.pem"));
        assert_eq!(get("tls_eecdh_auto_curves"), None, "no groups in the profile: Postfix's default");
    }

    #[test]
    fn what_it_cannot_express_is_unsupported() {
        let p: ServerProfile = serde_json::from_value(serde_json::json!({"id": "p", "backend": "postfix",
            "groups": ["ffdhe2048"]}))
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let creds = Credentials {
            ca_cert: "/x".into(),
            cert: "/x".into(),
            key: "/x".into(),
            dh: None,
            server_name: "mx.test".into(),
        };
        let d = Dirs { root: work.path(), libs: work.path(), work: work.path(), port: 2525, creds: &creds };
        assert!(matches!(prepare(&p, &d), Err(crate::translate::Prepare::Unsupported(m)) if m.contains("3.8")));
    }
}
