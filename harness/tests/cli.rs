//! The command line end to end: exit codes, file:line errors for bad matrices, and the cells we
//! could not run (a crashing, silent or hanging client) kept apart from interop failures.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{EXE, starttls_matrix, write};

const SERVER: &str = r#"
[[server]]
id = "x25519"
backend = "openssl"
min_tls = "1.3"
groups = ["x25519"]
"#;

/// A contract-shaped program whose cell behaviour is `body` (it still answers the probe flag
/// with 89, as the contract asks).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let text = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --starttls-matrix-probe-nonsense) exit 89;; --describe) exit 89;; esac; done\n{body}\n"
    );
    let p = write(dir, name, &text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Whether a process still runs (a zombie awaiting its reaper is dead).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Where a run writes its own results by default (relative to its current directory).
const LATEST: &str = "target/starttls-matrix/latest";

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(LATEST).join("report.json")).unwrap()).unwrap()
}

#[test]
fn unknown_key_is_exit_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.toml",
        &format!("{SERVER}dh_bits = 512\n[[client]]\nid = \"o\"\nbuiltin = \"openssl-client\"\n"),
    );
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("m.toml:7:") && r.stderr.contains("dh_bits"), "{}", r.stderr);
    assert!(!dir.path().join("results").exists(), "nothing is written for a bad matrix");
    assert!(!dir.path().join("target").exists(), "nothing is written for a bad matrix");
}

#[test]
fn dh_on_a_tls13_only_profile_is_exit_2_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.toml",
        &format!("{SERVER}dh = \"ffdhe2048\"\n[[client]]\nid = \"o\"\nbuiltin = \"openssl-client\"\n"),
    );
    let r = starttls_matrix(dir.path(), &["list", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("m.toml:7:") && r.stderr.contains("TLS 1.3-only"), "{}", r.stderr);
}

#[test]
fn duplicate_ids_and_missing_files_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m.toml", &format!("{SERVER}{SERVER}[[client]]\nid = \"o\"\nbuiltin = \"openssl-client\"\n"));
    let r = starttls_matrix(dir.path(), &["list", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("m.toml:9:") && r.stderr.contains("duplicate server id"), "{}", r.stderr);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "nope.toml"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("nope.toml"), "{}", r.stderr);
}

#[test]
fn list_prints_cell_ids_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.toml",
        &format!(
            "{SERVER}[[client]]\nid = \"a\"\nbuiltin = \"openssl-client\"\n[[client]]\nid = \"b\"\nbuiltin = \"rustls-client\"\n"
        ),
    );
    let r = starttls_matrix(dir.path(), &["list", "--matrix", "m.toml"]);
    assert_eq!(r.stdout, "a/x25519\nb/x25519\n");
    let r = starttls_matrix(dir.path(), &["list", "--matrix", "m.toml", "--client", "b*"]);
    assert_eq!(r.stdout, "b/x25519\n");
    let r = starttls_matrix(dir.path(), &["list", "--matrix", "m.toml", "--client", "zzz"]);
    assert_eq!(r.code, Some(2));
}

#[test]
fn crashing_and_silent_clients_are_harness_errors_not_failures() {
    let dir = tempfile::tempdir().unwrap();
    let crash = script(dir.path(), "crash.sh", "echo boom >&2; exit 3");
    let silent = script(dir.path(), "silent.sh", "echo 'not a result line'; exit 0");
    let matrix = format!(
        "{SERVER}[[client]]\nid = \"crash\"\nprogram = \"{}\"\nerrors = \"openssl\"\n[[client]]\nid = \"silent\"\nprogram = \"{}\"\nerrors = \"openssl\"\n[[client]]\nid = \"absent\"\nprogram = \"/nonexistent/client\"\nerrors = \"openssl\"\n",
        crash.display(),
        silent.display()
    );
    write(dir.path(), "m.toml", &matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json"]);
    assert_eq!(r.code, Some(3), "harness errors exit 3: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v, report(dir.path()), "stdout and the written report.json agree");
    assert_eq!(v["schema_version"], 1);
    for cell in ["crash/x25519", "silent/x25519"] {
        assert_eq!(v["cells"][cell]["outcome"]["kind"], "harness_error", "{cell}: {}", v["cells"][cell]);
        assert_eq!(v["cells"][cell]["verdict"], "harness_error");
    }
    assert!(v["cells"]["crash/x25519"]["outcome"]["detail"].as_str().unwrap().contains("boom"));
    assert_eq!(v["cells"]["absent/x25519"]["outcome"]["kind"], "skipped", "a stack that is not installed is skipped");
    assert_eq!(v["cells"]["absent/x25519"]["verdict"], "skipped");
}

#[test]
fn a_hanging_client_times_out_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let hang = script(dir.path(), "hang.sh", &format!("sleep 300 & echo $! > {}\nwait", pidfile.display()));
    let matrix = format!(
        "[run]\ncell_timeout = \"1s\"\n{SERVER}[[client]]\nid = \"hang\"\nprogram = \"{}\"\nerrors = \"openssl\"\n[[expect]]\ncell = \"hang/*\"\noutcome = \"timeout\"\nreason = \"it never answers\"\n",
        hang.display()
    );
    write(dir.path(), "m.toml", &matrix);
    let started = Instant::now();
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    assert!(started.elapsed() < Duration::from_secs(8), "the cell timeout bounds the run");
    assert_eq!(r.code, Some(0), "a timeout that is expected is as expected: {}{}", r.stdout, r.stderr);
    let v = report(dir.path());
    assert_eq!(v["cells"]["hang/x25519"]["outcome"]["kind"], "timeout");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(pid), "the client's whole process group is gone");
}

#[test]
fn the_2015_breakage_shows_in_the_table_and_the_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = r#"
[[server]]
id = "dhe512"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "custom-512"

[[server]]
id = "ffdhe2048"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "ffdhe2048"

[[client]]
id = "openssl"
builtin = "openssl-client"

[[expect]]
cell = "openssl/dhe512"
outcome = "failed"
class = "dh_too_small"
reason = "security level 2"
"#;
    write(dir.path(), "m.toml", matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("dh_too_small") && r.stdout.contains("TLSv1.2 DHE-2048"), "{}", r.stdout);
    let md = std::fs::read_to_string(dir.path().join(LATEST).join("README.md")).unwrap();
    assert!(md.contains("| **dhe512** | dh_too_small |"), "{md}");
    assert!(md.contains("| **ffdhe2048** | TLSv1.2 DHE-2048 |"), "{md}");
    let v = report(dir.path());
    let cell = &v["cells"]["openssl/dhe512"];
    assert_eq!(cell["outcome"]["class"], "dh_too_small");
    assert_eq!(cell["outcome"]["side"], "client");
    assert!(cell["outcome"]["client_error"].as_str().unwrap().contains("dh key too small"));
    assert_eq!(cell["verdict"], "expected_failure");
    assert!(v["clients"]["openssl"]["version"].as_str().unwrap().starts_with("OpenSSL"));
}

#[test]
fn an_unexpected_failure_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = "[[server]]\nid = \"dhe512\"\nbackend = \"openssl\"\nmax_tls = \"1.2\"\nciphers = [\"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256\"]\ndh = \"custom-512\"\n[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n";
    write(dir.path(), "m.toml", matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.contains("UNEXPECTED_FAILURE openssl/dhe512"), "{}", r.stdout);
}

#[test]
fn serve_then_probe_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = format!(
        "{SERVER}[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n[[client]]\nid = \"rustls\"\nbuiltin = \"rustls-client\"\n"
    );
    write(dir.path(), "m.toml", &matrix);
    let mut serve = Command::new(EXE)
        .args(["serve", "x25519", "--matrix", "m.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Kept open until the end: serve keeps writing to its stderr.
    let mut serve_stderr = BufReader::new(serve.stderr.take().unwrap());
    serve_stderr.read_line(&mut line).unwrap();
    // "serving profile x25519 on 127.0.0.1:PORT as mx.test; trust /tmp/…/ca.pem"
    let words: Vec<&str> = line.split_whitespace().collect();
    let addr = words[4].to_string();
    let ca = words.last().unwrap().to_string();
    let r = starttls_matrix(
        dir.path(),
        &["probe", &addr, "--servername", "mx.test", "--cafile", &ca, "--matrix", "m.toml", "--format", "json"],
    );
    // SIGTERM, as a user's `kill` or a CI runner would: serve stops and removes its files.
    // SAFETY: our own child, not yet reaped.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let ca_dir = std::path::Path::new(&ca).parent().unwrap().to_path_buf();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(serve_stderr);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "serve ends cleanly on SIGTERM");
    assert!(!ca_dir.exists(), "serve removed its work directory {}", ca_dir.display());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["run"]["mode"], "probe");
    for client in ["openssl", "rustls"] {
        let cell = &v["cells"][format!("{client}/{addr}")];
        assert_eq!(cell["outcome"]["kind"], "connected", "{cell}");
        assert_eq!(cell["outcome"]["protocol"], "TLSv1.3");
    }
    let r = starttls_matrix(dir.path(), &["probe", "192.0.2.1:25", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(2), "non-loopback targets need --allow-remote");
}

#[test]
fn ctrl_c_ends_every_child_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let hang = script(dir.path(), "hang.sh", &format!("sleep 300 & echo $! > {}\nwait", pidfile.display()));
    let matrix = format!(
        "[run]\ncell_timeout = \"60s\"\n{SERVER}[[client]]\nid = \"hang\"\nprogram = \"{}\"\nerrors = \"openssl\"\n",
        hang.display()
    );
    write(dir.path(), "m.toml", &matrix);
    let mut run = Command::new(EXE)
        .args(["run", "--matrix", "m.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the client never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // SAFETY: SIGINT to the child this test started, by its PID.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(pid), "the client's process group was ended on Ctrl-C");
    assert!(!dir.path().join(LATEST).join("report.json").exists(), "an interrupted run writes nothing");
}

#[test]
fn a_stack_whose_toolchain_is_missing_is_skipped_not_broken() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = format!(
        "{SERVER}[[client]]\nid = \"needs\"\nprogram = \"/bin/true\"\nerrors = \"openssl\"\nrequires = [\"no-such-toolchain-xyz\"]\n"
    );
    write(dir.path(), "m.toml", &matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["cells"]["needs/x25519"]["outcome"]["kind"], "skipped");
    assert!(v["cells"]["needs/x25519"]["outcome"]["reason"].as_str().unwrap().contains("no-such-toolchain-xyz"));
}

/// The published table's files in a directory, with their contents.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// On a fresh clone, `run` writes into the ignored target/, never over the committed results/:
/// the repository's matrix, run from another directory, leaves the repository's results/ as
/// it was and writes the run's own results under the current directory.
#[test]
fn a_fresh_users_first_run_changes_no_tracked_file() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let published = snapshot(&repo.join("results"));
    let dir = tempfile::tempdir().unwrap();
    let matrix = repo.join("matrix.toml");
    let r = starttls_matrix(
        dir.path(),
        &["run", "--matrix", matrix.to_str().unwrap(), "--server", "dhe512", "--client", "openssl"],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let v = report(dir.path());
    assert_eq!(v["cells"].as_object().unwrap().len(), 1);
    assert_eq!(v["cells"]["openssl/dhe512"]["verdict"], "expected_failure");
    for f in ["README.md", "index.html"] {
        assert!(dir.path().join(LATEST).join(f).is_file(), "{f}");
    }
    assert!(r.stdout.contains("wrote target/starttls-matrix/latest/report.json"), "it says where: {}", r.stdout);
    assert!(r.stdout.contains("starttls-matrix publish"), "and how to publish: {}", r.stdout);
    assert!(!dir.path().join("results").exists(), "no results/ in the current directory either");
    assert!(snapshot(&repo.join("results")) == published, "the repository's results/ is untouched");
}

/// The table on a machine that has only some of the matrix's stacks: the others are left out
/// of it and named once, after it, with what installs them; the Markdown keeps them.
#[test]
fn stacks_that_are_not_installed_are_folded_out_of_the_terminal_table() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = format!(
        "{SERVER}[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n[[client]]\nid = \"needs\"\nprogram = \"/bin/true\"\nerrors = \"openssl\"\nrequires = [\"no-such-toolchain-xyz\"]\n[[client]]\nid = \"unbuilt\"\nprogram = \"bin/client\"\nerrors = \"openssl\"\nbuild = \"scripts/build-it\"\n"
    );
    write(dir.path(), "m.toml", &matrix);
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let header = r.stdout.lines().find(|l| l.contains("server \\ client")).unwrap_or_default();
    assert!(header.contains("openssl") && !header.contains("needs") && !header.contains("unbuilt"), "{}", r.stdout);
    assert!(
        r.stdout.contains("left out of the table")
            && r.stdout.contains("needs (scripts/install-stacks installs it); unbuilt (run scripts/build-it)"),
        "{}",
        r.stdout
    );
    let md = std::fs::read_to_string(dir.path().join(LATEST).join("README.md")).unwrap();
    assert!(md.contains("needs") && md.contains("unbuilt"), "the Markdown keeps every column: {md}");
}
