//! Private namespaces for an MTA that needs them: a host name of its own (sendmail sleeps 60 s on
//! an unqualified one), bind mounts over compiled-in paths (OpenSMTPD's spool, sendmail's
//! `openssl.cnf`), and a private `/dev` whose `log` is our syslog socket. Planned here, set up
//! by the guard program in the daemon's own process before it execs ([`procs::Setup`]).
//! Everything lives in the child's own mount namespace and vanishes with it; nothing on the host
//! is written.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a daemon's namespaces look like.
#[derive(Debug, Clone, Default)]
pub struct NsPlan {
    /// A UTS namespace with this host name.
    pub hostname: Option<String>,
    /// Bind mounts (source → existing target), after the private `/dev`.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// A private `/dev`: the host's devices are reached through `host_dev` (a bind of the
    /// host's `/dev`), and `/dev/log` is this socket.
    pub private_dev: Option<PrivateDev>,
}

#[derive(Debug, Clone)]
pub struct PrivateDev {
    /// An empty directory of ours where the host's `/dev` is bound.
    pub host_dev: PathBuf,
    /// Our syslog socket, reached as `/dev/log`.
    pub syslog_socket: PathBuf,
}

/// A resolver that never leaves the machine, for a daemon's mount namespace: `/etc/hosts` with
/// `names` on 127.0.0.1, an `nsswitch.conf` that looks host names up in it only, and a
/// `resolv.conf` whose only name server is loopback (`lookup file` for OpenSMTPD's resolver).
/// Without it sendmail looks its own host name up, and OpenSMTPD each client's address, through
/// the machine's name server: traffic off the machine, and 5 s waits when it is slow.
/// The files are written under `dir`; the returned binds put them over the system's.
pub fn local_resolver(dir: &Path, names: &[&str]) -> io::Result<Vec<(PathBuf, PathBuf)>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        ("hosts", format!("127.0.0.1 {} localhost\n::1 localhost\n", names.join(" "))),
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files\n".to_string()),
        ("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\nlookup file\n".to_string()),
    ];
    let mut binds = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        binds.push((path, Path::new("/etc").join(name)));
    }
    Ok(binds)
}

impl NsPlan {
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.binds.is_empty() && self.private_dev.is_none()
    }

    /// What the guard program sets up in the daemon's own process before it execs, with `gid`
    /// (the group it runs as, when it checks it is "setgid" to one).
    pub fn setup(&self, gid: Option<u32>) -> procs::Setup {
        procs::Setup {
            gid,
            hostname: self.hostname.clone(),
            private_dev: self.private_dev.as_ref().map(|d| (d.host_dev.clone(), d.syslog_socket.clone())),
            binds: self.binds.clone(),
        }
    }
}
