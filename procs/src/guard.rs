//! The guard every program we start runs under, so that it ends within moments when the harness
//! dies by any signal — SIGKILL included — without the harness's own cleanup running.
//!
//! Between fork and exec the child (the *guard*, which never changes credentials) asks the kernel
//! for a signal when the harness dies (PR_SET_PDEATHSIG, checked against a parent already gone),
//! forks an *init* guard (a PID namespace of its own with [`Confine::PidNamespace`]), and only
//! the init's child execs the program. The harness sees the guard as its child: the program's
//! exit status and the signals it is sent are relayed through both guards unchanged. When the
//! harness is gone the guard kills its own process group — itself and the init — and the
//! kernel then kills every process of the namespace, whatever user, group or session it moved
//! to; should the guard itself be killed, the init dies with it (its own PR_SET_PDEATHSIG), and
//! so does the namespace. [`Confine::Group`] (client programs: no PID namespace, whose PIDs
//! would collide in shared files such as the JVM's) and a machine that refuses a PID namespace
//! keep the program in the guard's process group, which is what is killed then.
//!
//! PR_SET_PDEATHSIG follows the *thread* that forked, so the guard's signal is a real-time one
//! it waits for, and it acts only once its parent process has really changed.

use std::io;

/// How far the processes a program starts are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confine {
    /// The program stays in the guard's process group (client programs, batch workers).
    Group,
    /// The program runs in a PID namespace of its own whose init is the second guard: whatever
    /// it starts ends with it (MTAs, which change users and may leave their process group).
    PidNamespace,
}

/// What the guard needs, prepared in the parent: the child only makes system calls.
#[derive(Debug, Clone, Copy)]
struct Guard {
    harness: libc::pid_t,
    parent_gone: libc::c_int,
    confine: Confine,
}

/// Make `cmd` (a tokio command's `as_std_mut()`) start its program under a guard. It must be
/// the command's first `pre_exec` hook (one added later runs in the program's own process
/// only) and the command must have a process group of its own (`process_group(0)`).
pub fn install(cmd: &mut std::process::Command, confine: Confine) {
    use std::os::unix::process::CommandExt;
    let guard = Guard { harness: std::process::id() as libc::pid_t, parent_gone: libc::SIGRTMAX(), confine };
    // SAFETY: `enter` makes only async-signal-safe system calls on memory prepared here.
    unsafe {
        cmd.pre_exec(move || guard.enter());
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A signal set with every signal.
fn all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

impl Guard {
    /// Run in the forked child; returns only in the process that is to exec the program.
    fn enter(self) -> io::Result<()> {
        // SAFETY: system calls only, between fork and exec.
        unsafe {
            // `kill(0, …)` below must reach our own group, never the harness's.
            if libc::getpgrp() != libc::getpid() {
                check(libc::setpgid(0, 0))?;
            }
            // From here every signal waits for `sigwaitinfo` (the harness's handlers never run
            // here); the program gets the mask back.
            let all = all_signals();
            let mut mask: libc::sigset_t = std::mem::zeroed();
            check(libc::sigprocmask(libc::SIG_SETMASK, &all, &mut mask))?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, self.parent_gone as libc::c_ulong, 0, 0, 0))?;
            if libc::getppid() != self.harness {
                // The harness died before the request took effect.
                libc::_exit(EXIT_ORPHANED);
            }
            // The init tells the program's wait status through this pipe.
            let mut status = [0; 2];
            check(libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC))?;
            let namespace = self.confine == Confine::PidNamespace && libc::unshare(libc::CLONE_NEWPID) == 0;
            let init = libc::fork();
            if init == -1 {
                return Err(io::Error::last_os_error());
            }
            if init > 0 {
                libc::close(status[1]);
                self.relay(init, status[0]);
            }
            // The init guard: it dies with the guard, and with it the namespace.
            libc::close(status[0]);
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
            let mut out = libc::pollfd { fd: status[1], events: libc::POLLOUT, revents: 0 };
            if libc::poll(&mut out, 1, 0) == 1 && out.revents & libc::POLLERR != 0 {
                // No reader: the guard died before the request took effect.
                libc::_exit(EXIT_ORPHANED);
            }
            // Without a namespace, orphans of the program come back to the init.
            check(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))?;
            let program = libc::fork();
            if program == -1 {
                return Err(io::Error::last_os_error());
            }
            if program > 0 {
                init_guard(program, status[1]);
            }
            // The program: a process group of its own inside its namespace, as a program we start
            // always had; in the guard's group otherwise, where the guard's kill reaches it.
            libc::close(status[1]);
            if namespace {
                check(libc::setpgid(0, 0))?;
            }
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
            check(libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()))?;
        }
        Ok(())
    }

    /// The guard: forward signals to the init, and once it has ended, end as the program did.
    fn relay(self, init: libc::pid_t, status: libc::c_int) -> ! {
        // SAFETY: system calls only, in a child that never returns to the caller.
        unsafe {
            close_all_but(status);
            let all = all_signals();
            loop {
                let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
                if sig == libc::SIGCHLD {
                    let mut own = 0;
                    if libc::waitpid(init, &mut own, libc::WNOHANG) == init {
                        let mut word = [0u8; 4];
                        let n = libc::read(status, word.as_mut_ptr().cast(), word.len());
                        end_as(if n == 4 { i32::from_ne_bytes(word) } else { own });
                    }
                } else if sig == self.parent_gone {
                    if libc::getppid() != self.harness {
                        // The harness is gone: our group (this guard, the init; the program
                        // too without a namespace) goes, and with the init its namespace.
                        libc::kill(0, libc::SIGKILL);
                        libc::_exit(EXIT_ORPHANED);
                    }
                } else if sig > 0 && sig != libc::SIGPIPE {
                    libc::kill(init, sig);
                }
            }
        }
    }
}

/// The init guard: reap whatever ends in its namespace, forward signals to the program, and
/// once the program and everything it left running in the namespace have ended (a queue run
/// may hand a delivery to a child and return), say how the program ended through `status` and
/// end. A harness that will not wait that long kills the guard, and with it the namespace.
fn init_guard(program: libc::pid_t, status: libc::c_int) -> ! {
    // SAFETY: system calls only, in a child that never returns to the caller.
    unsafe {
        close_all_but(status);
        let all = all_signals();
        let mut ended: Option<libc::c_int> = None;
        loop {
            let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if sig == libc::SIGCHLD {
                let mut code = 0;
                loop {
                    let pid = libc::waitpid(-1, &mut code, libc::WNOHANG);
                    if pid == program {
                        ended = Some(code);
                    } else if pid == 0 {
                        break;
                    } else if pid < 0 {
                        // No child left: without a namespace only the program was ours.
                        if let Some(code) = ended {
                            let word = code.to_ne_bytes();
                            libc::write(status, word.as_ptr().cast(), word.len());
                            libc::_exit(0);
                        }
                        break;
                    }
                }
            } else if sig > 0 && sig != libc::SIGPIPE && ended.is_none() {
                libc::kill(program, sig);
            }
        }
    }
}

/// The exit code of a guard whose harness died before it could watch it.
const EXIT_ORPHANED: libc::c_int = 125;

/// End this process with `status` (a wait status): the same code, or the same signal (without
/// a core file: this process is a copy of the harness).
fn end_as(status: libc::c_int) -> ! {
    // SAFETY: system calls only.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, std::ptr::null_mut());
            let mut only: libc::sigset_t = std::mem::zeroed();
            libc::sigaddset(&mut only, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// Close every descriptor but `keep`: the guards hold none of the harness's (its listeners,
/// the program's pipes, the spawn's error pipe).
unsafe fn close_all_but(keep: libc::c_int) {
    // SAFETY: close_range and close on descriptors of this process only.
    unsafe {
        let range = |first: libc::c_int, last: libc::c_long| {
            libc::syscall(libc::SYS_close_range, first as libc::c_long, last, 0 as libc::c_long) == 0
        };
        let below = keep == 0 || range(0, (keep - 1) as libc::c_long);
        let above = range(keep + 1, libc::c_long::from(u32::MAX));
        if !(below && above) {
            // Kernels before 5.9: one by one.
            for fd in 0..65536 {
                if fd != keep {
                    libc::close(fd);
                }
            }
        }
    }
}

/// The processes of a program started under a guard whose PID is `guard`: the init's
/// descendants, wherever their process group or session (read from /proc). Neither guard is
/// among them: they are copies of the harness, with its libraries mapped.
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
        // SAFETY: one system call between fork and exec.
        unsafe {
            cmd.pre_exec(|| check(libc::unshare(libc::CLONE_NEWPID)));
        }
        cmd.status().is_ok_and(|s| s.success())
    }

    fn guarded(script: &str, confine: Confine) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", script]).process_group(0).stdout(Stdio::piped()).kill_on_drop(true);
        install(cmd.as_std_mut(), confine);
        cmd
    }

    #[tokio::test]
    async fn statuses_and_output_come_through_unchanged() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let out = guarded("echo hi; exit 7", confine).output().await.unwrap();
            assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(7), &b"hi\n"[..]), "{confine:?}");
            let out = guarded("kill -SEGV $$", confine).output().await.unwrap();
            assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{confine:?}");
        }
        if namespaces_allowed() {
            // In its namespace the program is the init guard's first child.
            let out = guarded("echo $$", Confine::PidNamespace).output().await.unwrap();
            assert_eq!(out.stdout, b"2\n");
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let mut cmd = tokio::process::Command::new("/nonexistent/program");
        cmd.process_group(0);
        install(cmd.as_std_mut(), Confine::PidNamespace);
        assert_eq!(cmd.spawn().unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn signals_are_relayed_to_the_program() {
        for confine in [Confine::Group, Confine::PidNamespace] {
            let mut child =
                guarded("trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done", confine).spawn().unwrap();
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
        let mut child = guarded("setsid sleep 30 & echo ready; wait", Confine::PidNamespace).spawn().unwrap();
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
                for (n, (confine, script)) in
                    [(Confine::Group, "sleep 300 & sleep 300"), (Confine::PidNamespace, "setsid sleep 300 & sleep 300")]
                        .into_iter()
                        .enumerate()
                {
                    let child = guarded(script, confine).stdout(Stdio::null()).spawn().unwrap();
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
            all = guards.iter().flat_map(|g| program_processes(*g)).collect();
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
