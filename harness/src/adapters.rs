//! Adapters: external programs made into client stacks. Each builds its program's argv (an
//! array, never a shell string) from the contract's inputs and reads the program's output into
//! the same RESULT a built-in client prints.

pub mod posttls_finger;

use crate::matrix::ClientStack;
use serde::Serialize;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use wire::{ClientResult, Negotiated, Stage};

/// The contract's inputs for one cell.
#[derive(Debug, Clone)]
pub struct Target {
    pub connect: String,
    pub servername: String,
    pub cafile: std::path::PathBuf,
    pub ehlo: String,
}

/// Where an adapter's program is on this machine, and what it needs to run.
#[derive(Debug, Clone)]
pub struct Located {
    pub program: PathBuf,
    /// Environment the program needs besides the stack's own (posttls-finger: `MAIL_CONFIG`,
    /// `LD_LIBRARY_PATH`); it wins over the stack's for the same name.
    pub env: Vec<(String, String)>,
    /// The extracted tree the program runs from, when it is not on PATH.
    pub root: Option<PathBuf>,
    /// A private directory the program reads (posttls-finger's `main.cf`), removed with the
    /// last clone.
    pub workdir: Option<Arc<tempfile::TempDir>>,
}

/// Why an adapter's program cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Not installed or not extracted: the stack is skipped.
    Missing(String),
    /// There, but we could not prepare it: its cells are harness errors.
    Broken(String),
}

/// A wrapped external program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    /// `openssl s_client -starttls smtp`.
    OpensslSClient,
    /// `gnutls-cli --starttls-proto=smtp` (GnuTLS).
    GnutlsCli,
    /// `curl --ssl-reqd smtp://…` (libcurl), sending one message.
    Curl,
    /// `msmtp --serverinfo` with STARTTLS required (msmtp on GnuTLS).
    Msmtp,
    /// `swaks --tls` (Perl, Net::SSLeay on OpenSSL), quitting after EHLO over TLS.
    Swaks,
    /// Postfix's `posttls-finger -l secure`, from the extracted (never installed) Postfix tree.
    PosttlsFinger,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 6] = [
        AdapterKind::OpensslSClient,
        AdapterKind::GnutlsCli,
        AdapterKind::Curl,
        AdapterKind::Msmtp,
        AdapterKind::Swaks,
        AdapterKind::PosttlsFinger,
    ];

    /// For programs that type our input into the TLS session (s_client, gnutls-cli): the
    /// reply to wait for before sending QUIT, and the QUIT. Sent at once, EHLO and QUIT would
    /// pipeline (OpenSMTPD refuses that: it does not offer PIPELINING), and gnutls-cli would end
    /// the session at end of input before a server that closes after QUIT (Postfix) is read.
    pub fn paced_quit(self) -> Option<(&'static str, &'static [u8])> {
        match self {
            // The last line of the EHLO reply over TLS (the dialogue before TLS is not printed).
            AdapterKind::OpensslSClient => Some(("\n250 ", b"QUIT\n")),
            AdapterKind::GnutlsCli => Some(("\n250 ", b"QUIT\r\n")),
            AdapterKind::Curl | AdapterKind::Msmtp | AdapterKind::Swaks | AdapterKind::PosttlsFinger => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::OpensslSClient => "openssl-s_client",
            AdapterKind::GnutlsCli => "gnutls-cli",
            AdapterKind::Curl => "curl",
            AdapterKind::Msmtp => "msmtp",
            AdapterKind::Swaks => "swaks",
            AdapterKind::PosttlsFinger => "posttls-finger",
        }
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|a| a.name()).collect()
    }

    pub fn from_name(name: &str) -> Option<AdapterKind> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The program it runs (looked up on PATH, except posttls-finger: see [`Self::locate`]).
    pub fn program(self) -> &'static str {
        match self {
            AdapterKind::OpensslSClient => "openssl",
            AdapterKind::GnutlsCli => "gnutls-cli",
            AdapterKind::Curl => "curl",
            AdapterKind::Msmtp => "msmtp",
            AdapterKind::Swaks => "swaks",
            AdapterKind::PosttlsFinger => "posttls-finger",
        }
    }

    /// Where the program is here, ready to run: on PATH, or posttls-finger in the Postfix tree
    /// beside the stack's matrix (with its private configuration written).
    pub fn locate(self, stack: &ClientStack) -> Result<Located, NotReady> {
        match self {
            AdapterKind::PosttlsFinger => posttls_finger::locate(stack),
            AdapterKind::OpensslSClient
            | AdapterKind::GnutlsCli
            | AdapterKind::Curl
            | AdapterKind::Msmtp
            | AdapterKind::Swaks => match crate::process::which(self.program()) {
                Some(program) => Ok(Located { program, env: Vec::new(), root: None, workdir: None }),
                None => Err(NotReady::Missing(format!("{} is not installed (not on PATH)", self.program()))),
            },
        }
    }

    /// The classification table for the program's words.
    pub fn error_table(self) -> &'static str {
        match self {
            AdapterKind::OpensslSClient => "openssl-s_client",
            AdapterKind::GnutlsCli => "gnutls",
            AdapterKind::Curl => "curl",
            AdapterKind::Msmtp => "msmtp",
            AdapterKind::Swaks => "swaks",
            AdapterKind::PosttlsFinger => "posttls-finger",
        }
    }

    /// The argv (after the program name) and the standard input for one cell.
    pub fn command(self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>) {
        match self {
            AdapterKind::OpensslSClient => {
                let mut args: Vec<OsString> = [
                    "s_client",
                    "-starttls",
                    "smtp",
                    "-name",
                    &target.ehlo,
                    "-connect",
                    &target.connect,
                    "-servername",
                    &target.servername,
                    "-verify_hostname",
                    &target.servername,
                    "-verify_return_error",
                    "-crlf",
                    // Keep reading after our input ends, until the server closes after QUIT.
                    "-ign_eof",
                    "-CAfile",
                ]
                .into_iter()
                .map(OsString::from)
                .collect();
                args.push(target.cafile.clone().into_os_string());
                args.extend(extra.iter().map(OsString::from));
                // EHLO again over TLS, then QUIT: the replies show the post-TLS stage worked.
                (args, format!("EHLO {}\n", target.ehlo).into_bytes())
            }
            AdapterKind::GnutlsCli => {
                let (host, port) = target.connect.rsplit_once(':').unwrap_or((target.connect.as_str(), "25"));
                let mut args: Vec<OsString> = vec![
                    "--starttls-proto=smtp".into(),
                    "--port".into(),
                    port.into(),
                    "--verify-hostname".into(),
                    target.servername.clone().into(),
                    "--sni-hostname".into(),
                    target.servername.clone().into(),
                    "--x509cafile".into(),
                    target.cafile.clone().into_os_string(),
                ];
                args.extend(extra.iter().map(OsString::from));
                args.push(host.trim_matches(['[', ']']).into());
                // Sent as typed: gnutls-cli's --crlf mangles the last line.
                (args, format!("EHLO {}\r\n", target.ehlo).into_bytes())
            }
            AdapterKind::Curl => {
                let (host, port) = target.connect.rsplit_once(':').unwrap_or((target.connect.as_str(), "25"));
                let name = &target.servername;
                let mut args: Vec<OsString> = [
                    "-sS",
                    "-v",
                    "--ssl-reqd",
                    "--mail-from",
                    "probe@client.test",
                    "--mail-rcpt",
                    "postmaster@mx.test",
                    "--upload-file",
                    "-",
                    "--cacert",
                ]
                .into_iter()
                .map(OsString::from)
                .collect();
                args.push(target.cafile.clone().into_os_string());
                // The URL names the server (SNI, verification); --connect-to says where it is.
                args.push("--connect-to".into());
                args.push(format!("{name}:{port}:{}:{port}", host.trim_matches(['[', ']'])).into());
                args.extend(extra.iter().map(OsString::from));
                args.push(format!("smtp://{name}:{port}/{}", target.ehlo).into());
                (args, b"Subject: starttls-matrix probe\r\n\r\nsent by curl\r\n".to_vec())
            }
            AdapterKind::Msmtp => {
                let (host, port) = target.connect.rsplit_once(':').unwrap_or((target.connect.as_str(), "25"));
                let mut args: Vec<OsString> = vec![
                    "--serverinfo".into(),
                    format!("--host={}", host.trim_matches(['[', ']'])).into(),
                    format!("--port={port}").into(),
                    "--tls=on".into(),
                    "--tls-starttls=on".into(),
                    format!("--tls-host-override={}", target.servername).into(),
                    format!("--domain={}", target.ehlo).into(),
                ];
                let mut trust = OsString::from("--tls-trust-file=");
                trust.push(&target.cafile);
                args.push(trust);
                args.extend(extra.iter().map(OsString::from));
                (args, Vec::new())
            }
            AdapterKind::Swaks => {
                let (host, port) = target.connect.rsplit_once(':').unwrap_or((target.connect.as_str(), "25"));
                let mut args: Vec<OsString> = [
                    "--server",
                    host.trim_matches(['[', ']']),
                    "--port",
                    port,
                    "--tls",
                    "--tls-verify",
                    "--tls-sni",
                    &target.servername,
                    "--helo",
                    &target.ehlo,
                    // EHLO again over TLS, then QUIT.
                    "--quit-after",
                    "HELO",
                    "--tls-ca-path",
                ]
                .into_iter()
                .map(OsString::from)
                .collect();
                args.push(target.cafile.clone().into_os_string());
                args.extend(extra.iter().map(OsString::from));
                (args, Vec::new())
            }
            AdapterKind::PosttlsFinger => posttls_finger::command(target, extra),
        }
    }

    /// Read the program's output into a RESULT. `Err` means the output cannot be understood
    /// (a harness error, never an interop failure).
    pub fn parse(self, exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
        match self {
            AdapterKind::OpensslSClient => parse_s_client(exit_code, stdout, stderr),
            AdapterKind::GnutlsCli => parse_gnutls_cli(exit_code, stdout, stderr),
            AdapterKind::Curl => parse_curl(exit_code, stderr),
            AdapterKind::Msmtp => parse_msmtp(exit_code, stdout, stderr),
            AdapterKind::Swaks => parse_swaks(exit_code, stdout, stderr),
            AdapterKind::PosttlsFinger => posttls_finger::parse(exit_code, stdout, stderr),
        }
    }

    /// The program's version line and effective policy, or `None` if it cannot say.
    pub async fn describe(self, located: &Located) -> Option<(String, serde_json::Value)> {
        match self {
            AdapterKind::PosttlsFinger => Some(posttls_finger::describe(located).await),
            AdapterKind::OpensslSClient => {
                let all = crate::process::capture("openssl", &["version", "-a"]).await?;
                let version = all.lines().next().unwrap_or_default().trim().to_string();
                let level = all
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("-DOPENSSL_TLS_SECURITY_LEVEL="))
                    .map(|l| format!("{l} (compiled in)"))
                    .unwrap_or_else(|| "1 (library default)".into());
                let policy = serde_json::json!({
                    "security_level": level,
                    "openssl_conf": std::env::var("OPENSSL_CONF").ok(),
                });
                Some((version, policy))
            }
            AdapterKind::GnutlsCli => {
                let out = crate::process::capture("gnutls-cli", &["--version"]).await?;
                let version = out.lines().next().unwrap_or_default().trim().to_string();
                let policy = serde_json::json!({
                    "priority": "the library default (NORMAL, or the system's GnuTLS configuration) unless args say otherwise",
                });
                Some((version, policy))
            }
            AdapterKind::Curl => {
                let out = crate::process::capture("curl", &["--version"]).await?;
                let version = out.lines().next().unwrap_or_default().trim().to_string();
                let policy =
                    serde_json::json!({ "tls": "libcurl's defaults on its TLS library (see the version line)" });
                Some((version, policy))
            }
            AdapterKind::Msmtp => {
                let out = crate::process::capture("msmtp", &["--version"]).await?;
                let version = out.lines().next().unwrap_or_default().trim().to_string();
                let library = out.lines().find(|l| l.starts_with("TLS/SSL library:")).unwrap_or_default().trim();
                let policy = serde_json::json!({ "tls_library": library, "priority": "GnuTLS default unless --tls-priorities is given" });
                Some((version, policy))
            }
            AdapterKind::Swaks => {
                let out = crate::process::capture("swaks", &["--version"]).await?;
                let version = out.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string();
                let policy =
                    serde_json::json!({ "tls": "Net::SSLeay on the system OpenSSL, its default security level" });
                Some((version, policy))
            }
        }
    }
}

/// `curl -v` says `* SSL connection using TLSv1.2 / DHE-RSA-AES256-GCM-SHA384` on success and
/// `curl: (35) …` on failure, the number telling the stage.
fn parse_curl(exit_code: Option<i32>, stderr: &str) -> Result<ClientResult, String> {
    let error = stderr.lines().find(|l| l.starts_with("curl: (")).map(str::trim);
    let session = stderr.lines().find_map(|l| l.strip_prefix("* SSL connection using "));
    match (exit_code, error, session) {
        (Some(0), _, Some(session)) => {
            let (protocol, cipher) = session.split_once(" / ").unwrap_or((session, ""));
            let protocol = if protocol.trim() == "TLSv1.0" { "TLSv1" } else { protocol.trim() };
            Ok(ClientResult::Ok(Negotiated {
                protocol: protocol.into(),
                cipher: cipher.trim().into(),
                group: None,
                dh_bits: None,
            }))
        }
        (Some(0), _, None) => Err("curl exited 0 without saying it used TLS".into()),
        (_, Some(line), _) => {
            let code: u32 =
                line.trim_start_matches("curl: (").split(')').next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let stage = match code {
                6 | 7 => Stage::Connect,
                64 => Stage::Starttls,
                60 => Stage::Verify,
                35 | 53 | 54 | 58 | 59 | 66 | 80 => Stage::Handshake,
                _ if session.is_some() => Stage::PostTls,
                _ if stderr.contains("TLS handshake") => Stage::Handshake,
                _ => Stage::Smtp,
            };
            Ok(ClientResult::error(stage, line))
        }
        (code, None, _) => Err(format!("curl ended with {code:?} and no error line")),
    }
}

#[cfg(test)]
mod curl_tests {
    use super::*;

    #[test]
    fn parses_curl() {
        let ok = "* SSL connection using TLSv1.2 / DHE-RSA-AES256-GCM-SHA384\n< 250 2.0.0 Ok\n";
        assert!(
            matches!(parse_curl(Some(0), ok).unwrap(), ClientResult::Ok(n) if n.cipher == "DHE-RSA-AES256-GCM-SHA384")
        );
        let bad = "* TLSv1.2 (IN), TLS handshake, Server key exchange (12):\ncurl: (35) OpenSSL/3.0.19: error:0A00018A:SSL routines::dh key too small\n";
        assert!(matches!(parse_curl(Some(35), bad).unwrap(), ClientResult::Error { stage: Stage::Handshake, .. }));
        assert!(matches!(
            parse_curl(Some(64), "curl: (64) Requested SSL level failed\n").unwrap(),
            ClientResult::Error { stage: Stage::Starttls, .. }
        ));
    }
}

/// `gnutls-cli` prints its progress on stdout, `- Description: (TLS1.2-X.509)-(DHE-FFDHE2048)-…`
/// on success, and `*** Fatal error: …` on failure.
fn parse_gnutls_cli(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let words: Vec<&str> = all
        .iter()
        .filter(|l| {
            l.starts_with("*** ")
                || l.contains("NOT trusted")
                || l.contains("Could not connect")
                || l.contains("STARTTLS")
                || l.starts_with("error receiving")
                || l.starts_with("error sending")
        })
        .map(|l| l.trim())
        .collect();
    let words = words.join("\n");
    let completed = stdout.contains("- Handshake was completed");
    if !completed {
        if words.is_empty() {
            return Err(format!("gnutls-cli printed neither a completed handshake nor an error (exit {exit_code:?})"));
        }
        let stage = if all.iter().any(|l| l.contains("Could not connect") || l.contains("Connection refused")) {
            Stage::Connect
        } else if words.contains("NOT trusted") {
            Stage::Verify
        } else if words.contains("error receiving '220 '") && !stdout.contains("- Certificate type") {
            // Its STARTTLS helper waits for the banner's or STARTTLS's 220; the server's own log
            // says which was refused.
            Stage::Starttls
        } else if words.contains("STARTTLS") || words.starts_with("error ") {
            Stage::Starttls
        } else {
            Stage::Handshake
        };
        return Ok(ClientResult::error(stage, words));
    }
    let description = stdout.lines().find_map(|l| l.strip_prefix("- Description: ")).unwrap_or_default();
    let negotiated = gnutls_session(description);
    let after: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("- Handshake was completed")).collect();
    let ehlo_ok = after.iter().any(|l| l.starts_with("250"));
    let quit_ok = after.iter().any(|l| l.starts_with("221"));
    if !(ehlo_ok && quit_ok) {
        let text = if words.is_empty() { "no 250/221 reply over TLS".to_string() } else { words };
        return Ok(ClientResult::error(Stage::PostTls, text));
    }
    Ok(ClientResult::Ok(negotiated))
}

#[cfg(test)]
mod gnutls_tests {
    use super::*;

    #[test]
    fn parses_gnutls_success_and_failure() {
        let ok = "- Description: (TLS1.2-X.509)-(DHE-CUSTOM1024)-(RSA-SHA256)-(AES-256-GCM)\n- Handshake was completed\n\n250-mx.test\n250 8BITMIME\n221 2.0.0 Bye\n";
        match parse_gnutls_cli(Some(0), ok, "").unwrap() {
            ClientResult::Ok(n) => assert_eq!((n.protocol.as_str(), n.dh_bits, n.group), ("TLSv1.2", Some(1024), None)),
            e => panic!("{e:?}"),
        }
        let tls13 = "- Description: (TLS1.3-X.509)-(DHE-FFDHE2048)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)\n- Handshake was completed\n250 ok\n221 bye\n";
        match parse_gnutls_cli(Some(0), tls13, "").unwrap() {
            ClientResult::Ok(n) => assert_eq!((n.group.as_deref(), n.dh_bits), (Some("ffdhe2048"), Some(2048))),
            e => panic!("{e:?}"),
        }
        let bad = "Connecting to '127.0.0.1:1'...\n- Certificate type: X.509\n*** Fatal error: The Diffie-Hellman prime sent by the server is not acceptable (not long enough).\n";
        match parse_gnutls_cli(Some(1), bad, "").unwrap() {
            ClientResult::Error { stage, error } => {
                assert_eq!(stage, Stage::Handshake);
                assert!(error.contains("not long enough"));
            }
            ok => panic!("{ok:?}"),
        }
    }
}

/// `openssl s_client` prints the session to stdout and OpenSSL's error queue to stderr.
fn parse_s_client(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let errors: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains(":error:") || l.starts_with("verify error:") || l.contains("errno="))
        .collect();
    let words = if errors.is_empty() {
        stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
    } else {
        errors.join("\n")
    };
    let starttls_missing = stdout.contains("Didn't find STARTTLS") || stderr.contains("Didn't find STARTTLS");
    let new_line = stdout.lines().find_map(|l| l.strip_prefix("New, "));
    let handshake_done = new_line.is_some_and(|l| !l.contains("(NONE)"));
    if starttls_missing && !handshake_done {
        let text = if words.is_empty() {
            "Didn't find STARTTLS in server response".to_string()
        } else {
            format!("Didn't find STARTTLS in server response; {words}")
        };
        return Ok(ClientResult::error(Stage::Starttls, text));
    }
    if !stdout.contains("CONNECTED(") {
        if words.is_empty() {
            return Err(format!("s_client printed neither CONNECTED nor an error (exit {exit_code:?})"));
        }
        return Ok(ClientResult::error(Stage::Connect, words));
    }
    if !handshake_done {
        let stage = if words.contains("verify error:") || words.contains("certificate verify failed") {
            Stage::Verify
        } else {
            Stage::Handshake
        };
        if words.is_empty() {
            return Ok(ClientResult::error(stage, "handshake did not complete and s_client said nothing more"));
        }
        return Ok(ClientResult::error(stage, words));
    }
    let line = new_line.unwrap_or_default();
    // "New, TLSv1.2, Cipher is DHE-RSA-AES128-GCM-SHA256"
    let mut parts = line.splitn(2, ", Cipher is ");
    // "New, TLSv1/SSLv3, …" names the cipher's version; the session block names the protocol.
    let new_protocol = parts.next().unwrap_or_default().trim();
    let protocol = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Protocol  :").or_else(|| l.trim().strip_prefix("Protocol :")))
        .map_or(new_protocol, str::trim)
        .to_string();
    let cipher = parts.next().unwrap_or_default().trim().to_string();
    let (mut group, dh_bits) =
        stdout.lines().find_map(|l| l.strip_prefix("Server Temp Key: ")).map_or((None, None), temp_key);
    // TLS 1.3 allows only named finite-field groups (RFC 8446 §4.2.7), one per prime size, so
    // s_client's bare "DH, 2048 bits" there can only be ffdhe2048.
    if protocol == "TLSv1.3"
        && group.is_none()
        && let Some(bits) = dh_bits
    {
        group = Some(format!("ffdhe{bits}"));
    }
    let after: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("New, ")).collect();
    let ehlo_ok = after.iter().any(|l| l.starts_with("250 ") || l.starts_with("250-"));
    let quit_ok = after.iter().any(|l| l.starts_with("221"));
    // A server that closes TCP after its 221 without a TLS close_notify (OpenSMTPD) makes
    // OpenSSL 3 report an "unexpected eof": the SMTP session was already complete.
    let only_eof_after_quit = !errors.is_empty() && errors.iter().all(|e| e.contains("unexpected eof while reading"));
    if !(ehlo_ok && quit_ok) || (exit_code != Some(0) && !only_eof_after_quit) {
        let text = if words.is_empty() { "no 250/221 reply over TLS".to_string() } else { words };
        return Ok(ClientResult::error(Stage::PostTls, text));
    }
    Ok(ClientResult::Ok(Negotiated { protocol, cipher, group, dh_bits }))
}

/// `DH, 2048 bits` / `X25519, 253 bits` / `ECDH, prime256v1, 256 bits` / `ffdhe2048, 2048 bits`.
fn temp_key(text: &str) -> (Option<String>, Option<u32>) {
    let parts: Vec<&str> = text.split(", ").map(str::trim).collect();
    let bits = || parts.last().and_then(|b| b.strip_suffix(" bits")).and_then(|b| b.parse().ok());
    match parts.as_slice() {
        ["DH", _] => (None, bits()),
        ["ECDH", curve, _] => (Some(openssl_ext::iana_group_name(curve)), None),
        [name, _] if name.starts_with("ffdhe") => (Some(name.to_string()), bits()),
        [name, _] => (Some(openssl_ext::iana_group_name(name)), None),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_an_array_with_the_target() {
        let t = Target {
            connect: "127.0.0.1:2525".into(),
            servername: "mx.test".into(),
            cafile: "/tmp/ca.pem".into(),
            ehlo: "c.test".into(),
        };
        let (args, stdin) = AdapterKind::OpensslSClient.command(&t, &["-tls1_2".into()]);
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(&args[..3], ["s_client", "-starttls", "smtp"]);
        assert!(args.windows(2).any(|w| w == ["-connect", "127.0.0.1:2525"]));
        assert_eq!(args.last().unwrap(), "-tls1_2");
        assert_eq!(stdin, b"EHLO c.test\n", "QUIT waits for the EHLO reply: see paced_quit");
        assert_eq!(AdapterKind::OpensslSClient.paced_quit(), Some(("\n250 ", &b"QUIT\n"[..])));
        assert_eq!(AdapterKind::Curl.paced_quit(), None, "curl reads its message to end of input");
    }

    #[test]
    fn an_eof_after_the_221_is_not_a_failure() {
        // OpenSMTPD closes TCP after its 221 without a TLS close_notify.
        let out = "CONNECTED(00000003)\n---\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n250 HELP\n221 2.0.0 Bye\n";
        let eof = "40471737CA7F0000:error:0A000126:SSL routines:ssl3_read_n:unexpected eof while reading:../ssl/record/rec_layer_s3.c:318:\n";
        assert!(matches!(parse_s_client(Some(1), out, eof).unwrap(), ClientResult::Ok(_)));
        let no_quit = "CONNECTED(00000003)\n---\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n250 HELP\n";
        assert!(matches!(
            parse_s_client(Some(1), no_quit, eof).unwrap(),
            ClientResult::Error { stage: Stage::PostTls, .. }
        ));
    }

    #[test]
    fn parses_a_success() {
        let out = "CONNECTED(00000003)\n---\nServer Temp Key: DH, 2048 bits\n---\nNew, TLSv1.2, Cipher is DHE-RSA-AES128-GCM-SHA256\n250-mx.test greets c\n250 8BITMIME\n221 2.0.0 Bye\n";
        match parse_s_client(Some(0), out, "").unwrap() {
            ClientResult::Ok(n) => {
                assert_eq!((n.protocol.as_str(), n.cipher.as_str()), ("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256"));
                assert_eq!((n.group, n.dh_bits), (None, Some(2048)));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn parses_failures_by_stage() {
        let err =
            "40C7:error:0A00018A:SSL routines:tls_process_ske_dhe:dh key too small:../ssl/statem/statem_clnt.c:2092:\n";
        let out = "CONNECTED(00000003)\n---\nNew, (NONE), Cipher is (NONE)\n";
        assert!(
            matches!(parse_s_client(Some(1), out, err).unwrap(), ClientResult::Error { stage: Stage::Handshake, error } if error.contains("dh key too small"))
        );
        assert!(matches!(
            parse_s_client(Some(1), "", "connect:errno=111\n").unwrap(),
            ClientResult::Error { stage: Stage::Connect, .. }
        ));
        assert!(matches!(
            parse_s_client(
                Some(1),
                "CONNECTED(00000003)\nDidn't find STARTTLS in server response, trying anyway...\n",
                ""
            )
            .unwrap(),
            ClientResult::Error { stage: Stage::Starttls, .. }
        ));
        assert!(parse_s_client(None, "", "").is_err(), "no output at all is ours to explain");
    }

    #[test]
    fn temp_keys() {
        assert_eq!(temp_key("X25519, 253 bits"), (Some("x25519".into()), None));
        assert_eq!(temp_key("ECDH, prime256v1, 256 bits"), (Some("secp256r1".into()), None));
        assert_eq!(temp_key("DH, 1024 bits"), (None, Some(1024)));
    }
}

/// A GnuTLS session line, `(TLS1.2)-(DHE-FFDHE2048)-(RSA-SHA256)-(AES-256-GCM)` (gnutls-cli adds
/// `-X.509` to the first part), as negotiated parameters.
fn gnutls_session(description: &str) -> Negotiated {
    let parts: Vec<&str> = description.trim().split(")-(").map(|p| p.trim_matches(['(', ')'])).collect();
    let protocol = match parts.first().and_then(|p| p.split('-').next()) {
        Some("TLS1.3") => "TLSv1.3",
        Some("TLS1.2") => "TLSv1.2",
        Some("TLS1.1") => "TLSv1.1",
        Some("TLS1.0") => "TLSv1",
        Some(other) => other,
        None => "",
    }
    .to_string();
    let kx = parts.get(1).copied().unwrap_or_default();
    let bits = |s: &str| s.trim_start_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok();
    let (group, dh_bits) = match kx.split_once('-') {
        Some(("DHE", g)) if protocol == "TLSv1.3" => (Some(g.to_ascii_lowercase()), bits(g)),
        Some(("DHE", g)) => (None, bits(g)),
        Some(("ECDHE", g)) => (Some(g.to_ascii_lowercase()), None),
        _ => (None, None),
    };
    let cipher = parts.get(1..).map(|p| p.join(" ")).unwrap_or_default();
    Negotiated { protocol, cipher, group, dh_bits }
}

/// `msmtp --serverinfo` prints `TLS session parameters:` and the GnuTLS session line on
/// success, `msmtp: …` on failure.
fn parse_msmtp(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let session = stdout.lines().skip_while(|l| !l.starts_with("TLS session parameters:")).nth(1);
    if let (Some(0), Some(line)) = (exit_code, session) {
        return Ok(ClientResult::Ok(gnutls_session(line)));
    }
    let words: Vec<&str> = stderr.lines().filter(|l| l.starts_with("msmtp: ")).map(str::trim).collect();
    let words = words.join("\n");
    if words.is_empty() {
        return Err(format!("msmtp ended with {exit_code:?} and said nothing"));
    }
    let stage = if words.contains("cannot connect") || words.contains("Connection refused") {
        Stage::Connect
    } else if words.contains("certificate") {
        Stage::Verify
    } else if words.contains("TLS handshake failed") || (words.contains("TLS") && !words.contains("STARTTLS")) {
        Stage::Handshake
    } else if words.contains("STARTTLS") {
        Stage::Starttls
    } else {
        Stage::Smtp
    };
    Ok(ClientResult::error(stage, words))
}

/// `swaks` prints `=== TLS started with cipher TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256` on success
/// and `*** …` lines (and `<** ` for a server's refusal) on failure.
fn parse_swaks(exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String> {
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let started = all.iter().find_map(|l| l.strip_prefix("=== TLS started with cipher "));
    let problems: Vec<&str> =
        all.iter().filter(|l| l.starts_with("*** ") || l.starts_with("<** ")).map(|l| l.trim()).collect();
    let words = problems.join("\n");
    match (exit_code, started) {
        (Some(0), Some(session)) => {
            // TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256
            let mut parts = session.split(':');
            let protocol = parts.next().unwrap_or_default().trim();
            let protocol = if protocol == "TLSv1.0" { "TLSv1" } else { protocol };
            let cipher = parts.next().unwrap_or_default().trim();
            Ok(ClientResult::Ok(Negotiated {
                protocol: protocol.into(),
                cipher: cipher.into(),
                group: None,
                dh_bits: None,
            }))
        }
        // Killed by a signal (SIGPIPE) after the server hung up on it.
        (None, None) if words.is_empty() && stdout.contains("=== Connected to") => Ok(ClientResult::error(
            Stage::Handshake,
            "connection closed: swaks was ended by a signal after the server hung up",
        )),
        _ if words.is_empty() => Err(format!("swaks ended with {exit_code:?} and said nothing we know")),
        (_, Some(_)) => Ok(ClientResult::error(Stage::PostTls, words)),
        (_, None) => {
            let stage = if words.contains("TLS startup failed") {
                if words.contains("certificate verify failed") { Stage::Verify } else { Stage::Handshake }
            } else if words.contains("STARTTLS") {
                Stage::Starttls
            } else if words.contains("Error connecting") || words.contains("Connection refused") {
                Stage::Connect
            } else {
                Stage::Smtp
            };
            Ok(ClientResult::error(stage, words))
        }
    }
}

#[cfg(test)]
mod msmtp_swaks_tests {
    use super::*;

    #[test]
    fn parses_msmtp_and_swaks() {
        let ok = "TLS session parameters:\n    (TLS1.2)-(DHE-CUSTOM1024)-(RSA-SHA256)-(AES-256-GCM)\n";
        assert!(matches!(parse_msmtp(Some(0), ok, "").unwrap(), ClientResult::Ok(n) if n.dh_bits == Some(1024)));
        let bad = "msmtp: TLS handshake failed: The Diffie-Hellman prime sent by the server is not acceptable (not long enough).\n";
        assert!(matches!(parse_msmtp(Some(69), "", bad).unwrap(), ClientResult::Error { stage: Stage::Handshake, .. }));
        let ok = "=== TLS started with cipher TLSv1.2:DHE-RSA-AES256-GCM-SHA384:256\n";
        assert!(matches!(parse_swaks(Some(0), ok, "").unwrap(), ClientResult::Ok(n) if n.protocol == "TLSv1.2"));
        let bad = "*** TLS startup failed (connect(): error:0A00018A:SSL routines::dh key too small)\n*** STARTTLS attempted but failed\n";
        assert!(matches!(parse_swaks(Some(29), bad, "").unwrap(), ClientResult::Error { stage: Stage::Handshake, .. }));
    }
}
