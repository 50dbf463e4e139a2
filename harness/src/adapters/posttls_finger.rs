//! The `posttls-finger` adapter: Postfix's TLS probe, run from the tree `scripts/install-mtas`
//! extracts (Postfix is never installed: that would start an MTA), reading a private `main.cf`
//! written into a temporary directory. Its exit status says little (0 for a refused STARTTLS or a
//! failed handshake, 1 only on a fatal error), so the RESULT is read from its log lines: the SMTP chat (`< 250 …`, `> STARTTLS`), its summary (`Verified TLS connection
//! established to …: TLSv1.3 with cipher … key-exchange X25519 …`), its refusals
//! (`STARTTLS rejected: 454 …`) and OpenSSL's error queue after `SSL_connect error to …`.

use super::{Adapter, Located, Target, VersionProbe};
use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wire::{ClientResult, Negotiated, Protocol, Stage};

/// Postfix's `posttls-finger -l secure`, from the extracted (never installed) Postfix tree.
pub struct PosttlsFinger;

impl Adapter for PosttlsFinger {
    fn name(&self) -> &'static str {
        "posttls-finger"
    }

    fn error_table(&self) -> &'static str {
        "posttls-finger"
    }

    fn locate(&self, stack: &ClientStack) -> Result<Located, Availability> {
        locate(stack)
    }

    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        command(target, extra)
    }

    fn parse(&self, exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
        parse(exit_code, stdout, stderr)
    }

    /// Postfix's own `postconf`, under the same configuration and environment.
    fn version_probe(&self, located: &Located) -> VersionProbe {
        let root = located.root.clone().unwrap_or_default();
        VersionProbe { program: root.join("usr/sbin/postconf"), args: POSTCONF_PARAMS.to_vec() }
    }

    fn describe(&self, postconf: &str, located: &Located, _env: &[(String, String)]) -> (String, serde_json::Value) {
        describe(postconf, located)
    }
}

/// The program, in Postfix's extracted tree.
const PROGRAM: &str = "usr/sbin/posttls-finger";
/// Postfix's own shared libraries (its binaries' RUNPATH is /usr/lib/postfix).
const LIBDIR: &str = "usr/lib/postfix";
/// Every line posttls-finger logs starts so.
const PREFIX: &str = "posttls-finger: ";

/// Why a stack is skipped when the tree is not there.
pub const NOT_EXTRACTED: &str = "posttls-finger is not extracted: run scripts/install-stacks";

/// The extracted Postfix tree: `$STARTTLS_MATRIX_MTA_ROOT/postfix`, else
/// `.cache/mta/root/postfix` beside the matrix, where `scripts/install-mtas` puts it.
pub fn postfix_root(matrix_dir: &Path) -> PathBuf {
    mta::extracted_roots(matrix_dir).join("postfix")
}

/// Find the program and write its private configuration (kept as long as the stack is).
fn locate(stack: &ClientStack) -> Result<Located, Availability> {
    let root = postfix_root(&stack.matrix_dir);
    let program = root.join(PROGRAM);
    if !program.is_file() {
        return Err(Availability::Skipped(NOT_EXTRACTED.into()));
    }
    let config =
        write_config(&root).map_err(|e| Availability::Broken(format!("write posttls-finger's main.cf: {e}")))?;
    // A variant may point LD_LIBRARY_PATH at another OpenSSL; Postfix's libraries come first.
    let mut libs = root.join(LIBDIR).display().to_string();
    if let Some(more) = stack.env.get("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        libs = format!("{libs}:{more}");
    }
    Ok(Located {
        program,
        env: vec![("MAIL_CONFIG".into(), config.path().display().to_string()), ("LD_LIBRARY_PATH".into(), libs)],
        root: Some(root),
        workdir: Some(Arc::new(config)),
    })
}

/// Write `main.cf` into a new temporary directory. posttls-finger reads nothing else of
/// Postfix's configuration (no master.cf, no queue, no daemons).
fn write_config(root: &Path) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("starttls-matrix-posttls-finger-")
        .tempdir()
        .map_err(|e| format!("create a temporary directory: {e}"))?;
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
fn accounts(passwd: &str, group: &str) -> Result<(String, String), String> {
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

/// The argv for one cell: security level `secure` (the run's CA only, the certificate must
/// match the server name, given as the match argument), SNI, the EHLO name; the stack's own
/// args (`-p`, `-g`, `-o name=value`) before the destination. Not `-c`: the SMTP chat is the
/// only sign of an EHLO reply without STARTTLS, about which posttls-finger says nothing.
fn command(target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
    let (host, port) = target.host_port();
    // `[host]:port` skips MX lookups; an IPv6 address is written `[ipv6:addr]`.
    let destination = if host.contains(':') { format!("[ipv6:{host}]:{port}") } else { format!("[{host}]:{port}") };
    let mut args: Vec<OsString> = vec!["-l".into(), "secure".into(), "-F".into()];
    args.push(target.cafile.clone().into_os_string());
    for arg in ["-s", &target.servername, "-o", &format!("myhostname={}", target.ehlo)] {
        args.push(arg.into());
    }
    args.extend(extra.iter().map(OsString::from));
    args.push(destination.into());
    args.push(target.servername.clone().into());
    (args, Vec::new())
}

/// Whether a line is SMTP chat (`< reply`, `> command`).
fn is_chat(line: &str) -> bool {
    line.starts_with("< ") || line.starts_with("> ")
}

/// Read posttls-finger's log into a RESULT. `Err` is a run we cannot read as an interop result:
/// its own setup failed (a fatal configuration error, an unusable CA file that made it turn TLS
/// off, a usage message) or it said nothing we know.
fn parse(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(|l| l.strip_prefix(PREFIX).unwrap_or(l).trim_end())
        .filter(|l| !l.is_empty())
        .collect();
    let setup_failure = lines.iter().find(|l| {
        (l.starts_with("fatal: ") && !l.contains("while sending STARTTLS"))
            || l.contains("disabling TLS support")
            || l.starts_with("usage: ")
            || l.contains("invalid option")
    });
    if let Some(line) = setup_failure {
        return Err(format!("posttls-finger could not run as set up (exit {exit_code:?}): {line}"));
    }
    if let Some(at) = lines.iter().position(|l| l.contains(" TLS connection established to ")) {
        return after_handshake(&lines, at);
    }
    // SSL_connect error to 127.0.0.1[127.0.0.1]:2529: -1, then OpenSSL's error queue.
    if let Some(at) = lines.iter().position(|l| l.starts_with("SSL_connect error to ")) {
        let mut words = vec![lines[at]];
        words.extend(lines[at + 1..].iter().filter(|l| l.starts_with("warning: TLS library problem")));
        return Ok(ClientResult::error(Stage::Handshake, words.join("\n")));
    }
    let said = |marker: &str| lines.iter().find(|l| l.contains(marker)).copied();
    for (marker, stage) in [
        ("Failed to establish session to ", Stage::Connect),
        ("SMTP service not available: ", Stage::Smtp),
        (" while reading server greeting", Stage::Smtp),
        ("EHLO rejected: ", Stage::Smtp),
        (" while sending EHLO", Stage::Smtp),
        ("STARTTLS rejected: ", Stage::Starttls),
        (" while sending STARTTLS", Stage::Starttls),
    ] {
        if let Some(line) = said(marker) {
            return Ok(ClientResult::error(stage, line));
        }
    }
    // It reads the EHLO reply for STARTTLS and, without one, says QUIT and nothing else.
    let sent = |command: &str| lines.iter().any(|l| l.strip_prefix("> ").is_some_and(|c| c.starts_with(command)));
    let ehlo_reply: Vec<&str> =
        lines.iter().filter_map(|l| l.strip_prefix("< ")).filter(|r| r.starts_with("250")).collect();
    if sent("QUIT") && !sent("STARTTLS") && !ehlo_reply.is_empty() {
        return Ok(ClientResult::error(
            Stage::Starttls,
            format!(
                "STARTTLS not offered: posttls-finger read an EHLO reply without STARTTLS and sent QUIT without a word ({})",
                ehlo_reply.join(" / ")
            ),
        ));
    }
    let words: Vec<&str> = lines.iter().filter(|l| !is_chat(l) && !l.starts_with("Connected to ")).copied().collect();
    if words.is_empty() {
        return Err(format!("posttls-finger said neither that TLS was established nor why not (exit {exit_code:?})"));
    }
    let stage = if sent("STARTTLS") { Stage::Handshake } else { Stage::Smtp };
    Ok(ClientResult::error(stage, words.join("\n")))
}

/// The handshake completed (`lines[at]` is the summary): verified, then EHLO and QUIT over TLS.
fn after_handshake(lines: &[&str], at: usize) -> Result<ClientResult, String> {
    let summary = lines[at];
    // With -l secure anything but "Verified" (Untrusted, Trusted, Anonymous) is a failed
    // verification that posttls-finger, a probe, carries on past.
    if !summary.starts_with("Verified ") {
        let mut words: Vec<&str> =
            lines[..at].iter().filter(|l| l.contains("verification failed for ")).copied().collect();
        words.push(summary);
        return Ok(ClientResult::error(Stage::Verify, words.join("\n")));
    }
    let after = &lines[at + 1..];
    let replied = |code: &str| after.iter().any(|l| l.strip_prefix("< ").is_some_and(|r| r.starts_with(code)));
    if !(replied("250") && replied("221")) {
        let words: Vec<&str> = after.iter().filter(|l| !is_chat(l)).copied().collect();
        let text = if words.is_empty() { "no 250/221 reply over TLS".to_string() } else { words.join("\n") };
        return Ok(ClientResult::error(Stage::PostTls, text));
    }
    let session = summary.split_once(" TLS connection established to ").map_or("", |(_, rest)| rest);
    // "127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher …": the address holds no ": ".
    let session = session.split_once(": ").map_or("", |(_, s)| s);
    negotiated(session).map(ClientResult::Ok)
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519
/// server-signature RSA-PSS (2048 bits) server-digest SHA256`. Postfix names the key exchange
/// only for TLS 1.3 (`X25519`, `X448`, `ECDHE (prime256v1)`, `DHE (2048 bits)`); for TLS 1.2 the
/// suite's name says ECDHE or DHE, and the prime's size is not reported.
fn negotiated(session: &str) -> Result<Negotiated, String> {
    let (protocol, rest) = session.split_once(" with cipher ").unwrap_or((session, ""));
    let protocol = Protocol::parse(protocol)
        .ok_or_else(|| format!("posttls-finger named an unknown protocol {:?}", protocol.trim()))?;
    let cipher = rest.split_whitespace().next().unwrap_or_default();
    let kex = rest.split_once(" key-exchange ").map(|(_, k)| k);
    let (mut group, mut dh_bits) = (None, None);
    if let Some(kex) = kex {
        let name = kex.split_whitespace().next().unwrap_or_default();
        let detail = kex
            .strip_prefix(name)
            .and_then(|d| d.trim_start().strip_prefix('('))
            .and_then(|d| d.split_once(')'))
            .map(|(d, _)| d);
        match (name, detail) {
            ("DHE", Some(bits)) => {
                dh_bits = bits.strip_suffix(" bits").and_then(|b| b.parse::<u32>().ok());
                group = dh_bits.filter(|_| protocol == Protocol::Tls13).map(|b| format!("ffdhe{b}"));
            }
            ("ECDHE", Some(curve)) => group = Some(openssl_ext::iana_group_name(curve)),
            ("", _) | ("DHE" | "ECDHE", None) => {}
            (other, _) => group = Some(openssl_ext::iana_group_name(other)),
        }
    }
    Ok(Negotiated::tls(protocol, cipher, group, dh_bits))
}

/// What `postconf` reports of Postfix's TLS defaults (the version probe's arguments).
const POSTCONF_PARAMS: [&str; 5] = [
    "mail_version",
    "smtp_tls_mandatory_ciphers",
    "tls_medium_cipherlist",
    "smtp_tls_mandatory_protocols",
    "tls_eecdh_auto_curves",
];

/// The version line and effective policy: Postfix's `mail_version` and TLS defaults as its own
/// `postconf` reports them under the same configuration, the package version from
/// `.cache/mta/stamp`, and the security level Postfix sets (measured by the matrix). The TLS
/// library is measured apart, from what the program loads under the stack's environment.
fn describe(postconf: &str, located: &Located) -> (String, serde_json::Value) {
    let root = located.root.clone().unwrap_or_default();
    let value =
        |name: &str| postconf.lines().find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('=').map(str::trim));
    let package = package_version(&root);
    let version = match value("mail_version") {
        Some(v) => format!("posttls-finger (Postfix {v}; Debian package {package})"),
        None => format!("posttls-finger (Debian package {package}; postconf did not run)"),
    };
    let policy = serde_json::json!({
        "tls_security_level": "secure (-l secure): the run's CA only (-F), the certificate must match the server name (the match argument); SNI sent (-s)",
        "openssl_security_level": "1: Postfix sets its client SSL_CTX to level 0 and raises each connection it must verify (secure, verify) to 1, overriding Debian's compiled-in 2; measured: 1024-bit DH taken, 768 refused, TLS 1.0's SHA-1 signatures refused",
        "cipher_grade": value("smtp_tls_mandatory_ciphers"),
        "cipherlist": value("tls_medium_cipherlist").map(|c| format!("{c} (then !aNULL at secure)")),
        "protocols": value("smtp_tls_mandatory_protocols"),
        "groups": value("tls_eecdh_auto_curves").map(|g| format!("{g} (no FFDHE groups: tls_ffdhe_auto_groups came in Postfix 3.8)")),
    });
    (version, policy)
}

/// `postfix=3.7.11-0+deb12u1` from `.cache/mta/stamp` (`<cache>/root/postfix` → `<cache>/stamp`).
fn package_version(root: &Path) -> String {
    root.parent()
        .and_then(Path::parent)
        .and_then(|cache| std::fs::read_to_string(cache.join("stamp")).ok())
        .and_then(|stamp| stamp.lines().find(|l| l.starts_with("postfix=")).map(str::to_string))
        .unwrap_or_else(|| "unknown: no .cache/mta/stamp".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tables;
    use report_format::ErrorClass;

    /// What posttls-finger 3.7.11 printed against the built-in server (ports vary).
    const CONNECTED: &str = "posttls-finger: Connected to 127.0.0.1[127.0.0.1]:36473
posttls-finger: < 220 mx.test ESMTP starttls-matrix
posttls-finger: > EHLO client.test
posttls-finger: < 250-mx.test greets client.test
posttls-finger: < 250-PIPELINING
posttls-finger: < 250 STARTTLS
posttls-finger: > STARTTLS
posttls-finger: < 220 2.0.0 Ready to start TLS
posttls-finger: 127.0.0.1[127.0.0.1]:36473: matched peername: mx.test
posttls-finger: 127.0.0.1[127.0.0.1]:36473: subject_CN=mx.test, issuer_CN=starttls-matrix test CA, fingerprint=70:2F, pkey_fingerprint=B3:94
posttls-finger: Verified TLS connection established to 127.0.0.1[127.0.0.1]:36473: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256
posttls-finger: > EHLO client.test
posttls-finger: < 250-mx.test greets client.test
posttls-finger: < 250 8BITMIME
posttls-finger: > QUIT
posttls-finger: < 221 2.0.0 Bye
";

    const BEFORE_TLS: &str = "posttls-finger: Connected to 127.0.0.1[127.0.0.1]:39085
posttls-finger: < 220 mx.test ESMTP starttls-matrix
posttls-finger: > EHLO client.test
posttls-finger: < 250-mx.test greets client.test
posttls-finger: < 250 STARTTLS
posttls-finger: > STARTTLS
posttls-finger: < 220 2.0.0 Ready to start TLS
";

    fn error(stdout: &str) -> (Stage, String) {
        match parse(Some(0), stdout, "").unwrap() {
            ClientResult::Error { stage, error } => (stage, error),
            ok => panic!("expected an error, got {ok:?}"),
        }
    }

    #[test]
    fn argv_is_an_array_with_the_target() {
        let t = Target {
            connect: "127.0.0.1:2525".into(),
            servername: "mx.test".into(),
            cafile: "/tmp/ca.pem".into(),
            ehlo: "client.test".into(),
        };
        let (args, stdin) = command(&t, &["-p".into(), "<=TLSv1.2".into()]);
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-l",
                "secure",
                "-F",
                "/tmp/ca.pem",
                "-s",
                "mx.test",
                "-o",
                "myhostname=client.test",
                "-p",
                "<=TLSv1.2",
                "[127.0.0.1]:2525",
                "mx.test"
            ]
        );
        assert!(stdin.is_empty());
        let v6 = Target { connect: "[::1]:25".into(), ..t };
        assert!(command(&v6, &[]).0.iter().any(|a| a == "[ipv6:::1]:25"));
    }

    #[test]
    fn parses_tls13_and_tls12_sessions() {
        match parse(Some(0), CONNECTED, "").unwrap() {
            ClientResult::Ok(n) => assert_eq!(
                (n.protocol.map_or("", |p| p.as_str()), n.cipher_name(), n.group.as_deref(), n.dh_bits),
                ("TLSv1.3", "TLS_AES_256_GCM_SHA384", Some("x25519"), None)
            ),
            e => panic!("{e:?}"),
        }
        let tls12 = CONNECTED.replace(
            "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
            "TLSv1.2 with cipher DHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
        );
        match parse(Some(0), &tls12, "").unwrap() {
            ClientResult::Ok(n) => {
                assert_eq!((n.protocol, n.cipher_name()), (Some(Protocol::Tls12), "DHE-RSA-AES256-GCM-SHA384"));
                assert_eq!((n.group, n.dh_bits), (None, None), "Postfix names no TLS 1.2 key exchange");
            }
            e => panic!("{e:?}"),
        }
        let n = negotiated(
            "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits) key-exchange ECDHE (prime256v1) server-signature ECDSA (prime256v1) server-digest SHA256",
        )
        .unwrap();
        assert_eq!(n.group.as_deref(), Some("secp256r1"));
        let n = negotiated("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange DHE (2048 bits)")
            .unwrap();
        assert_eq!((n.group.as_deref(), n.dh_bits), (Some("ffdhe2048"), Some(2048)));
    }

    #[test]
    fn a_failed_verification_is_not_a_success() {
        let untrusted = CONNECTED
            .replace(
                "posttls-finger: 127.0.0.1[127.0.0.1]:36473: matched peername: mx.test\n",
                "posttls-finger: certificate verification failed for 127.0.0.1[127.0.0.1]:36473: untrusted issuer /CN=starttls-matrix test CA\n",
            )
            .replace("Verified TLS connection", "Untrusted TLS connection");
        let (stage, words) = error(&untrusted);
        assert_eq!(stage, Stage::Verify);
        assert!(words.starts_with("certificate verification failed for 127.0.0.1[127.0.0.1]:36473: untrusted issuer"));
        assert!(words.contains("Untrusted TLS connection established"));
    }

    #[test]
    fn failures_by_stage() {
        let dh = format!(
            "{BEFORE_TLS}posttls-finger: SSL_connect error to 127.0.0.1[127.0.0.1]:39085: -1\nposttls-finger: warning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:\n"
        );
        let (stage, words) = error(&dh);
        assert_eq!(stage, Stage::Handshake);
        assert!(words.ends_with("dh key too small:../ssl/statem/statem_clnt.c:2092:"));
        let refused = "posttls-finger: < 250 STARTTLS\nposttls-finger: > STARTTLS\nposttls-finger: < 454 4.7.0 TLS not available due to temporary reason\nposttls-finger: STARTTLS rejected: 454 4.7.0 TLS not available due to temporary reason\n";
        assert_eq!(error(refused).0, Stage::Starttls);
        let banner = "posttls-finger: < 421 4.3.2 mx.test Service not available, closing\nposttls-finger: SMTP service not available: 421 4.3.2 mx.test Service not available, closing\n";
        assert_eq!(error(banner).0, Stage::Smtp);
        let ehlo = "posttls-finger: > EHLO client.test\nposttls-finger: < 550 5.7.1 EHLO rejected by policy\nposttls-finger: EHLO rejected: 550 5.7.1 EHLO rejected by policy\n";
        assert_eq!(error(ehlo).0, Stage::Smtp);
        let connect = "posttls-finger: Failed to establish session to [127.0.0.1]:1 via 127.0.0.1: connect to 127.0.0.1[127.0.0.1]:1: Connection refused\n";
        assert_eq!(error(connect).0, Stage::Connect);
        let closed =
            format!("{BEFORE_TLS}posttls-finger: SSL_connect error to 127.0.0.1[127.0.0.1]:37749: lost connection\n");
        assert_eq!(error(&closed).0, Stage::Handshake);
    }

    #[test]
    fn no_starttls_is_read_from_the_chat() {
        let silent = "posttls-finger: Connected to 127.0.0.1[127.0.0.1]:39801
posttls-finger: < 220 mx.test ESMTP starttls-matrix
posttls-finger: > EHLO client.test
posttls-finger: < 250-mx.test greets client.test
posttls-finger: < 250 8BITMIME
posttls-finger: > QUIT
posttls-finger: < 221 2.0.0 Bye
";
        let (stage, words) = error(silent);
        assert_eq!(stage, Stage::Starttls);
        assert!(words.starts_with("STARTTLS not offered") && words.contains("250 8BITMIME"), "{words}");
    }

    #[test]
    fn its_own_setup_failures_are_ours() {
        let no_ca = "posttls-finger: cannot load Certification Authority data, CAfile=\"/nonexist\": disabling TLS support\nposttls-finger: < 250 STARTTLS\nposttls-finger: > QUIT\n";
        assert!(parse(Some(0), no_ca, "").is_err(), "without TLS it would look like a missing STARTTLS");
        let fatal =
            "posttls-finger: fatal: file /tmp/x/main.cf: parameter setgid_group: unknown group name: postdrop\n";
        assert!(parse(Some(1), fatal, "").is_err());
        let usage =
            "/x/usr/sbin/posttls-finger: invalid option -- 'Z'\nusage: posttls-finger [-acCfSvw] [-t conn_tmout]\n";
        assert!(parse(Some(1), "", usage).is_err());
        assert!(parse(Some(0), "", "").is_err(), "silence is ours to explain");
        let after = format!("{BEFORE_TLS}posttls-finger: fatal: lost connection while sending STARTTLS\n");
        assert!(parse(Some(1), &after, "").is_ok(), "a peer hanging up is an outcome");
    }

    #[test]
    fn no_reply_over_tls_is_a_post_tls_failure() {
        // The first EHLO precedes the summary; only the one after it counts.
        let cut = CONNECTED.lines().take(11).collect::<Vec<_>>().join("\n")
            + "\nposttls-finger: > EHLO client.test\nposttls-finger: lost connection while sending EHLO\n";
        let (stage, words) = error(&cut);
        assert_eq!((stage, words.as_str()), (Stage::PostTls, "lost connection while sending EHLO"));
    }

    /// Each real message, as the adapter passes it on, to its class.
    #[test]
    fn its_words_are_classified() {
        let t = Tables::builtin().unwrap();
        let class = |stage, text: &str| t.classify("posttls-finger", stage, text, None, &[]).class;
        let cases = [
            (
                Stage::Handshake,
                "SSL_connect error to 127.0.0.1[127.0.0.1]:39085: -1\nwarning: TLS library problem: error:0A00018A:SSL routines::dh key too small:../ssl/statem/statem_clnt.c:2092:",
                ErrorClass::DhTooSmall,
            ),
            (
                Stage::Handshake,
                "SSL_connect error to 127.0.0.1[127.0.0.1]:43951: -1\nwarning: TLS library problem: error:0A00014D:SSL routines::legacy sigalg disallowed or unsupported:../ssl/statem/statem_clnt.c:2254:",
                ErrorClass::LegacySigalg,
            ),
            (
                Stage::Handshake,
                "SSL_connect error to 127.0.0.1[127.0.0.1]:38113: -1\nwarning: TLS library problem: error:0A00010B:SSL routines::wrong version number:../ssl/record/ssl3_record.c:350:",
                ErrorClass::ProtocolVersion,
            ),
            (
                Stage::Handshake,
                "SSL_connect error to 127.0.0.1[127.0.0.1]:37749: lost connection",
                ErrorClass::ConnectionClosed,
            ),
            (
                Stage::Verify,
                "certificate verification failed for 127.0.0.1[127.0.0.1]:35853: untrusted issuer /CN=starttls-matrix test CA\nUntrusted TLS connection established to 127.0.0.1[127.0.0.1]:35853: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
                ErrorClass::CertUntrusted,
            ),
            (
                Stage::Verify,
                "server certificate verification failed for 127.0.0.1[127.0.0.1]:46487: num=62:hostname mismatch\nUntrusted TLS connection established to 127.0.0.1[127.0.0.1]:46487: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
                ErrorClass::CertNameMismatch,
            ),
            // Postfix's words for these (tls_verify.c); not met in the default matrix.
            (
                Stage::Verify,
                "certificate verification failed for 127.0.0.1[127.0.0.1]:25: self-signed certificate",
                ErrorClass::CertUntrusted,
            ),
            (
                Stage::Verify,
                "server certificate verification failed for 127.0.0.1[127.0.0.1]:25: certificate has expired",
                ErrorClass::CertExpired,
            ),
            (
                Stage::Verify,
                "server certificate verification failed for 127.0.0.1[127.0.0.1]:25: certificate not yet valid",
                ErrorClass::CertExpired,
            ),
            (
                Stage::Starttls,
                "STARTTLS rejected: 454 4.7.0 TLS not available due to temporary reason",
                ErrorClass::StarttlsRefused,
            ),
            (
                Stage::Starttls,
                "STARTTLS rejected: 421 4.7.0 TLS not available, closing connection",
                ErrorClass::StarttlsRefused,
            ),
            (
                Stage::Starttls,
                "STARTTLS not offered: posttls-finger read an EHLO reply without STARTTLS and sent QUIT without a word (250-mx.test greets client.test / 250 8BITMIME)",
                ErrorClass::StarttlsNotOffered,
            ),
            (
                Stage::Smtp,
                "SMTP service not available: 421 4.3.2 mx.test Service not available, closing",
                ErrorClass::SmtpRejected,
            ),
            (Stage::Smtp, "EHLO rejected: 550 5.7.1 EHLO rejected by policy", ErrorClass::SmtpRejected),
            (Stage::Smtp, "lost connection while reading server greeting", ErrorClass::ConnectionClosed),
            (
                Stage::Connect,
                "Failed to establish session to [127.0.0.1]:1 via 127.0.0.1: connect to 127.0.0.1[127.0.0.1]:1: Connection refused",
                ErrorClass::ConnectionClosed,
            ),
        ];
        for (stage, text, expected) in cases {
            assert_eq!(class(stage, text), expected, "{text}");
        }
        // An alert only says the server refused: the server's own words decide.
        let alert = "SSL_connect error to 127.0.0.1[127.0.0.1]:39291: -1\nwarning: TLS library problem: error:0A000410:SSL routines::sslv3 alert handshake failure:../ssl/record/rec_layer_s3.c:1601:SSL alert number 40:";
        let server =
            ["error:0A000065:SSL routines:final_key_share:no suitable key share:../ssl/statem/extensions.c:1362:"
                .to_string()];
        assert_eq!(
            t.classify("posttls-finger", Stage::Handshake, alert, Some("server-openssl"), &server).class,
            ErrorClass::NoSharedGroup
        );
        assert_eq!(class(Stage::Handshake, alert), ErrorClass::Unmapped, "without the server's words we do not guess");
    }

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
    fn the_private_config_is_written_aside_and_settled() {
        let root = Path::new("/opt/extracted/postfix");
        let dir = write_config(root).unwrap();
        let path = dir.path().join("main.cf");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("shlib_directory = /opt/extracted/postfix/usr/lib/postfix\n"), "{text}");
        assert!(text.contains(&format!("config_directory = {}\n", dir.path().display())));
        assert!(!dir.path().starts_with("/etc") && !dir.path().starts_with(env!("CARGO_MANIFEST_DIR")));
        let age = std::fs::metadata(&path).unwrap().modified().unwrap().elapsed().unwrap();
        assert!(age >= Duration::from_secs(5), "Postfix would wait for a fresh main.cf to settle");
    }

    #[test]
    fn a_missing_tree_skips_the_stack() {
        let dir = tempfile::tempdir().unwrap();
        // The environment override would point elsewhere; only test the matrix-relative default.
        if std::env::var_os("STARTTLS_MATRIX_MTA_ROOT").is_some() {
            return;
        }
        assert_eq!(postfix_root(dir.path()), dir.path().join(".cache/mta/root/postfix"));
        let text = "[[server]]\nid = \"s\"\nbackend = \"openssl\"\n\n[[client]]\nid = \"posttls-finger\"\nadapter = \"posttls-finger\"\n";
        let path = dir.path().join("matrix.toml");
        let matrix = crate::matrix::Matrix::parse(&path, text, &Tables::builtin().unwrap()).unwrap();
        let stack = matrix.client("posttls-finger").unwrap();
        assert_eq!(stack.matrix_dir, std::fs::canonicalize(dir.path()).unwrap());
        match locate(stack) {
            Err(Availability::Skipped(why)) => assert_eq!(why, NOT_EXTRACTED),
            other => panic!("{other:?}"),
        }
    }
}
