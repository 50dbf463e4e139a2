//! `rustls-client`: rustls with its stock ring provider, as users get it (no DHE, ECDHE groups
//! X25519/P-256/P-384, TLS 1.2 and 1.3), verifying against `--cafile` or the webpki roots.

use crate::contract::{self, Common};
use crate::smtp;
use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::ffi::OsString;
use std::sync::Arc;
use wire::{ClientResult, Negotiated, Stage};

/// A contract client on rustls.
#[derive(Debug, Parser)]
#[command(
    name = "rustls-client",
    about = "SMTP STARTTLS client on rustls with the stock ring provider (the client contract)"
)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Add finite-field DHE: TLS 1.2 DHE_RSA suites and the RFC 7919 groups (rustls implements
    /// the negotiation; the stock providers ship neither).
    #[arg(long)]
    ffdhe: bool,
    /// The crypto provider: ring, or aws-lc-rs (rustls' default since 0.23).
    #[arg(long, value_enum, default_value = "ring")]
    provider: Provider,
    /// Offer only these suites (IANA names, comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    ciphers: Option<Vec<String>>,
    /// Offer only these groups (x25519, secp256r1, secp384r1; comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// Lowest TLS version: 1.2 or 1.3 (rustls has no older ones).
    #[arg(long, value_name = "V")]
    tls_min: Option<String>,
    /// Highest TLS version: 1.2 or 1.3.
    #[arg(long, value_name = "V")]
    tls_max: Option<String>,
    /// Refuse a TLS 1.2 server without the extended master secret extension, as rustls does
    /// in FIPS mode (`ClientConfig::require_ems`, RFC 7627).
    #[arg(long)]
    require_ems: bool,
}

/// Which stock crypto provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Provider {
    Ring,
    AwsLcRs,
}

fn config(args: &Args) -> Result<ClientConfig, i32> {
    let mut provider = match args.provider {
        Provider::Ring => rustls::crypto::ring::default_provider(),
        Provider::AwsLcRs if args.ffdhe => {
            return Err(contract::unsupported("--ffdhe is built on ring's suites; use --provider ring"));
        }
        Provider::AwsLcRs => rustls::crypto::aws_lc_rs::default_provider(),
    };
    if args.ffdhe {
        provider.cipher_suites.extend_from_slice(ffdhe::dhe_suites());
        provider.kx_groups.extend(ffdhe::rfc7919_groups());
    }
    if let Some(wanted) = &args.ciphers {
        provider.cipher_suites.retain(|s| wanted.contains(&ffdhe::suite_name(s.suite())));
        if provider.cipher_suites.is_empty() {
            return Err(contract::unsupported(&format!("--ciphers {}: none is a rustls suite", wanted.join(","))));
        }
    }
    if let Some(wanted) = &args.groups {
        provider.kx_groups.retain(|g| wanted.contains(&iana_group(g.name())));
        if provider.kx_groups.len() != wanted.len() {
            return Err(contract::unsupported(&format!(
                "--groups {}: rustls (ring) has x25519, secp256r1, secp384r1",
                wanted.join(",")
            )));
        }
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    let min = args.tls_min.as_deref().unwrap_or("1.2");
    let max = args.tls_max.as_deref().unwrap_or("1.3");
    for (flag, v) in [("--tls-min", min), ("--tls-max", max)] {
        if v != "1.2" && v != "1.3" {
            return Err(contract::unsupported(&format!("{flag} {v}: rustls speaks TLS 1.2 and 1.3 only")));
        }
    }
    if min == "1.2" {
        versions.push(&rustls::version::TLS12);
    }
    if max == "1.3" {
        versions.push(&rustls::version::TLS13);
    }
    let mut roots = RootCertStore::empty();
    match &args.common.cafile {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| contract::cannot_run(&format!("--cafile {}: {e}", path.display())))?;
            roots.add_parsable_certificates(certs);
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| contract::unsupported(&e.to_string()))?;
    config.require_ems = args.require_ems;
    Ok(config)
}

/// rustls spells groups `X25519`, `secp256r1`; the contract uses IANA lower case for the
/// classic ones and the registry's spelling for the hybrids (`X25519MLKEM768`).
fn iana_group(g: rustls::NamedGroup) -> String {
    openssl_ext::iana_group_name(&format!("{g:?}"))
}

fn describe(config: &ClientConfig, ffdhe_added: bool, which: Provider) -> i32 {
    let provider = config.crypto_provider();
    let name = match (which, ffdhe_added) {
        (Provider::Ring, true) => "ring + FFDHE (RFC 7919 groups, DHE_RSA suites)",
        (Provider::Ring, false) => "ring (stock)",
        (Provider::AwsLcRs, _) => "aws-lc-rs (stock)",
    };
    let policy = serde_json::json!({
        "provider": name,
        "suites": provider.cipher_suites.iter().map(|s| ffdhe::suite_name(s.suite())).collect::<Vec<_>>(),
        "groups": provider.kx_groups.iter().map(|g| iana_group(g.name())).collect::<Vec<_>>(),
        "dhe": ffdhe_added,
        "require_ems": config.require_ems,
    });
    contract::describe("rustls", &format!("rustls {}", crate::RUSTLS_VERSION), policy)
}

impl contract::Program for Args {
    type Config = ClientConfig;

    fn common(&self) -> &Common {
        &self.common
    }

    fn config(&self) -> Result<ClientConfig, i32> {
        config(self)
    }

    fn describe(&self, config: &ClientConfig) -> i32 {
        describe(config, self.ffdhe, self.provider)
    }

    fn run(&self, config: ClientConfig) -> ClientResult {
        run(config, &self.common)
    }
}

/// Run the program; returns its exit code.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> i32 {
    contract::main::<Args>(argv)
}

fn run(config: ClientConfig, common: &Common) -> ClientResult {
    smtp::dialogue(common, |tcp| {
        let name = ServerName::try_from(common.servername.clone())
            .map_err(|e| ClientResult::error(Stage::Handshake, format!("server name {}: {e}", common.servername)))?;
        let conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| ClientResult::error(Stage::Handshake, e.to_string()))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                let stage = match inner {
                    Some(rustls::Error::InvalidCertificate(_)) => Stage::Verify,
                    _ => Stage::Handshake,
                };
                return Err(ClientResult::error(stage, inner.map(|i| i.to_string()).unwrap_or_else(|| e.to_string())));
            }
        }
        let conn = &stream.conn;
        let kx = conn.negotiated_key_exchange_group();
        let negotiated = Negotiated {
            protocol: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_2) => Some(wire::Protocol::Tls12),
                Some(rustls::ProtocolVersion::TLSv1_3) => Some(wire::Protocol::Tls13),
                _ => None,
            },
            cipher: conn.negotiated_cipher_suite().map(|s| ffdhe::suite_name(s.suite())),
            // TLS 1.2 DHE puts a bare prime on the wire: no group name, as for every stack.
            group: kx
                .filter(|k| {
                    !(k.ffdhe_group().is_some() && conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2))
                })
                .map(|k| iana_group(k.name())),
            dh_bits: kx.and_then(|k| k.ffdhe_group()).map(|g| g.p.len() as u32 * 8),
        };
        Ok((stream, negotiated))
    })
}
