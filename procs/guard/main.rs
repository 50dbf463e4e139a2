//! starttls-guard: the small program every process of a run is started through or watched by,
//! so that nothing we start outlives the harness, even killed with SIGKILL, and the harness
//! itself never forks (a fork of a threaded process copies it, and every page it writes after is
//! a copy-on-write fault). Built by procs' build script with std only (the few system calls std
//! lacks are declared below), embedded in the harness and exec'd; it makes no allocation between
//! fork and exec, and the harness's memory is never copied.
//!
//! `starttls-guard run --harness PID [--pidns] [--gid N] [--hostname H] [--dev HOST_DEV SOCKET]
//! [--bind SRC TARGET]... -- PROGRAM ARGS...`: asks for a signal when the harness dies, forks an
//! init (in a PID namespace of its own with `--pidns`), whose child sets up the mount namespace
//! the options ask for and execs the program. The guard relays signals to it and ends as it did;
//! when the harness is gone it kills its process group and the init with it, and the kernel the
//! namespace.
//!
//! `starttls-guard watchdog --harness PID --marker TOKEN [--cgroup DIR --home DIR]`: one per run.
//! It reads `+PGID` / `-PGID` lines (the process groups the harness started and reaped) until
//! `END`, or until its input ends without one — the harness died — when it kills every group it
//! was told of, everything in the run's cgroup (`cgroup.kill`), and every process whose
//! environment carries the run's marker (the ones started in the moment before they could be
//! told of), then removes the cgroup.

use std::ffi::{CString, OsString};
use std::io::{BufRead, Write};
use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_void};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

type Pid = i32;

#[repr(C)]
struct SigSet([u64; 16]);

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

unsafe extern "C" {
    fn prctl(option: c_int, ...) -> c_int;
    fn getppid() -> Pid;
    fn getpid() -> Pid;
    fn getpgrp() -> Pid;
    fn setpgid(pid: Pid, pgid: Pid) -> c_int;
    fn kill(pid: Pid, sig: c_int) -> c_int;
    fn fork() -> Pid;
    fn unshare(flags: c_int) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    fn poll(fds: *mut PollFd, n: c_ulong, timeout: c_int) -> c_int;
    fn waitpid(pid: Pid, status: *mut c_int, options: c_int) -> Pid;
    fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize;
    fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    fn _exit(code: c_int) -> !;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, sig: c_int) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut c_void) -> c_int;
    fn signal(sig: c_int, handler: usize) -> usize;
    fn setrlimit(resource: c_int, limit: *const Rlimit) -> c_int;
    fn mount(src: *const c_char, target: *const c_char, fs: *const c_char, flags: c_ulong, data: *const c_void)
    -> c_int;
    fn sethostname(name: *const c_char, len: usize) -> c_int;
    fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    fn setgid(gid: c_uint) -> c_int;
    fn __libc_current_sigrtmax() -> c_int;
}

const PR_SET_PDEATHSIG: c_int = 1;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
const CLONE_NEWNS: c_int = 0x0002_0000;
const CLONE_NEWUTS: c_int = 0x0400_0000;
const CLONE_NEWPID: c_int = 0x2000_0000;
const O_CLOEXEC: c_int = 0o200_0000;
const SIG_UNBLOCK: c_int = 1;
const SIG_SETMASK: c_int = 2;
const WNOHANG: c_int = 1;
const SIGKILL: c_int = 9;
const SIGPIPE: c_int = 13;
const SIGCHLD: c_int = 17;
const SIG_DFL: usize = 0;
const RLIMIT_CORE: c_int = 4;
const POLLOUT: i16 = 4;
const POLLERR: i16 = 8;
const MS_NOSUID: c_ulong = 2;
const MS_NOEXEC: c_ulong = 8;
const MS_BIND: c_ulong = 4096;
const MS_REC: c_ulong = 16384;
const MS_PRIVATE: c_ulong = 1 << 18;

/// The exit code of a guard whose harness died before it could watch it.
const EXIT_ORPHANED: c_int = 125;
/// The exit code when the program could not be executed (as a shell's).
const EXIT_NO_EXEC: c_int = 127;
/// How a usage error ends (never seen by a user: the harness writes the arguments).
const EXIT_USAGE: c_int = 2;

fn fail(what: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "starttls-guard: {what}: {}", std::io::Error::last_os_error());
    // SAFETY: ends this process.
    unsafe { _exit(EXIT_USAGE) }
}

fn check(rc: c_int, what: &str) {
    if rc == -1 {
        fail(what);
    }
}

fn cstring(s: impl Into<Vec<u8>>) -> CString {
    CString::new(s).unwrap_or_else(|_| usage("an argument holds a NUL byte"))
}

fn usage(why: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "starttls-guard: {why}");
    // SAFETY: ends this process.
    unsafe { _exit(EXIT_USAGE) }
}

fn all_signals() -> SigSet {
    let mut set = SigSet([0; 16]);
    // SAFETY: fills a signal set of the right size.
    unsafe { sigfillset(&mut set) };
    set
}

/// Linux's wait status encoding.
fn signalled(status: c_int) -> Option<c_int> {
    let sig = status & 0x7f;
    (sig != 0 && sig != 0x7f).then_some(sig)
}

/// What the program's process must look like before it execs, all prepared before any fork.
struct Plan {
    harness: Pid,
    pidns: bool,
    gid: Option<c_uint>,
    hostname: Option<CString>,
    /// The host's `/dev` bound here, the links a private `/dev` gets.
    dev: Option<(CString, Vec<(CString, CString)>)>,
    binds: Vec<(CString, CString)>,
    argv: Vec<CString>,
}

/// Devices a daemon may open, reached through the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn parse_run(args: &[OsString]) -> Plan {
    let mut plan =
        Plan { harness: 0, pidns: false, gid: None, hostname: None, dev: None, binds: Vec::new(), argv: Vec::new() };
    let mut i = 0;
    let text = |i: usize| args.get(i).map(|a| a.to_string_lossy().into_owned()).unwrap_or_else(|| usage("missing value"));
    while i < args.len() {
        match args[i].to_str() {
            Some("--harness") => {
                plan.harness = text(i + 1).parse().unwrap_or_else(|_| usage("--harness takes a PID"));
                i += 2;
            }
            Some("--pidns") => {
                plan.pidns = true;
                i += 1;
            }
            Some("--gid") => {
                plan.gid = Some(text(i + 1).parse().unwrap_or_else(|_| usage("--gid takes a number")));
                i += 2;
            }
            Some("--hostname") => {
                plan.hostname = Some(cstring(text(i + 1)));
                i += 2;
            }
            Some("--dev") => {
                let (host_dev, socket) = (text(i + 1), text(i + 2));
                let mut links: Vec<(CString, CString)> =
                    DEVICES.iter().map(|d| (cstring(format!("{host_dev}/{d}")), cstring(format!("/dev/{d}")))).collect();
                links.push((cstring("/proc/self/fd"), cstring("/dev/fd")));
                links.push((cstring(socket), cstring("/dev/log")));
                plan.dev = Some((cstring(host_dev), links));
                i += 3;
            }
            Some("--bind") => {
                plan.binds.push((cstring(args[i + 1].clone().into_vec()), cstring(text(i + 2))));
                i += 3;
            }
            Some("--") => {
                plan.argv = args[i + 1..].iter().map(|a| cstring(a.as_bytes())).collect();
                break;
            }
            _ => usage("unknown option"),
        }
    }
    if plan.harness == 0 || plan.argv.is_empty() {
        usage("run needs --harness PID and -- PROGRAM");
    }
    plan
}

/// Close every descriptor but `keep` (the guards hold none of the program's pipes).
fn close_all_but(keep: c_int) {
    // SAFETY: closes descriptors of this process only.
    unsafe {
        if keep > 0 {
            close_range(0, (keep - 1) as c_uint, 0);
        }
        close_range(keep as c_uint + 1, c_uint::MAX, 0);
    }
}

/// End this process as `status` (a wait status) says: the same code, or the same signal,
/// without a core file.
fn end_as(status: c_int) -> ! {
    // SAFETY: system calls only.
    unsafe {
        if let Some(sig) = signalled(status) {
            setrlimit(RLIMIT_CORE, &Rlimit { cur: 0, max: 0 });
            signal(sig, SIG_DFL);
            let mut only = SigSet([0; 16]);
            sigemptyset(&mut only);
            sigaddset(&mut only, sig);
            sigprocmask(SIG_UNBLOCK, &only, std::ptr::null_mut());
            kill(getpid(), sig);
            _exit(128 + sig);
        }
        _exit((status >> 8) & 0xff)
    }
}

fn run(plan: Plan) -> ! {
    // SAFETY: system calls on memory prepared above; between fork and exec, no allocation.
    unsafe {
        // `kill(0, …)` below must reach our own group (the harness spawned us as its leader).
        if getpgrp() != getpid() {
            check(setpgid(0, 0), "setpgid");
        }
        let all = all_signals();
        let mut mask = SigSet([0; 16]);
        check(sigprocmask(SIG_SETMASK, &all, &mut mask), "sigprocmask");
        let parent_gone = __libc_current_sigrtmax();
        check(prctl(PR_SET_PDEATHSIG, parent_gone as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong), "prctl");
        if getppid() != plan.harness {
            _exit(EXIT_ORPHANED);
        }
        let mut status = [0 as c_int; 2];
        check(pipe2(status.as_mut_ptr(), O_CLOEXEC), "pipe2");
        let namespace = plan.pidns && unshare(CLONE_NEWPID) == 0;
        let init = fork();
        check(init, "fork");
        if init > 0 {
            close(status[1]);
            relay(plan.harness, parent_gone, init, status[0]);
        }
        // The init: it dies with the guard, and with it the namespace.
        close(status[0]);
        check(prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong), "prctl");
        let mut out = PollFd { fd: status[1], events: POLLOUT, revents: 0 };
        if poll(&mut out, 1, 0) == 1 && out.revents & POLLERR != 0 {
            _exit(EXIT_ORPHANED);
        }
        check(prctl(PR_SET_CHILD_SUBREAPER, 1 as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong), "prctl");
        let program = fork();
        check(program, "fork");
        if program > 0 {
            init_guard(program, status[1]);
        }
        close(status[1]);
        if namespace {
            check(setpgid(0, 0), "setpgid");
        }
        check(prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong), "prctl");
        enter_namespaces(&plan);
        if let Some(gid) = plan.gid {
            check(setgid(gid), "setgid");
        }
        check(sigprocmask(SIG_SETMASK, &mask, std::ptr::null_mut()), "sigprocmask");
        let mut argv: Vec<*const c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        execvp(argv[0], argv.as_ptr());
        let _ = writeln!(
            std::io::stderr(),
            "starttls-guard: exec {}: {}",
            plan.argv[0].to_string_lossy(),
            std::io::Error::last_os_error()
        );
        _exit(EXIT_NO_EXEC);
    }
}

/// The program's mount and host-name namespaces (a daemon's): a host name of its own, a private
/// `/dev` whose `log` is our syslog socket, bind mounts over compiled-in paths.
fn enter_namespaces(plan: &Plan) {
    let mut flags = 0;
    if plan.hostname.is_some() || plan.dev.is_some() || !plan.binds.is_empty() {
        flags |= CLONE_NEWNS;
    }
    if plan.hostname.is_some() {
        flags |= CLONE_NEWUTS;
    }
    if flags == 0 {
        return;
    }
    let null = std::ptr::null();
    // SAFETY: system calls on NUL-terminated strings prepared before fork.
    unsafe {
        check(unshare(flags), "unshare");
        // Nothing we mount propagates back to the host.
        check(mount(c"none".as_ptr(), c"/".as_ptr(), null, MS_REC | MS_PRIVATE, null.cast()), "mount --make-rprivate /");
        if let Some(h) = &plan.hostname {
            check(sethostname(h.as_ptr(), h.as_bytes().len()), "sethostname");
        }
        if let Some((host_dev, links)) = &plan.dev {
            check(mount(c"/dev".as_ptr(), host_dev.as_ptr(), null, MS_BIND | MS_REC, null.cast()), "bind /dev");
            check(
                mount(c"tmpfs".as_ptr(), c"/dev".as_ptr(), c"tmpfs".as_ptr(), MS_NOSUID | MS_NOEXEC, c"mode=0755,size=64k".as_ptr().cast()),
                "mount a private /dev",
            );
            for (target, link) in links {
                check(symlink(target.as_ptr(), link.as_ptr()), "symlink in /dev");
            }
        }
        for (source, target) in &plan.binds {
            check(mount(source.as_ptr(), target.as_ptr(), null, MS_BIND, null.cast()), "bind mount");
        }
    }
}

/// The guard: forward signals to the init, and once it has ended, end as the program did.
fn relay(harness: Pid, parent_gone: c_int, init: Pid, status: c_int) -> ! {
    close_all_but(status);
    let all = all_signals();
    // SAFETY: system calls only.
    unsafe {
        loop {
            let sig = sigwaitinfo(&all, std::ptr::null_mut());
            if sig == SIGCHLD {
                let mut own = 0;
                if waitpid(init, &mut own, WNOHANG) == init {
                    let mut word = [0u8; 4];
                    let n = read(status, word.as_mut_ptr().cast(), word.len());
                    end_as(if n == 4 { i32::from_ne_bytes(word) } else { own });
                }
            } else if sig == parent_gone {
                // The thread that spawned us ended, or the harness did: only the latter matters.
                if getppid() != harness {
                    kill(0, SIGKILL);
                    _exit(EXIT_ORPHANED);
                }
            } else if sig > 0 && sig != SIGPIPE {
                kill(init, sig);
            }
        }
    }
}

/// The init: reap whatever ends in its namespace, forward signals to the program, and once the
/// program and everything it left running have ended, say how the program ended.
fn init_guard(program: Pid, status: c_int) -> ! {
    close_all_but(status);
    let all = all_signals();
    let mut ended: Option<c_int> = None;
    // SAFETY: system calls only.
    unsafe {
        loop {
            let sig = sigwaitinfo(&all, std::ptr::null_mut());
            if sig == SIGCHLD {
                let mut code = 0;
                loop {
                    let pid = waitpid(-1, &mut code, WNOHANG);
                    if pid == program {
                        ended = Some(code);
                    } else if pid == 0 {
                        break;
                    } else if pid < 0 {
                        if let Some(code) = ended {
                            let word = code.to_ne_bytes();
                            write(status, word.as_ptr().cast(), word.len());
                            _exit(0);
                        }
                        break;
                    }
                }
            } else if sig > 0 && sig != SIGPIPE && ended.is_none() {
                kill(program, sig);
            }
        }
    }
}

/// The watchdog's state: the groups the harness started, and what else it knows of the run.
struct Watch {
    harness: Pid,
    marker: Vec<u8>,
    cgroup: Option<(std::path::PathBuf, std::path::PathBuf)>,
    groups: std::collections::BTreeSet<Pid>,
}

fn parse_watch(args: &[OsString]) -> Watch {
    let mut w = Watch { harness: 0, marker: Vec::new(), cgroup: None, groups: Default::default() };
    let mut i = 0;
    let (mut cgroup, mut home) = (None, None);
    while i + 1 < args.len() {
        let value = args[i + 1].clone();
        match args[i].to_str() {
            Some("--harness") => w.harness = value.to_string_lossy().parse().unwrap_or_else(|_| usage("--harness")),
            Some("--marker") => w.marker = format!("STARTTLS_MATRIX_RUN={}", value.to_string_lossy()).into_bytes(),
            Some("--cgroup") => cgroup = Some(std::path::PathBuf::from(value)),
            Some("--home") => home = Some(std::path::PathBuf::from(value)),
            _ => usage("unknown option"),
        }
        i += 2;
    }
    if let (Some(c), Some(h)) = (cgroup, home) {
        w.cgroup = Some((c, h));
    }
    if w.harness == 0 || w.marker.is_empty() {
        usage("watchdog needs --harness PID and --marker TOKEN");
    }
    w
}

/// Processes whose environment carries the run's marker, and the process group of each pid.
fn marked(marker: &[u8]) -> Vec<Pid> {
    let me = std::process::id() as Pid;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker))
        })
        .collect()
}

/// Members of a process group (read from /proc).
fn members(pgid: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<Pid>().ok()))
                == Some(pgid)
        })
        .collect()
}

fn watchdog(mut w: Watch) -> ! {
    let stdin = std::io::stdin();
    let mut ended = false;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix('+').and_then(|n| n.parse().ok()) {
            w.groups.insert(n);
        } else if let Some(n) = line.strip_prefix('-').and_then(|n| n.parse::<Pid>().ok()) {
            w.groups.remove(&n);
        } else if line == "END" {
            ended = true;
            break;
        }
    }
    let cgroup = w.cgroup.take();
    if ended {
        // A run that ended: the harness goes home, what it left in the run's cgroup ends.
        if let Some((dir, home)) = &cgroup {
            let _ = std::fs::write(home.join("cgroup.procs"), w.harness.to_string());
            end_cgroup(dir);
        }
        std::process::exit(0);
    }
    // The harness is gone (its end of our input closed with it): end everything of the run.
    if let Some((dir, _)) = &cgroup {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let mut found = Vec::new();
        for g in &w.groups {
            found.extend(members(*g));
        }
        found.extend(marked(&w.marker));
        if found.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        for pid in found {
            // SAFETY: a process of a group the harness started, or one carrying its marker.
            unsafe { kill(pid, SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Some((dir, _)) = &cgroup {
        end_cgroup(dir);
    }
    std::process::exit(0);
}

/// Kill what is left in a cgroup (nested ones included: a run started by a run) and remove it
/// and them once empty (at most 2 s).
fn end_cgroup(dir: &std::path::Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while remove_tree(dir).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Remove a cgroup after its children (a cgroup holds only its files and child cgroups).
fn remove_tree(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("run") => run(parse_run(&args[1..])),
        Some("watchdog") => watchdog(parse_watch(&args[1..])),
        _ => usage("usage: starttls-guard run … -- PROGRAM ARGS | starttls-guard watchdog …"),
    }
}
