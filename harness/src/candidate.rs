//! A maintainer's candidate build of a TLS library, swapped under every stack that declares it
//! (`compare --candidate openssl=DIR`): which stacks take it and how, which cannot and why, and
//! the dynamic loader's own record of what every process really loaded — so a stack that
//! ignored the swap is never shown as running the candidate.

use crate::matrix::{ClientStack, Matrix};
use report_format::{Library, Linkage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The id suffix of a stack run on the candidate.
pub const SUFFIX: &str = "@candidate";

/// A candidate given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub library: Library,
    /// The directory holding its shared objects (`libssl.so.3`, `libgnutls.so.30`).
    pub dir: PathBuf,
}

/// Why a candidate cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CandidateError {
    #[error("--candidate {0:?}: write LIBRARY=DIR, e.g. openssl=.cache/candidate/openssl-3.6/lib")]
    Syntax(String),
    #[error("--candidate {0}: a candidate is openssl=DIR, gnutls=DIR or rustls=CHECKOUT")]
    NotShared(String),
    #[error("--candidate rustls={0}: no rustls crate there (rustls/Cargo.toml or Cargo.toml naming rustls)")]
    NoRustls(String),
    #[error("--candidate {library}={dir}: no {file} there (scripts/build-candidate openssl 3.6 builds one)")]
    Missing { library: &'static str, dir: String, file: &'static str },
}

/// The shared objects a library's candidate directory must hold.
fn files(library: Library) -> Option<&'static [&'static str]> {
    match library {
        Library::Openssl => Some(&["libssl.so.3", "libcrypto.so.3"]),
        Library::Gnutls => Some(&["libgnutls.so.30"]),
        Library::Rustls | Library::Go | Library::Jsse => None,
    }
}

impl Candidate {
    /// Parse and check `openssl=DIR`.
    pub fn parse(text: &str) -> Result<Candidate, CandidateError> {
        let (name, dir) = text.split_once('=').ok_or_else(|| CandidateError::Syntax(text.into()))?;
        let library =
            Library::ALL.into_iter().find(|l| l.as_str() == name).ok_or_else(|| CandidateError::Syntax(text.into()))?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| PathBuf::from(dir));
        if library == Library::Rustls {
            let is_rustls = |p: &Path| {
                std::fs::read_to_string(p.join("Cargo.toml")).is_ok_and(|t| t.lines().any(|l| l == "name = \"rustls\""))
            };
            return match [dir.join("rustls"), dir.clone()].into_iter().find(|d| is_rustls(d)) {
                Some(krate) => Ok(Candidate { library, dir: krate }),
                None => Err(CandidateError::NoRustls(dir.display().to_string())),
            };
        }
        let needed = files(library).ok_or_else(|| CandidateError::NotShared(name.into()))?;
        for file in needed {
            if !dir.join(file).is_file() {
                return Err(CandidateError::Missing {
                    library: library.as_str(),
                    dir: dir.display().to_string(),
                    file,
                });
            }
        }
        Ok(Candidate { library, dir })
    }

    /// The library's version as its own file says (`OpenSSL 3.6.3 7 Apr 2026`).
    pub fn version(&self) -> Option<String> {
        let (family, file) = match self.library {
            Library::Openssl => (procs::library::LibraryFamily::Openssl, "libcrypto.so.3"),
            Library::Gnutls => (procs::library::LibraryFamily::Gnutls, "libgnutls.so.30"),
            // The crate's own manifest: `version = "0.23.46"`.
            Library::Rustls => {
                let manifest = std::fs::read_to_string(self.dir.join("Cargo.toml")).ok()?;
                let version = manifest.lines().find_map(|l| l.strip_prefix("version = \""))?;
                return Some(format!("rustls {}", version.trim_end_matches('"')));
            }
            Library::Go | Library::Jsse => return None,
        };
        procs::library::version_in_file(family, &self.dir.join(file))
    }
}

/// A stack that does not run on the candidate, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotSwapped {
    /// A client stack's id, or `server profile <id>`.
    pub what: String,
    pub reason: String,
}

/// Which stacks of a matrix take the candidate, as variants of themselves.
#[derive(Debug, Clone)]
pub struct SwapPlan {
    /// (stack, its variant on the candidate), in matrix order.
    pub pairs: Vec<(String, String)>,
    /// (server profile served by an MTA on the library, its twin on the candidate).
    pub server_pairs: Vec<(String, String)>,
    pub variants: Vec<ClientStack>,
    pub not_swapped: Vec<NotSwapped>,
}

/// The environment that makes the dynamic loader take the candidate and record, one file per
/// process under `record`, every library it loaded (`LD_DEBUG=libs`): the proof of the swap.
fn loader_env(env: &mut BTreeMap<String, String>, candidate: Option<&Path>, record: &Path) {
    if let Some(dir) = candidate {
        let path = match env.get("LD_LIBRARY_PATH") {
            Some(old) if !old.is_empty() => format!("{}:{old}", dir.display()),
            _ => dir.display().to_string(),
        };
        env.insert("LD_LIBRARY_PATH".into(), path);
    }
    // The loader writes `ld.<pid>` only into a directory that exists (else to stderr, which is
    // the program's words).
    let _ = std::fs::create_dir_all(record);
    env.insert("LD_DEBUG".into(), "libs".into());
    env.insert("LD_DEBUG_OUTPUT".into(), record.join("ld").display().to_string());
}

/// The stacks of `matrix` (narrowed by `selected`) that use the candidate's library: dynamic
/// ones get a variant on the candidate, and both they and their variants record what they
/// load under `records/<stack id>/`; the others are listed with the reason. `built`: for a
/// rustls candidate, the rustls client program built against it (`scripts/build-candidate
/// rustls CHECKOUT`), which replaces the built-in one.
pub fn plan(
    matrix: &mut Matrix,
    candidate: &Candidate,
    selected: &dyn Fn(&str) -> bool,
    records: &Path,
    built: Option<&Path>,
) -> SwapPlan {
    let mut plan = SwapPlan { pairs: vec![], server_pairs: vec![], variants: vec![], not_swapped: vec![] };
    let lib = candidate.library.as_str();
    for stack in matrix.clients.iter_mut() {
        let Some(linked) = stack.library.filter(|l| l.library == candidate.library) else { continue };
        if !selected(&stack.id) {
            continue;
        }
        let rebuilt = match (&stack.kind, built) {
            (crate::matrix::StackKind::Builtin(b), Some(program)) if b == "rustls-client" => Some(program),
            _ => None,
        };
        let reason = match linked.linkage {
            Linkage::Static => Some(format!("statically linked: its own {lib} is built into the program")),
            Linkage::Built if rebuilt.is_some() => None,
            Linkage::Built => Some(format!(
                "{lib} is compiled into a program we build, and only the rustls client program is rebuilt against a candidate"
            )),
            Linkage::Dynamic => None,
        };
        if let Some(reason) = reason {
            plan.not_swapped.push(NotSwapped { what: stack.id.clone(), reason });
            continue;
        }
        let variant_id = format!("{}{SUFFIX}", stack.id);
        let mut variant = stack.clone();
        variant.id = variant_id.clone();
        variant.variant_of = Some(stack.id.clone());
        variant.description = format!("{} on the candidate {lib} in {}", stack.id, candidate.dir.display());
        if stack.is_sender() {
            // The MTA's programs get the candidate first on their LD_LIBRARY_PATH; the loader's
            // resolution under that environment is the proof (the report's stack version).
            variant.library_dir = Some(candidate.dir.clone());
            plan.pairs.push((stack.id.clone(), variant_id));
            plan.variants.push(variant);
            continue;
        }
        match rebuilt {
            // The same program and flags, built against the checkout.
            Some(program) => {
                variant.kind = crate::matrix::StackKind::Program { path: program.to_path_buf(), batch: false };
            }
            None => {
                loader_env(&mut variant.env, Some(&candidate.dir), &records.join(&variant_id));
                loader_env(&mut stack.env, None, &records.join(&stack.id));
            }
        }
        plan.pairs.push((stack.id.clone(), variant_id));
        plan.variants.push(variant);
    }
    // An MTA serving a profile on the library gets a twin on the candidate: the candidate's
    // directory first on its daemons' LD_LIBRARY_PATH (they are exec'd by the harness, as root,
    // so the loader honours it); what they loaded is read from /proc/PID/maps.
    let mut twins = Vec::new();
    for entry in &matrix.servers {
        if entry.profile.backend.mta().is_some_and(|m| m.library() == candidate.library) {
            let mut twin = entry.clone();
            twin.profile.id = format!("{}{SUFFIX}", entry.profile.id);
            twin.profile.library_dir = Some(candidate.dir.clone());
            plan.server_pairs.push((entry.profile.id.clone(), twin.profile.id.clone()));
            twins.push(twin);
        }
    }
    matrix.servers.extend(twins);
    matrix.clients.extend(plan.variants.iter().cloned());
    plan
}

/// What the dynamic loader recorded for one stack's processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoaderRecord {
    /// Processes that left a record.
    pub processes: usize,
    /// Each TLS library object loaded, and in how many processes.
    pub loaded: BTreeMap<PathBuf, usize>,
}

/// The records under `dir` (`ld.<pid>` files written by the loader under `LD_DEBUG=libs`): the
/// libraries whose initialisers it called, i.e. that the process really loaded, dlopen included.
pub fn read_records(dir: &Path) -> LoaderRecord {
    let mut record = LoaderRecord::default();
    let Ok(entries) = std::fs::read_dir(dir) else { return record };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        record.processes += 1;
        let mut seen: Vec<PathBuf> = Vec::new();
        for line in text.lines() {
            let Some((_, path)) = line.split_once("calling init: ") else { continue };
            let path = PathBuf::from(path.trim());
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let tls = ["libssl.so", "libcrypto.so", "libgnutls.so"].iter().any(|p| name.starts_with(p));
            if tls && !seen.contains(&path) {
                seen.push(path);
            }
        }
        for path in seen {
            *record.loaded.entry(path).or_default() += 1;
        }
    }
    record
}

/// What the loader's record proves about one stack on the candidate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    /// Every process that loaded the library loaded the candidate's.
    Swapped { processes: usize, path: PathBuf, version: Option<String> },
    /// Some processes loaded another copy: the stack ignored the swap (in part).
    Ignored { processes: usize, other: PathBuf, version: Option<String> },
    /// No process left a record naming the library: it cleared its environment, is setuid, or
    /// loaded nothing.
    NotMeasured { processes: usize },
}

/// The objects of `library`'s main shared library (libssl, libgnutls) in a record.
fn main_objects(record: &LoaderRecord, library: Library) -> Vec<&PathBuf> {
    let main = if library == Library::Openssl { "libssl.so" } else { "libgnutls.so" };
    record
        .loaded
        .keys()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(main)))
        .collect()
}

/// The version a loaded library's own files hold ([`procs::library::among`]: OpenSSL's text is
/// in the libcrypto beside the libssl).
fn version_of(path: &Path) -> Option<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let crypto = path.with_file_name(name.replace("libssl", "libcrypto"));
    procs::library::among([path.to_path_buf(), crypto]).into_iter().next().and_then(|l| l.version)
}

impl Proof {
    /// Judge a variant's record against the candidate directory.
    pub fn of(record: &LoaderRecord, candidate: &Candidate) -> Proof {
        let ours = main_objects(record, candidate.library);
        let inside =
            |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).starts_with(&candidate.dir);
        match (ours.iter().find(|p| !inside(p)), ours.first()) {
            (Some(other), _) => {
                Proof::Ignored { processes: record.processes, other: other.to_path_buf(), version: version_of(other) }
            }
            (None, Some(path)) => {
                Proof::Swapped { processes: record.processes, path: path.to_path_buf(), version: version_of(path) }
            }
            (None, None) => Proof::NotMeasured { processes: record.processes },
        }
    }

    /// One line for a header.
    pub fn line(&self) -> String {
        match self {
            // A program rebuilt against the candidate: nothing is loaded at run time.
            Proof::Swapped { processes: 0, path, version } => {
                format!("{} ({})", version.as_deref().unwrap_or("version not readable"), path.display())
            }
            Proof::Swapped { processes, path, version } => format!(
                "{} ({}), loaded by all {processes} processes",
                version.as_deref().unwrap_or("version not readable"),
                path.display()
            ),
            Proof::Ignored { processes, other, version } => format!(
                "NOT SWAPPED: its processes loaded {} ({}) instead, of {processes} recorded",
                version.as_deref().unwrap_or("version not readable"),
                other.display()
            ),
            Proof::NotMeasured { processes } => format!(
                "NOT MEASURED: no loader record names the library ({processes} processes recorded): the program clears its environment or is setuid"
            ),
        }
    }

    pub fn swapped(&self) -> bool {
        matches!(self, Proof::Swapped { .. })
    }
}

/// Whether a program was built from `krate`: the sources' paths the compiler leaves in it
/// (panic locations) name the checkout.
pub fn built_from(program: &Path, krate: &Path) -> Proof {
    let needle = krate.join("src").display().to_string();
    let found = std::fs::read(program).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
    if found {
        Proof::Swapped {
            processes: 0,
            path: program.to_path_buf(),
            version: Some(format!("built from {}", krate.display())),
        }
    } else {
        Proof::Ignored {
            processes: 0,
            other: program.to_path_buf(),
            version: Some(format!("no path of {} in the program", krate.display())),
        }
    }
}

/// The system library a stack loaded, as its own records say: `OpenSSL 3.0.19 … (/usr/lib/…)`.
pub fn system_line(record: &LoaderRecord, library: Library) -> String {
    match main_objects(record, library).first() {
        Some(p) => format!("{} ({})", version_of(p).as_deref().unwrap_or("version not readable"), p.display()),
        None => "not recorded".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_must_be_library_equals_a_directory_with_its_objects() {
        assert!(matches!(Candidate::parse("openssl"), Err(CandidateError::Syntax(_))));
        assert!(matches!(Candidate::parse("libressl=/tmp"), Err(CandidateError::Syntax(_))));
        assert!(matches!(Candidate::parse("go=/tmp"), Err(CandidateError::NotShared(_))));
        assert!(matches!(Candidate::parse("rustls=/tmp"), Err(CandidateError::NoRustls(_))));
        let checkout = tempfile::tempdir().unwrap();
        std::fs::create_dir(checkout.path().join("rustls")).unwrap();
        std::fs::write(checkout.path().join("rustls/Cargo.toml"), "[package]\nname = \"rustls\"\n").unwrap();
        let c = Candidate::parse(&format!("rustls={}", checkout.path().display())).unwrap();
        assert!(c.dir.ends_with("rustls"), "a repository's crate is in rustls/: {}", c.dir.display());
        let dir = tempfile::tempdir().unwrap();
        let e = Candidate::parse(&format!("openssl={}", dir.path().display())).unwrap_err();
        assert!(e.to_string().contains("no libssl.so.3"), "{e}");
        for f in ["libssl.so.3", "libcrypto.so.3"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(Candidate::parse(&format!("openssl={}", dir.path().display())).unwrap().library, Library::Openssl);
    }

    #[test]
    fn the_loaders_record_says_which_copy_each_process_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cand = dir.path().join("cand");
        std::fs::create_dir(&cand).unwrap();
        for f in ["libssl.so.3", "libcrypto.so.3"] {
            std::fs::write(cand.join(f), b"OpenSSL 9.9.9 1 Jan 2030").unwrap();
        }
        let candidate = Candidate::parse(&format!("openssl={}", cand.display())).unwrap();
        let records = dir.path().join("rec");
        std::fs::create_dir(&records).unwrap();
        let line = |pid: u32, path: &Path| format!("     {pid}:\tcalling init: {}\n", path.display());
        std::fs::write(records.join("ld.1"), line(1, &cand.join("libssl.so.3"))).unwrap();
        std::fs::write(records.join("ld.2"), "     2:\tcalling init: /lib/x86_64-linux-gnu/libc.so.6\n").unwrap();
        let record = read_records(&records);
        assert_eq!(record.processes, 2);
        match Proof::of(&record, &candidate) {
            Proof::Swapped { version, .. } => assert_eq!(version.as_deref(), Some("OpenSSL 9.9.9 1 Jan 2030")),
            other => panic!("{other:?}"),
        }
        std::fs::write(records.join("ld.3"), line(3, Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3"))).unwrap();
        assert!(matches!(Proof::of(&read_records(&records), &candidate), Proof::Ignored { .. }));
        let empty = dir.path().join("none");
        assert_eq!(Proof::of(&read_records(&empty), &candidate), Proof::NotMeasured { processes: 0 });
    }
}
