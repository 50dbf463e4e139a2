//! Servers that a client update breaks, run for real: the built-in server's handshake faults
//! act on the ClientHello the client really sent, and every cell carries that ClientHello's size
//! and key shares — so the table says why OpenSSL 3.6 fails where OpenSSL 3.0 connects.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_starttls-matrix");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// OpenSSL 3.6's client, when `scripts/build-openssl-clients` has built it.
fn openssl36() -> Option<PathBuf> {
    let p = repo().join(".cache/openssl/3.6/bin/openssl-client");
    p.exists().then_some(p)
}

fn matrix() -> String {
    let mut m = String::from("[run]\ncell_timeout = \"10s\"\n");
    for (id, settings) in [
        ("one-segment", "backend = \"openssl\"\nfault = \"clienthello-one-segment\""),
        ("length-intolerant", "backend = \"openssl\"\nfault = \"clienthello-length-intolerant\""),
        ("tls13-intolerant", "backend = \"openssl\"\nfault = \"tls13-intolerant\""),
        ("no-hrr", "backend = \"openssl\"\nmin_tls = \"1.3\"\ngroups = [\"secp384r1\"]\nfault = \"no-hrr\""),
        ("p384-only", "backend = \"openssl\"\nmin_tls = \"1.3\"\ngroups = [\"secp384r1\"]"),
        ("mlkem-only", "backend = \"rustls\"\nmin_tls = \"1.3\"\ngroups = [\"X25519MLKEM768\"]"),
        ("no-ems", "backend = \"openssl\"\nmax_tls = \"1.2\"\nfault = \"no-ems\""),
        ("rsa1024", "backend = \"openssl\"\ncert = \"rsa1024\""),
        ("sha1", "backend = \"openssl\"\ncert = \"rsa-sha1\""),
    ] {
        m.push_str(&format!("[[server]]\nid = \"{id}\"\n{settings}\n"));
    }
    m.push_str(&format!(
        "[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n\
         [[client]]\nid = \"openssl@seclevel1\"\nvariant_of = \"openssl\"\nenv = {{ OPENSSL_CONF = \"{}\" }}\n\
         [[client]]\nid = \"rustls\"\nbuiltin = \"rustls-client\"\n\
         [[client]]\nid = \"rustls@require-ems\"\nvariant_of = \"rustls\"\nargs = [\"--require-ems\"]\n\
         [[client]]\nid = \"rustls-aws-lc\"\nbuiltin = \"rustls-client\"\nargs = [\"--provider\", \"aws-lc-rs\"]\n",
        repo().join("clients/policy/openssl-seclevel1.cnf").display()
    ));
    if let Some(p) = openssl36() {
        m.push_str(&format!("[[client]]\nid = \"openssl-3.6\"\nprogram = \"{}\"\nerrors = \"openssl\"\n", p.display()));
    }
    m
}

fn run(dir: &Path) -> Value {
    std::fs::write(dir.join("m.toml"), matrix()).unwrap();
    let out = Command::new(EXE)
        .args(["run", "--matrix", "m.toml", "--format", "json", "--out", "out"])
        .current_dir(dir)
        .output()
        .unwrap();
    // No expectations are written: failures are "unexpected" (1); a harness error (3) is a defect.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The cell's class, or its outcome kind when it has none.
fn class(r: &Value, cell: &str) -> String {
    let o = &r["cells"][cell]["outcome"];
    assert!(!o.is_null(), "no cell {cell}");
    o["class"].as_str().map_or_else(|| o["kind"].as_str().unwrap().to_string(), str::to_string)
}

/// The ClientHello the server read in the cell's (first) connection.
fn hello(r: &Value, cell: &str) -> Value {
    r["cells"][cell]["server_log"][0]["client_hello"].clone()
}

#[test]
fn client_updates_break_servers_for_the_reasons_the_server_saw() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path());
    for (id, cell) in r["cells"].as_object().unwrap() {
        assert_ne!(cell["outcome"]["kind"], "harness_error", "{id}: {}", cell["outcome"]);
        assert_ne!(cell["outcome"]["class"], "unmapped", "{id}: {}", cell["outcome"]);
    }

    // OpenSSL 3.0 and the ring rustls send one small key share: the one-segment server takes them.
    for c in ["openssl", "rustls"] {
        let cell = format!("{c}/one-segment");
        assert_eq!(class(&r, &cell), "connected", "{cell}");
        let h = hello(&r, &cell);
        assert!(h["length"].as_u64().unwrap() < 1455, "{cell}: {h}");
        assert_eq!(h["key_shares"], serde_json::json!(["x25519"]), "{cell}");
    }
    // The hybrid key share makes the ClientHello larger than one segment: the server closes.
    let mut large = vec!["rustls-aws-lc"];
    large.extend(openssl36().map(|_| "openssl-3.6"));
    for c in &large {
        let cell = format!("{c}/one-segment");
        assert_eq!(class(&r, &cell), "connection_closed", "{cell}");
        let h = hello(&r, &cell);
        assert!(h["length"].as_u64().unwrap() > 1455, "{cell}: {h}");
        assert_eq!(h["read_only"], 1460, "{cell}: {h}");
        assert_eq!(h["key_shares"][0], "X25519MLKEM768", "{cell}: {h}");
        assert!(
            r["cells"][&cell]["server_log"][0]["error"].as_str().unwrap().contains("did not fit in the first 1460")
        );
        // …and the same stacks reach the PQ-only server that nothing else reaches.
        let cell = format!("{c}/mlkem-only");
        assert_eq!(r["cells"][&cell]["outcome"]["group"], "X25519MLKEM768", "{cell}");
    }
    assert_eq!(class(&r, "rustls/mlkem-only"), "no_shared_group");
    assert_eq!(class(&r, "openssl/mlkem-only"), "no_shared_group");

    // RFC 7685: OpenSSL 3.0's own ClientHello (no SSL_OP_ALL padding) is 256–511 bytes.
    let len = hello(&r, "openssl/length-intolerant")["length"].as_u64().unwrap();
    assert!((256..=511).contains(&len), "{len}");
    assert_eq!(class(&r, "openssl/length-intolerant"), "timeout");
    assert_eq!(class(&r, "rustls/length-intolerant"), "connected");

    // A HelloRetryRequest: the first key share was X25519, the server took P-384.
    for c in ["openssl", "rustls"] {
        let cell = format!("{c}/p384-only");
        assert_eq!(r["cells"][&cell]["outcome"]["group"], "secp384r1", "{cell}");
        assert_eq!(hello(&r, &cell)["hello_retry"], true, "{cell}");
        assert_eq!(class(&r, &format!("{c}/no-hrr")), "handshake_failure", "{c}");
        assert_eq!(class(&r, &format!("{c}/tls13-intolerant")), "connection_closed", "{c}");
    }
    assert_eq!(hello(&r, "openssl/one-segment")["hello_retry"], false);

    // EMS: only the client that requires it refuses.
    assert_eq!(class(&r, "rustls@require-ems/no-ems"), "ems_missing");
    assert_eq!(class(&r, "rustls/no-ems"), "connected");
    assert_eq!(hello(&r, "rustls/no-ems")["ems"], true);

    // Security level 2 refuses a 1024-bit RSA certificate in OpenSSL's own words; level 1 takes it.
    assert_eq!(class(&r, "openssl/rsa1024"), "cert_key_too_small");
    let words = r["cells"]["openssl/rsa1024"]["outcome"]["client_error"].as_str().unwrap();
    assert!(words.contains("key too weak") || words.contains("key too small"), "{words}");
    assert_eq!(class(&r, "openssl@seclevel1/rsa1024"), "connected");
    assert_eq!(class(&r, "rustls/sha1"), "cert_weak_signature");
    assert_eq!(class(&r, "openssl/sha1"), "cert_weak_signature");
}
