//! Exim 4.96 as Debian builds it (GnuTLS): a private configuration whose `tls_require_ciphers`
//! is a GnuTLS priority string made from the profile, run as `exim4 -bdf` under the
//! `Debian-exim` user that nss_wrapper provides (no account is created). GnuTLS ≥ 3.6 ignores
//! `tls_dhparam`, so a DH file is expressible only as an RFC 7919 group of the priority string.

use super::namespace::NsPlan;
use super::translate::{
    Dirs, LogPlan, Prepared, Result, gnutls_group, gnutls_suite, gnutls_version, push_unique, unsupported, versions,
};
use crate::profile::{Group, ServerProfile, TlsVersion};

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

pub fn prepare(profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared> {
    let priority = priority(profile)?;
    let Some(nss) = super::launch::nss_wrapper(d.libs) else {
        return unsupported(
            "libnss_wrapper is not extracted (scripts/install-stacks): Exim needs its Debian-exim user",
        );
    };
    let owner = Some((EXIM_ID, EXIM_ID));
    let spool = d.dir("spool", 0o750, owner)?;
    let logs = d.dir("log", 0o750, owner)?;
    let (cert, key) = d.tls_files(profile, owner)?;
    let (passwd, group) = super::launch::nss_files(
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
    let conf = format!(
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
         log_selector = +tls_cipher +tls_peerdn +smtp_connection +smtp_protocol_error +smtp_syntax_error\n\
         acl_smtp_rcpt = acl_rcpt\n\
         begin acl\n\
         acl_rcpt:\n  accept\n\
         begin routers\n\
         blackhole:\n  driver = redirect\n  data = :blackhole:\n",
        id = profile.id,
        name = crate::SERVER_NAME,
        exim = exim.display(),
        spool = spool.display(),
        logs = logs.display(),
        work = d.work.display(),
        port = d.port,
        cert = cert.display(),
        key = key.display(),
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_private_prime_is_unsupported() {
        let p = profile(serde_json::json!({"id": "x", "backend": "exim", "dh": "oakley-1024"}));
        assert!(
            matches!(priority(&p), Err(super::super::translate::Prepare::Unsupported(m)) if m.contains("tls_dhparam"))
        );
    }
}
