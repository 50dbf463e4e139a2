//! The `lettre-client` program against the built-in server: lettre's words and stages, its
//! unreported parameters beside the server's record, and that lettre's own `SmtpTransport` does
//! what the program's step-by-step calls do.

use servers::{ConnectionRecord, ServeOptions, ServerProfile, TestPki};
use std::process::Command;
use std::time::Duration;
use wire::{ClientResult, EXIT_UNSUPPORTED, Negotiated, Stage};

const LETTRE: &str = env!("CARGO_BIN_EXE_lettre-client");

fn profile(json: serde_json::Value) -> ServerProfile {
    let p: ServerProfile = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

fn dhe(dh: &str) -> ServerProfile {
    profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2", "dh": dh,
        "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}))
}

fn fault(name: &str) -> ServerProfile {
    profile(serde_json::json!({"id": "t", "backend": "openssl", "fault": name}))
}

/// Start a server for the profile, run `lettre-client` against it; its RESULT and what the
/// server recorded.
fn run(profile: &ServerProfile, servername: &str, extra: &[&str]) -> (ClientResult, Vec<ConnectionRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut server =
        rt.block_on(servers::start(servers::TlsBackend::Openssl, profile, &pki, ServeOptions::default())).unwrap();
    let out = Command::new(LETTRE)
        .args(["--connect", &server.addr().to_string(), "--servername", servername, "--cafile"])
        .arg(&pki.ca_cert)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    rt.block_on(server.quiesce(Duration::from_secs(2)));
    let records = server.take_records();
    (ClientResult::from_stdout(&String::from_utf8_lossy(&out.stdout)).unwrap(), records)
}

fn error(result: ClientResult) -> (Stage, String) {
    match result {
        ClientResult::Error { stage, error } => (stage, error),
        ok => panic!("expected a failure, got {ok:?}"),
    }
}

#[test]
fn contract_exit_codes() {
    let out = Command::new(LETTRE).args(["--connect", "127.0.0.1:1", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_UNSUPPORTED));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("RESULT"));
    // native-tls cannot take TLS 1.3 as the minimum, and lettre has no switch for the fixture.
    for extra in [&["--tls-min", "1.3"][..], &["--unsafe-keep-plaintext-buffer"]] {
        let out = Command::new(LETTRE).args(["--connect", "127.0.0.1:1"]).args(extra).output().unwrap();
        assert_eq!(out.status.code(), Some(EXIT_UNSUPPORTED), "{extra:?}");
    }
}

#[test]
fn describe_names_lettre_native_tls_and_openssl() {
    let out = Command::new(LETTRE).arg("--describe").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim().strip_prefix("DESCRIBE ").unwrap()).unwrap();
    let library = v["library"].as_str().unwrap();
    assert!(library.starts_with("lettre 0.11.") && library.contains("native-tls 0.2.") && library.contains("OpenSSL "));
    assert_eq!(v["policy"]["tls_min"], "1.2");
    assert!(v["policy"]["security_level"].is_u64());
}

#[test]
fn a_closed_port_fails_at_connect() {
    // Bind and drop: a port on 127.0.0.1 that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(LETTRE).args(["--connect", &format!("127.0.0.1:{port}")]).output().unwrap();
    let (stage, words) = error(ClientResult::from_stdout(&String::from_utf8_lossy(&out.stdout)).unwrap());
    assert_eq!(stage, Stage::Connect);
    assert!(words.starts_with("Connection error: "), "{words}");
}

#[test]
fn sends_the_message_without_saying_what_it_negotiated() {
    let (result, records) = run(&dhe("ffdhe2048"), "mx.test", &[]);
    assert_eq!(result, ClientResult::Ok(Negotiated::unreported()));
    let record = records.iter().find(|r| r.tls.is_some()).expect("the server saw the handshake");
    assert_eq!(record.tls.as_ref().unwrap().label(), "TLSv1.2 DHE-2048");
    assert_eq!(record.messages, Some(1), "lettre delivered its message over TLS");
}

#[test]
fn refuses_512_bit_dh_in_openssls_words() {
    let (stage, words) = error(run(&dhe("custom-512"), "mx.test", &[]).0);
    assert_eq!(stage, Stage::Handshake);
    assert!(words.starts_with("Connection error: ") && words.contains("dh key too small"), "{words}");
}

#[test]
fn a_wrong_name_fails_at_verify() {
    let p = profile(serde_json::json!({"id": "t", "backend": "openssl"}));
    let (stage, words) = error(run(&p, "other.test", &[]).0);
    assert_eq!(stage, Stage::Verify);
    assert!(words.contains("certificate verify failed") && words.contains("hostname mismatch"), "{words}");
}

#[test]
fn stops_without_starttls_unless_opportunistic() {
    let (stage, words) = error(run(&fault("no-starttls"), "mx.test", &[]).0);
    assert_eq!(
        (stage, words.as_str()),
        (Stage::Starttls, "internal client error: STARTTLS is not supported on this server")
    );
    let (stage, words) = error(run(&fault("starttls-454"), "mx.test", &[]).0);
    assert_eq!(stage, Stage::Starttls);
    assert!(words.starts_with("transient error (454)"), "{words}");
    // Tls::Opportunistic delivers in plaintext when STARTTLS is not offered, as lettre documents.
    let (result, records) = run(&fault("no-starttls"), "mx.test", &["--tls-policy", "may"]);
    assert!(matches!(&result, ClientResult::Ok(n) if n.is_plaintext()), "{result:?}");
    assert_eq!(records.iter().filter_map(|r| r.messages).sum::<usize>(), 1);
}

/// The finding behind `lettre/hostile-inject-after-starttls-response`: plaintext sent with the
/// 220 to STARTTLS is read as the first reply over TLS. The same through `SmtpTransport`, the
/// way lettre's users send, so it is lettre's behaviour and not the program's.
#[test]
fn reads_plaintext_injected_before_the_handshake_as_a_reply_over_tls() {
    let (stage, words) = error(run(&fault("inject-after-starttls-response"), "mx.test", &[]).0);
    assert_eq!(stage, Stage::PostTls);
    assert!(words.contains("INJECTED"), "{words}");

    use lettre::Transport;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(servers::start(
        servers::TlsBackend::Openssl,
        &fault("inject-after-starttls-response"),
        &pki,
        ServeOptions::default(),
    ));
    let server = server.unwrap();
    let ca = Certificate::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
    let tls = TlsParameters::builder("mx.test".into())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let transport = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.addr().port())
        .tls(Tls::Required(tls))
        .hello_name(ClientId::Domain("client.test".into()))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let message = lettre::Message::builder()
        .from("probe@client.test".parse().unwrap())
        .to("postmaster@mx.test".parse().unwrap())
        .subject("probe")
        .body("probe\r\n".to_string())
        .unwrap();
    let words = transport.send(&message).expect_err("the injected 554 answers EHLO").to_string();
    assert!(words.contains("INJECTED"), "{words}");
}
