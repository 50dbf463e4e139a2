//! The MTAs' users without touching `/etc/passwd`: nss_wrapper with passwd and group files of
//! our own (the system's, read only, plus the MTA's accounts), and lookups of accounts there are.

use crate::translate::{Dirs, Result};
use std::path::{Path, PathBuf};

/// `libnss_wrapper.so` among the extracted helper libraries.
pub fn nss_wrapper(libs: &Path) -> Option<PathBuf> {
    let p = libs.join("usr/lib/x86_64-linux-gnu/libnss_wrapper.so");
    p.exists().then_some(p)
}

/// passwd and group files for nss_wrapper: the system's (read only) plus the MTA's users.
pub fn nss_files(d: &Dirs<'_>, users: &[String], groups: &[String]) -> Result<(PathBuf, PathBuf)> {
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for u in users {
        passwd.push_str(u);
        passwd.push('\n');
    }
    for g in groups {
        group.push_str(g);
        group.push('\n');
    }
    Ok((d.file("nss/passwd", &passwd, 0o644)?, d.file("nss/group", &group, 0o644)?))
}

/// The uid and gid of an existing account.
pub fn uid_gid(user: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null, checked above.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

/// The gid of an existing group.
pub fn gid_of(group: &str) -> Option<u32> {
    let name = std::ffi::CString::new(group).ok()?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() { None } else { Some(unsafe { (*gr).gr_gid }) }
}
