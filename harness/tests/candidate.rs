//! `compare --candidate`: a fake candidate (the system's own libssl under another path) is
//! swapped under the stacks that link OpenSSL dynamically, the swap is proven from what each
//! process loaded, and a stack that ignores it (a wrapper that drops LD_LIBRARY_PATH, as
//! programs that clean their environment do) is reported as not swapped, never as the candidate.

use std::path::Path;
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_starttls-matrix");

/// The system's libssl and libcrypto, where Debian keeps them.
const SYSTEM: &str = "/usr/lib/x86_64-linux-gnu";

#[test]
fn the_swap_is_proven_from_the_process_and_a_stack_that_ignored_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cand = dir.path().join("candidate-lib");
    std::fs::create_dir(&cand).unwrap();
    for f in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(Path::new(SYSTEM).join(f), cand.join(f)).unwrap();
    }
    let wrapper = dir.path().join("clears-its-library-path");
    std::fs::write(&wrapper, format!("#!/bin/sh\nunset LD_LIBRARY_PATH\nexec {EXE} client openssl-client \"$@\"\n"))
        .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Postfix, when scripts/install-stacks has extracted it, serves a profile on the candidate too.
    let mta_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/mta/root");
    let postfix = mta_root.join("postfix/usr/sbin/postfix").exists();
    let mut matrix = format!(
        "[[server]]\nid = \"modern\"\nbackend = \"openssl\"\n\
         [[server]]\nid = \"dhe1024\"\nbackend = \"openssl\"\nmax_tls = \"1.2\"\nciphers = [\"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256\"]\ndh = \"oakley-1024\"\n\
         [[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\nlibrary = \"openssl\"\nlinkage = \"dynamic\"\n\
         [[client]]\nid = \"cleaner\"\nprogram = \"{}\"\nerrors = \"openssl\"\nlibrary = \"openssl\"\nlinkage = \"dynamic\"\n\
         [[client]]\nid = \"built-in\"\nbuiltin = \"openssl-client\"\nlibrary = \"openssl\"\nlinkage = \"static\"\n\
         [[client]]\nid = \"rustls\"\nbuiltin = \"rustls-client\"\nlibrary = \"rustls\"\nlinkage = \"built\"\n",
        wrapper.display()
    );
    if postfix {
        matrix.push_str("[[server]]\nid = \"postfix\"\nbackend = \"postfix\"\n");
    }
    std::fs::write(dir.path().join("m.toml"), matrix).unwrap();
    let out = Command::new(EXE)
        .args(["compare", "--matrix", "m.toml", "--format", "json", "--candidate"])
        .arg(format!("openssl={}", cand.display()))
        .env("STARTTLS_MATRIX_MTA_ROOT", &mta_root)
        .current_dir(dir.path())
        .output()
        .unwrap();
    // The same library under another path breaks nothing: exit 0.
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let swapped = r["swapped"].as_array().unwrap();
    let of = |id: &str| swapped.iter().find(|s| s["stack"] == id).unwrap_or_else(|| panic!("{id}: {r}")).clone();

    // The built-in client loaded the candidate's copy, in every process, and the system one as it is.
    let openssl = of("openssl");
    assert_eq!(openssl["candidate"]["kind"], "swapped", "{openssl}");
    let path = openssl["candidate"]["path"].as_str().unwrap();
    assert!(path.starts_with(cand.to_str().unwrap()), "{path}");
    assert!(openssl["candidate"]["version"].as_str().unwrap().starts_with("OpenSSL 3."), "{openssl}");
    assert!(openssl["system"].as_str().unwrap().contains("x86_64-linux-gnu/libssl.so.3"), "{openssl}");

    // The wrapper dropped LD_LIBRARY_PATH: its processes loaded the system's copy, and it says so.
    let cleaner = of("cleaner");
    assert_eq!(cleaner["candidate"]["kind"], "ignored", "{cleaner}");
    assert!(cleaner["candidate"]["other"].as_str().unwrap().contains("x86_64-linux-gnu/libssl.so.3"), "{cleaner}");

    // A statically linked stack is listed with the reason, and a stack of another library not at all.
    let not: Vec<&serde_json::Value> = r["not_swapped"].as_array().unwrap().iter().collect();
    assert!(
        not.iter().any(|n| n["what"] == "built-in" && n["reason"].as_str().unwrap().contains("statically")),
        "{not:?}"
    );
    assert!(!not.iter().any(|n| n["what"] == "rustls") && !swapped.iter().any(|s| s["stack"] == "rustls"));

    assert_eq!(r["diff"]["newly_broken"].as_array().unwrap().len(), 0, "{}", r["diff"]);
    if !postfix {
        eprintln!("Postfix is not extracted (scripts/install-stacks): its twin on the candidate was not run");
        // Both sides ran every cell of the swapped stacks: 2 stacks × 2 profiles × 2.
        assert_eq!(r["cells"], 8);
        return;
    }
    // 2 stacks × 3 profiles × 2, and the 4 client programs against Postfix's twin and (the 2
    // not counted yet) against Postfix: 12 + 4 + 2.
    assert_eq!(r["cells"], 18);
    // Postfix's daemons mapped the candidate's copy: read from /proc/PID/maps, not assumed.
    let served = &r["servers"][0];
    assert_eq!(served["profile"], "postfix");
    assert_eq!(served["swapped"], true, "{served}");
    assert!(served["candidate"].as_str().unwrap().contains(cand.to_str().unwrap()), "{served}");
    assert!(served["system"].as_str().unwrap().contains("x86_64-linux-gnu/libssl.so.3"), "{served}");
    assert_eq!(r["servers_diff"]["newly_broken"].as_array().unwrap().len(), 0, "{}", r["servers_diff"]);
}

#[test]
fn a_candidate_directory_without_the_library_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args(["compare", "--candidate"])
        .arg(format!("openssl={}", dir.path().display()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--matrix", "../matrix.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no libssl.so.3") && err.contains("scripts/build-candidate"), "{err}");
}
