//! What a run could not try on the machine it ran on: the client stacks and server profiles
//! whose cells were skipped because something is not installed, and the command that installs
//! each. The terminal table folds them into one line; publishing refuses a report with them.

use report_format::{Availability, Outcome, Report};
use std::fmt::Write;

/// The command that installs everything a run can use (stacks, MTAs, build prerequisites).
pub const INSTALL: &str = "scripts/install-stacks";

/// A stack or a profile that is not here, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub id: String,
    pub reason: String,
}

impl Missing {
    /// The command that puts it here: a script its reason names (`run
    /// scripts/build-openssl-clients`), else [`INSTALL`] for a program that is not installed;
    /// `None` when installing would not help (a machine without namespaces).
    pub fn remedy(&self) -> Option<&str> {
        if let Some(at) = self.reason.find("scripts/") {
            let rest = &self.reason[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "/-_.".contains(c))).unwrap_or(rest.len());
            return Some(rest[..end].trim_end_matches('.'));
        }
        ["not installed", "not on PATH", "not found", "not extracted"]
            .iter()
            .any(|w| self.reason.contains(w))
            .then_some(INSTALL)
    }
}

/// The stacks and profiles of a report that were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Client stacks (senders included) that were not ready here, in the report's order.
    pub stacks: Vec<Missing>,
    /// Server profiles whose server was not here (an MTA not extracted), in the report's order.
    pub servers: Vec<Missing>,
}

impl Skipped {
    /// Read from a report's cells: a skipped cell is its stack's when the stack was skipped,
    /// else its server's.
    pub fn of(report: &Report) -> Skipped {
        let stack_reason = |id: &str| match report.clients.get(id).map(|c| &c.readiness) {
            Some(Availability::Skipped(reason)) => Some(reason.as_str()),
            _ => None,
        };
        let skipped_cells: Vec<(&str, &str, &str)> = report
            .cells
            .values()
            .filter_map(|c| match &c.outcome {
                Outcome::Skipped { reason } => Some((c.client.as_str(), c.server.as_str(), reason.as_str())),
                _ => None,
            })
            .collect();
        let stacks = report
            .run
            .client_order
            .iter()
            .filter_map(|id| {
                let reason = stack_reason(id)?;
                skipped_cells.iter().any(|(c, _, _)| c == id).then(|| Missing { id: id.clone(), reason: reason.into() })
            })
            .collect();
        let servers = report
            .run
            .server_order
            .iter()
            .filter_map(|id| {
                let (_, _, reason) =
                    skipped_cells.iter().find(|(c, s, reason)| s == id && stack_reason(c) != Some(*reason))?;
                Some(Missing { id: id.clone(), reason: reason.to_string() })
            })
            .collect();
        Skipped { stacks, servers }
    }

    /// Why a cell of these stacks and profiles is skipped: its stack's reason first, then its
    /// server's.
    pub fn cell_reason(&self, client: &str, server: &str) -> Option<&str> {
        fn of<'a>(list: &'a [Missing], id: &str) -> Option<&'a str> {
            list.iter().find(|m| m.id == id).map(|m| m.reason.as_str())
        }
        of(&self.stacks, client).or_else(|| of(&self.servers, server))
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty() && self.servers.is_empty()
    }

    /// Every command that would install something missing, [`INSTALL`] first.
    pub fn remedies(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for m in self.stacks.iter().chain(&self.servers) {
            if let Some(r) = m.remedy()
                && !out.contains(&r)
            {
                out.push(r);
            }
        }
        out.sort_by_key(|r| *r != INSTALL);
        out
    }

    /// Why a published table must not be made from this report: which stacks and profiles
    /// were skipped, and what installs them (several lines, no trailing newline).
    pub fn refusal(&self) -> String {
        let n = self.stacks.len() + self.servers.len();
        let mut out = format!(
            "{} {} skipped on this machine (not installed); the published table would show {} as skipped:",
            counted(self.stacks.len(), self.servers.len()),
            if n == 1 { "was" } else { "were" },
            if n == 1 { "it" } else { "them" }
        );
        if !self.stacks.is_empty() {
            let _ = write!(out, "\n  client stacks: {}", grouped(&self.stacks));
        }
        if !self.servers.is_empty() {
            let _ = write!(out, "\n  server profiles: {}", grouped(&self.servers));
        }
        let remedies = self.remedies();
        let install = if remedies.is_empty() { INSTALL.to_string() } else { remedies.join(" and ") };
        let _ = write!(
            out,
            "\ninstall them ({install}), run again and publish that run; or publish this one as it is with --allow-skipped"
        );
        out
    }
}

/// "2 client stacks and 1 server profile".
fn counted(stacks: usize, servers: usize) -> String {
    let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
    match (stacks, servers) {
        (s, 0) => n(s, "client stack"),
        (0, p) => n(p, "server profile"),
        (s, p) => format!("{} and {}", n(s, "client stack"), n(p, "server profile")),
    }
}

/// The ids grouped by remedy: "curl, msmtp (scripts/install-stacks installs them);
/// openssl-3.6 (run scripts/build-openssl-clients)"; one without a remedy with its reason.
pub fn grouped(missing: &[Missing]) -> String {
    let mut groups: Vec<(Option<&str>, Vec<&Missing>)> = Vec::new();
    for m in missing {
        match groups.iter_mut().find(|(r, _)| m.remedy().is_some() && *r == m.remedy()) {
            Some((_, ids)) => ids.push(m),
            None => groups.push((m.remedy(), vec![m])),
        }
    }
    groups.sort_by_key(|(r, _)| *r != Some(INSTALL));
    groups
        .iter()
        .map(|(remedy, ms)| {
            let ids = ms.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ");
            match remedy {
                Some(INSTALL) => format!("{ids} ({INSTALL} installs {})", if ms.len() == 1 { "it" } else { "them" }),
                Some(script) => format!("{ids} (run {script})"),
                None => format!("{ids} ({})", ms[0].reason),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(id: &str, reason: &str) -> Missing {
        Missing { id: id.into(), reason: reason.into() }
    }

    #[test]
    fn remedies_come_from_the_reasons() {
        assert_eq!(missing("curl", "curl is not installed (not on PATH)").remedy(), Some(INSTALL));
        assert_eq!(missing("go", "go is not installed (scripts/install-stacks installs it)").remedy(), Some(INSTALL));
        assert_eq!(
            missing("o", ".cache/openssl/3.6/bin/openssl-client is not built: run scripts/build-openssl-clients")
                .remedy(),
            Some("scripts/build-openssl-clients")
        );
        assert_eq!(missing("pf", "postfix needs private namespaces (unshare, mount)").remedy(), None);
    }

    #[test]
    fn grouped_by_remedy_install_first() {
        let text = grouped(&[
            missing("openssl-3.6", "x is not built: run scripts/build-openssl-clients"),
            missing("curl", "curl is not installed (not on PATH)"),
            missing("msmtp", "msmtp is not installed (not on PATH)"),
            missing("pf", "postfix needs private namespaces"),
        ]);
        assert_eq!(
            text,
            "curl, msmtp (scripts/install-stacks installs them); openssl-3.6 (run scripts/build-openssl-clients); pf (postfix needs private namespaces)"
        );
    }

    #[test]
    fn the_refusal_names_what_is_missing_and_what_installs_it() {
        let s = Skipped {
            stacks: vec![missing("curl", "curl is not installed (not on PATH)")],
            servers: vec![missing("postfix-default", "postfix is not extracted in /x: run scripts/install-stacks")],
        };
        let text = s.refusal();
        assert!(text.starts_with("1 client stack and 1 server profile were skipped"), "{text}");
        assert!(text.contains("client stacks: curl (scripts/install-stacks installs it)"), "{text}");
        assert!(text.contains("server profiles: postfix-default"), "{text}");
        assert!(text.contains("--allow-skipped"), "{text}");
        assert!(Skipped::default().is_empty());
    }
}
