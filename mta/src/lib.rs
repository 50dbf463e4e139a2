//! Real MTAs — Postfix, Exim, sendmail and OpenSMTPD — run from their extracted Debian packages
//! (`scripts/install-mtas`), never installed: each gets a private configuration written into the
//! run's work directory, its users from nss_wrapper, private namespaces where it needs them, its
//! own process group; it is read back through its own log. Each runs as a server for a profile
//! and as a sender of one message per cell ([`sender`]). One module per MTA owns everything about
//! it (configuration, log format, classification table); the rest is shared runtime.

pub mod daemon;
pub mod install;
pub mod kind;
pub mod log;
pub mod namespace;
pub mod sender;
pub mod server;
pub mod translate;
pub mod users;

pub mod exim;
pub mod opensmtpd;
pub mod postfix;
pub mod sendmail;

pub use daemon::{StartError, StopReport};
pub use install::extracted_roots;
pub use kind::{MtaKind, of};
pub use report_format::{Mta, MtaInfo, MtaRun};
pub use sender::{Destination, Sender, SenderInfo, SenderOptions, SenderPolicy, SenderView, TlsPolicy};
pub use server::{MtaServer, ServerOptions};
pub use translate::Credentials;
