//! Postfix 3.7 (OpenSSL): a private `main.cf`/`master.cf` and queue under the work directory,
//! `master -d` in the foreground, the log in `maillog_file`. Mail is accepted and discarded.

use super::namespace::NsPlan;
use super::translate::{Dirs, LogPlan, Prepared, Result, openssl_ciphers, openssl_group, unsupported};
use crate::profile::ServerProfile;
use std::fmt::Write as _;

/// The users Postfix runs as: existing system accounts, none created.
const MAIL_OWNER: &str = "mail";
const SETGID_GROUP: &str = "daemon";

/// The stock services of Debian's master.cf, none chrooted.
const SERVICES: &str = "\
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

fn uid_gid(user: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null, checked above.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn gid_of(group: &str) -> Option<u32> {
    let name = std::ffi::CString::new(group).ok()?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() { None } else { Some(unsafe { (*gr).gr_gid }) }
}

fn protocols(profile: &ServerProfile) -> String {
    format!(">={}, <={}", profile.min_tls.protocol_name(), profile.max_tls.protocol_name())
}

pub fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
    if profile.tls13_suites.is_some() {
        return unsupported("Postfix 3.7 has no setting for TLS 1.3 cipher suites (OpenSSL's defaults apply)");
    }
    if let Some(g) = profile.groups.iter().flatten().find(|g| g.ffdhe().is_some()) {
        return unsupported(format!(
            "Postfix 3.7 cannot offer {} as a named group (tls_ffdhe_auto_groups arrived in 3.8)",
            g.name()
        ));
    }
    let Some((mail_uid, _)) = uid_gid(MAIL_OWNER) else {
        return unsupported("this machine has no `mail` user for Postfix's mail_owner");
    };
    let Some(daemon_gid) = gid_of(SETGID_GROUP) else {
        return unsupported("this machine has no `daemon` group for Postfix's setgid_group");
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
    let (cert, key) = d.tls_files(profile, None)?;
    let log = d.work.join("postfix.log");

    let mut settings: Vec<(String, String)> = vec![
        ("smtpd_tls_security_level".into(), "may".into()),
        ("smtpd_tls_cert_file".into(), cert.display().to_string()),
        ("smtpd_tls_key_file".into(), key.display().to_string()),
        ("smtpd_tls_protocols".into(), protocols(profile)),
        ("smtpd_tls_mandatory_protocols".into(), protocols(profile)),
    ];
    if let Some(dh) = d.dh_file(profile)? {
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
    let mut main = String::new();
    let w = &mut main;
    let _ = writeln!(w, "# starttls-matrix: Postfix for server profile {}", profile.id);
    for (k, v) in [
        ("compatibility_level", "3.6".to_string()),
        ("config_directory", etc.display().to_string()),
        ("meta_directory", etc.display().to_string()),
        ("queue_directory", spool.display().to_string()),
        ("data_directory", data.display().to_string()),
        ("command_directory", format!("{root}/usr/sbin")),
        ("daemon_directory", format!("{root}/usr/lib/postfix/sbin")),
        ("shlib_directory", format!("{root}/usr/lib/postfix")),
        ("mail_owner", MAIL_OWNER.into()),
        ("setgid_group", SETGID_GROUP.into()),
        ("default_privs", "nobody".into()),
        (
            "import_environment",
            format!("MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={root}/usr/lib/postfix"),
        ),
        ("maillog_file", log.display().to_string()),
        ("maillog_file_prefixes", d.work.display().to_string()),
        ("myhostname", crate::SERVER_NAME.into()),
        ("mydestination", String::new()),
        ("mynetworks", "127.0.0.0/8".into()),
        ("inet_interfaces", "127.0.0.1".into()),
        ("inet_protocols", "ipv4".into()),
        ("alias_maps", String::new()),
        ("alias_database", String::new()),
        ("biff", "no".into()),
        ("smtpd_tls_loglevel", "1".into()),
        ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination".into()),
        // Accepted mail is thrown away: never delivered anywhere.
        ("default_transport", "discard".into()),
        ("relay_transport", "discard".into()),
        ("local_transport", "discard".into()),
        ("virtual_transport", "discard".into()),
    ] {
        let _ = writeln!(w, "{k} = {v}");
    }
    for (k, v) in &settings {
        let _ = writeln!(w, "{k} = {v}");
    }
    let main_cf = d.file("etc/main.cf", &main, 0o644)?;
    let master = format!("127.0.0.1:{} inet n - n - - smtpd\n{SERVICES}", d.port);
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
        args: vec!["-c".into(), etc.into_os_string(), "-d".into()],
        env: vec![("LD_LIBRARY_PATH".into(), format!("{root}/usr/lib/postfix")), ("MAIL_CONFIG".into(), etc_str(d))],
        ns: NsPlan::default(),
        log: LogPlan::File(log),
        settings,
    })
}

fn etc_str(d: &Dirs<'_>) -> String {
    d.work.join("etc").display().to_string()
}
