//! The built-in SMTP+STARTTLS server: a real ESMTP dialogue over plaintext and then TLS, served
//! by one of several TLS backends from one server profile, with DH groups and a test PKI as data.
//! It knows nothing of matrices or verdicts; the profile and the connection records it writes
//! are the report's vocabulary (`report_format`).

pub mod dh;
pub mod fault;
pub mod hello;
pub mod pki;
pub mod server;
pub mod session;
pub mod tls;

pub use dh::{DhGroup, DhKind, DhParams};
pub use fault::Fault;
pub use pki::{SERVER_NAME, TestPki};
pub use report_format::{
    Backend, CertKind, ConnectionRecord, DheMode, End, Group, ProfileError, Refusal, ServerProfile, TlsBackend,
    TlsVersion,
};
pub use server::{RunningServer, ServeOptions, StartError, start};
pub use tls::{ConfigRejected, check_suites};

/// The TLS library behind the OpenSSL backend, as it reports itself.
pub fn openssl_version() -> &'static str {
    openssl::version::version()
}
