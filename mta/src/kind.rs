//! One MTA's knowledge behind one trait: its package, daemon, configuration from a profile, log
//! format and classification table. Each MTA implements it in its own module; [`of`] is the
//! registry.

use crate::log::LogEvent;
use crate::translate::{Dirs, Prepared, Result};
use report_format::{Mta, ServerProfile};

/// Everything the runtime needs to know about one MTA.
pub trait MtaKind: Sync {
    fn mta(&self) -> Mta;
    /// The Debian package whose version is the MTA's (in `.cache/mta/stamp`).
    fn package(&self) -> &'static str;
    /// The daemon, relative to the MTA's extracted root.
    fn daemon(&self) -> &'static str;
    /// The classification table for its own words (its log, what it says when it will not
    /// start), in `harness/classify/`.
    fn table(&self) -> &'static str;
    /// A server profile as this MTA's configuration, written under `d.work`.
    fn prepare_server(&self, profile: &ServerProfile, d: &Dirs<'_>) -> Result<Prepared>;
    /// A log line's message, without time stamp, host and `program[pid]:` prefix.
    fn message<'a>(&self, line: &'a str) -> &'a str;
    /// Which connection a log line belongs to (a process, a session, a peer's address and
    /// port), where the line says.
    fn connection<'a>(&self, line: &'a str) -> Option<&'a str>;
    /// What a log message tells of a connection, if anything.
    fn event(&self, msg: &str) -> Option<LogEvent>;
}

/// The knowledge of one MTA.
pub fn of(mta: Mta) -> &'static dyn MtaKind {
    match mta {
        Mta::Postfix => &crate::postfix::Postfix,
        Mta::Exim => &crate::exim::Exim,
        Mta::Sendmail => &crate::sendmail::Sendmail,
        Mta::Opensmtpd => &crate::opensmtpd::Opensmtpd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mta_has_its_own_entry() {
        for m in Mta::ALL {
            let k = of(m);
            assert_eq!(k.mta(), m);
            assert!(k.table().starts_with("server-"), "{}", k.table());
        }
    }
}
