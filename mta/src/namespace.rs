//! Private namespaces for an MTA that needs them, set up between fork and exec: a host name of
//! its own (sendmail sleeps 60 s on an unqualified one), bind mounts over compiled-in paths
//! (OpenSMTPD's spool, sendmail's `openssl.cnf`), and a private `/dev` whose `log` is our
//! syslog socket. Everything lives in the child's own mount namespace and vanishes with it;
//! nothing on the host is written.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
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

/// Devices a daemon may open, reached through the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The plan with every string made ready before fork: the hook itself only makes syscalls.
pub struct Hook {
    flags: libc::c_int,
    hostname: Option<CString>,
    dev: Option<(CString, Vec<(CString, CString)>)>,
    binds: Vec<(CString, CString)>,
}

impl NsPlan {
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.binds.is_empty() && self.private_dev.is_none()
    }

    /// Prepare the hook (allocations happen here, in the parent).
    pub fn hook(&self) -> io::Result<Hook> {
        if self.is_empty() {
            return Ok(Hook { flags: 0, hostname: None, dev: None, binds: Vec::new() });
        }
        let mut flags = libc::CLONE_NEWNS;
        if self.hostname.is_some() {
            flags |= libc::CLONE_NEWUTS;
        }
        let hostname = self
            .hostname
            .as_deref()
            .map(|h| CString::new(h).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a host name")))
            .transpose()?;
        let dev = match &self.private_dev {
            None => None,
            Some(d) => {
                let mut links = Vec::new();
                for name in DEVICES {
                    links.push((cstr(&d.host_dev.join(name))?, cstr(&Path::new("/dev").join(name))?));
                }
                links.push((cstr(Path::new("/proc/self/fd"))?, cstr(Path::new("/dev/fd"))?));
                links.push((cstr(&d.syslog_socket)?, cstr(Path::new("/dev/log"))?));
                Some((cstr(&d.host_dev)?, links))
            }
        };
        let binds = self.binds.iter().map(|(s, t)| Ok((cstr(s)?, cstr(t)?))).collect::<io::Result<Vec<_>>>()?;
        Ok(Hook { flags, hostname, dev, binds })
    }
}

impl Hook {
    /// Run in the child between fork and exec: only async-signal-safe calls, no allocation.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: plain syscalls on NUL-terminated strings prepared before fork.
        unsafe {
            if self.flags == 0 {
                return Ok(());
            }
            check(libc::unshare(self.flags))?;
            // Nothing we mount propagates back to the host.
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            if let Some(h) = &self.hostname {
                check(libc::sethostname(h.as_ptr(), h.as_bytes().len()))?;
            }
            if let Some((host_dev, links)) = &self.dev {
                check(libc::mount(
                    c"/dev".as_ptr(),
                    host_dev.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NOEXEC,
                    c"mode=0755,size=64k".as_ptr().cast(),
                ))?;
                for (target, link) in links {
                    check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
                }
            }
            for (source, target) in &self.binds {
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
        }
        Ok(())
    }
}
