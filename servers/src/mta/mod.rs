//! Real MTAs as servers: Postfix, Exim, sendmail and OpenSMTPD run from their extracted Debian
//! packages, each configured from a server profile into the run's own work directory, started
//! in the foreground in its own process group, and read back through its own log.

pub mod launch;
pub mod log;
pub mod namespace;
mod translate;

mod exim;
mod opensmtpd;
mod postfix;
mod sendmail;

pub use launch::{MtaInfo, MtaOptions, MtaStartError, RunningMta, StopReport, kill_all};

/// Where the MTAs are extracted for a project directory: `$STARTTLS_MATRIX_MTA_ROOT`, else
/// `<dir>/.cache/mta/root` (where `scripts/install-mtas` puts them); absolute, because the
/// daemons run in work directories of their own.
pub fn extracted_roots(dir: &std::path::Path) -> std::path::PathBuf {
    let root = std::env::var_os("STARTTLS_MATRIX_MTA_ROOT")
        .map_or_else(|| dir.join(".cache/mta/root"), std::path::PathBuf::from);
    std::path::absolute(&root).unwrap_or(root)
}

use serde::{Deserialize, Serialize};

/// One of the real MTAs the matrix can run as a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mta {
    Postfix,
    Exim,
    Sendmail,
    Opensmtpd,
}

impl Mta {
    pub fn name(self) -> &'static str {
        match self {
            Mta::Postfix => "postfix",
            Mta::Exim => "exim",
            Mta::Sendmail => "sendmail",
            Mta::Opensmtpd => "opensmtpd",
        }
    }

    /// Its directory under the extracted roots (`.cache/mta/root/<dir>`).
    pub fn root_dir(self) -> &'static str {
        self.name()
    }

    /// The Debian package whose version is the MTA's (in `.cache/mta/stamp`).
    pub fn package(self) -> &'static str {
        match self {
            Mta::Postfix => "postfix",
            Mta::Exim => "exim4-daemon-light",
            Mta::Sendmail => "sendmail-bin",
            Mta::Opensmtpd => "opensmtpd",
        }
    }

    /// The daemon binary, relative to its root.
    pub fn daemon(self) -> &'static str {
        match self {
            Mta::Postfix => "usr/lib/postfix/sbin/master",
            Mta::Exim => "usr/sbin/exim4",
            Mta::Sendmail => "usr/libexec/sendmail/sendmail",
            Mta::Opensmtpd => "usr/sbin/smtpd",
        }
    }
}
