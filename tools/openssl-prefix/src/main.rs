//! `openssl-prefix VERSION DIR`: builds OpenSSL `VERSION` (`1.1.1` or `3.6`) from the source the
//! openssl-src crate ships, as static libraries, into the install prefix `DIR/prefix`, and writes
//! `DIR/prefix/SOURCE_VERSION` (`openssl-src 111.28.2+1.1.1w`). A prefix whose stamp already names
//! this source is left as it is. `openssl-prefix --source-version VERSION` prints the stamp only.
//!
//! The build goes to `DIR/work` first and replaces the prefix only once it is complete, so an
//! interrupted build never leaves a prefix that looks finished. `make` runs with the jobs that
//! `CARGO_MAKEFLAGS` names (`-j2`); scripts/build-openssl-clients sets it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The file in the prefix that says which source built it.
const STAMP: &str = "SOURCE_VERSION";

/// The OpenSSL release series this tool can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    /// OpenSSL 1.1.1 (openssl-src 111.x).
    V111,
    /// OpenSSL 3.6 (openssl-src 300.6.x).
    V36,
}

impl Series {
    fn parse(name: &str) -> Option<Series> {
        match name {
            "1.1.1" => Some(Series::V111),
            "3.6" => Some(Series::V36),
            _ => None,
        }
    }

    /// The stamp: the crate and its version, which carries the OpenSSL version after the `+`.
    fn source_version(self) -> String {
        let version = match self {
            Series::V111 => openssl_src_111::version(),
            Series::V36 => openssl_src_300::version(),
        };
        format!("openssl-src {version}")
    }

    /// Configure, build and install into `out/install`; returns that directory.
    fn build(self, out: &Path) -> Result<PathBuf, String> {
        let target = env!("OPENSSL_PREFIX_TARGET");
        match self {
            // openssl-src 111 has no fallible build: it panics with its own message.
            Series::V111 => {
                let artifacts = openssl_src_111::Build::new().out_dir(out).target(target).host(target).build();
                Ok(install_dir(artifacts.lib_dir()))
            }
            Series::V36 => {
                let artifacts = openssl_src_300::Build::new().out_dir(out).target(target).host(target).try_build()?;
                Ok(install_dir(artifacts.lib_dir()))
            }
        }
    }
}

/// The install prefix of a `…/install/lib` directory.
fn install_dir(lib_dir: &Path) -> PathBuf {
    lib_dir.parent().unwrap_or(lib_dir).to_path_buf()
}

/// Whether `prefix` is complete and was built from `source`.
fn is_current(prefix: &Path, source: &str) -> bool {
    let stamp = std::fs::read_to_string(prefix.join(STAMP)).unwrap_or_default();
    stamp.trim() == source
        && prefix.join("lib/libssl.a").is_file()
        && prefix.join("lib/libcrypto.a").is_file()
        && prefix.join("include/openssl/ssl.h").is_file()
}

fn build_prefix(series: Series, dir: &Path) -> Result<(), String> {
    let io = |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
    // OpenSSL's Configure takes an absolute --prefix only.
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let dir = &std::fs::canonicalize(dir).map_err(|e| io("resolve", dir, e))?;
    let source = series.source_version();
    let prefix = dir.join("prefix");
    if is_current(&prefix, &source) {
        println!("{}: up to date ({source})", prefix.display());
        return Ok(());
    }
    let work = dir.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| io("remove", &work, e))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| io("create", &work, e))?;
    let installed = series.build(&work)?;
    if prefix.exists() {
        std::fs::remove_dir_all(&prefix).map_err(|e| io("remove", &prefix, e))?;
    }
    std::fs::rename(&installed, &prefix).map_err(|e| io("move the install to", &prefix, e))?;
    std::fs::write(prefix.join(STAMP), format!("{source}\n")).map_err(|e| io("write", &prefix.join(STAMP), e))?;
    std::fs::remove_dir_all(&work).map_err(|e| io("remove", &work, e))?;
    println!("{}: built ({source})", prefix.display());
    Ok(())
}

const USAGE: &str = "usage: openssl-prefix 1.1.1|3.6 DIR          build DIR/prefix\n       \
                     openssl-prefix --source-version 1.1.1|3.6  print the source stamp";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let series = |name: &str| {
        Series::parse(name).ok_or_else(|| format!("unknown OpenSSL version {name:?}: 1.1.1 or 3.6\n{USAGE}"))
    };
    let result = match args.as_slice() {
        [flag, version] if flag == "--source-version" => series(version).map(|s| println!("{}", s.source_version())),
        [version, dir] if !version.starts_with('-') => series(version).and_then(|s| build_prefix(s, Path::new(dir))),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openssl-prefix: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_name_their_series() {
        assert_eq!(Series::parse("1.1.1"), Some(Series::V111));
        assert_eq!(Series::parse("3.6"), Some(Series::V36));
        assert_eq!(Series::parse("3.0"), None);
        assert!(Series::V111.source_version().ends_with("+1.1.1w"), "{}", Series::V111.source_version());
        assert!(Series::V36.source_version().contains("+3.6."), "{}", Series::V36.source_version());
    }

    #[test]
    fn an_empty_or_stale_prefix_is_not_current() {
        let dir = std::env::temp_dir().join(format!("openssl-prefix-test-{}", std::process::id()));
        let source = Series::V36.source_version();
        assert!(!is_current(&dir, &source));
        for file in ["lib/libssl.a", "lib/libcrypto.a", "include/openssl/ssl.h"] {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        std::fs::write(dir.join(STAMP), "openssl-src 300.0.0+3.0.0\n").unwrap();
        assert!(!is_current(&dir, &source), "a prefix from another source is rebuilt");
        std::fs::write(dir.join(STAMP), format!("{source}\n")).unwrap();
        assert!(is_current(&dir, &source));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
