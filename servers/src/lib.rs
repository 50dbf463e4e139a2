//! The built-in SMTP+STARTTLS server: a real ESMTP dialogue over plaintext and then TLS, served
//! by one of several TLS backends from one server profile, with DH groups and a test PKI as data.
//! It knows nothing of matrices or verdicts.

pub mod dh;
pub mod fault;
pub mod mta;
pub mod pki;
pub mod profile;
pub mod record;
pub mod server;
pub mod session;
pub mod tls;

pub use dh::{DhGroup, DhKind};
pub use fault::Fault;
pub use mta::{Mta, MtaInfo, MtaOptions, MtaStartError, RunningMta, StopReport};
pub use pki::{SERVER_NAME, TestPki};
pub use profile::{Backend, CertKind, DheMode, Group, ProfileError, ServerProfile, TlsVersion};
pub use record::{ConnectionRecord, End, Refusal};
pub use server::{RunningServer, ServeOptions, StartError, start};
pub use tls::ConfigRejected;

/// The TLS library behind the OpenSSL backend, as it reports itself.
pub fn openssl_version() -> &'static str {
    openssl::version::version()
}
