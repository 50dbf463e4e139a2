//! Which TLS library a process really loaded: the shared objects a running process has mapped
//! (`/proc/PID/maps`), or those the dynamic loader resolves for a program under an environment
//! (`ld.so --list`, which does not run the program), with the version read from the library
//! file itself. A version reported this way is the one the cells ran with, whatever the
//! harness itself links.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A TLS library family whose shared objects we recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LibraryFamily {
    Openssl,
    Gnutls,
}

impl LibraryFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            LibraryFamily::Openssl => "openssl",
            LibraryFamily::Gnutls => "gnutls",
        }
    }

    /// The family of a shared object's file name (`libssl.so.3`, `libgnutls.so.30`), and whether
    /// it is the file that holds the version text (libcrypto for OpenSSL).
    fn of(file: &str) -> Option<(LibraryFamily, bool)> {
        if file.starts_with("libssl.so") {
            Some((LibraryFamily::Openssl, false))
        } else if file.starts_with("libcrypto.so") {
            Some((LibraryFamily::Openssl, true))
        } else if file.starts_with("libgnutls.so") {
            Some((LibraryFamily::Gnutls, true))
        } else {
            None
        }
    }
}

/// A TLS library as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub family: LibraryFamily,
    /// As the library's own text says: `OpenSSL 3.0.19 27 Jan 2026`, `GnuTLS 3.7.9`; `None` if
    /// the file holds no version we can read.
    pub version: Option<String>,
    /// The shared object (`libssl.so.3` for OpenSSL, `libgnutls.so.30`), resolved.
    pub path: PathBuf,
}

impl Loaded {
    /// `OpenSSL 3.0.19 27 Jan 2026 (/usr/lib/x86_64-linux-gnu/libssl.so.3)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.version.as_deref().unwrap_or(match self.family {
                LibraryFamily::Openssl => "OpenSSL (version not readable)",
                LibraryFamily::Gnutls => "GnuTLS (version not readable)",
            }),
            self.path.display()
        )
    }
}

/// The version text in a library file: OpenSSL's `OPENSSL_VERSION_TEXT` in libcrypto
/// (`OpenSSL 3.0.19 27 Jan 2026`, `OpenSSL 1.1.1w  11 Sep 2023`), GnuTLS's version in its
/// logging banner (`GnuTLS 3.7.9`).
/// A file read once per process for its identity (a run measures the same few libraries for
/// every MTA it starts, and reading a 4.5 MB libcrypto is milliseconds each time).
pub fn version_in_file(family: LibraryFamily, path: &Path) -> Option<String> {
    type Key = (LibraryFamily, PathBuf, u64, Option<std::time::SystemTime>, u64);
    static SEEN: std::sync::Mutex<BTreeMap<Key, Option<String>>> = std::sync::Mutex::new(BTreeMap::new());
    let meta = std::fs::metadata(path).ok()?;
    use std::os::unix::fs::MetadataExt;
    let key = (family, path.to_path_buf(), meta.len(), meta.modified().ok(), meta.ino());
    if let Some(known) = SEEN.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return known;
    }
    let found = read_version(family, path);
    if let Ok(mut m) = SEEN.lock() {
        m.insert(key, found.clone());
    }
    found
}

fn read_version(family: LibraryFamily, path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let pattern = match family {
        LibraryFamily::Openssl => r"OpenSSL \d+\.\d+\.\d+[a-z]?(?:-[A-Za-z0-9]+)? +\d{1,2} [A-Z][a-z]{2} \d{4}",
        LibraryFamily::Gnutls => r"GnuTLS \d+\.\d+\.\d+",
    };
    // On the bytes: no copy of the whole file into a string.
    let re = regex::bytes::Regex::new(pattern).expect("a valid pattern");
    re.find(&bytes).map(|m| String::from_utf8_lossy(m.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The TLS libraries among shared-object paths, one per family, each with its version.
pub fn among(paths: impl IntoIterator<Item = PathBuf>) -> Vec<Loaded> {
    // family → (the library's path, the file with the version)
    let mut found: BTreeMap<LibraryFamily, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some((family, holds_version)) = LibraryFamily::of(name) else { continue };
        let entry = found.entry(family).or_default();
        if holds_version {
            entry.1.get_or_insert(path.clone());
        }
        if !holds_version || family == LibraryFamily::Gnutls {
            entry.0.get_or_insert(path);
        }
    }
    found
        .into_iter()
        .filter_map(|(family, (lib, versioned))| {
            let path = lib.or(versioned.clone())?;
            Some(Loaded { family, version: versioned.and_then(|v| version_in_file(family, &v)), path })
        })
        .collect()
}

/// The TLS libraries a running process has mapped.
pub fn loaded_by(pid: i32) -> Vec<Loaded> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    among(maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with('/')).map(PathBuf::from))
}

/// The TLS libraries mapped by any process of a program started under a guard whose PID is
/// `guard` ([`crate::guard::program_processes`]: wherever they are, the guards excluded).
pub fn loaded_by_program(guard: i32) -> Vec<Loaded> {
    let mut paths = Vec::new();
    for pid in crate::guard::program_processes(guard) {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        paths.extend(
            maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with('/')).map(PathBuf::from),
        );
    }
    among(paths)
}

/// The dynamic loader, which resolves a program's libraries without running it.
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The TLS libraries the dynamic loader resolves for `program` under `env` added to ours
/// (`LD_LIBRARY_PATH` included): what the program loads when it starts, unless it loads more
/// itself (dlopen, as Perl and Python modules do).
pub async fn resolved_for(program: &Path, env: &[(String, String)]) -> Vec<Loaded> {
    let args = ["--list", &program.to_string_lossy()];
    let spec = crate::Spec {
        program: LOADER.into(),
        args: args.iter().map(Into::into).collect(),
        env: env.to_vec(),
        stdin: None,
        stdin_then: None,
        timeout: Duration::from_secs(10),
        confine: crate::Confine::Group,
    };
    let out = match crate::run(&spec).await {
        Ok(crate::Exit::Finished { status, stdout, .. }) if status.success() => stdout,
        _ => return Vec::new(),
    };
    // `	libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x…)`
    among(out.lines().filter_map(|l| l.split_once("=> ")).filter_map(|(_, rest)| {
        let path = rest.split(" (").next()?.trim();
        path.starts_with('/').then(|| PathBuf::from(path))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_texts() {
        let dir = tempfile::tempdir().unwrap();
        let crypto = dir.path().join("libcrypto.so.3");
        std::fs::write(&crypto, b"\x00\x01junk OpenSSL 1.1.1w  11 Sep 2023\x00more").unwrap();
        assert_eq!(version_in_file(LibraryFamily::Openssl, &crypto).as_deref(), Some("OpenSSL 1.1.1w 11 Sep 2023"));
        let ssl = dir.path().join("libssl.so.3");
        std::fs::write(&ssl, b"nothing").unwrap();
        let found = among([ssl.clone(), crypto, dir.path().join("libc.so.6")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, ssl, "the libssl path stands for the library");
        assert_eq!(found[0].version.as_deref(), Some("OpenSSL 1.1.1w 11 Sep 2023"));
        let gnutls = dir.path().join("libgnutls.so.30");
        std::fs::write(&gnutls, b"Enabled GnuTLS 3.7.9 logging...").unwrap();
        assert_eq!(among([gnutls])[0].version.as_deref(), Some("GnuTLS 3.7.9"));
    }

    #[tokio::test]
    async fn the_loader_resolves_the_system_openssl_program() {
        let Some(openssl) = crate::which("openssl") else { return };
        let found = resolved_for(&openssl, &[]).await;
        let ssl = found.iter().find(|l| l.family == LibraryFamily::Openssl).expect("openssl links libssl");
        assert!(ssl.version.as_deref().is_some_and(|v| v.starts_with("OpenSSL 3")), "{ssl:?}");
    }
}
