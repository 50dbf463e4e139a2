//! Adapters: external programs made into client stacks, one file each behind one trait. Each
//! builds its program's argv (an array, never a shell string) from the contract's inputs, reads
//! the program's output into the same RESULT a built-in client prints, and says how to ask the
//! program its version — which the harness asks under the stack's own environment.

mod curl;
pub mod dialogue;
mod gnutls_cli;
mod msmtp;
pub mod posttls_finger;
mod s_client;
mod swaks;

use crate::matrix::ClientStack;
use report_format::Availability;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use wire::ClientResult;

/// The contract's inputs for one cell.
#[derive(Debug, Clone)]
pub struct Target {
    pub connect: String,
    pub servername: String,
    pub cafile: std::path::PathBuf,
    pub ehlo: String,
}

impl Target {
    /// The host (without IPv6 brackets) and port of `connect` (`HOST:PORT`; port 25 if none).
    pub fn host_port(&self) -> (&str, &str) {
        let (host, port) = self.connect.rsplit_once(':').unwrap_or((self.connect.as_str(), "25"));
        (host.trim_matches(['[', ']']), port)
    }
}

/// Where an adapter's program is on this machine, and what it needs to run.
#[derive(Debug, Clone)]
pub struct Located {
    pub program: PathBuf,
    /// Environment the program needs besides the stack's own (posttls-finger: `MAIL_CONFIG`,
    /// `LD_LIBRARY_PATH`); it wins over the stack's for the same name.
    pub env: Vec<(String, String)>,
    /// The extracted tree the program runs from, when it is not on PATH.
    pub root: Option<PathBuf>,
    /// A private directory the program reads (posttls-finger's `main.cf`), removed with the
    /// last clone.
    pub workdir: Option<Arc<tempfile::TempDir>>,
}

/// How to ask a program what it is: a command run under the stack's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProbe {
    pub program: PathBuf,
    pub args: Vec<&'static str>,
}

/// A wrapped external program.
pub trait Adapter: Sync {
    /// The name used in matrix files (`adapter = "…"`).
    fn name(&self) -> &'static str;
    /// The classification table for the program's words.
    fn error_table(&self) -> &'static str;
    /// Where the program is here, ready to run; not ready is `Skipped` (not installed) or
    /// `Broken` (there, but we could not prepare it).
    fn locate(&self, stack: &ClientStack) -> Result<Located, Availability>;
    /// Whether the program is here, decided from the file system alone (nothing is written or
    /// run): `Err` is what [`Adapter::locate`] would say. By default `locate` itself, for
    /// adapters whose `locate` only looks the program up on PATH.
    fn installed(&self, stack: &ClientStack) -> Result<(), Availability> {
        self.locate(stack).map(drop)
    }
    /// The argv (after the program name) and the standard input for one cell.
    fn command(&self, target: &Target, extra: &[String]) -> (Vec<OsString>, Vec<u8>);
    /// For programs that type our input into the TLS session (s_client, gnutls-cli): the
    /// reply to wait for before sending QUIT, and the QUIT. Sent at once, EHLO and QUIT would
    /// pipeline (OpenSMTPD refuses that: it does not offer PIPELINING), and gnutls-cli would end
    /// the session at end of input before a server that closes after QUIT (Postfix) is read.
    fn paced_quit(&self) -> Option<(&'static [&'static str], &'static [u8])> {
        None
    }
    /// Read the program's output into a RESULT. `Err` means the output cannot be understood
    /// (a harness error, never an interop failure).
    fn parse(&self, exit_code: Option<i32>, stdout: &str, stderr: &str) -> Result<ClientResult, String>;
    /// How to ask the program its version.
    fn version_probe(&self, located: &Located) -> VersionProbe;
    /// The version line and effective policy from the probe's output (run with `env`, the
    /// stack's resolved environment).
    fn describe(&self, probe_output: &str, located: &Located, env: &[(String, String)]) -> (String, serde_json::Value);
}

/// Every adapter.
pub const ALL: [&dyn Adapter; 6] = [
    &s_client::SClient,
    &gnutls_cli::GnutlsCli,
    &curl::Curl,
    &msmtp::Msmtp,
    &swaks::Swaks,
    &posttls_finger::PosttlsFinger,
];

/// The adapter of a name.
pub fn by_name(name: &str) -> Option<&'static dyn Adapter> {
    ALL.into_iter().find(|a| a.name() == name)
}

/// Their names, for messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|a| a.name()).collect()
}

/// A program on PATH, or why the stack is skipped.
pub fn on_path(program: &str) -> Result<Located, Availability> {
    match procs::which(program) {
        Some(program) => Ok(Located { program, env: Vec::new(), root: None, workdir: None }),
        None => Err(Availability::Skipped(format!("{program} is not installed (not on PATH)"))),
    }
}

/// The first non-empty line of a program's output, trimmed.
pub fn first_line(out: &str) -> String {
    out.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string()
}

/// The value of `NAME` in an environment, if set.
pub fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapter_has_a_name_and_a_table_and_is_found_by_it() {
        let tables = crate::classify::Tables::builtin().unwrap();
        for a in ALL {
            assert!(std::ptr::eq(by_name(a.name()).unwrap(), a) || by_name(a.name()).unwrap().name() == a.name());
            assert!(tables.contains(a.error_table()), "{}: {}", a.name(), a.error_table());
        }
    }

    #[test]
    fn host_and_port() {
        let t = |c: &str| Target {
            connect: c.into(),
            servername: "mx.test".into(),
            cafile: "/ca".into(),
            ehlo: "c".into(),
        };
        assert_eq!(t("127.0.0.1:2525").host_port(), ("127.0.0.1", "2525"));
        assert_eq!(t("[::1]:25").host_port(), ("::1", "25"));
        assert_eq!(t("mx.example").host_port(), ("mx.example", "25"));
    }
}
