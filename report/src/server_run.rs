//! What a real MTA ran as for a profile (or as a sender): package, the TLS library its processes
//! loaded, its settings as written, what it said about them, and how its start and stop went.

use crate::profile::Mta;
use serde::{Deserialize, Serialize};

/// A TLS library as a running process loaded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedLibrary {
    /// The version as the library reports it (e.g. `OpenSSL 3.0.19 1 Jul 2025`, `GnuTLS 3.7.9`).
    pub version: String,
    /// The shared object the process mapped, where one was read (`/proc/PID/maps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How it was measured (`/proc/PID/maps of smtpd`, `exim4 -d -bV`, …).
    pub measured_by: String,
}

/// What the report shows of an MTA that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaInfo {
    pub mta: Mta,
    /// The Debian package version (e.g. `3.7.11-0+deb12u1`).
    pub version: String,
    /// The TLS library it uses, as measured from its own processes.
    pub tls_library: String,
    /// The same, with where it was read; absent in reports of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<LoadedLibrary>,
    /// Its TLS settings as written into its configuration.
    pub settings: Vec<(String, String)>,
    /// What it said about its own configuration (e.g. a DH file OpenSSL refused).
    pub config_warnings: Vec<String>,
    /// From exec to the first `220` (a server) or to ready (a sender).
    pub ready_ms: u64,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReport {
    pub stop_ms: u64,
    /// Killed with SIGKILL after not ending on SIGTERM within the bound.
    pub killed: bool,
    pub port_free: bool,
    /// Processes of its group still there after the stop (should be none).
    pub leftovers: Vec<i32>,
}

impl StopReport {
    /// The stop of something that was not running (a sender whose processes end with each cell).
    pub fn nothing_to_stop() -> StopReport {
        StopReport { stop_ms: 0, killed: false, port_free: true, leftovers: Vec::new() }
    }
}

/// An MTA's whole run: what it was and how it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaRun {
    #[serde(flatten)]
    pub info: MtaInfo,
    pub stop: StopReport,
}

impl MtaRun {
    /// One line: what, on which TLS library, its settings as written, and what it said of them.
    pub fn summary(&self) -> String {
        let MtaRun { info, stop } = self;
        let mut parts = vec![
            format!("{} {} on {}", info.mta.name(), info.version, info.tls_library),
            format!("ready in {} ms, stopped in {} ms", info.ready_ms, stop.stop_ms),
        ];
        parts.push(info.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("; "));
        for w in &info.config_warnings {
            parts.push(format!("warning about its own configuration: {w}"));
        }
        parts.join(" — ")
    }
}
