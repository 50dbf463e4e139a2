//! posttls-finger's words as Postfix 3.7.11 printed them, read into RESULTs; its private
//! configuration.

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
    let n =
        negotiated("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange DHE (2048 bits)").unwrap();
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
    let fatal = "posttls-finger: fatal: file /tmp/x/main.cf: parameter setgid_group: unknown group name: postdrop\n";
    assert!(parse(Some(1), fatal, "").is_err());
    let usage = "/x/usr/sbin/posttls-finger: invalid option -- 'Z'\nusage: posttls-finger [-acCfSvw] [-t conn_tmout]\n";
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
            ErrorClass::ConnectionClosed,
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
            ErrorClass::ConnectionRefused,
        ),
    ];
    for (stage, text, expected) in cases {
        assert_eq!(class(stage, text), expected, "{text}");
    }
    // An alert only says the server refused: the server's own words decide.
    let alert = "SSL_connect error to 127.0.0.1[127.0.0.1]:39291: -1\nwarning: TLS library problem: error:0A000410:SSL routines::sslv3 alert handshake failure:../ssl/record/rec_layer_s3.c:1601:SSL alert number 40:";
    let server = ["error:0A000065:SSL routines:final_key_share:no suitable key share:../ssl/statem/extensions.c:1362:"
        .to_string()];
    assert_eq!(
        t.classify("posttls-finger", Stage::Handshake, alert, Some("server-openssl"), &server).class,
        ErrorClass::NoSharedGroup
    );
    assert_eq!(class(Stage::Handshake, alert), ErrorClass::HandshakeFailure, "without the server's words: it refused");
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
