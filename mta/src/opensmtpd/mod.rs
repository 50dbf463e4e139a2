//! OpenSMTPD 7.4 (libtls on OpenSSL): a private `smtpd.conf`, `smtpd -d` in the foreground
//! logging to stderr, in its own mount namespace where its compiled-in paths (`/var/spool`,
//! `/var/lib/opensmtpd/empty`, `/run`) are directories of ours, with users from nss_wrapper.
//! It takes no DH file (`dhe none|auto|legacy`) and no curve list.

pub mod sender;

use crate::kind::MtaKind;
use crate::log::{EndCounts, LogEvent};
use crate::namespace::NsPlan;
use crate::translate::{Dirs, LogPlan, Prepared, Result, openssl_ciphers, unsupported, versions};
use crate::users::{nss_files, nss_wrapper};
use report_format::{DheMode, End, Mta, Negotiated, Protocol, ServerProfile, TlsVersion};

/// OpenSMTPD.
pub struct Opensmtpd;

impl MtaKind for Opensmtpd {
    fn mta(&self) -> Mta {
        Mta::Opensmtpd
    }

    fn package(&self) -> &'static str {
        "opensmtpd"
    }

    fn daemon(&self) -> &'static str {
        "usr/sbin/smtpd"
    }

    fn table(&self) -> &'static str {
        "server-opensmtpd"
    }

    fn prepare_server(&self, profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
        prepare(profile, d)
    }

    /// `1a2b3c4d smtp disconnected reason=…` (with -d, no time stamp).
    fn message<'a>(&self, line: &'a str) -> &'a str {
        line.trim_end()
    }

    /// `3a1c0f… smtp …`: the session id.
    fn connection<'a>(&self, line: &'a str) -> Option<&'a str> {
        let id = line.split(' ').next()?;
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
    }

    fn event(&self, msg: &str) -> Option<LogEvent> {
        let has = |s: &str| msg.contains(s);
        if has("pki") && (has("error") || has("failed")) {
            Some(LogEvent::ConfigWarning(msg.to_string()))
        } else if has(" smtp connected ") {
            let peer = msg.split_whitespace().find_map(|f| f.strip_prefix("address=")).map(str::to_string);
            Some(LogEvent::Connect { peer })
        } else if has(" smtp tls ciphers=") {
            negotiated(msg).map(LogEvent::Tls)
        } else if has(" smtp message ") {
            // `proto=ESMTP` over TLS too: whether it came over TLS is the session's `smtp tls`.
            Some(LogEvent::Message { over_tls: None, tls: None })
        } else if has("smtp disconnected") && has("reason=quit") {
            Some(LogEvent::End(EndCounts { end: Some(End::Quit), ..EndCounts::default() }))
        } else if has("smtp disconnected") && has("reason=disconnect") {
            Some(LogEvent::End(EndCounts { end: Some(End::ClientClosed), ..EndCounts::default() }))
        } else if has("smtp disconnected") {
            Some(LogEvent::Error(msg.to_string()))
        } else {
            None
        }
    }
}

/// "3a1c smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256".
fn negotiated(msg: &str) -> Option<Negotiated> {
    let (_, rest) = msg.split_once("smtp tls ciphers=")?;
    let mut parts = rest.split_whitespace().next()?.split(':');
    Some(Negotiated::tls(Protocol::parse(parts.next()?)?, parts.next()?, None, None))
}

const SMTPD_ID: u32 = 60104;
pub(crate) const SMTPQ_ID: u32 = 60105;

fn protocol(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls10 => "tlsv1.0",
        TlsVersion::Tls11 => "tlsv1.1",
        TlsVersion::Tls12 => "tlsv1.2",
        TlsVersion::Tls13 => "tlsv1.3",
    }
}

fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
    if let Some(dh) = profile.dh {
        return unsupported(format!(
            "OpenSMTPD takes no DH file (it cannot serve {}): its `pki … dhe` is none, auto or legacy — set dhe instead",
            dh.name()
        ));
    }
    if profile.groups.is_some() {
        return unsupported("OpenSMTPD 7.4 has no setting for curves or groups (libtls's defaults apply)");
    }
    if profile.tls13_suites.is_some() {
        return unsupported("OpenSMTPD 7.4 has no setting for TLS 1.3 cipher suites");
    }
    let Instance { mut env, ns } = instance(d)?;
    let (cert, key) = d.tls_files(None)?;
    let dhe = profile.dhe.unwrap_or(DheMode::None);
    let protocols: Vec<&str> = versions(profile).into_iter().map(protocol).collect();
    let mut listen = format!(
        "listen on 127.0.0.1 port {} tls pki matrix hostname {} protocols \"{}\"",
        d.port,
        d.creds.server_name,
        protocols.join(",")
    );
    let mut settings: Vec<(String, String)> = vec![
        ("pki matrix cert".into(), cert.display().to_string()),
        ("pki matrix key".into(), key.display().to_string()),
        ("pki matrix dhe".into(), dhe.as_str().into()),
        ("protocols".into(), protocols.join(",")),
    ];
    if let Some(list) = openssl_ciphers(profile)? {
        listen.push_str(&format!(" ciphers \"{list}\""));
        settings.push(("ciphers".into(), list));
    }
    if let Some(level) = profile.security_level {
        let cnf = d.openssl_cnf(level)?;
        settings.push(("OPENSSL_CONF".into(), cnf.display().to_string()));
        env.push(("OPENSSL_CONF".into(), cnf.display().to_string()));
    }
    let conf = conf_text(&profile.id, &cert, &key, dhe, &listen);
    let conf_path = d.file("smtpd.conf", &conf, 0o644)?;
    Ok(Prepared {
        program: d.root.join("usr/sbin/smtpd"),
        args: vec!["-d".into(), "-f".into(), conf_path.into_os_string()],
        env,
        ns,
        log: LogPlan::Stderr,
        settings,
        stdin: None,
        gid: None,
    })
}

/// What every OpenSMTPD of ours runs with: its users from nss_wrapper, and a mount namespace
/// where its compiled-in directories are ours.
pub(crate) struct Instance {
    pub env: Vec<(String, String)>,
    pub ns: NsPlan,
}

/// Make an instance's directories under `d.work` (its spool, state, `/run` with the control
/// socket smtpctl talks to) and its users.
pub(crate) fn instance(d: &Dirs<'_>) -> Result<Instance> {
    let Some(nss) = nss_wrapper(d.libs) else {
        return unsupported("libnss_wrapper is not extracted (scripts/install-stacks): OpenSMTPD needs its users");
    };
    let var_spool = d.dir("var-spool", 0o755, None)?;
    let var_lib = d.dir("var-lib", 0o755, None)?;
    d.dir("var-lib/opensmtpd/empty", 0o755, None)?;
    let run = d.dir("run", 0o755, None)?;
    let resolver = crate::namespace::local_resolver(&d.work.join("ns-etc"), &[&d.creds.server_name])?;
    let (passwd, group) = nss_files(
        d,
        &[
            format!("opensmtpd:x:{SMTPD_ID}:{SMTPD_ID}::/var/lib/opensmtpd/empty:/usr/sbin/nologin"),
            format!("opensmtpq:x:{SMTPQ_ID}:{SMTPQ_ID}::/var/lib/opensmtpd/empty:/usr/sbin/nologin"),
        ],
        &[format!("opensmtpd:x:{SMTPD_ID}:"), format!("opensmtpq:x:{SMTPQ_ID}:")],
    )?;
    Ok(Instance {
        env: vec![
            ("LD_PRELOAD".into(), nss.display().to_string()),
            ("NSS_WRAPPER_PASSWD".into(), passwd.display().to_string()),
            ("NSS_WRAPPER_GROUP".into(), group.display().to_string()),
        ],
        ns: NsPlan {
            hostname: None,
            // Its delivery helpers (mail.mda) are compiled in under /usr/libexec/opensmtpd: the
            // extracted ones, or every accepted message bounces back through a local session.
            binds: [
                (var_spool, "/var/spool".into()),
                (var_lib, "/var/lib".into()),
                (run, "/run".into()),
                (d.root.join("usr/libexec"), "/usr/libexec".into()),
            ]
            .into_iter()
            .chain(resolver)
            .collect(),
            private_dev: None,
        },
    })
}

/// The whole `smtpd.conf`: one pki, the listener, and an action that throws mail away.
fn conf_text(id: &str, cert: &std::path::Path, key: &std::path::Path, dhe: DheMode, listen: &str) -> String {
    format!(
        "# starttls-matrix: OpenSMTPD for server profile {id}\n\
         pki matrix cert \"{cert}\"\npki matrix key \"{key}\"\npki matrix dhe {dhe}\n\
         {listen}\n\
         action \"devnull\" mda \"cat >/dev/null\" virtual {{ \"@\" = nobody }} user nobody\n\
         match from any for any action \"devnull\"\n",
        cert = cert.display(),
        key = key.display(),
        dhe = dhe.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::records_from;

    #[test]
    fn a_profile_becomes_its_configuration_text() {
        let listen = "listen on 127.0.0.1 port 2525 tls pki matrix hostname mx.test protocols \"tlsv1.2\"";
        let conf =
            conf_text("o", std::path::Path::new("/w/c.pem"), std::path::Path::new("/w/k.pem"), DheMode::Legacy, listen);
        assert!(conf.contains("pki matrix dhe legacy\n"), "{conf}");
        assert!(conf.contains(listen));
        assert!(conf.contains("action \"devnull\" mda \"cat >/dev/null\""), "mail is thrown away: {conf}");
    }

    #[test]
    fn connections_from_its_log() {
        let (r, _) = records_from(
            Mta::Opensmtpd,
            &[
                "3a1c smtp connected address=127.0.0.5 host=localhost",
                "7ae4 smtp connected address=127.0.0.6 host=localhost",
                "3a1c smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256",
                "3a1c smtp disconnected reason=quit",
                "7ae4 smtp disconnected reason=\"io-error: handshake failed: error:0A0000C1:SSL routines::no shared cipher\"",
            ],
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].tls.as_ref().and_then(|n| n.protocol), Some(Protocol::Tls13));
        assert_eq!((r[0].peer.as_deref(), r[1].peer.as_deref()), (Some("127.0.0.5"), Some("127.0.0.6")));
        assert_eq!(r[0].messages, None, "no message line, no count: not known");
        assert!(r[1].error.as_deref().unwrap().contains("no shared cipher"));
    }
}
