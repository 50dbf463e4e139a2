//! One watchdog per harness process (`starttls-guard watchdog`, started at the first process
//! we start): it is told of every process group we start and reap, and when the harness dies —
//! its end of the watchdog's input closes with it, SIGKILL included — it kills them all, and
//! everything in the run's cgroup (`cgroup.kill`, where this machine lets us make one), and every
//! process carrying the run's marker in its environment. So a program started with plain
//! `posix_spawn`, with no guard of its own, still ends with the harness.

use crate::guard_binary;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable every process we start carries, valued with [`marker`].
pub const MARKER_VAR: &str = "STARTTLS_MATRIX_RUN";

struct Watchdog {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// The run's cgroup, if we made one and moved in.
    cgroup: Option<PathBuf>,
}

static WATCHDOG: OnceLock<Mutex<Watchdog>> = OnceLock::new();

/// What names this harness process among all processes: its PID and its start time.
pub fn marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| {
        let me = std::process::id() as i32;
        let start = crate::registry::process(me).map_or(0, |p| p.start);
        format!("{me}-{start}")
    })
}

/// The cgroup v2 directory this process is in, and the filesystem's mount point, if any.
fn own_cgroup() -> Option<PathBuf> {
    let line = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = line.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // `… mount-point … - cgroup2 …`: the fifth field is the mount point.
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right.starts_with("cgroup2 ").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    Some(mount.join(path.trim_start_matches('/')))
}

/// Make the run's cgroup under `home` and move this process into it; `None` where the machine
/// does not let us (no cgroup v2, no permission): the groups and the marker still end the rest.
fn enter_cgroup(home: &Path) -> Option<PathBuf> {
    remove_stale(home);
    let dir = home.join(format!("starttls-matrix-{}", marker()));
    std::fs::create_dir(&dir).ok()?;
    let moved = std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).is_ok()
        && dir.join("cgroup.kill").exists();
    if !moved {
        let _ = std::fs::write(home.join("cgroup.procs"), std::process::id().to_string());
        let _ = std::fs::remove_dir(&dir);
        return None;
    }
    Some(dir)
}

/// The run cgroups of harness processes that are gone and left theirs behind (a harness and its
/// watchdog killed together): empty, they are removed; one still holding processes is left.
fn remove_stale(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, start)) = name.strip_prefix("starttls-matrix-").and_then(|m| m.split_once('-')) else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else { continue };
        if crate::registry::process(pid).is_some_and(|p| p.start == start) {
            continue;
        }
        let _ = remove_tree(&entry.path());
    }
}

/// Remove a cgroup after its children (it holds only its files and child cgroups); fails while
/// any holds a process.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

extern "C" fn at_exit() {
    // Never wait at exit for a lock another thread holds: the watchdog then reads the end of
    // its input and ends the run's processes itself.
    if let Some(w) = WATCHDOG.get()
        && let Ok(mut w) = w.try_lock()
    {
        end(&mut w);
    }
}

fn start() -> Watchdog {
    let Ok(guard) = guard_binary::path() else {
        return Watchdog { child: None, stdin: None, cgroup: None };
    };
    let home = own_cgroup().filter(|h| std::env::var_os("STARTTLS_MATRIX_NO_CGROUP").is_none() && h.is_dir());
    let cgroup_dir = home.as_ref().map(|h| h.join(format!("starttls-matrix-{}", marker())));
    let mut cmd = Command::new(guard);
    cmd.arg0("starttls-guard")
        .args(["watchdog", "--harness", &std::process::id().to_string(), "--marker", marker()])
        .env_remove(MARKER_VAR)
        // Its own group: a terminal's Ctrl-C, or a kill of the harness's group, leaves it to
        // end what the harness started.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let (Some(dir), Some(home)) = (&cgroup_dir, &home) {
        cmd.arg("--cgroup").arg(dir).arg("--home").arg(home);
    }
    use std::os::unix::process::CommandExt;
    let Ok(mut child) = cmd.spawn() else {
        return Watchdog { child: None, stdin: None, cgroup: None };
    };
    let stdin = child.stdin.take();
    // After the watchdog started (it stays outside): what we start from here on is in the cgroup.
    let cgroup = home.as_deref().and_then(enter_cgroup);
    // SAFETY: registers a plain function to run at exit.
    unsafe { libc::atexit(at_exit) };
    Watchdog { child: Some(child), stdin, cgroup }
}

fn with<T>(f: impl FnOnce(&mut Watchdog) -> T) -> T {
    let w = WATCHDOG.get_or_init(|| Mutex::new(start()));
    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut w)
}

/// Make sure the watchdog runs (and the run's cgroup is entered) before the first process is
/// started.
pub fn ensure() {
    with(|_| ());
}

fn tell(line: &str) {
    with(|w| {
        if let Some(stdin) = w.stdin.as_mut() {
            let _ = stdin.write_all(line.as_bytes());
        }
    });
}

/// A process group we started (its leader's PID).
pub fn started(pgid: i32) {
    tell(&format!("+{pgid}\n"));
}

/// A process group whose leader we reaped.
pub fn reaped(pgid: i32) {
    tell(&format!("-{pgid}\n"));
}

/// Whether the run is in a cgroup of its own (what ends with the harness is then everything).
pub fn in_cgroup() -> bool {
    with(|w| w.cgroup.is_some())
}

/// The run is over: the watchdog moves this process back to its cgroup, ends what was left in
/// the run's, and exits (at most 3 s). Also run at exit.
pub fn finish() {
    let Some(w) = WATCHDOG.get() else { return };
    end(&mut w.lock().unwrap_or_else(|p| p.into_inner()));
}

fn end(w: &mut Watchdog) {
    if let Some(mut stdin) = w.stdin.take() {
        let _ = stdin.write_all(b"END\n");
    }
    if let Some(mut child) = w.child.take() {
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    w.cgroup = None;
}
