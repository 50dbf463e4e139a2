//! The client contract's input side: the common flags every built-in client takes, parsing
//! with the contract's exit codes (89 for a flag this program does not know), and printing.

use clap::Args;
use std::ffi::OsString;
use std::time::Duration;
use wire::{ClientResult, EXIT_UNSUPPORTED};

/// Flags every built-in client takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The server, `127.0.0.1:PORT`.
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "describe")]
    pub connect: Option<String>,
    /// The name sent as SNI and verified in the certificate.
    #[arg(long, value_name = "NAME", default_value = "mx.test")]
    pub servername: String,
    /// CA certificates to trust (PEM); without it, the library's default trust store.
    #[arg(long, value_name = "PATH")]
    pub cafile: Option<std::path::PathBuf>,
    /// The name sent with EHLO.
    #[arg(long, value_name = "NAME", default_value = "client.test")]
    pub ehlo: String,
    /// Give up on any one read or write after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    /// Print `DESCRIBE {json}` (library version and effective policy) and exit.
    #[arg(long)]
    pub describe: bool,
    /// `encrypt`: fail without TLS (the default); `may`: deliver in plaintext when STARTTLS is
    /// not offered or refused, as opportunistic MTAs do.
    #[arg(long, value_enum, default_value = "encrypt")]
    pub tls_policy: TlsPolicy,
    /// Test fixture: read plaintext that arrived before the handshake as if it came over TLS
    /// (the CVE-2011-0411 mistake), to show that the harness catches it.
    #[arg(long)]
    pub unsafe_keep_plaintext_buffer: bool,
}

/// What a client does when TLS is not to be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsPolicy {
    Encrypt,
    May,
}

impl Common {
    pub fn io_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }
}

/// A built-in client program: its flags, how it builds its TLS configuration from them, how it
/// describes itself, and how it runs one connection.
pub trait Program: clap::Parser {
    type Config;
    fn common(&self) -> &Common;
    /// Build the configuration; `Err` is the exit code (89: the policy cannot be expressed).
    fn config(&self) -> Result<Self::Config, i32>;
    /// Print the DESCRIBE line; returns the exit code.
    fn describe(&self, config: &Self::Config) -> i32;
    /// Connect, STARTTLS, handshake, EHLO, QUIT.
    fn run(&self, config: Self::Config) -> ClientResult;
}

/// The whole program: parse, configure, then describe or run and print the RESULT line; or,
/// with `--batch` alone, a worker running many such cells ([`crate::batch`]).
pub fn main<P: Program>(argv: impl IntoIterator<Item = OsString>) -> i32 {
    let argv: Vec<OsString> = argv.into_iter().collect();
    if argv.len() == 2 && argv[1] == crate::batch::FLAG {
        let name = argv[0].to_string_lossy().to_string();
        return crate::batch::worker(&name, one_shot::<P>);
    }
    one_shot::<P>(argv)
}

/// One run of the program on `argv` (with argv[0]).
fn one_shot<P: Program>(argv: Vec<OsString>) -> i32 {
    let args: P = match parse(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let config = match args.config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.common().describe {
        return args.describe(&config);
    }
    emit(&args.run(config))
}

/// Parse a client's flags. On `Err`, the exit code: 0 after `--help`, 89 for an unknown flag
/// (the contract's "unsupported"), 2 for other misuse.
pub fn parse<T: clap::Parser>(args: impl IntoIterator<Item = OsString>) -> Result<T, i32> {
    T::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        let text = e.render().to_string();
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => crate::batch::out(text.trim_end()),
            _ => crate::batch::err(&text),
        }
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
            ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand => EXIT_UNSUPPORTED,
            _ => 2,
        }
    })
}

/// Print the RESULT line; the program then exits 0.
pub fn emit(result: &ClientResult) -> i32 {
    crate::batch::out(&result.to_line());
    0
}

/// Print the DESCRIBE line: the library and its effective policy.
pub fn describe(stack: &str, library: &str, policy: serde_json::Value) -> i32 {
    let line = serde_json::json!({ "stack": stack, "library": library, "policy": policy });
    crate::batch::out(&format!("DESCRIBE {line}"));
    0
}

/// Say that the program cannot run as asked (e.g. the CA file is missing): exit 2, which the
/// runner reports as a harness error, not as an incompatibility.
pub fn cannot_run(what: &str) -> i32 {
    crate::batch::err(&format!("error: {what}"));
    2
}

/// Say that an option cannot be expressed by this program, and exit 89.
pub fn unsupported(what: &str) -> i32 {
    crate::batch::err(&format!("unsupported: {what}"));
    EXIT_UNSUPPORTED
}
