//! The built-in clients' batch worker (`PROGRAM --batch`): many cells in one process, each on a
//! thread of its own, so that a run — above all `run --repeat N` — starts a client process once
//! per stack, not once per cell. The protocol is the harness's (`harness/src/batch.rs`): `READY`;
//! `RUN <id> <argv as JSON>` → `ANSWER <id> {"exit":N,"stdout":…,"stderr":…}`, what the one-shot
//! program would have exited with and printed; `CANCEL <id>` shuts the cell's socket down, as
//! killing a one-shot process would (the socket it registered, or, for a library that owns its
//! connection, every connection of the process to the cell's `--connect` address); the end of
//! stdin ends the worker.
//!
//! A cell's prints go to its own buffers through [`out`] and [`err`], which the one-shot program
//! sends to stdout and stderr.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// The flag that makes a built-in client a batch worker.
pub const FLAG: &str = "--batch";

/// What one cell running on this thread printed, and its request id.
struct Capture {
    id: u64,
    stdout: String,
    stderr: String,
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// The sockets of the cells running now, for CANCEL; and the cells cancelled before connecting.
#[derive(Default)]
struct Sockets {
    open: HashMap<u64, TcpStream>,
    cancelled: HashSet<u64>,
    /// Each running cell's `--connect` address.
    targets: HashMap<u64, std::net::SocketAddr>,
}

fn sockets() -> MutexGuard<'static, Sockets> {
    static SOCKETS: LazyLock<Mutex<Sockets>> = LazyLock::new(Mutex::default);
    // A cell that panicked while holding the lock left nothing half-done in a map of sockets.
    SOCKETS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Print a line of the program's standard output (the RESULT or DESCRIBE line).
pub fn out(line: &str) {
    let captured = CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        c.as_mut().map(|c| {
            c.stdout.push_str(line);
            c.stdout.push('\n');
        })
    });
    if captured.is_none() {
        println!("{line}");
    }
}

/// Print text on the program's standard error.
pub fn err(text: &str) {
    let captured = CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        c.as_mut().map(|c| {
            c.stderr.push_str(text);
            if !text.ends_with('\n') {
                c.stderr.push('\n');
            }
        })
    });
    if captured.is_none() {
        eprintln!("{}", text.trim_end_matches('\n'));
    }
}

/// Note a cell's connection, so that a CANCEL can shut it down (one-shot: nothing to do).
pub fn register(tcp: &TcpStream) {
    let Some(id) = CAPTURE.with(|c| c.borrow().as_ref().map(|c| c.id)) else { return };
    let Ok(clone) = tcp.try_clone() else { return };
    let mut s = sockets();
    if s.cancelled.contains(&id) {
        let _ = clone.shutdown(Shutdown::Both);
    }
    s.open.insert(id, clone);
}

fn cancel(id: u64) {
    let mut s = sockets();
    s.cancelled.insert(id);
    if let Some(tcp) = s.open.remove(&id) {
        let _ = tcp.shutdown(Shutdown::Both);
        return;
    }
    // A program that owns its connection (lettre's) registered none: find it by the address it
    // connected to, the cell's `--connect` (no two cells of a run share a server's address).
    if let Some(target) = s.targets.get(&id).copied() {
        shutdown_connections_to(target);
    }
}

/// Shut down every TCP connection of this process to `target` (read from /proc: descriptors
/// that are sockets, and the kernel's table of this process's TCP sockets).
fn shutdown_connections_to(target: std::net::SocketAddr) {
    let std::net::SocketAddr::V4(v4) = target else { return };
    // /proc/net/tcp writes a remote IPv4 address as the little-endian word in hex, then the port.
    let remote = format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port());
    let Ok(table) = std::fs::read_to_string("/proc/self/net/tcp") else { return };
    let inodes: HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&remote.as_str())).then(|| f.get(9).map(|i| i.to_string())).flatten()
        })
        .collect();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for fd in fds.flatten() {
        let Ok(link) = std::fs::read_link(fd.path()) else { continue };
        let link = link.to_string_lossy();
        let Some(inode) = link.strip_prefix("socket:[").and_then(|l| l.strip_suffix(']')) else { continue };
        if let (true, Ok(n)) = (inodes.contains(inode), fd.file_name().to_string_lossy().parse::<i32>()) {
            use std::os::fd::FromRawFd;
            // SAFETY: a socket descriptor of this process, borrowed (never closed here) to shut
            // its connection down.
            let borrowed = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(n) });
            let _ = borrowed.shutdown(Shutdown::Both);
        }
    }
}

/// Run one cell on this thread with its prints captured; returns (exit, stdout, stderr).
fn one(id: u64, argv: Vec<OsString>, program: fn(Vec<OsString>) -> i32) -> (i32, String, String) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Capture { id, stdout: String::new(), stderr: String::new() }));
    let target = argv
        .iter()
        .position(|a| a == "--connect")
        .and_then(|i| argv.get(i + 1)?.to_str()?.parse::<std::net::SocketAddr>().ok());
    if let Some(target) = target {
        sockets().targets.insert(id, target);
    }
    let exit = std::panic::catch_unwind(|| program(argv)).unwrap_or_else(|_| {
        err("the cell's thread panicked");
        101
    });
    let captured = CAPTURE.with(|c| c.borrow_mut().take()).expect("set above");
    let mut s = sockets();
    s.open.remove(&id);
    s.cancelled.remove(&id);
    s.targets.remove(&id);
    (exit, captured.stdout, captured.stderr)
}

/// The worker: `name` is argv[0] for each cell's parse, `program` one run of the one-shot
/// program on argv (with argv[0]). Returns the exit code when stdin ends.
pub fn worker(name: &str, program: fn(Vec<OsString>) -> i32) -> i32 {
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut o = stdout.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(o, "READY");
        let _ = o.flush();
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("CANCEL ").and_then(|id| id.trim().parse::<u64>().ok()) {
            cancel(id);
            continue;
        }
        let Some((id, argv)) = line.strip_prefix("RUN ").and_then(|rest| rest.split_once(' ')) else {
            eprintln!("batch: unknown request: {line}");
            continue;
        };
        let (Ok(id), Ok(args)) = (id.parse::<u64>(), serde_json::from_str::<Vec<String>>(argv)) else {
            eprintln!("batch: malformed request: {line}");
            continue;
        };
        let argv: Vec<OsString> = std::iter::once(name.to_string()).chain(args).map(OsString::from).collect();
        let stdout = stdout.clone();
        std::thread::spawn(move || {
            let (exit, out, err) = one(id, argv, program);
            let answer = serde_json::json!({ "exit": exit, "stdout": out, "stderr": err });
            let mut o = stdout.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(o, "ANSWER {id} {answer}");
            let _ = o.flush();
        });
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prints(argv: Vec<OsString>) -> i32 {
        out(&format!("RESULT {}", argv.len()));
        err("a warning");
        7
    }

    #[test]
    fn a_cell_prints_into_its_own_buffers() {
        let (exit, stdout, stderr) = one(1, vec!["x".into(), "--a".into()], prints);
        assert_eq!((exit, stdout.as_str(), stderr.as_str()), (7, "RESULT 2\n", "a warning\n"));
        // Outside a cell, nothing is captured.
        assert!(CAPTURE.with(|c| c.borrow().is_none()));
    }

    /// A connection the cell never registered (a library that owns it) is found by its address.
    #[test]
    fn a_cancelled_cell_loses_a_connection_it_never_registered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        let (_peer, _) = listener.accept().unwrap();
        shutdown_connections_to(addr);
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &tcp, &mut buf).unwrap(), 0, "shut down: end of stream");
    }

    #[test]
    fn a_cancelled_cell_loses_its_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        fn connects(argv: Vec<OsString>) -> i32 {
            let addr = argv[1].to_str().unwrap().to_string();
            let tcp = TcpStream::connect(addr).unwrap();
            register(&tcp);
            // CANCEL came first: the socket is shut down as it is registered.
            let mut buf = [0u8; 1];
            match std::io::Read::read(&mut &tcp, &mut buf) {
                Ok(0) => 0,
                _ => 1,
            }
        }
        cancel(42);
        let (exit, _, _) = one(42, vec!["x".into(), addr.to_string().into()], connects);
        assert_eq!(exit, 0, "the read saw the shutdown");
        drop(listener);
    }
}
