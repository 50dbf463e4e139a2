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

    /// The program in the extracted tree; its private `main.cf` is written only by `locate`.
    fn installed(&self, stack: &ClientStack) -> Result<(), Availability> {
        match postfix_root(&stack.matrix_dir).join(PROGRAM).is_file() {
            true => Ok(()),
            false => Err(Availability::Skipped(NOT_EXTRACTED.into())),
        }
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
    mta::extracted_roots(matrix_dir).join(report_format::Mta::Postfix.name())
}

/// Find the program and write its private configuration (kept as long as the stack is).
fn locate(stack: &ClientStack) -> Result<Located, Availability> {
    let root = postfix_root(&stack.matrix_dir);
    let program = root.join(PROGRAM);
    if !program.is_file() {
        return Err(Availability::Skipped(NOT_EXTRACTED.into()));
    }
    let config = mta::postfix::tool_config(&root, "posttls-finger")
        .map_err(|e| Availability::Broken(format!("write posttls-finger's main.cf: {e}")))?;
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
    let package = root
        .parent()
        .and_then(|roots| mta::install::package_version(roots, "postfix"))
        .unwrap_or_else(|| "unknown: no .cache/mta/stamp".into());
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

#[cfg(test)]
mod tests;
