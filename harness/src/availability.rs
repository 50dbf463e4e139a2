//! Whether a client stack or a server profile is installed here, decided from the file system
//! alone — a program on PATH, a program built, an MTA extracted — without starting, probing or
//! writing anything, so that a test harness can list a cell as ignored before it runs. The same
//! checks come first in `stack::ResolvedStack::resolve` and the MTA launchers, with the same
//! reasons; what only starting can tell (a broken contract, an MTA refusing its configuration,
//! a machine without namespaces) is left to the run.

use crate::matrix::{ClientStack, Matrix, StackKind};
use crate::report::skipped::{Missing, Skipped};
use report_format::{Backend, CellId, ServerProfile};
use std::path::Path;

/// Why `stack`'s cells would be skipped here, or `None` when its program is here.
pub fn stack_missing(stack: &ClientStack) -> Option<String> {
    if let Some(missing) = stack.requires.iter().find(|p| procs::which(p).is_none()) {
        return Some(format!("{missing} is not installed (scripts/install-stacks installs it)"));
    }
    match &stack.kind {
        StackKind::Builtin(_) => None,
        StackKind::Program { path, .. } => {
            procs::which(&path.to_string_lossy()).is_none().then(|| match &stack.build {
                Some(script) => format!("{} is not built: run {script}", path.display()),
                None => format!("{} is not installed (not found)", path.display()),
            })
        }
        StackKind::Adapter(adapter) => adapter.installed(stack).err().and_then(|a| a.reason().map(str::to_string)),
        StackKind::Sender { mta, .. } => mta_missing(*mta, &stack.matrix_dir),
    }
}

/// Why `profile`'s server would not start here for want of its MTA, or `None` (the built-in
/// server is always here).
pub fn server_missing(profile: &ServerProfile, matrix_dir: &Path) -> Option<String> {
    match profile.backend {
        Backend::Builtin(_) => None,
        Backend::Mta(m) => mta_missing(m, matrix_dir),
    }
}

/// Why an MTA is not here: its daemon is not in the extracted tree (`scripts/install-mtas`,
/// which `scripts/install-stacks` runs, extracts it).
fn mta_missing(m: report_format::Mta, matrix_dir: &Path) -> Option<String> {
    let roots = mta::extracted_roots(matrix_dir);
    let daemon = roots.join(m.name()).join(mta::of(m).daemon());
    (!daemon.exists())
        .then(|| format!("{} is not extracted in {}: run scripts/install-stacks", m.name(), roots.display()))
}

/// Why a cell of `matrix` would be skipped here: its stack's reason first, then its server's.
pub fn cell_missing(matrix: &Matrix, id: &CellId) -> Option<String> {
    let clients = std::slice::from_ref(&id.client);
    let servers = std::slice::from_ref(&id.server);
    predicted(matrix, clients, servers).cell_reason(&id.client, &id.server).map(str::to_string)
}

/// What a run of these stacks and profiles of `matrix` would skip here, as far as the files
/// tell (before anything runs).
pub fn predicted(matrix: &Matrix, clients: &[String], servers: &[String]) -> Skipped {
    let dir = matrix.path.parent().unwrap_or(Path::new("."));
    let stacks = clients
        .iter()
        .filter_map(|id| Some(Missing { id: id.clone(), reason: stack_missing(matrix.client(id)?)? }))
        .collect();
    let servers = servers
        .iter()
        .filter_map(|id| Some(Missing { id: id.clone(), reason: server_missing(&matrix.server(id)?.profile, dir)? }))
        .collect();
    Skipped { stacks, servers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tables;
    use crate::stack::ResolvedStack;
    use report_format::Availability;

    const MATRIX: &str = r#"
[[server]]
id = "s"
backend = "openssl"

[[server]]
id = "pf"
backend = "postfix"

[[client]]
id = "builtin"
builtin = "openssl-client"

[[client]]
id = "needs"
program = "/bin/true"
errors = "openssl"
requires = ["no-such-toolchain-xyz"]

[[client]]
id = "unbuilt"
program = "bin/not-built-client"
errors = "openssl"
build = "scripts/build-something"

[[client]]
id = "absent"
program = "/nonexistent/client"
errors = "openssl"

[[client]]
id = "finger"
adapter = "posttls-finger"
"#;

    /// A matrix in a directory of its own, with no MTA extracted beside it.
    fn matrix(dir: &Path) -> Matrix {
        Matrix::parse(&dir.join("m.toml"), MATRIX, &Tables::builtin().unwrap()).unwrap()
    }

    #[test]
    fn missing_programs_builds_and_mtas_are_named_without_running_anything() {
        if std::env::var_os("STARTTLS_MATRIX_MTA_ROOT").is_some() {
            eprintln!("skipped: STARTTLS_MATRIX_MTA_ROOT points elsewhere");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let m = matrix(dir.path());
        let why = |client: &str, server: &str| cell_missing(&m, &CellId::new(client, server));
        assert_eq!(why("builtin", "s"), None);
        assert!(why("needs", "s").unwrap().contains("no-such-toolchain-xyz"));
        assert!(why("unbuilt", "s").unwrap().contains("run scripts/build-something"));
        assert!(why("absent", "s").unwrap().contains("/nonexistent/client"));
        assert!(why("finger", "s").unwrap().contains("scripts/install-stacks"));
        let pf = why("builtin", "pf").unwrap();
        assert!(pf.contains("postfix is not extracted") && pf.contains("scripts/install-stacks"), "{pf}");
        let all = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = predicted(&m, &all(&["builtin", "needs", "finger"]), &all(&["s", "pf"]));
        assert_eq!(p.stacks.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["needs", "finger"]);
        assert_eq!(p.servers.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["pf"]);
        assert!(std::fs::read_dir(dir.path()).unwrap().count() == 0, "nothing was written beside the matrix");
    }

    /// The cheap check and the run agree: a stack found missing here is skipped, with the same
    /// reason, when the run resolves it.
    #[tokio::test]
    async fn agrees_with_what_the_run_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let m = matrix(dir.path());
        let exe = std::env::current_exe().unwrap();
        for id in ["needs", "unbuilt", "absent"] {
            let stack = m.client(id).unwrap();
            let resolved = ResolvedStack::resolve(stack, &exe, None).await;
            assert_eq!(resolved.availability, Availability::Skipped(stack_missing(stack).unwrap()), "{id}");
        }
    }
}
