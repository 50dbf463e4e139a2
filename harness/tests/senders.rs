//! Real MTAs as senders through the whole tool: `run` of the default matrix's senders, the fate
//! of each message with the MTA's own words, and Ctrl-C while senders are delivering. Skipped
//! (with the reason) where the MTAs are not extracted (scripts/install-stacks).

mod common;

use common::{EXE, listening_ports, mtas_missing, processes_using, repo, starttls_matrix, work_dirs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn delivery<'a>(v: &'a serde_json::Value, cell: &str) -> &'a serde_json::Value {
    let d = &v["cells"][cell]["delivery"];
    assert!(d.is_object(), "{cell} has no delivery: {}", v["cells"][cell]);
    d
}

fn fate(v: &serde_json::Value, cell: &str) -> (String, String) {
    let d = delivery(v, cell);
    (d["result"].as_str().unwrap_or_default().into(), d["class"].as_str().unwrap_or_default().into())
}

#[test]
fn each_mta_delivers_defers_or_falls_back_as_its_policy_says() {
    if let Some(why) = mtas_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_string_lossy().to_string();
    let mut args = vec!["run", "--out", &out_dir, "--format", "json"];
    for s in ["dhe512", "ffdhe2048", "ecdhe-x25519-tls13", "hostile-no-starttls"] {
        args.extend(["--server", s]);
    }
    for c in ["postfix-smtp*", "exim-smtp*", "sendmail-smtp*", "opensmtpd-smtp*"] {
        args.extend(["--client", c]);
    }
    let r = starttls_matrix(&repo(), &args);
    assert_eq!(r.code, Some(0), "every delivery cell as expected: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();

    // The 2015 breakage, by the real sendmail: deferred, its own words, the message queued.
    let d = delivery(&v, "sendmail-smtp/dhe512");
    assert_eq!(d["result"], "deferred");
    assert_eq!(d["class"], "dh_too_small");
    let log = d["sender_log"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n");
    assert!(log.contains("STARTTLS=client, error: connect failed=-1, reason=dh key too small"), "{log}");
    assert!(log.contains("stat=Deferred: 454 4.7.0 TLS handshake failed."), "{log}");
    let queue = d["queue"].as_str().unwrap();
    assert!(queue.contains("(1 request)") && queue.contains("postmaster@p"), "still queued: {queue}");
    // Each attempt was a connection the server saw, from the sender's own address.
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "two forced attempts: {attempts:#?}");
    for a in attempts {
        assert!(a["server"]["peer"].as_str().is_some_and(|p| !p.starts_with("127.0.0.1:")), "{a}");
        assert_eq!(a["class"], "dh_too_small");
    }

    // At least one fallback to plaintext and one deferral for each MTA, where its policy says.
    for (fallback, deferred) in [
        ("postfix-smtp/dhe512", "postfix-smtp@encrypt/dhe512"),
        ("exim-smtp/dhe512", "exim-smtp@require-tls/dhe512"),
        ("sendmail-smtp@fallback/dhe512", "sendmail-smtp/dhe512"),
        ("opensmtpd-smtp/dhe512", "opensmtpd-smtp@tls/dhe512"),
    ] {
        assert_eq!(fate(&v, fallback), ("plaintext_fallback".into(), "dh_too_small".into()), "{fallback}");
        assert_eq!(fate(&v, deferred), ("deferred".into(), "dh_too_small".into()), "{deferred}");
    }
    // Postfix falls back only on its second attempt, and says so in its log.
    let postfix = delivery(&v, "postfix-smtp/dhe512");
    assert!(postfix["attempts"][0]["status"].as_str().unwrap().contains("status=deferred"), "{postfix}");
    assert_eq!(postfix["attempts"].as_array().unwrap().last().unwrap()["tls_tried"], false);

    let senders = [
        "postfix-smtp",
        "postfix-smtp@encrypt",
        "exim-smtp",
        "exim-smtp@require-tls",
        "sendmail-smtp",
        "sendmail-smtp@fallback",
        "opensmtpd-smtp",
        "opensmtpd-smtp@tls",
    ];
    for s in senders {
        for profile in ["ffdhe2048", "ecdhe-x25519-tls13"] {
            let cell = format!("{s}/{profile}");
            assert_eq!(fate(&v, &cell).0, "tls", "{cell}");
            assert!(delivery(&v, &cell)["negotiated"]["protocol"].is_string(), "{cell}");
        }
    }
    // Required TLS never delivers in clear.
    for s in ["postfix-smtp@encrypt", "exim-smtp@require-tls", "opensmtpd-smtp@tls"] {
        for profile in ["hostile-no-starttls", "dhe512"] {
            let cell = format!("{s}/{profile}");
            assert_eq!(fate(&v, &cell).0, "deferred", "{cell}");
        }
    }
    for s in ["postfix-smtp", "exim-smtp", "sendmail-smtp", "opensmtpd-smtp"] {
        assert_eq!(fate(&v, &format!("{s}/hostile-no-starttls")).0, "plaintext", "{s}");
    }
    // What each sender ran as, and that its stop left nothing.
    for s in senders {
        let run = &v["sender_runs"][s];
        assert!(run["version"].as_str().is_some_and(|v| !v.is_empty()), "{s}: {run}");
        assert_eq!(run["stop"]["leftovers"], serde_json::json!([]), "{s}");
    }
}

#[test]
fn ctrl_c_while_senders_deliver_leaves_no_process_port_or_spool() {
    if let Some(why) = mtas_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    // The run's work directory (every sender's spool and configuration) goes under `tmp`.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut run = Command::new(EXE)
        .args(["run", "--server", "hostile-stall", "--client", "*-smtp*", "--out"])
        .arg(&out)
        .current_dir(repo())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the senders are delivering: a message waits in each queue for a server that
    // never finishes its banner.
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivering = |n: usize| {
        let work: Vec<PathBuf> = work_dirs(tmp.path());
        work.iter().any(|w| {
            ["exim-smtp", "sendmail-smtp", "opensmtpd-smtp"]
                .iter()
                .filter(|s| w.join("senders").join(s).join("cells").read_dir().is_ok_and(|mut d| d.next().is_some()))
                .count()
                >= n
        })
    };
    while !delivering(3) {
        assert!(Instant::now() < deadline, "the senders never started delivering");
        assert!(run.try_wait().unwrap().is_none(), "the run ended before the senders delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = processes_using(tmp.path());
    assert!(!before.is_empty(), "the senders' processes run in the work directory");
    let ports = listening_ports(&before.iter().map(|(pid, _)| *pid).collect::<Vec<_>>());
    assert!(!ports.is_empty(), "the Postfix sender listens for its messages: {before:?}");
    // SAFETY: SIGINT to the child this test started, by its PID.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_using(tmp.path());
        let dirs = work_dirs(tmp.path());
        if left.is_empty() && dirs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after Ctrl-C: processes {left:?}, work directories {dirs:?} (before: {before:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for port in ports {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is free again");
    }
    assert!(!out.join("report.json").exists(), "an interrupted run writes nothing");
}
