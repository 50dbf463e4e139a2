//! The process groups we started and have not reaped, so that Ctrl-C, SIGTERM and panics can
//! end every one of them (and nothing else): client programs, batch workers, MTA daemons; and
//! the processes there are, as /proc shows them.

use std::collections::BTreeSet;
use std::sync::Mutex;

static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Track a process group whose leader is our unreaped child.
pub fn register(pgid: i32) {
    if let Ok(mut g) = LIVE.lock() {
        g.insert(pgid);
    }
}

/// Forget a group (its leader was reaped, or every member ended).
pub fn unregister(pgid: i32) {
    if let Ok(mut g) = LIVE.lock() {
        g.remove(&pgid);
    }
}

/// The groups tracked now.
pub fn live() -> Vec<i32> {
    LIVE.lock().map(|g| g.iter().copied().collect()).unwrap_or_default()
}

/// SIGKILL every member of every group we started and have not reaped (Ctrl-C, panic). Members
/// are killed one by one too: a daemon's children may have left the group's leader behind.
pub fn kill_all() {
    for pgid in live() {
        for pid in group_members(pgid) {
            // SAFETY: a process of a group we created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SAFETY: the group leader is ours and not yet reaped: the id cannot have been reused.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
}

/// Processes whose process group is `pgid` and that have not ended (read from /proc; a group
/// that has no process left, the usual case, is known at once without reading it).
pub fn group_members(pgid: i32) -> Vec<i32> {
    // SAFETY: signal 0 only asks whether the group has a process (EPERM: one we may not signal).
    let empty = pgid <= 0
        || (unsafe { libc::killpg(pgid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH));
    if empty {
        return Vec::new();
    }
    processes().into_iter().filter(|p| !p.zombie && p.pgrp == pgid).map(|p| p.pid).collect()
}

/// A process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// It has ended; its parent has not reaped it yet.
    pub zombie: bool,
    /// When it started, in clock ticks since boot: with the PID, it names one process.
    pub start: u64,
}

/// One process, if it exists (a zombie included).
pub fn process(pid: i32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`: comm may hold spaces, so split after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Process {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        zombie: *fields.first()? == "Z",
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether a process exists and has not ended.
pub fn alive(pid: i32) -> bool {
    process(pid).is_some_and(|p| !p.zombie)
}

/// Every process there is now.
pub fn processes() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(process).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_group_has_us() {
        // SAFETY: getpgrp has no preconditions.
        let pgid = unsafe { libc::getpgrp() };
        assert!(group_members(pgid).contains(&(std::process::id() as i32)));
        let me = process(std::process::id() as i32).unwrap();
        // SAFETY: getppid has no preconditions.
        assert_eq!((me.ppid, me.zombie), (unsafe { libc::getppid() }, false));
        assert!(me.start > 0);
    }
}
