//! A run killed with SIGKILL — what a CI job's timeout or the OOM killer does — leaves nothing:
//! with all four MTAs up as servers and as senders (and client programs, a batch worker where
//! Java is installed), no process of the run, no port it listened on and no mount of it is left
//! within 3 s, though the harness's own cleanup never ran; the next run (or a cleanup call)
//! removes its work directory, and never a live run's. Skipped (with the reason) where the MTAs
//! are not extracted (scripts/install-stacks).

mod common;

use common::{EXE, listening_ports, mtas_missing, process_paths, processes_using, repo, work_dirs};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVERS: [&str; 4] = ["postfix-default", "exim-default", "sendmail-default", "opensmtpd-default"];
const SENDERS: [&str; 4] = ["postfix-smtp", "exim-smtp", "sendmail-smtp", "opensmtpd-smtp"];

/// The run, killed and reaped however the test ends (its guards then take the rest).
struct Run(std::process::Child);

impl Drop for Run {
    fn drop(&mut self) {
        // Once reaped, `kill` signals nothing.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a process of the run is, by what it names.
fn kind(pid: i32, harness: u32, work: &Path) -> String {
    let paths = process_paths(pid);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
    let w = work.to_string_lossy();
    if pid as u32 == harness {
        "the harness".into()
    } else if paths.starts_with(&format!("{EXE} ")) {
        // A guard (a copy of the harness), or the harness between fork and exec.
        "guard".into()
    } else if let Some(s) = SERVERS.iter().find(|s| paths.contains(&format!("{w}/mta/{s}/"))) {
        format!("server {s}")
    } else if let Some(s) = SENDERS.iter().find(|s| paths.contains(&format!("{w}/senders/{s}"))) {
        format!("sender {s}")
    } else if paths.contains("StartTlsClient") && paths.contains("--batch") {
        "batch worker (java)".into()
    } else if paths.contains("smtplib_client.py") {
        "client program (python-smtplib)".into()
    } else {
        let cmdline = paths.lines().next().unwrap_or_default();
        format!("other ({comm}: {})", cmdline.chars().take(60).collect::<String>())
    }
}

#[test]
fn sigkill_of_a_run_leaves_no_process_port_mount_or_directory() {
    if let Some(why) = mtas_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    // The run's work directory goes under `tmp`.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args: Vec<&str> = vec!["run", "--jobs", "5", "--repeat", "3"];
    for s in SERVERS.iter().chain(&["hostile-stall"]) {
        args.extend(["--server", s]);
    }
    for c in ["*-smtp*", "python-smtplib", "java-jsse"] {
        args.extend(["--client", c]);
    }
    let mut run = Run(Command::new(EXE)
        .args(&args)
        .arg("--out")
        .arg(&out)
        .current_dir(repo())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    // Wait for the moment when every MTA serves its profile (listening) while the senders
    // deliver (Postfix's daemon and at least two of the others' cells) and, where Java is
    // installed, the batch worker runs (one-shot client programs run before the deliveries).
    let java = ["java", "javac"].iter().all(|p| procs::which(p).is_some());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    let (work, before) = loop {
        assert!(Instant::now() < deadline, "the MTAs were never all up at once");
        assert!(run.0.try_wait().unwrap().is_none(), "the run ended before the MTAs were all up: {last}");
        std::thread::sleep(Duration::from_millis(20));
        let Some(work) = work_dirs(tmp.path()).pop() else { continue };
        let procs = processes_using(tmp.path());
        let kinds: BTreeMap<i32, String> = procs.iter().map(|(pid, _)| (*pid, kind(*pid, run.0.id(), &work))).collect();
        let of = |k: &str| kinds.iter().filter(|(_, v)| v.as_str() == k).map(|(p, _)| *p).collect::<Vec<_>>();
        let serving = SERVERS.iter().all(|s| !listening_ports(&of(&format!("server {s}"))).is_empty());
        let senders = SENDERS[1..].iter().filter(|s| !of(&format!("sender {s}")).is_empty()).count();
        let worker = !java || !of("batch worker (java)").is_empty();
        last = format!("{kinds:?}");
        if serving && !of("sender postfix-smtp").is_empty() && senders >= 2 && worker {
            break (work, kinds);
        }
    };
    let pids: Vec<i32> = before.keys().copied().collect();
    let ports = listening_ports(&pids);
    // Each process with its start time, so that a reused PID is not taken for it.
    let started: BTreeMap<i32, u64> =
        pids.iter().filter_map(|p| procs::registry::process(*p).map(|s| (*p, s.start))).collect();
    let alive =
        |pid: i32| procs::registry::process(pid).is_some_and(|p| !p.zombie && started.get(&pid) == Some(&p.start));
    // The MTAs' mounts are in their own namespaces, never the machine's.
    let namespaced = pids.iter().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/mountinfo")).is_ok_and(|m| m.contains(&*work.to_string_lossy()))
    });
    assert!(namespaced, "sendmail's and OpenSMTPD's mounts name the work directory in their namespaces");
    let mounts = || {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        table.lines().filter(|l| l.contains(&*tmp.path().to_string_lossy())).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(mounts(), Vec::<String>::new());
    // The run's PID and mount namespaces (the MTAs'), and whoever is in them.
    let ns = |pid: i32, which: &str| std::fs::read_link(format!("/proc/{pid}/ns/{which}")).ok();
    let own: Vec<_> = ["pid", "mnt"].iter().filter_map(|w| ns(std::process::id() as i32, w)).collect();
    let namespaces: std::collections::BTreeSet<_> =
        pids.iter().flat_map(|p| [ns(*p, "pid"), ns(*p, "mnt")]).flatten().filter(|n| !own.contains(n)).collect();
    for s in SERVERS {
        let own_ns =
            before.iter().any(|(p, k)| *k == format!("server {s}") && ns(*p, "pid").is_some_and(|n| !own.contains(&n)));
        assert!(own_ns, "{s} runs in a PID namespace of its own");
    }
    let in_namespaces = || {
        procs::registry::processes()
            .into_iter()
            .filter(|p| {
                !p.zombie && [ns(p.pid, "pid"), ns(p.pid, "mnt")].iter().flatten().any(|n| namespaces.contains(n))
            })
            .map(|p| p.pid)
            .collect::<Vec<_>>()
    };
    // A live run's directory is never taken for a stale one.
    assert_eq!(procs::workdir::remove_stale(tmp.path()), Vec::<std::path::PathBuf>::new());
    assert!(work.join(procs::workdir::MARKER).exists());

    // SAFETY: SIGKILL to the child this test started, by its PID.
    unsafe { libc::kill(run.0.id() as i32, libc::SIGKILL) };
    let killed = Instant::now();
    run.0.wait().unwrap();
    // Each process seen before, timed as it goes (a cheap look, 1 ms apart)…
    let mut gone_after: BTreeMap<i32, Duration> = BTreeMap::new();
    while gone_after.len() < pids.len() && killed.elapsed() < Duration::from_secs(3) {
        for pid in &pids {
            if !alive(*pid) {
                gone_after.entry(*pid).or_insert_with(|| killed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // … then nothing naming the run, nothing in its namespaces.
    loop {
        let left: Vec<(i32, String)> = processes_using(tmp.path());
        let in_ns = in_namespaces();
        if left.is_empty() && in_ns.is_empty() && gone_after.len() == pids.len() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "left 3 s after SIGKILL: {left:?}, in the run's namespaces {in_ns:?} (before: {before:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("nothing of the run left {:?} after SIGKILL", killed.elapsed());
    let mut by_kind: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    for (pid, k) in &before {
        let e = by_kind.entry(k.as_str()).or_default();
        e.0 += 1;
        e.1 = e.1.max(gone_after[pid]);
    }
    for (k, (n, t)) in &by_kind {
        eprintln!("{k}: {n} process(es), the last gone {t:?} after SIGKILL");
    }
    for port in ports {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is free again");
    }
    assert_eq!(mounts(), Vec::<String>::new());
    // Its work directory stays until a later run (or this call) finds its owner gone.
    assert!(work.exists(), "nothing of the killed run removed its work directory");
    assert_eq!(procs::workdir::remove_stale(tmp.path()), vec![work.clone()]);
    assert!(!work.exists() && work_dirs(tmp.path()).is_empty());
    assert!(!out.join("report.json").exists(), "a killed run writes nothing");
}
