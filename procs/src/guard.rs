//! Every program we start is started without a fork of the harness (a fork of a threaded
//! process copies it: every page it then writes is a copy-on-write fault) and ends within
//! moments when the harness dies by any signal, SIGKILL included, without the harness's own
//! cleanup running.
//!
//! A client program, a batch worker or a capture ([`Confine::Group`]) is started directly by
//! `posix_spawn`, in a process group of its own, with the run's marker in its environment; the
//! run's [`crate::watchdog`] is told of its group and ends it when the harness dies. A real MTA
//! ([`Confine::PidNamespace`]) is started through the guard program (`starttls-guard run`, exec'd
//! from its embedded copy, [`crate::guard_binary`]): the guard asks for a signal when the harness
//! dies, forks an *init* in a PID namespace of its own, whose child sets up the daemon's mount
//! and host-name namespaces ([`Setup`]) and execs the program. The harness sees the guard as its
//! child: the program's exit status and the signals it is sent are relayed through both
//! unchanged, and the guard ends only once everything in the namespace has (a queue run may hand
//! a delivery to a child and return). When the harness is gone the guard kills its group — itself
//! and the init — and the kernel then every process of the namespace, whatever user, group or
//! session it moved to; should the guard itself be killed, the init dies with it, and so does the
//! namespace. A machine that refuses a PID namespace keeps the program in the guard's group.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How far the processes a program starts are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confine {
    /// The program is started directly, in a process group of its own (client programs, batch
    /// workers, captures).
    Group,
    /// The program runs under the guard in a PID namespace of its own whose init is the guard's
    /// child: whatever it starts ends with it (MTAs, which change users and may leave their
    /// process group).
    PidNamespace,
}

/// What the guard sets up in the program's own process before it execs: a daemon's namespaces
/// (everything lives in the program's mount namespace and vanishes with it; nothing on the host
/// is written) and its group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// The group it runs as (`setgid`).
    pub gid: Option<u32>,
    /// A UTS namespace with this host name.
    pub hostname: Option<String>,
    /// A private `/dev`: the host's `/dev` bound at the first path (an empty directory of ours),
    /// and `/dev/log` the second (our syslog socket).
    pub private_dev: Option<(PathBuf, PathBuf)>,
    /// Bind mounts (source → existing target), after the private `/dev`.
    pub binds: Vec<(PathBuf, PathBuf)>,
}

impl Setup {
    fn is_empty(&self) -> bool {
        *self == Setup::default()
    }
}

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Guard(#[from] crate::guard_binary::GuardUnavailable),
}

/// A command that starts `program ARGS` as `confine` says, with `setup` (which needs the guard),
/// in a process group of its own and with the run's marker. Spawn it, then tell [`started`] its
/// PID (its group's), and [`reaped`] once it is reaped.
pub fn command(
    program: &Path,
    args: &[OsString],
    confine: Confine,
    setup: &Setup,
) -> Result<tokio::process::Command, LaunchError> {
    Ok(tokio::process::Command::from(std_command(program, args, confine, setup)?))
}

/// [`command`], as a `std::process::Command` (for a blocking caller).
pub fn std_command(
    program: &Path,
    args: &[OsString],
    confine: Confine,
    setup: &Setup,
) -> Result<std::process::Command, LaunchError> {
    use std::os::unix::process::CommandExt;
    // Before the first process: the watchdog (and the run's cgroup) must already be there.
    crate::watchdog::ensure();
    let found = crate::child::which(&program.to_string_lossy())
        .ok_or_else(|| LaunchError::NotFound(program.display().to_string()))?;
    let mut cmd = if confine == Confine::Group && setup.is_empty() {
        let mut cmd = std::process::Command::new(found);
        cmd.arg0(program).args(args);
        cmd
    } else {
        let mut cmd = std::process::Command::new(crate::guard_binary::path()?);
        cmd.arg0("starttls-guard").args(["run", "--harness", &std::process::id().to_string()]);
        if confine == Confine::PidNamespace {
            cmd.arg("--pidns");
        }
        if let Some(gid) = setup.gid {
            cmd.args(["--gid", &gid.to_string()]);
        }
        if let Some(h) = &setup.hostname {
            cmd.args(["--hostname", h]);
        }
        if let Some((host_dev, socket)) = &setup.private_dev {
            cmd.arg("--dev").arg(host_dev).arg(socket);
        }
        for (source, target) in &setup.binds {
            cmd.arg("--bind").arg(source).arg(target);
        }
        cmd.arg("--").arg(found).args(args);
        cmd
    };
    cmd.process_group(0).env(crate::watchdog::MARKER_VAR, crate::watchdog::marker());
    Ok(cmd)
}

/// A process group we started (its leader's PID): Ctrl-C, panics and the watchdog end it.
pub fn started(pgid: i32) {
    crate::registry::register(pgid);
    crate::watchdog::started(pgid);
}

/// A process group whose leader we reaped.
pub fn reaped(pgid: i32) {
    crate::registry::unregister(pgid);
    crate::watchdog::reaped(pgid);
}

/// The processes of a program started under a guard whose PID is `guard`: the init's
/// descendants, wherever their process group or session (read from /proc). Neither guard is
/// among them.
pub fn program_processes(guard: i32) -> Vec<i32> {
    let table = crate::registry::processes();
    let mut found = Vec::new();
    let mut parents: Vec<i32> = table.iter().filter(|p| p.ppid == guard).map(|p| p.pid).collect();
    while let Some(parent) = parents.pop() {
        for p in table.iter().filter(|p| p.ppid == parent) {
            if !p.zombie {
                found.push(p.pid);
            }
            parents.push(p.pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    /// Whether this machine lets us make a PID namespace (root with CAP_SYS_ADMIN); without,
    /// the guard keeps the program in its group, and what left the group is not reached.
    fn namespaces_allowed() -> bool {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("/bin/true");
        // SAFETY: one system call between fork and exec (a test's own probe).
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWPID) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
        cmd.status().is_ok_and(|s| s.success())
    }

    fn guarded(script: &str, confine: Confine) -> tokio::process::Command {
        let args = [OsString::from("-c"), OsString::from(script)];
        let mut cmd = command(Path::new("/bin/sh"), &args, confine, &Setup::default()).unwrap();
        cmd.stdout(Stdio::piped()).kill_on_drop(true);
        cmd
    }

    /// Start it and tell the watchdog, as every caller does.
    fn spawn(mut cmd: tokio::process::Command) -> tokio::process::Child {
        let child = cmd.spawn().unwrap();
        started(child.id().unwrap() as i32);
        child
    }

    async fn output(cmd: tokio::process::Command) -> std::process::Output {
        spawn(cmd).wait_with_output().await.unwrap()
    }

    #[tokio::test]
    async fn statuses_and_output_come_through_unchanged() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let out = output(guarded("echo hi; exit 7", confine)).await;
            assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(7), &b"hi\n"[..]), "{confine:?}");
            let out = output(guarded("kill -SEGV $$", confine)).await;
            assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{confine:?}");
        }
        if namespaces_allowed() {
            // In its namespace the program is the init guard's first child.
            let out = output(guarded("echo $$", Confine::PidNamespace)).await;
            assert_eq!(out.stdout, b"2\n");
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let missing = command(Path::new("/nonexistent/program"), &[], confine, &Setup::default());
            assert!(matches!(missing, Err(LaunchError::NotFound(_))), "{confine:?}");
        }
    }

    #[tokio::test]
    async fn signals_are_relayed_to_the_program() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let mut child = spawn(guarded("trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done", confine));
            let mut line = [0u8; 6];
            use tokio::io::AsyncReadExt;
            child.stdout.take().unwrap().read_exact(&mut line).await.unwrap();
            // SAFETY: our child.
            unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
            assert_eq!(status.code(), Some(42), "{confine:?}");
        }
    }

    /// The program's processes, wherever they went, and none of the guards.
    #[tokio::test]
    async fn program_processes_are_the_inits_descendants() {
        if !namespaces_allowed() {
            eprintln!("skipped: this machine refuses PID namespaces");
            return;
        }
        let mut child = spawn(guarded("setsid sleep 30 & echo ready; wait", Confine::PidNamespace));
        let mut line = [0u8; 6];
        use tokio::io::AsyncReadExt;
        child.stdout.take().unwrap().read_exact(&mut line).await.unwrap();
        let guard = child.id().unwrap() as i32;
        let names_of = |found: &[i32]| -> Vec<String> {
            found
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_string())
                .collect()
        };
        // The background job is a forked `sh` until it has exec'd setsid and sleep: wait for that
        // (a loaded machine showed ["sh", "sh"] at once), at most 2 s.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut found = program_processes(guard);
        while !names_of(&found).contains(&"sleep".to_string()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            found = program_processes(guard);
        }
        let names = names_of(&found);
        assert!(names.contains(&"sh".to_string()) && names.contains(&"sleep".to_string()), "{names:?}");
        assert!(!found.contains(&guard));
        child.kill().await.unwrap();
        // The guard's death takes the namespace, the session leader `sleep` included.
        let deadline = Instant::now() + Duration::from_secs(2);
        while found.iter().any(|p| crate::registry::alive(*p)) {
            assert!(Instant::now() < deadline, "left: {found:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The real thing: a stand-in harness (this test binary, run again) starts a guarded
    /// program that leaves its session, and is killed with SIGKILL.
    #[test]
    fn a_harness_killed_with_sigkill_takes_everything_it_started() {
        if let Ok(dir) = std::env::var("GUARD_TEST_HARNESS") {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                // Without a namespace the program's group is what goes; with one, also what
                // left it (a new session).
                for (n, (confine, script)) in [
                    (Confine::Group, "sleep 300 & sleep 300 & wait"),
                    (Confine::PidNamespace, "setsid sleep 300 & sleep 300 & wait"),
                ]
                .into_iter()
                .enumerate()
                {
                    let mut cmd = guarded(script, confine);
                    cmd.stdout(Stdio::null());
                    let child = spawn(cmd);
                    std::fs::write(format!("{dir}/guard{n}"), child.id().unwrap().to_string()).unwrap();
                    std::mem::forget(child);
                }
                std::fs::write(format!("{dir}/ready"), "").unwrap();
                // Killed long before, unless the test failed: then its programs go with it.
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
            return;
        }
        if !namespaces_allowed() {
            eprintln!("skipped: this machine refuses PID namespaces");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut harness = std::process::Command::new(exe)
            .args(["--exact", "guard::tests::a_harness_killed_with_sigkill_takes_everything_it_started", "--nocapture"])
            .env("GUARD_TEST_HARNESS", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.path().join("ready").exists() {
            assert!(Instant::now() < deadline, "the stand-in harness never started its programs");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Every process of the guarded programs, wherever they are now.
        let guards: Vec<i32> = (0..2)
            .map(|n| std::fs::read_to_string(dir.path().join(format!("guard{n}"))).unwrap().parse().unwrap())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all: Vec<i32>;
        loop {
            // The program started directly is its own group's leader: it and its descendants;
            // under the guard, the init's descendants.
            let table = crate::registry::processes();
            all = vec![guards[0]];
            all.extend(table.iter().filter(|p| p.ppid == guards[0] && !p.zombie).map(|p| p.pid));
            all.extend(program_processes(guards[1]));
            // Each program: sh and its two `sleep`s.
            if all.len() >= 6 {
                break;
            }
            assert!(Instant::now() < deadline, "the programs never started: {all:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        all.extend(&guards);
        // SAFETY: the child this test started, by its PID.
        unsafe { libc::kill(harness.id() as i32, libc::SIGKILL) };
        harness.wait().unwrap();
        let killed = Instant::now();
        while all.iter().any(|p| crate::registry::alive(*p)) {
            let left: Vec<i32> = all.iter().copied().filter(|p| crate::registry::alive(*p)).collect();
            assert!(killed.elapsed() < Duration::from_secs(2), "left 2 s after the harness's SIGKILL: {left:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("every guarded process gone {:?} after the harness's SIGKILL", killed.elapsed());
    }
}
