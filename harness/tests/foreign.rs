//! Verdicts against servers this project did not write, through `probe` (the client's and
//! sender's words alone decide): aiosmtpd (Debian's python3-aiosmtpd) serving DHE only, greeting
//! with 421, and serving an expired certificate; Postfix with its log withheld; and a port where
//! nothing listens. Every stack that ran must say something a table knows, and the cases a user
//! meets must be classified right. aiosmtpd cases are skipped (with the reason) where it is not
//! installed (scripts/install-stacks installs it).

mod common;

use common::{EXE, repo};
use report_format::{CellReport, DeliveryResult, ErrorClass, Outcome, Report, Side, Stage};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// Why aiosmtpd cannot run here, if it cannot.
fn aiosmtpd_missing() -> Option<String> {
    let ok = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success());
    (!ok).then(|| format!("{PYTHON} cannot import aiosmtpd (scripts/install-stacks installs python3-aiosmtpd)"))
}

/// A child in its own process group that gets `signal` when the test dies (parent-death
/// signal) and when dropped, then is reaped; `serve` is asked with SIGTERM, so that it stops the
/// MTA it started.
struct Server {
    child: Child,
    signal: i32,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: our own child's group, not yet reaped.
        unsafe { libc::killpg(self.child.id() as i32, self.signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command, signal: i32) -> Server {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
    Server { child: cmd.spawn().expect("start the server"), signal }
}

/// aiosmtpd in `mode` on 127.0.0.1 with this certificate and key; its port.
fn aiosmtpd(mode: &str, cert: &Path, key: &Path) -> (Server, u16) {
    let script = repo().join("harness/tests/foreign/aiosmtpd_server.py");
    let dh = repo().join("servers/dh/ffdhe4096.pem");
    let mut cmd = Command::new("timeout");
    cmd.arg("180").arg(PYTHON).arg(script).arg(mode).arg(cert).arg(key).arg(dh);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut server = spawn(cmd, libc::SIGKILL);
    let mut line = String::new();
    BufReader::new(server.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("aiosmtpd printed no port: {line:?}"));
    (server, port)
}

/// `probe 127.0.0.1:PORT` with every stack of the default matrix, as JSON.
fn probe(port: u16, cafile: &Path) -> Report {
    let matrix = repo().join("matrix.toml");
    let out = Command::new(EXE)
        .args(["probe", &format!("127.0.0.1:{port}"), "--servername", "mx.test", "--format", "json"])
        .arg("--cafile")
        .arg(cafile)
        .arg("--matrix")
        .arg(matrix)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("probe printed no report ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

/// The cell of a stack, if the stack ran (not skipped, as a stack not installed is).
fn ran<'a>(report: &'a Report, stack: &str) -> Option<&'a CellReport> {
    report.cells.values().find(|c| c.client == stack).filter(|c| !matches!(c.outcome, Outcome::Skipped { .. }))
}

/// No stack said anything a table does not know, and none failed to run.
fn all_known(report: &Report) {
    for (id, c) in &report.cells {
        let unmapped = matches!(c.outcome, Outcome::Failed { class: ErrorClass::Unmapped, .. })
            || c.delivery.as_ref().is_some_and(|d| d.class == Some(ErrorClass::Unmapped));
        assert!(!unmapped, "{id}: unmapped: {:?} {:?}", c.outcome, c.delivery.as_ref().map(|d| &d.attempts));
        assert!(!matches!(c.outcome, Outcome::HarnessError { .. }), "{id}: {:?}", c.outcome);
    }
}

fn failure(c: &CellReport) -> (ErrorClass, Side, Stage) {
    match &c.outcome {
        Outcome::Failed { class, side, stage, .. } => (*class, *side, *stage),
        other => panic!("{}: expected a failure, got {other:?}", c.client),
    }
}

fn is_sender(report: &Report, c: &CellReport) -> bool {
    report.clients.get(&c.client).is_some_and(|i| i.kind == "sender")
}

fn pki(dir: &Path) -> servers::pki::TestPki {
    servers::pki::TestPki::generate(dir).unwrap()
}

/// A DHE-only server that does not send an alert when nothing is shared: aiosmtpd (Python's
/// asyncio TLS) closes the connection after the ClientHello. Stacks without finite-field DHE
/// see the server hang up in the handshake; the rest connect.
#[test]
fn aiosmtpd_serving_dhe_only() {
    if let Some(why) = aiosmtpd_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (_server, port) = aiosmtpd("dhe-only", &pki.cert(Default::default()), &pki.key(Default::default()));
    let report = probe(port, &pki.ca_cert);
    all_known(&report);
    for stack in ["rustls", "rustls-aws-lc", "go-crypto-tls"] {
        let Some(c) = ran(&report, stack) else { continue };
        assert_eq!(failure(c), (ErrorClass::ConnectionClosed, Side::Server, Stage::Handshake), "{stack}");
    }
    for stack in ["openssl", "gnutls-cli", "java-jsse", "rustls-ffdhe", "python-smtplib", "curl", "swaks", "msmtp"] {
        let Some(c) = ran(&report, stack) else { continue };
        assert!(matches!(c.outcome, Outcome::Connected(_)), "{stack}: {:?}", c.outcome);
    }
    // sendmail adds AUTH=<> to MAIL FROM once AUTH is offered, and aiosmtpd refuses the
    // parameter (555): the message bounces, over TLS that worked.
    for stack in ["sendmail-smtp", "sendmail-smtp@fallback"] {
        let Some(c) = ran(&report, stack) else { continue };
        let d = c.delivery.as_ref().expect("a sender's cell has a delivery");
        assert_eq!((d.result, d.class), (DeliveryResult::Bounced, Some(ErrorClass::SmtpRejected)), "{stack}");
    }
}

/// A server at its connection limit greets with 421: every stack reports the server's refusal
/// in the SMTP dialogue, senders keep the message.
#[test]
fn aiosmtpd_greeting_with_421() {
    if let Some(why) = aiosmtpd_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (_server, port) = aiosmtpd("banner-421", &pki.cert(Default::default()), &pki.key(Default::default()));
    let report = probe(port, &pki.ca_cert);
    all_known(&report);
    for c in report.cells.values().filter(|c| !matches!(c.outcome, Outcome::Skipped { .. })) {
        if is_sender(&report, c) {
            let d = c.delivery.as_ref().expect("a sender's cell has a delivery");
            assert_eq!((d.result, d.class), (DeliveryResult::Deferred, Some(ErrorClass::SmtpRejected)), "{}", c.client);
        } else if c.client == "openssl-s_client" {
            // It prints none of the replies it reads (harness/src/blind.rs, S_CLIENT).
            assert_eq!(failure(c), (ErrorClass::StarttlsNotOffered, Side::Server, Stage::Starttls));
        } else {
            assert_eq!(failure(c), (ErrorClass::SmtpRejected, Side::Server, Stage::Smtp), "{}", c.client);
        }
    }
}

/// An expired certificate: GnuTLS says "The certificate chain uses expired certificate" beside
/// "NOT trusted"; it is `cert_expired`, for every stack that checks.
#[test]
fn aiosmtpd_with_an_expired_certificate() {
    if let Some(why) = aiosmtpd_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "foreign test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.not_before = date_time_ymd(2000, 1, 1);
    ca.not_after = date_time_ymd(2099, 12, 31);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["mx.test".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "mx.test");
    leaf.not_before = date_time_ymd(2020, 1, 1);
    leaf.not_after = date_time_ymd(2021, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca_path, cert_path, key_path) =
        (write("ca.pem", ca_cert.pem()), write("leaf.pem", cert.pem()), write("leaf.key", key.serialize_pem()));
    let (_server, port) = aiosmtpd("tls", &cert_path, &key_path);
    let report = probe(port, &ca_path);
    all_known(&report);
    for stack in
        ["gnutls-cli@secure", "openssl", "openssl-3.6", "rustls", "go-crypto-tls", "java-jsse", "python-smtplib"]
    {
        let Some(c) = ran(&report, stack) else { continue };
        assert_eq!(failure(c).0, ErrorClass::CertExpired, "{stack}: {:?}", c.outcome);
    }
}

/// Nothing listening: a connect-stage refusal for every client stack, never a closed connection.
#[test]
fn a_port_where_nothing_listens() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let report = probe(port, &pki.ca_cert);
    all_known(&report);
    for c in report.cells.values().filter(|c| !matches!(c.outcome, Outcome::Skipped { .. })) {
        if is_sender(&report, c) {
            let d = c.delivery.as_ref().expect("a sender's cell has a delivery");
            assert_eq!(d.result, DeliveryResult::Deferred, "{}", c.client);
        } else {
            assert_eq!(failure(c), (ErrorClass::ConnectionRefused, Side::Server, Stage::Connect), "{}", c.client);
        }
    }
}

/// Postfix serving DHE only, its log withheld (probe reads none): a server that does send the
/// bare handshake_failure alert. Stacks without DHE see the server's refusal.
#[test]
fn postfix_serving_dhe_only_with_its_log_withheld() {
    let roots = mta::extracted_roots(&repo());
    if !roots.join("postfix").exists() {
        eprintln!("skipped: postfix is not extracted in {} (scripts/install-stacks)", roots.display());
        return;
    }
    let mut cmd = Command::new(EXE);
    cmd.args(["serve", "postfix-dh1024-dhe-only", "--matrix"]).arg(repo().join("matrix.toml"));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut server = spawn(cmd, libc::SIGTERM);
    let stderr = BufReader::new(server.child.stderr.take().unwrap());
    // "serving profile ID with postfix … on 127.0.0.1:PORT, ready in 60 ms; trust CA": read on a
    // thread (which then drains the rest), waited for with a bound.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let Some(rest) = line.strip_prefix("serving profile ") else { continue };
            let port: String =
                rest.split("127.0.0.1:").nth(1).unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
            let ca = rest.split("trust ").nth(1).map(|c| PathBuf::from(c.trim()));
            let _ = tx.send(port.parse::<u16>().ok().zip(ca));
        }
    });
    let found = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
    let (port, ca) = found.expect("serve printed where it serves");
    let report = probe(port, &ca);
    all_known(&report);
    for stack in ["rustls", "rustls-aws-lc", "go-crypto-tls"] {
        let Some(c) = ran(&report, stack) else { continue };
        assert_eq!(failure(c), (ErrorClass::HandshakeFailure, Side::Server, Stage::Handshake), "{stack}");
    }
    // Its 1024-bit group: below OpenSSL 3's default level 2, within level 1.
    if let Some(c) = ran(&report, "openssl") {
        assert_eq!(failure(c), (ErrorClass::DhTooSmall, Side::Client, Stage::Handshake));
    }
    if let Some(c) = ran(&report, "openssl@seclevel1") {
        assert!(matches!(c.outcome, Outcome::Connected(_)), "{:?}", c.outcome);
    }
    drop(server);
}
