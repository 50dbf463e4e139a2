//! sendmail 8.17 (OpenSSL): a `.mc` made from the profile and compiled with the extracted m4,
//! `sendmail -bD` in its own UTS namespace (a qualified host name, else it sleeps 60 s) and
//! mount namespace (a private `/dev` whose `log` is our syslog socket — sendmail logs only to
//! syslog — and, for a `security_level`, its own `openssl.cnf` bound over the system's:
//! sendmail wipes its environment, so `OPENSSL_CONF` cannot reach it). Its curve is fixed.

use super::namespace::{NsPlan, PrivateDev};
use super::translate::{Dirs, LogPlan, Prepare, Prepared, Result, openssl_ciphers, unsupported};
use crate::profile::{Group, ServerProfile, TlsVersion};
use std::path::Path;
use std::time::Duration;

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

fn m4(root: &Path, mc: &Path) -> Result<String> {
    let mut child = std::process::Command::new(root.join("usr/bin/m4"))
        .arg(mc)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()?;
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

use std::os::unix::process::CommandExt as _;

pub fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
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
    let (cert, key) = d.tls_files(profile, None)?;
    let tls = d.work.join("tls");
    let w = d.work.display();
    let mut settings: Vec<(String, String)> = vec![
        ("confSERVER_CERT".into(), cert.display().to_string()),
        ("confSERVER_KEY".into(), key.display().to_string()),
        ("confTLS_SRV_OPTIONS".into(), "V".into()),
    ];
    if let Some(dh) = d.dh_file(profile)? {
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
    let mut mc = format!(
        "divert(-1)\ndivert(0)dnl\ninclude(`{root}/usr/share/sendmail/cf/m4/cf.m4')dnl\n\
         VERSIONID(`starttls-matrix {id}')dnl\nOSTYPE(`linux')dnl\n\
         define(`confDOMAIN_NAME', `{name}')dnl\n\
         define(`confDONT_PROBE_INTERFACES', `True')dnl\n\
         define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl\n\
         define(`confLOG_LEVEL', `14')dnl\n\
         define(`confDELIVERY_MODE', `queueonly')dnl\n\
         define(`QUEUE_DIR', `{w}/mqueue')dnl\n\
         define(`MSP_QUEUE_DIR', `{w}/clientmqueue')dnl\n\
         define(`STATUS_FILE', `{w}/statistics')dnl\n\
         define(`ALIAS_FILE', `')dnl\ndefine(`HELP_FILE', `')dnl\n\
         define(`confPID_FILE', `{w}/sendmail.pid')dnl\n\
         define(`confSERVICE_SWITCH_FILE', `{w}/service.switch')dnl\n\
         define(`confHOSTS_FILE', `{w}/hosts')dnl\n\
         define(`confTO_IDENT', `0s')dnl\n\
         define(`confCACERT_PATH', `{tls}')dnl\n\
         define(`confCACERT', `{tls}/ca.pem')dnl\n",
        root = root.display(),
        id = profile.id,
        name = crate::SERVER_NAME,
        tls = tls.display(),
    );
    for (k, v) in &settings {
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
        port = d.port
    ));
    let mc_path = d.file("sendmail.mc", &mc, 0o644)?;
    let cf = m4(root, &mc_path)?;
    let cf_path = d.file("sendmail.cf", &cf, 0o644)?;
    d.file("service.switch", "hosts files\naliases files\n", 0o644)?;
    d.file("hosts", &format!("127.0.0.1 {0} localhost\n", crate::SERVER_NAME), 0o644)?;
    let host_dev = d.dir("ns/dev", 0o755, None)?;
    let socket = d.work.join("syslog.sock");
    Ok(Prepared {
        program: root.join("usr/libexec/sendmail/sendmail"),
        args: vec![format!("-C{}", cf_path.display()).into(), "-bD".into(), "-L".into(), "sm-matrix".into()],
        env: vec![("LD_LIBRARY_PATH".into(), d.lib_path().display().to_string())],
        ns: NsPlan {
            hostname: Some(crate::SERVER_NAME.into()),
            binds,
            private_dev: Some(PrivateDev { host_dev, syslog_socket: socket.clone() }),
        },
        log: LogPlan::Syslog(socket),
        settings,
    })
}
