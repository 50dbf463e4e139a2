//! Batch mode end to end: a `batch = true` stack runs its cells in one worker per run, which is
//! gone (by PID) when the run ends or is interrupted; a late answer is a timeout and is
//! cancelled; a dying worker is a harness error, restarted a bounded number of times; a worker
//! that cannot start leaves the cells to one-shot runs. With a JDK here, java-jsse in batch mode
//! gives the one-shot outcomes, and never resumes a TLS session between cells.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{EXE, starttls_matrix, write};

const SERVERS: &str = r#"
[[server]]
id = "x25519"
backend = "openssl"
min_tls = "1.3"
groups = ["x25519"]

[[server]]
id = "p256"
backend = "openssl"
min_tls = "1.3"
groups = ["secp256r1"]

[[server]]
id = "ffdhe2048"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "ffdhe2048"

[[server]]
id = "rsa-kx"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_RSA_WITH_AES_128_GCM_SHA256"]

[[server]]
id = "x448"
backend = "openssl"
min_tls = "1.3"
groups = ["x448"]
"#;

/// A fake contract program with a batch mode: it answers the probe flags with 89, records each
/// worker's PID in `workers.pid` and each request line in `requests.log`, and handles a RUN with
/// `on_run` (shell; `$2` is the request id, `$ok` a successful answer's JSON). Run one-shot, it
/// prints a RESULT that connected.
fn fake_worker(dir: &Path, on_run: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        r#"#!/bin/sh
set -f
for a in "$@"; do case "$a" in --starttls-matrix-probe-nonsense|--describe) exit 89;; esac; done
result='RESULT {{"status":"ok","protocol":"TLSv1.3","cipher":"TLS_AES_128_GCM_SHA256","group":"x25519","dh_bits":null}}'
if [ "$1" = "--batch" ]; then
  echo $$ >> {d}/workers.pid
  ok='{{"exit":0,"stdout":"RESULT {{\"status\":\"ok\",\"protocol\":\"TLSv1.3\",\"cipher\":\"TLS_AES_128_GCM_SHA256\",\"group\":\"x25519\",\"dh_bits\":null}}\n","stderr":""}}'
  echo READY
  while IFS= read -r line; do
    echo "$line" >> {d}/requests.log
    set -- $line
    if [ "$1" = RUN ]; then
      {on_run}
    fi
  done
  exit 0
fi
echo "$result"
"#
    );
    let p = write(dir, "fake-worker", &text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn matrix(dir: &Path, program: &Path, run: &str) -> PathBuf {
    let text = format!(
        "[run]\n{run}\n{SERVERS}\n[[client]]\nid = \"fake\"\nprogram = \"{}\"\nerrors = \"openssl\"\nbatch = true\n",
        program.display()
    );
    write(dir, "m.toml", &text)
}

/// Whether a process still runs (a zombie awaiting its reaper is dead).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("workers.pid"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn report(dir: &Path) -> serde_json::Value {
    // A run's own results (not the published results/).
    serde_json::from_str(&std::fs::read_to_string(dir.join("target/starttls-matrix/latest/report.json")).unwrap())
        .unwrap()
}

fn kinds(v: &serde_json::Value) -> Vec<(String, String)> {
    let cells = v["cells"].as_object().unwrap();
    cells.iter().map(|(id, c)| (id.clone(), c["outcome"]["kind"].as_str().unwrap().to_string())).collect()
}

#[test]
fn one_worker_runs_every_cell_and_is_gone_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_worker(dir.path(), r#"printf '%s\n' "ANSWER $2 $ok""#);
    matrix(dir.path(), &program, "");
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v = report(dir.path());
    assert!(kinds(&v).iter().all(|(_, k)| k == "connected"), "{:?}", kinds(&v));
    let workers = pids(dir.path());
    assert_eq!(workers.len(), 1, "one worker for the whole run: {workers:?}");
    let log = std::fs::read_to_string(dir.path().join("requests.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.starts_with("RUN ")).count(), 5, "{log}");
    let first = log.lines().next().unwrap();
    assert!(first.contains(r#"["--connect","127.0.0.1:"#) && first.contains(r#""--cafile","#), "{first}");
    assert!(!alive(workers[0]), "the worker {} must be gone after the run", workers[0]);
}

#[test]
fn a_late_answer_is_a_timeout_and_the_request_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    // It answers every request but the third, which it leaves unanswered.
    let program =
        fake_worker(dir.path(), r#"n=$((${n:-0}+1)); if [ "$n" != 3 ]; then printf '%s\n' "ANSWER $2 $ok"; fi"#);
    matrix(dir.path(), &program, "cell_timeout = \"1s\"");
    let started = Instant::now();
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json", "--jobs", "1"]);
    assert!(started.elapsed() < Duration::from_secs(30), "the cell timeout bounds the wait");
    assert_eq!(r.code, Some(1), "one unexpected timeout: {}", r.stderr);
    let v = report(dir.path());
    assert_eq!(kinds(&v).iter().filter(|(_, k)| k == "timeout").count(), 1, "{:?}", kinds(&v));
    assert_eq!(kinds(&v).iter().filter(|(_, k)| k == "connected").count(), 4, "the worker serves on: {:?}", kinds(&v));
    let log = std::fs::read_to_string(dir.path().join("requests.log")).unwrap();
    let third = log.lines().filter(|l| l.starts_with("RUN ")).nth(2).unwrap().split(' ').nth(1).unwrap().to_string();
    assert!(log.lines().any(|l| l == format!("CANCEL {third}")), "the late request is cancelled: {log}");
    let workers = pids(dir.path());
    assert_eq!(workers.len(), 1, "a timeout does not restart the worker: {workers:?}");
    assert!(!alive(workers[0]));
}

#[test]
fn a_dying_worker_is_a_harness_error_and_is_restarted_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_worker(dir.path(), "echo 'the worker gives up' >&2; exit 3");
    matrix(dir.path(), &program, "");
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json", "--jobs", "1"]);
    assert_eq!(r.code, Some(3), "harness errors exit 3: {}", r.stderr);
    let v = report(dir.path());
    let cells = v["cells"].as_object().unwrap();
    let died: Vec<&serde_json::Value> =
        cells.values().filter(|c| c["outcome"]["kind"] == "harness_error").map(|c| &c["outcome"]).collect();
    assert_eq!(died.len(), harness::batch::MAX_DEATHS as usize, "{cells:?}");
    for o in &died {
        let detail = o["detail"].as_str().unwrap();
        assert!(detail.contains("batch worker") && detail.contains("died"), "{detail}");
        assert!(detail.contains("exit status: 3") && detail.contains("the worker gives up"), "{detail}");
    }
    // Then the stack's remaining cells run one process each, as without `batch`.
    let connected = cells.values().filter(|c| c["outcome"]["kind"] == "connected").count();
    assert_eq!(connected, 5 - harness::batch::MAX_DEATHS as usize, "{cells:?}");
    let workers = pids(dir.path());
    assert_eq!(workers.len(), harness::batch::MAX_DEATHS as usize, "{workers:?}");
    assert!(workers.iter().all(|&p| !alive(p)), "every worker is reaped: {workers:?}");
}

#[test]
fn a_program_without_a_batch_mode_runs_one_shot() {
    let dir = tempfile::tempdir().unwrap();
    let text = "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --batch|--starttls-matrix-probe-nonsense|--describe) exit 89;; esac; done\necho 'RESULT {\"status\":\"ok\",\"protocol\":\"TLSv1.3\",\"cipher\":\"TLS_AES_128_GCM_SHA256\",\"group\":\"x25519\",\"dh_bits\":null}'\n";
    let program = write(dir.path(), "plain", text);
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    matrix(dir.path(), &program, "");
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json"]);
    assert_eq!(r.code, Some(0), "a worker that cannot start is no interop failure: {}", r.stderr);
    assert!(kinds(&report(dir.path())).iter().all(|(_, k)| k == "connected"));
}

#[test]
fn ctrl_c_ends_the_batch_worker() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_worker(dir.path(), ":");
    matrix(dir.path(), &program, "cell_timeout = \"60s\"");
    let mut run = Command::new(EXE)
        .args(["run", "--matrix", "m.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(dir.path().join("requests.log")).is_ok_and(|l| l.contains("RUN ")) {
        assert!(Instant::now() < deadline, "the worker never got a request");
        std::thread::sleep(Duration::from_millis(50));
    }
    let worker = pids(dir.path())[0];
    // SAFETY: SIGINT to the child this test started, by its PID.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(worker), "the worker {worker} was ended on Ctrl-C");
}

// ─── java-jsse ──────────────────────────────────────────────────────────────────────────────

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// The java-jsse wrapper, or `None` (and a note) where there is no JDK.
fn java_client() -> Option<PathBuf> {
    if !(on_path("java") && on_path("javac")) {
        eprintln!("SKIPPED: java and javac are not installed (the java-jsse stack needs a JDK)");
        return None;
    }
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/java/java-client").canonicalize().unwrap())
}

/// The java-jsse wrapper behind one that records each batch worker's PID (`exec` keeps it).
fn recording_java_client(dir: &Path, java: &Path) -> PathBuf {
    let text = format!(
        "#!/bin/sh\n[ \"$1\" = --batch ] && echo $$ >> {}/workers.pid\nexec {} \"$@\"\n",
        dir.display(),
        java.display()
    );
    let p = write(dir, "java-recording", &text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn java_batch_mode_gives_the_one_shot_outcomes_and_leaves_no_worker() {
    let Some(java) = java_client() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = recording_java_client(dir.path(), &java);
    let servers = r#"
[[server]]
id = "ffdhe2048"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "ffdhe2048"

[[server]]
id = "dhe512"
backend = "openssl"
max_tls = "1.2"
ciphers = ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
dh = "custom-512"

[[server]]
id = "x25519-tls13"
backend = "openssl"
min_tls = "1.3"
groups = ["x25519"]

[[server]]
id = "tls10-only"
backend = "openssl"
min_tls = "1.0"
max_tls = "1.0"
ciphers = ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]

[[server]]
id = "starttls-454"
backend = "openssl"
fault = "starttls-454"

[[server]]
id = "stall"
backend = "openssl"
fault = "stall"
"#;
    let p = program.display();
    let clients = format!(
        "[[client]]\nid = \"oneshot\"\nprogram = \"{p}\"\nerrors = \"java\"\n[[client]]\nid = \"batch\"\nprogram = \"{p}\"\nerrors = \"java\"\nbatch = true\n"
    );
    write(dir.path(), "m.toml", &format!("{servers}{clients}"));
    let r = starttls_matrix(dir.path(), &["run", "--matrix", "m.toml", "--format", "json"]);
    assert_ne!(r.code, Some(3), "no harness error: {}", r.stdout);
    let v = report(dir.path());
    for server in ["ffdhe2048", "dhe512", "x25519-tls13", "tls10-only", "starttls-454", "stall"] {
        let (one, batch) = (&v["cells"][format!("oneshot/{server}")], &v["cells"][format!("batch/{server}")]);
        for field in ["kind", "class", "side", "stage", "protocol", "cipher", "client_error", "server_error"] {
            assert_eq!(one["outcome"][field], batch["outcome"][field], "{server}: {field}\n{one}\n{batch}");
        }
    }
    assert_eq!(v["cells"]["batch/ffdhe2048"]["outcome"]["kind"], "connected", "{}", v["cells"]["batch/ffdhe2048"]);
    assert_eq!(v["cells"]["batch/dhe512"]["outcome"]["class"], "dh_too_small");
    assert_eq!(v["cells"]["batch/stall"]["outcome"]["kind"], "timeout");
    let workers = pids(dir.path());
    assert_eq!(workers.len(), 1, "one JVM for the batch stack's cells: {workers:?}");
    assert!(!alive(workers[0]), "the worker {} must be gone after the run", workers[0]);
}

// ─── Session resumption ─────────────────────────────────────────────────────────────────────

/// One line, byte by byte (nothing read past it: STARTTLS follows).
fn line(r: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8];
    while r.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}

/// An SMTP server with STARTTLS on 127.0.0.1 whose OpenSSL keeps sessions and issues tickets
/// (`max` is the highest TLS version) and records, per connection, whether it was resumed.
fn resuming_server(pki: &servers::TestPki, max: openssl::ssl::SslVersion) -> (String, Arc<Mutex<Vec<bool>>>) {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_certificate_chain_file(pki.cert(servers::CertKind::Rsa)).unwrap();
    acceptor.set_private_key_file(pki.key(servers::CertKind::Rsa), SslFiletype::PEM).unwrap();
    acceptor.set_max_proto_version(Some(max)).unwrap();
    acceptor.set_session_id_context(b"batch-test").unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let log = resumed.clone();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().take(16).flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = tcp.write_all(b"220 mx.test ESMTP\r\n");
            line(&mut tcp);
            let _ = tcp.write_all(b"250-mx.test\r\n250 STARTTLS\r\n");
            line(&mut tcp);
            let _ = tcp.write_all(b"220 go ahead\r\n");
            let Ok(mut tls) = acceptor.accept(tcp) else { continue };
            // Noted before the replies the client waits for, so that it is there when the
            // client is done (noted after the 221, it raced the test's check under load).
            log.lock().unwrap().push(tls.ssl().session_reused());
            line(&mut tls);
            let _ = tls.write_all(b"250 mx.test\r\n");
            line(&mut tls);
            let _ = tls.write_all(b"221 bye\r\n");
            let _ = tls.shutdown();
        }
    });
    (addr, resumed)
}

/// A control: a client that does keep its session (OpenSSL's, offering it again) is resumed by
/// this server, so "not resumed" below means something.
fn openssl_twice(addr: &str, ca: &Path) {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder.set_ca_file(ca).unwrap();
    let connector = builder.build();
    let mut session: Option<openssl::ssl::SslSession> = None;
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr).unwrap();
        line(&mut tcp);
        tcp.write_all(b"EHLO client.test\r\n").unwrap();
        let mut reader = BufReader::new(tcp.try_clone().unwrap());
        let mut reply = String::new();
        while !reply.starts_with("250 ") {
            reply.clear();
            reader.read_line(&mut reply).unwrap();
        }
        tcp.write_all(b"STARTTLS\r\n").unwrap();
        line(&mut tcp);
        let mut ssl = connector.configure().unwrap().into_ssl("mx.test").unwrap();
        if let Some(s) = &session {
            // SAFETY: the session comes from this connector's own context.
            unsafe { ssl.set_session(s).unwrap() };
        }
        let mut tls = openssl::ssl::SslStream::new(ssl, tcp).unwrap();
        tls.connect().unwrap();
        tls.write_all(b"EHLO client.test\r\n").unwrap();
        line(&mut tls);
        tls.write_all(b"QUIT\r\n").unwrap();
        line(&mut tls);
        session = tls.ssl().session().map(openssl::ssl::SslSessionRef::to_owned);
        // A connection that ends without close_notify makes OpenSSL drop its session.
        let _ = tls.shutdown();
    }
}

#[tokio::test]
async fn a_java_batch_worker_never_resumes_a_session() {
    let Some(java) = java_client() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = servers::TestPki::generate(dir.path()).unwrap();
    for max in [openssl::ssl::SslVersion::TLS1_2, openssl::ssl::SslVersion::TLS1_3] {
        let (addr, resumed) = resuming_server(&pki, max);
        let (a, ca) = (addr.clone(), pki.ca_cert.clone());
        tokio::task::spawn_blocking(move || openssl_twice(&a, &ca)).await.unwrap();
        assert_eq!(*resumed.lock().unwrap(), [false, true], "{max:?}: the control resumes its second connection");
        resumed.lock().unwrap().clear();

        let pool = harness::batch::Pool::new(java.clone(), Vec::new(), Vec::new());
        let argv: Vec<std::ffi::OsString> =
            ["--connect", &addr, "--servername", "mx.test", "--ehlo", "client.test", "--cafile"]
                .into_iter()
                .map(Into::into)
                .chain([pki.ca_cert.clone().into_os_string()])
                .collect();
        let mut workers = Vec::new();
        for _ in 0..3 {
            let reply = pool.call(&argv, Duration::from_secs(30)).await;
            match &reply {
                harness::batch::Reply::Answer { exit: 0, stdout, .. } => {
                    assert!(stdout.contains(r#""status":"ok""#), "{max:?}: {stdout}")
                }
                other => panic!("{max:?}: {other:?}"),
            }
            workers.push(pool.worker_pid().await.expect("a worker runs"));
        }
        pool.stop().await;
        assert!(workers.windows(2).all(|w| w[0] == w[1]), "{max:?}: one worker answered all: {workers:?}");
        assert!(!alive(workers[0] as i32), "{max:?}: the stopped worker is gone");
        assert_eq!(*resumed.lock().unwrap(), [false, false, false], "{max:?}: every cell a full handshake");
    }
}
