//! The process groups we started and have not reaped, so that Ctrl-C, SIGTERM and panics can
//! end every one of them (and nothing else): client programs, batch workers, MTA daemons.

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

/// Processes whose process group is `pgid` and that have not ended (read from /proc).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // `pid (comm) state ppid pgrp …`: comm may hold spaces, so split after ')'.
                // A zombie has ended; its parent reaps it.
                let fields: Vec<&str> =
                    stat.rsplit_once(')').map_or(Vec::new(), |(_, r)| r.split_whitespace().collect());
                fields.first().is_some_and(|s| *s != "Z")
                    && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_group_has_us() {
        // SAFETY: getpgrp has no preconditions.
        let pgid = unsafe { libc::getpgrp() };
        assert!(group_members(pgid).contains(&(std::process::id() as i32)));
    }
}
