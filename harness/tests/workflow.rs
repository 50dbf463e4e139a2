//! The maintainer's workflow end to end: diff two runs, compare a policy variant, stale
//! expectations, baselines, recorded expectations, JUnit, shards and merge, repeats.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod common;

use common::{starttls_matrix, write};

/// Where a run writes its report by default (relative to its current directory).
const LATEST_REPORT: &str = "target/starttls-matrix/latest/report.json";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The default matrix's server profiles, without its clients and expectations.
fn default_servers() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml")).unwrap();
    let end = text.find("[[client]]").unwrap();
    text[..end].replace("[run]", "[run]\n# from matrix.toml").to_string()
}

fn keys(v: &serde_json::Value, field: &str) -> Vec<String> {
    v[field].as_array().unwrap().iter().map(|c| c["cell"].as_str().unwrap().to_string()).collect()
}

#[test]
fn raising_the_security_level_breaks_exactly_the_1024_and_1536_bit_dh_and_the_1024_bit_rsa_servers() {
    let dir = tempfile::tempdir().unwrap();
    let servers = default_servers();
    write(
        dir.path(),
        "old.toml",
        &format!(
            "{servers}[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\nargs = [\"--seclevel\", \"1\"]\n"
        ),
    );
    write(dir.path(), "new.toml", &format!("{servers}[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n"));
    for (m, out) in [("old.toml", "old"), ("new.toml", "new")] {
        let r = starttls_matrix(dir.path(), &["run", "--matrix", m, "--out", out, "--format", "json"]);
        assert!(matches!(r.code, Some(0 | 1)), "{}", r.stderr);
    }
    let r = starttls_matrix(dir.path(), &["diff", "old/report.json", "new/report.json", "--format", "json"]);
    assert_eq!(r.code, Some(1), "something broke: exit 1");
    let d: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(keys(&d, "newly_broken"), ["openssl/cert-rsa1024", "openssl/dhe1024", "openssl/dhe1536"]);
    assert!(keys(&d, "newly_fixed").is_empty() && keys(&d, "changed").is_empty());
    assert_eq!(d["newly_broken"][0]["new"]["class"], "cert_key_too_small");
    assert_eq!(d["newly_broken"][1]["new"]["class"], "dh_too_small");
    let r = starttls_matrix(dir.path(), &["diff", "new/report.json", "old/report.json", "--format", "md"]);
    assert_eq!(r.code, Some(0), "the other way round nothing breaks");
    assert!(r.stdout.contains("✓ dh_too_small → TLSv1.2 DHE-1024"), "{}", r.stdout);
    let r = starttls_matrix(dir.path(), &["diff", "old/report.json", "new/report.json"]);
    assert!(
        r.stdout.find("newly broken").is_some() && r.stdout.contains("✗ TLSv1.2 DHE-1536 → dh_too_small"),
        "{}",
        r.stdout
    );
}

#[test]
fn compare_runs_a_variant_made_on_the_spot() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml");
    let r = starttls_matrix(
        dir.path(),
        &[
            "compare",
            "--matrix",
            matrix.to_str().unwrap(),
            "--client",
            "openssl",
            "--with-arg=--seclevel",
            "--with-arg=3",
            "--format",
            "json",
            "--server",
            "*2048*",
        ],
    );
    assert_eq!(r.code, Some(1), "level 3 breaks 2048-bit DH: {}", r.stderr);
    let d: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let broken = keys(&d, "newly_broken");
    assert!(
        broken.contains(&"openssl/ffdhe2048".to_string()) && broken.contains(&"openssl/dhe2048-custom".to_string()),
        "{broken:?}"
    );
    let r = starttls_matrix(
        dir.path(),
        &[
            "compare",
            "--matrix",
            matrix.to_str().unwrap(),
            "--client",
            "openssl",
            "--variant",
            "openssl@seclevel1",
            "--server",
            "dhe1*",
            "--format",
            "json",
        ],
    );
    assert_eq!(r.code, Some(0));
    let d: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(keys(&d, "newly_fixed"), ["openssl/dhe1024", "openssl/dhe1536"]);
}

const ONE_SERVER: &str = "[[server]]\nid = \"ffdhe2048\"\nbackend = \"openssl\"\nmax_tls = \"1.2\"\nciphers = [\"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256\"]\ndh = \"ffdhe2048\"\n\n[[server]]\nid = \"dhe1024\"\nbackend = \"openssl\"\nmax_tls = \"1.2\"\nciphers = [\"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256\"]\ndh = \"oakley-1024\"\n\n[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n";

#[test]
fn an_unexpected_success_fails_the_run_and_stale_entries_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = format!(
        "{ONE_SERVER}\n[[expect]]\ncell = \"openssl/*\"\noutcome = \"failed\"\nclass = \"dh_too_small\"\nreason = \"both, we thought\"\n\n[[expect]]\ncell = \"openssl/dhe1024\"\noutcome = \"failed\"\nclass = \"no_shared_cipher\"\nreason = \"shadowed by the entry above\"\n\n[[expect]]\ncell = \"gnutls/*\"\noutcome = \"connected\"\nreason = \"a stack this matrix does not have\"\n"
    );
    write(dir.path(), "m.toml", &matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json"]);
    assert_eq!(r.code, Some(1), "an unexpected success fails the run");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["cells"]["openssl/ffdhe2048"]["verdict"], "unexpected_success");
    assert_eq!(v["cells"]["openssl/dhe1024"]["verdict"], "expected_failure");
    let r = starttls_matrix(
        dir.path(),
        &["expectations", "--check", "--matrix", "m.toml", "--report", LATEST_REPORT, "--format", "json"],
    );
    assert_eq!(r.code, Some(1));
    let stale: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let problems: Vec<(String, String)> = stale
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["cell"].as_str().unwrap().to_string(), s["problem"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        problems,
        [
            ("openssl/*".to_string(), "differs".to_string()),
            ("openssl/dhe1024".to_string(), "shadowed".to_string()),
            ("gnutls/*".to_string(), "matches_no_cell".to_string())
        ]
    );
    assert_eq!(stale[0]["cells"][0]["cell"], "openssl/ffdhe2048");
    assert!(stale[2]["at"].as_str().unwrap().starts_with("m.toml:"), "{}", stale[2]);
    // Without --report it runs the matrix itself.
    let r = starttls_matrix(dir.path(), &["expectations", "--check", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("matches no cell"), "{}", r.stdout);
}

#[test]
fn recorded_expectations_and_baselines_make_a_green_gate() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m.toml", ONE_SERVER);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--out", "first"]);
    assert_eq!(r.code, Some(1), "dhe1024 fails and nothing says it should");
    // A baseline of that run makes the same run green.
    let r = starttls_matrix(
        dir.path(),
        &[
            "run",
            "--matrix",
            "m.toml",
            "--out",
            "second",
            "--baseline",
            "first/report.json",
            "--junit",
            "second/junit.xml",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    let v = json(&dir.path().join("second/report.json"));
    assert_eq!(v["cells"]["openssl/dhe1024"]["verdict"], "expected_failure");
    assert!(v["cells"]["openssl/dhe1024"]["expected"]["reason"].as_str().unwrap().starts_with("baseline run "));
    let xml = std::fs::read_to_string(dir.path().join("second/junit.xml")).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert!(xml.contains("name=\"openssl/dhe1024\"") && !xml.contains("<failure"), "{xml}");
    // Expectations recorded from the first run, kept in their own file, do the same.
    let r = starttls_matrix(dir.path(), &["expectations", "--from", "first/report.json", "-o", "exp.toml"]);
    assert_eq!(r.code, Some(0));
    let exp = std::fs::read_to_string(dir.path().join("exp.toml")).unwrap();
    assert!(exp.contains("cell = \"openssl/dhe1024\"") && exp.contains("reason = \"recorded from run "), "{exp}");
    assert!(!exp.contains("openssl/ffdhe2048"), "connected cells need no entry");
    write(dir.path(), "m2.toml", &format!("[run]\nexpectations = [\"exp.toml\"]\n{ONE_SERVER}"));
    let r =
        starttls_matrix(dir.path(), &["run", "--matrix", "m2.toml", "--out", "third", "--junit", "third/junit.xml"]);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    // And a failing gate carries both sides' words into JUnit.
    let r =
        starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--out", "fourth", "--junit", "fourth/junit.xml"]);
    assert_eq!(r.code, Some(1));
    let xml = std::fs::read_to_string(dir.path().join("fourth/junit.xml")).unwrap();
    assert!(xml.contains("<failure") && xml.contains("dh key too small") && xml.contains("server:"), "{xml}");
}

#[test]
fn shards_merge_back_into_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml");
    let m = matrix.to_str().unwrap();
    let r = starttls_matrix(dir.path(), &["list", "--matrix", m, "--format", "json"]);
    let all: Vec<String> = serde_json::from_str(&r.stdout).unwrap();
    let mut shards = Vec::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let out = format!("s{i}");
        let r = starttls_matrix(
            dir.path(),
            &["run", "--matrix", m, "--client", "rustls", "--client", "openssl", "--shard", &shard, "--out", &out],
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        shards.push(format!("{out}/report.json"));
    }
    let mut args = vec!["merge", "-o", "merged.json", "--format", "json"];
    args.extend(shards.iter().map(String::as_str));
    let r = starttls_matrix(dir.path(), &args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let merged = json(&dir.path().join("merged.json"));
    let mut cells: Vec<String> = merged["cells"].as_object().unwrap().keys().cloned().collect();
    let mut expected: Vec<String> =
        all.into_iter().filter(|c| c.starts_with("openssl/") || c.starts_with("rustls/")).collect();
    cells.sort();
    expected.sort();
    assert_eq!(cells, expected);
    assert_eq!(merged["run"]["merged_from"].as_array().unwrap().len(), 3);
    // The same shard twice overlaps; a report of another matrix is refused.
    let r = starttls_matrix(dir.path(), &["merge", "-o", "x.json", &shards[0], &shards[0]]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("is in both"), "{}", r.stderr);
    write(dir.path(), "other.toml", ONE_SERVER);
    starttls_matrix(dir.path(), &["run", "--matrix", "other.toml", "--out", "other"]);
    let r = starttls_matrix(dir.path(), &["merge", "-o", "x.json", &shards[0], "other/report.json"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("different matrices"), "{}", r.stderr);
}

#[test]
fn a_cell_that_changes_between_repeats_is_flaky_not_retried_into_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count");
    // Connects on odd runs, fails on even ones (it still answers the contract's probe).
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --starttls-matrix-probe-nonsense|--describe) exit 89;; esac; done\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\nif [ $((n % 2)) -eq 1 ]; then echo 'RESULT {{\"status\":\"ok\",\"protocol\":\"TLSv1.3\",\"cipher\":\"x\",\"group\":\"x25519\",\"dh_bits\":null}}'; else echo 'RESULT {{\"status\":\"error\",\"stage\":\"handshake\",\"error\":\"dh key too small\"}}'; fi\n",
        c = counter.display()
    );
    let p = write(dir.path(), "flip.sh", &script);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let matrix = format!(
        "[[server]]\nid = \"s\"\nbackend = \"openssl\"\n[[client]]\nid = \"flip\"\nprogram = \"{}\"\nerrors = \"openssl\"\n",
        p.display()
    );
    write(dir.path(), "m.toml", &matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--repeat", "3", "--format", "json"]);
    assert_eq!(r.code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let cell = &v["cells"]["flip/s"];
    assert_eq!(cell["verdict"], "flaky");
    let kinds: Vec<&str> = cell["repeats"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["connected", "failed", "connected"]);
    assert_eq!(v["run"]["repeat"], 3);
}

/// `m2.toml` takes 1024-bit DH (security level 1) and `m.toml` does not: run one after the
/// other, `dhe1024` breaks.
fn two_policies(dir: &Path) {
    write(dir, "m.toml", ONE_SERVER);
    write(
        dir,
        "m2.toml",
        &ONE_SERVER.replace(
            "builtin = \"openssl-client\"\n",
            "builtin = \"openssl-client\"\nargs = [\"--seclevel\", \"1\"]\n",
        ),
    );
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_second_run_shows_what_changed_since_the_first_in_its_own_history() {
    let dir = tempfile::tempdir().unwrap();
    two_policies(dir.path());
    starttls_matrix(dir.path(), &["run", "--matrix", "m2.toml"]);
    starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    let history = dir.path().join("target/starttls-matrix/history");
    assert_eq!(count(&history), 2, "each whole run is kept, beside latest/");
    let page = std::fs::read_to_string(dir.path().join("target/starttls-matrix/latest/index.html")).unwrap();
    assert!(page.contains("<h2>Since run"), "the page compares with the previous run");
    assert!(page.contains("data-change=\"broken\"") && page.contains("1 newly broken"), "dhe1024 broke at level 2");
    assert!(!dir.path().join("results").exists(), "a run publishes nothing");
    // A filtered run is not a whole run: it leaves the history alone.
    starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--server", "ffdhe*"]);
    assert_eq!(count(&history), 2);
}

#[test]
fn publish_makes_a_run_the_published_table_and_compares_with_the_previous_publication() {
    let dir = tempfile::tempdir().unwrap();
    two_policies(dir.path());
    let r = starttls_matrix(dir.path(), &["publish"]);
    assert_eq!(r.code, Some(2), "nothing to publish before a run");
    assert!(r.stderr.contains("starttls-matrix run"), "{}", r.stderr);
    starttls_matrix(dir.path(), &["run", "--matrix", "m2.toml"]);
    let r = starttls_matrix(dir.path(), &["publish"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("the first publication"), "{}", r.stdout);
    for f in ["report.json", "README.md", "index.html"] {
        assert!(dir.path().join("results").join(f).is_file(), "results/{f}");
    }
    assert_eq!(json(&dir.path().join("results/report.json")), json(&dir.path().join(LATEST_REPORT)));
    assert_eq!(count(&dir.path().join("results/history")), 1);
    assert!(!std::fs::read_to_string(dir.path().join("results/index.html")).unwrap().contains("<h2>Since run"));
    // Runs in between do not count: the published page compares with the previous publication.
    starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    let r = starttls_matrix(dir.path(), &["publish", LATEST_REPORT, "--to", "results"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("since the previous publication") && r.stdout.contains("1 newly broken"), "{}", r.stdout);
    let page = std::fs::read_to_string(dir.path().join("results/index.html")).unwrap();
    assert!(
        page.contains("<h2>Since run") && page.contains("1 newly broken"),
        "dhe1024 broke since the last publication"
    );
    assert_eq!(count(&dir.path().join("results/history")), 2);
    // Published again, the same run is still compared with the one before it.
    let r = starttls_matrix(dir.path(), &["publish"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&dir.path().join("results/history")), 2);
    assert!(std::fs::read_to_string(dir.path().join("results/index.html")).unwrap().contains("1 newly broken"));
}

#[test]
fn a_run_that_skipped_stacks_is_not_published_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = format!(
        "{ONE_SERVER}[[client]]\nid = \"needs\"\nprogram = \"/bin/true\"\nerrors = \"openssl\"\nrequires = [\"no-such-toolchain-xyz\"]\n"
    );
    write(dir.path(), "m.toml", &matrix);
    // `--out results` beside the matrix is the published table: refused before anything runs.
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--out", "results"]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing was run"), "{}", r.stderr);
    assert!(!dir.path().join("results").exists() && !dir.path().join("target").exists());
    // A run writes its own results; publishing them is refused, naming the stack and the fix.
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(1), "dhe1024 fails, nothing says it should: {}", r.stderr);
    let r = starttls_matrix(dir.path(), &["publish"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    for words in ["1 client stack was skipped", "needs (scripts/install-stacks installs it)", "--allow-skipped"] {
        assert!(r.stderr.contains(words), "{words:?} in {}", r.stderr);
    }
    assert!(!dir.path().join("results").exists(), "results/ was left as it was");
    // Deliberately, it can be.
    let r = starttls_matrix(dir.path(), &["publish", "--allow-skipped"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("published with needs skipped"), "{}", r.stdout);
    assert_eq!(json(&dir.path().join("results/report.json"))["cells"]["needs/dhe1024"]["verdict"], "skipped");
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--out", "results", "--allow-skipped"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stdout.contains("(the published table)"), "{}", r.stdout);
    assert_eq!(count(&dir.path().join("results/history")), 2);
    // A shard is not a table: merge first.
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--shard", "1/2", "--out", "shard"]);
    assert!(matches!(r.code, Some(0 | 1)), "{}", r.stderr);
    let r = starttls_matrix(dir.path(), &["publish", "shard/report.json", "--allow-skipped"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("merge the shards first"), "{}", r.stderr);
}
