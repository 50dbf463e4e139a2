//! TLS for the built-in server: one acceptor per backend, built once per profile from the
//! server profile, and the negotiated parameters of each connection.

pub mod openssl;
pub mod rustls;

pub(crate) use self::openssl::openssl_cipher_list;

use crate::pki::TestPki;
use crate::profile::{Backend, ServerProfile};
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
    /// Build the backend's configuration for a profile.
    pub fn build(profile: &ServerProfile, pki: &TestPki) -> Result<Acceptor, ConfigRejected> {
        let rejected = |detail: String| ConfigRejected { backend: profile.backend.as_str(), detail };
        match profile.backend {
            Backend::Openssl => openssl::build(profile, pki)
                .map(|ctx| Acceptor::Openssl(ctx, profile.dh.map(|d| d.bits())))
                .map_err(rejected),
            Backend::Rustls => rustls::build(profile, pki).map(Acceptor::Rustls).map_err(rejected),
            Backend::Postfix | Backend::Exim | Backend::Sendmail | Backend::Opensmtpd => Err(rejected(format!(
                "{} is a real MTA, started by its launcher, not by the built-in server",
                profile.backend.as_str()
            ))),
        }
    }

    /// Do the server side of the handshake. On failure, the library's own words.
    pub async fn accept(&self, tcp: TcpStream) -> Result<(Box<dyn TlsStream>, Negotiated), String> {
        match self {
            Acceptor::Openssl(ctx, dh_bits) => openssl::accept(ctx, *dh_bits, tcp).await,
            Acceptor::Rustls(cfg) => rustls::accept(cfg.clone(), tcp).await,
        }
    }
}
