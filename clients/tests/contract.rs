//! The built-in client programs against the built-in server: the client contract end to end
//! (flags in, one RESULT line out, exit codes), on 127.0.0.1 port 0.

use servers::{ServeOptions, ServerProfile, TestPki};
use std::process::Command;
use wire::{ClientResult, EXIT_UNSUPPORTED, Stage};

fn profile(json: serde_json::Value) -> ServerProfile {
    let p: ServerProfile = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

/// Start a server for the profile, run the client program against it, return its RESULT.
fn run(program: &str, profile: &ServerProfile, servername: &str, extra: &[&str]) -> ClientResult {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let servers::Backend::Builtin(backend) = profile.backend else { panic!("a built-in server profile") };
    let server = rt.block_on(servers::start(backend, profile, &pki, ServeOptions::default())).unwrap();
    let out = Command::new(program)
        .args(["--connect", &server.addr().to_string(), "--servername", servername, "--cafile"])
        .arg(&pki.ca_cert)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    ClientResult::from_stdout(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

const OPENSSL: &str = env!("CARGO_BIN_EXE_openssl-client");
const RUSTLS: &str = env!("CARGO_BIN_EXE_rustls-client");

fn dhe(dh: &str) -> ServerProfile {
    profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2", "dh": dh,
        "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}))
}

#[test]
fn unknown_flag_exits_89() {
    for program in [OPENSSL, RUSTLS] {
        let out = Command::new(program).args(["--connect", "127.0.0.1:1", "--no-such-flag"]).output().unwrap();
        assert_eq!(out.status.code(), Some(EXIT_UNSUPPORTED), "{program}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("RESULT"));
    }
}

#[test]
fn rustls_cannot_express_tls10() {
    let out = Command::new(RUSTLS).args(["--connect", "127.0.0.1:1", "--tls-min", "1.0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_UNSUPPORTED));
}

#[test]
fn describe_reports_library_and_policy() {
    let out = Command::new(OPENSSL).arg("--describe").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DESCRIBE "), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim().strip_prefix("DESCRIBE ").unwrap()).unwrap();
    assert!(v["library"].as_str().unwrap().starts_with("OpenSSL "));
    assert!(v["policy"]["security_level"].is_u64());
    let out = Command::new(RUSTLS).arg("--describe").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"library\":\"rustls 0.23."));
}

#[test]
fn openssl_refuses_512_bit_dh_in_its_own_words() {
    match run(OPENSSL, &dhe("custom-512"), "mx.test", &[]) {
        ClientResult::Error { stage, error } => {
            assert_eq!(stage, Stage::Handshake);
            assert!(error.contains("dh key too small"), "{error}");
        }
        ok => panic!("expected a failure, got {ok:?}"),
    }
}

#[test]
fn openssl_connects_to_ffdhe2048_and_reports_the_prime_size() {
    match run(OPENSSL, &dhe("ffdhe2048"), "mx.test", &[]) {
        ClientResult::Ok(n) => {
            assert_eq!(n.protocol, Some(wire::Protocol::Tls12));
            assert_eq!(n.cipher_name(), "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256");
            assert_eq!(n.dh_bits, Some(2048));
        }
        err => panic!("expected success, got {err:?}"),
    }
}

#[test]
fn openssl_at_level_0_still_refuses_512_but_level_1_takes_1024() {
    assert!(matches!(run(OPENSSL, &dhe("custom-512"), "mx.test", &["--seclevel", "0"]), ClientResult::Error { .. }));
    assert!(matches!(run(OPENSSL, &dhe("oakley-1024"), "mx.test", &["--seclevel", "1"]), ClientResult::Ok(_)));
}

#[test]
fn rustls_tls13_x25519_and_no_dhe() {
    let tls13 = profile(serde_json::json!({"id": "t", "backend": "openssl", "min_tls": "1.3", "groups": ["x25519"]}));
    match run(RUSTLS, &tls13, "mx.test", &[]) {
        ClientResult::Ok(n) => {
            assert_eq!((n.protocol, n.group.as_deref()), (Some(wire::Protocol::Tls13), Some("x25519")))
        }
        err => panic!("expected success, got {err:?}"),
    }
    assert!(matches!(
        run(RUSTLS, &dhe("ffdhe2048"), "mx.test", &[]),
        ClientResult::Error { stage: Stage::Handshake, .. }
    ));
}

#[test]
fn wrong_name_fails_at_verify() {
    let p = profile(serde_json::json!({"id": "t", "backend": "rustls"}));
    for program in [OPENSSL, RUSTLS] {
        match run(program, &p, "other.test", &[]) {
            ClientResult::Error { stage, .. } => assert_eq!(stage, Stage::Verify, "{program}"),
            ok => panic!("{program}: expected a verify failure, got {ok:?}"),
        }
    }
}

#[test]
fn rustls_backend_serves_512_bit_dhe_to_a_permissive_openssl_client() {
    // The OpenSSL client refuses it: the point is that the server offers it at all.
    let p = profile(serde_json::json!({"id": "t", "backend": "rustls", "max_tls": "1.2", "dh": "custom-512",
        "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}));
    match run(OPENSSL, &p, "mx.test", &[]) {
        ClientResult::Error { error, .. } => assert!(error.contains("dh key too small"), "{error}"),
        ok => panic!("expected dh key too small, got {ok:?}"),
    }
}

#[test]
fn rustls_with_ffdhe_takes_rfc7919_groups_and_refuses_private_primes() {
    match run(RUSTLS, &dhe("ffdhe2048"), "mx.test", &["--ffdhe"]) {
        ClientResult::Ok(n) => {
            assert_eq!((n.protocol, n.dh_bits, n.group.clone()), (Some(wire::Protocol::Tls12), Some(2048), None));
            assert_eq!(n.cipher_name(), "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256");
        }
        err => panic!("expected success, got {err:?}"),
    }
    match run(RUSTLS, &dhe("custom-2048"), "mx.test", &["--ffdhe"]) {
        ClientResult::Error { stage, error } => {
            assert_eq!(stage, Stage::Handshake);
            assert!(error.contains("SelectedUnofferedKxGroup"), "{error}");
        }
        ok => panic!("expected unoffered group, got {ok:?}"),
    }
}
