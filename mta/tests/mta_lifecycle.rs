//! Real MTAs start from a profile, answer 220 on their 127.0.0.1 port, and stop leaving no
//! process, port or mount behind — twenty times in a row each. MTAs that are not extracted
//! (scripts/install-stacks) are reported and skipped. Times are printed, never asserted.

use mta::{Credentials, MtaServer, ServerOptions, StartError};
use report_format::{Backend, Mta, ServerProfile};
use servers::{DhParams, TestPki};
use std::path::{Path, PathBuf};

const ROUNDS: usize = 20;

fn mta_root() -> PathBuf {
    mta::extracted_roots(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn creds(pki: &TestPki, p: &ServerProfile) -> Credentials {
    Credentials {
        ca_cert: pki.ca_cert.clone(),
        cert: pki.cert(p.cert).to_path_buf(),
        key: pki.key(p.cert).to_path_buf(),
        dh: p.dh.map(|d| (d.name().to_string(), d.pem().to_string())),
        server_name: servers::SERVER_NAME.into(),
    }
}

fn the_mta(p: &ServerProfile) -> Mta {
    match p.backend {
        Backend::Mta(m) => m,
        Backend::Builtin(_) => panic!("{} is not an MTA profile", p.id),
    }
}

fn profile(json: serde_json::Value) -> ServerProfile {
    let p: ServerProfile = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

/// Mount points (in any namespace we can see from here) under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_string)
        .collect()
}

/// Processes whose command line names something under `dir` (every MTA's config path does).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mta_starts_and_stops_twenty_times_leaving_nothing_behind() {
    let base = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(base.path()).unwrap();
    for backend in ["postfix", "exim", "sendmail", "opensmtpd"] {
        let p = profile(serde_json::json!({"id": format!("{backend}-t"), "backend": backend}));
        let opts = ServerOptions {
            roots: mta_root(),
            work: base.path().join(&p.id),
            base: base.path().to_path_buf(),
            candidate: None,
        };
        let (mut ready, mut stop, mut usable) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let t = std::time::Instant::now();
            let running = match MtaServer::start(the_mta(&p), &p, &creds(&pki, &p), &opts).await {
                Ok(r) => r,
                Err(StartError::NotInstalled(why)) => {
                    eprintln!("{backend}: skipped: {why}");
                    break;
                }
                Err(e) => panic!("{backend}, round {round}: did not start: {e}"),
            };
            usable.push(t.elapsed().as_millis() as u64);
            // The TLS library is read from the MTA's own processes, not the harness's.
            let loaded = running.info().loaded.clone().unwrap_or_else(|| panic!("{backend}: library not measured"));
            let family = if backend == "exim" { "GnuTLS " } else { "OpenSSL " };
            assert!(loaded.version.starts_with(family), "{backend}: {loaded:?}");
            assert!(loaded.path.as_deref().is_some_and(|p| p.starts_with('/')), "{backend}: {loaded:?}");
            let addr = running.addr();
            ready.push(running.info().ready_ms);
            let report = running.stop().await;
            stop.push(report.stop_ms);
            assert!(report.port_free, "{backend}, round {round}: port {addr} still taken after stop");
            assert!(
                report.leftovers.is_empty(),
                "{backend}, round {round}: its group still has {:?}",
                report.leftovers
            );
            assert!(!report.killed, "{backend}, round {round}: did not end on SIGTERM within the bound");
            assert_eq!(processes_under(base.path()), Vec::<String>::new(), "{backend}, round {round}: processes left");
            assert_eq!(mounts_under(base.path()), Vec::<String>::new(), "{backend}, round {round}: mounts left");
        }
        if !ready.is_empty() {
            eprintln!(
                "{backend}: {} rounds, start to 220: median {} ms (max {}), ready for cells (log settled): median {} ms, stop: median {} ms (max {})",
                ready.len(),
                median(ready.clone()),
                ready.iter().max().unwrap(),
                median(usable.clone()),
                median(stop.clone()),
                stop.iter().max().unwrap()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_an_mta_cannot_express_is_unsupported_not_substituted() {
    let base = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(base.path()).unwrap();
    let cases = [
        (serde_json::json!({"id": "e", "backend": "exim", "dh": "oakley-1024"}), "tls_dhparam"),
        (serde_json::json!({"id": "s", "backend": "sendmail", "groups": ["x25519"]}), "prime256v1"),
        (serde_json::json!({"id": "o", "backend": "opensmtpd", "dh": "ffdhe2048"}), "DH file"),
        (serde_json::json!({"id": "p", "backend": "postfix", "tls13_suites": ["TLS_AES_128_GCM_SHA256"]}), "TLS 1.3"),
    ];
    for (json, words) in cases {
        let p = profile(json);
        let opts = ServerOptions {
            roots: mta_root(),
            work: base.path().join(&p.id),
            base: base.path().to_path_buf(),
            candidate: None,
        };
        match MtaServer::start(the_mta(&p), &p, &creds(&pki, &p), &opts).await {
            Err(StartError::Unsupported(why)) => assert!(why.contains(words), "{}: {why}", p.id),
            Err(StartError::NotInstalled(why)) => eprintln!("{}: skipped: {why}", p.id),
            Err(e) => panic!("{}: {e}", p.id),
            Ok(r) => {
                r.stop().await;
                panic!("{} started although it cannot express the profile", p.id)
            }
        }
    }
}
