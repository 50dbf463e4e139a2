//! Hostile STARTTLS servers against clients that are safe and against test fixtures that are
//! not: an opportunistic client is caught downgrading, a client that keeps plaintext from before
//! the handshake is caught accepting injection, and a stalled server never hangs the run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_starttls-matrix");

fn fault_matrix(faults: &[&str]) -> String {
    let mut m = String::from("[run]\ncell_timeout = \"10s\"\n");
    for f in faults {
        m.push_str(&format!("[[server]]\nid = \"{f}\"\nbackend = \"openssl\"\nfault = \"{f}\"\n"));
    }
    m.push_str(
        "[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n\
         [[client]]\nid = \"rustls\"\nbuiltin = \"rustls-client\"\n\
         [[client]]\nid = \"openssl@may\"\nvariant_of = \"openssl\"\nargs = [\"--tls-policy\", \"may\"]\n\
         [[client]]\nid = \"openssl@vulnerable\"\nvariant_of = \"openssl\"\nargs = [\"--unsafe-keep-plaintext-buffer\"]\n",
    );
    m
}

fn run(dir: &Path, matrix: &str) -> serde_json::Value {
    std::fs::write(dir.join("m.toml"), matrix).unwrap();
    let out =
        Command::new(EXE).args(["run", "--matrix", "m.toml", "--format", "json"]).current_dir(dir).output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn class(report: &serde_json::Value, cell: &str) -> String {
    let o = &report["cells"][cell]["outcome"];
    o["class"].as_str().map_or_else(|| o["kind"].as_str().unwrap().to_string(), str::to_string)
}

#[test]
fn each_client_is_judged_by_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &fault_matrix(&["no-starttls", "starttls-454", "inject-after-starttls-response", "banner-421", "ehlo-5xx"]),
    );
    for client in ["openssl", "rustls", "openssl@vulnerable"] {
        assert_eq!(class(&r, &format!("{client}/no-starttls")), "starttls_not_offered", "{client}");
        assert_eq!(class(&r, &format!("{client}/starttls-454")), "starttls_refused", "{client}");
    }
    for client in ["openssl", "rustls", "openssl@may", "openssl@vulnerable"] {
        assert_eq!(class(&r, &format!("{client}/banner-421")), "smtp_rejected", "{client}");
        assert_eq!(class(&r, &format!("{client}/ehlo-5xx")), "smtp_rejected", "{client}");
    }
    // The opportunistic client delivers in plaintext: the server saw the message arrive in clear.
    for fault in ["no-starttls", "starttls-454"] {
        let cell = format!("openssl@may/{fault}");
        assert_eq!(class(&r, &cell), "downgraded_to_plaintext");
        assert!(r["cells"][&cell]["outcome"]["server_error"].as_str().unwrap().contains("1 message(s) without TLS"));
    }
    // Injection: safe clients never read the injected reply; the fixture that keeps the
    // plaintext buffer takes it as a reply over TLS.
    assert_eq!(class(&r, "openssl/inject-after-starttls-response"), "connected");
    assert_eq!(class(&r, "rustls/inject-after-starttls-response"), "connected");
    assert_eq!(class(&r, "openssl@vulnerable/inject-after-starttls-response"), "injection_accepted");
}

#[test]
fn a_stalled_server_ends_within_the_faults_bound_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let r = run(
        dir.path(),
        &fault_matrix(&["stall", "close-after-starttls", "garbage-instead-of-tls", "tls-alert-after-starttls"]),
    );
    assert!(started.elapsed() < Duration::from_secs(30), "short stalls and quick failures");
    for client in ["openssl", "rustls", "openssl@may"] {
        assert_eq!(class(&r, &format!("{client}/stall")), "timeout");
        for fault in ["close-after-starttls", "garbage-instead-of-tls", "tls-alert-after-starttls"] {
            assert_eq!(class(&r, &format!("{client}/{fault}")), "connection_closed", "{client}/{fault}");
        }
    }
    assert!(r["cells"]["openssl/stall"]["outcome"]["after_ms"].as_u64().unwrap() < 5000);
    // No client of this run is left: every process it started ran in this test's directory.
    let here = std::fs::canonicalize(dir.path()).unwrap();
    let ours = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd == here))
        .count();
    assert_eq!(ours, 0, "client processes left behind");
}
