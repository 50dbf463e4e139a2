//! Forced rare encodings and rates, end to end: a forced profile's records say what the server
//! forced and after how many tries while a correct client connects; an ordinary rustls profile's
//! records say what it kept out; `--repeat` gives every cell a rate in every format.

mod common;

use common::{repo, starttls_matrix};

fn report(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_forced_profile_forces_its_case_every_handshake_and_the_others_avoid_it() {
    let out = tempfile::tempdir().unwrap();
    let run = starttls_matrix(
        &repo(),
        &[
            "run",
            "--server",
            "rare-tls13-p256-secret-leading-zero",
            "--server",
            "rare-tls12-dhe-public-leading-zero-minimal",
            "--server",
            "ffdhe2048-tls13",
            "--client",
            "openssl",
            "--client",
            "rustls-ffdhe",
            "--repeat",
            "3",
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let r = report(out.path());
    let choices = |cell: &str| -> Vec<serde_json::Value> {
        r["cells"][cell]["server_log"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rec| rec["encodings"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    // Every handshake of the forced cells: the case forced, after at least one try.
    for (cell, case) in [
        ("openssl/rare-tls13-p256-secret-leading-zero", "secret-leading-zero"),
        ("rustls-ffdhe/rare-tls13-p256-secret-leading-zero", "secret-leading-zero"),
        ("openssl/rare-tls12-dhe-public-leading-zero-minimal", "public-leading-zero-minimal"),
        ("rustls-ffdhe/rare-tls12-dhe-public-leading-zero-minimal", "public-leading-zero-minimal"),
    ] {
        assert_eq!(r["cells"][cell]["outcome"]["kind"], "connected", "{cell}");
        let forced: Vec<serde_json::Value> = choices(cell).into_iter().filter(|c| c["forced"] == case).collect();
        assert_eq!(forced.len(), 3, "{cell}: one forced choice a handshake: {:?}", choices(cell));
        assert!(forced.iter().all(|c| c["tries"].as_u64().unwrap() >= 1));
    }
    // An ordinary rustls profile keeps the secret's and the share's leading zero out.
    let avoided = choices("openssl/ffdhe2048-tls13");
    assert!(
        avoided.iter().any(|c| c["avoided"].as_array().unwrap().iter().any(|a| a == "secret-leading-zero")),
        "{avoided:?}"
    );
    assert!(avoided.iter().all(|c| c["forced"].is_null()));
    // Rates: every cell ran three times; the Markdown and the terminal say so.
    assert_eq!(r["cells"]["openssl/ffdhe2048-tls13"]["rate"]["runs"], 3);
    assert_eq!(r["cells"]["openssl/ffdhe2048-tls13"]["rate"]["failed"], 0);
    let md = std::fs::read_to_string(out.path().join("README.md")).unwrap();
    assert!(md.contains("## Rates over 3 runs a cell"), "{md}");
    assert!(md.contains("0/3 failed (95 %: 0–70.8 %)"), "{md}");
}
