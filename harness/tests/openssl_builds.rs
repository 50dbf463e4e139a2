//! The openssl-1.1.1 and openssl-3.6 stacks of the default matrix: programs that
//! scripts/build-openssl-clients builds into `.cache/openssl/`. Not built, a stack is skipped
//! with the missing program named, never failed or broken; built, it reports the OpenSSL it
//! links, not the system's.

use harness::classify::Tables;
use harness::matrix::{Matrix, StackKind};
use harness::stack::ResolvedStack;
use report_format::Availability;
use std::path::{Path, PathBuf};

const STACKS: &[(&str, &str, &str)] =
    &[("openssl-1.1.1", "1.1.1", "OpenSSL 1.1.1w "), ("openssl-3.6", "3.6", "OpenSSL 3.6.")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The default matrix's text, read as if it were written at `path`.
fn matrix_at(path: &Path) -> Matrix {
    let source = std::fs::read_to_string(root().join("matrix.toml")).unwrap();
    Matrix::parse(path, &source, &Tables::builtin().unwrap()).expect("the default matrix is valid")
}

fn resolve(matrix: &Matrix, id: &str) -> ResolvedStack {
    let stack = matrix.client(id).unwrap_or_else(|| panic!("matrix.toml has no client {id}"));
    let exe = Path::new(env!("CARGO_BIN_EXE_starttls-matrix"));
    tokio::runtime::Runtime::new().unwrap().block_on(ResolvedStack::resolve(stack, exe, None))
}

#[test]
fn the_stacks_run_the_built_program_beside_the_matrix_with_the_openssl_table() {
    let matrix = matrix_at(&root().join("matrix.toml"));
    for (id, version, _) in STACKS {
        let stack = matrix.client(id).unwrap();
        let program = root().join(format!(".cache/openssl/{version}/bin/openssl-client"));
        // The built-in client built against another OpenSSL, with its batch mode.
        assert_eq!(stack.kind, StackKind::Program { path: program, batch: true }, "{id}");
        assert_eq!(stack.errors, "openssl", "{id}");
    }
}

#[test]
fn a_stack_whose_program_is_not_built_is_skipped_with_the_program_named() {
    // The same matrix beside an empty directory: nothing is built there.
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_at(&dir.path().join("matrix.toml"));
    for (id, version, _) in STACKS {
        let resolved = resolve(&matrix, id);
        let Availability::Skipped(reason) = &resolved.availability else {
            panic!("{id}: not built must be skipped, got {:?}", resolved.availability);
        };
        assert!(reason.contains(&format!(".cache/openssl/{version}/bin/openssl-client")), "{id}: {reason}");
        assert!(reason.contains("run scripts/build-openssl-clients"), "{id}: {reason}");
        assert_eq!(resolved.version, None, "{id}");
    }
}

#[test]
fn a_built_stack_reports_the_openssl_it_links() {
    let matrix = matrix_at(&root().join("matrix.toml"));
    for (id, version, library) in STACKS {
        if !root().join(format!(".cache/openssl/{version}/bin/openssl-client")).is_file() {
            eprintln!("{id}: not built here (scripts/build-openssl-clients builds it); nothing to check");
            continue;
        }
        let resolved = resolve(&matrix, id);
        assert_eq!(resolved.availability, Availability::Ready, "{id}");
        let reported = resolved.version.unwrap_or_default();
        assert!(reported.starts_with(library), "{id} reports {reported:?}, not {library}…");
        let level = resolved.policy["security_level"].as_u64();
        assert_eq!(level, Some(if *version == "1.1.1" { 1 } else { 2 }), "{id}: compiled-in security level");
    }
}

#[test]
fn the_declared_policies_predict_the_written_expectations() {
    use harness::oracle::{Policy, Predicted, predict};
    use report_format::ExpectedOutcome;
    let matrix = matrix_at(&root().join("matrix.toml"));
    let policies = Policy::builtin().unwrap();
    for (id, _, _) in STACKS {
        let name = matrix.client(id).unwrap().policy.clone().unwrap_or_else(|| panic!("{id} declares no policy"));
        let policy = &policies[&name];
        let mut judged = 0;
        for server in &matrix.servers {
            // The oracle models the built-in servers only (no hostile SMTP dialogues, no real MTAs).
            let Some(prediction) = predict(&server.profile, policy) else { continue };
            let cell = format!("{id}/{}", server.profile.id);
            let expected = matrix.expected_for(&cell);
            let agrees = |p: &Predicted| match (p, expected.outcome) {
                (Predicted::Connected { .. }, ExpectedOutcome::Connected) => true,
                (Predicted::Failed { class }, ExpectedOutcome::Failed { class: e }) => *class == e,
                (Predicted::Timeout, ExpectedOutcome::Timeout) => true,
                _ => false,
            };
            assert!(
                agrees(&prediction.outcome) || prediction.or.iter().any(agrees),
                "{cell}: policy {name} predicts {prediction:?}, matrix.toml expects {expected:?}"
            );
            judged += 1;
        }
        assert!(judged >= 15, "{id}: only {judged} cells judged");
    }
}
