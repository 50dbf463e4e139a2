//! The configuration fuzzer end to end: the shipped policies hold, a deliberately wrong policy
//! is found and shrunk to the field that is wrong, findings replay, and a seed reruns the same.

use std::path::Path;
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_starttls-matrix");

fn fuzz(dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let matrix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml");
    let out = Command::new(EXE)
        .args(["fuzz", "--matrix", matrix.to_str().unwrap(), "--format", "json", "--out", "fuzz"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let v =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

#[test]
fn the_shipped_policies_hold_for_the_built_in_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let (code, v) = fuzz(dir.path(), &["--cases", "40", "--seed", "1", "--client", "openssl", "--client", "rustls"]);
    let findings: Vec<&serde_json::Value> =
        v.as_array().unwrap().iter().flat_map(|s| s["findings"].as_array().unwrap()).collect();
    assert!(findings.is_empty(), "{findings:#?}");
    assert_eq!(code, Some(0));
    for s in v.as_array().unwrap() {
        assert_eq!(s["cases"], 40);
        assert!(s["agreed"].as_u64().unwrap() > 20, "most cases are judged: {s}");
    }
}

#[test]
fn a_wrong_policy_is_found_shrunk_to_its_field_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openssl-wrong-dh-min.toml");
    let policy = format!("openssl={}", fixture.display());
    let args = ["--client", "openssl", "--policy", policy.as_str(), "--cases", "150", "--seed", "3"];
    let (code, first) = fuzz(dir.path(), &args);
    assert_eq!(code, Some(1), "findings exit 1");
    let findings = first[0]["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{first:#}");
    let f = &findings[0];
    assert_eq!(f["diagnosis"]["kind"], "policy_wrong");
    assert_eq!(f["diagnosis"]["field"], "dh_min_bits", "{f:#}");
    assert_eq!(f["observed"]["class"], "dh_too_small");
    let dh = f["profile"]["dh"].as_str().unwrap();
    assert!(["oakley-1024", "modp-1536"].contains(&dh), "shrunk to a group the wrong field lets through: {dh}");
    assert_eq!(f["profile"]["ciphers"].as_array().unwrap().len(), 1, "shrunk to one suite: {f:#}");

    // The replay is a matrix that shows the same disagreement.
    let replay = dir.path().join(format!("fuzz/{}.toml", f["id"].as_str().unwrap()));
    let out = Command::new(EXE)
        .args(["run", "--matrix", replay.to_str().unwrap(), "--out", "replay"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dh_too_small"));

    // The same seed generates the same cases and the same findings.
    let (_, again) = fuzz(dir.path(), &args);
    assert_eq!(first, again);
}
