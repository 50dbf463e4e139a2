//! TLS for the built-in server: one acceptor per backend, built once per profile from the
//! server profile, and the negotiated parameters of each connection.

pub mod choose;
pub mod ecdhe;
pub mod openssl;
pub mod rustls;

use crate::hello::Replay;
use crate::pki::TestPki;
use report_format::{Backend, ProfileError, ServerProfile, TlsBackend};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wire::Negotiated;

/// A byte stream after the handshake.
pub trait TlsStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TlsStream for T {}

/// A ready-to-use TLS server configuration.
pub enum Acceptor {
    /// The context, and the DH prime size it serves (OpenSSL does not report it back on the
    /// server side after a TLS 1.2 DHE handshake).
    Openssl(::openssl::ssl::SslContext, Option<u32>),
    Rustls(std::sync::Arc<::rustls::ServerConfig>),
}

/// The backend refused the profile (a finding: `server_config_rejected`), in its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {backend} backend refused the profile: {detail}")]
pub struct ConfigRejected {
    pub backend: &'static str,
    pub detail: String,
}

impl Acceptor {
    /// Build a backend's configuration for a profile.
    pub fn build(backend: TlsBackend, profile: &ServerProfile, pki: &TestPki) -> Result<Acceptor, ConfigRejected> {
        let rejected = |detail: String| ConfigRejected { backend: backend.as_str(), detail };
        match backend {
            TlsBackend::Openssl => openssl::build(profile, pki)
                .map(|ctx| Acceptor::Openssl(ctx, profile.dh.map(|d| d.bits())))
                .map_err(rejected),
            TlsBackend::Rustls => rustls::build(profile, pki).map(Acceptor::Rustls).map_err(rejected),
        }
    }

    /// Do the server side of the handshake over `tcp`, whose first bytes (the ClientHello) were
    /// already read and are replayed. On failure, the library's own words. With it, the rare
    /// encodings the backend forced or kept out (none where the library chose its own keys).
    pub async fn accept(
        &self,
        tcp: Replay<TcpStream>,
    ) -> (Result<(Box<dyn TlsStream>, Negotiated), String>, Vec<report_format::EncodingChoice>) {
        match self {
            Acceptor::Openssl(ctx, dh_bits) => (openssl::accept(ctx, *dh_bits, tcp).await, Vec::new()),
            Acceptor::Rustls(cfg) => rustls::accept(cfg.clone(), tcp).await,
        }
    }
}

/// Check at load time that a profile's suite names are real: every IANA name in `ciphers` and
/// `tls13_suites` must be one the system OpenSSL knows (the MTAs on OpenSSL take them as
/// OpenSSL names, and a name no library knows is a typo). The rustls backend has its own,
/// narrower list, checked by [`ServerProfile::validate`].
pub fn check_suites(profile: &ServerProfile) -> Result<(), ProfileError> {
    if profile.backend == Backend::Builtin(TlsBackend::Rustls) {
        return Ok(());
    }
    let known = ::openssl_ext::all_cipher_names()
        .map_err(|e| ProfileError { field: "ciphers", message: format!("list OpenSSL's cipher suites: {e}") })?;
    for (field, list) in [("ciphers", &profile.ciphers), ("tls13_suites", &profile.tls13_suites)] {
        if let Some(unknown) = list.iter().flatten().find(|s| !known.contains_key(*s)) {
            let close = closest(unknown, known.keys());
            return Err(ProfileError {
                field,
                message: format!(
                    "server {:?}: {unknown} is not a cipher suite {} knows (IANA names, e.g. {close})",
                    profile.id,
                    ::openssl::version::version()
                ),
            });
        }
    }
    Ok(())
}

/// The known name sharing the longest prefix with `name`, as a suggestion.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let shared = |k: &str| k.chars().zip(name.chars()).take_while(|(a, b)| a == b).count();
    known.max_by_key(|k| shared(k)).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_in_a_suite_name_is_refused_at_load_with_a_suggestion() {
        let p: ServerProfile = serde_json::from_value(serde_json::json!({"id": "x", "backend": "openssl",
            "max_tls": "1.2", "ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265"]}))
        .unwrap();
        let e = check_suites(&p).unwrap_err();
        assert_eq!(e.field, "ciphers");
        assert!(e.message.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), "{}", e.message);
        let ok: ServerProfile = serde_json::from_value(serde_json::json!({"id": "x", "backend": "postfix",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "dh": "ffdhe2048"}))
        .unwrap();
        assert!(check_suites(&ok).is_ok());
    }
}
