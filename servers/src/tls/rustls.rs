//! The rustls backend: rustls 0.23 with the ring provider, narrowed to the profile's versions,
//! suites and groups, plus TLS 1.2 DHE from [`ffdhe`] when the profile has a DH group, the NIST
//! curves on OpenSSL's arithmetic ([`super::ecdhe`]), and the post-quantum hybrid
//! X25519MLKEM768 from the aws-lc-rs provider (ring has none). Every key exchange and signature
//! goes through [`super::choose`]: the profile's forced rare case, or none.

use super::choose::{ChosenEc, ChosenFfdhe, ChosenKey, Policy, Redrawn};
use super::ecdhe::EcKx;
use crate::dh::DhParams;
use crate::hello::Replay;
use crate::pki::TestPki;
use ffdhe::{CUSTOM_GROUP_ID, FfdheKx, dhe_suites};
use report_format::{EncodingChoice, Group, ServerProfile, TlsVersion};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{NamedGroup, ServerConfig, SupportedCipherSuite};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use wire::Negotiated;

const RFC7919_NAMES: [NamedGroup; 5] =
    [NamedGroup::FFDHE2048, NamedGroup::FFDHE3072, NamedGroup::FFDHE4096, NamedGroup::FFDHE6144, NamedGroup::FFDHE8192];

fn leak(kx: impl SupportedKxGroup + 'static) -> &'static dyn SupportedKxGroup {
    Box::leak(Box::new(kx))
}

/// A finite-field group whose keys the server chooses.
fn chosen_ffdhe(kx: &'static FfdheKx, policy: Policy) -> &'static dyn SupportedKxGroup {
    leak(ChosenFfdhe { kx, policy })
}

fn named_ffdhe(group: Group, policy: Policy) -> Option<&'static dyn SupportedKxGroup> {
    let dh = group.ffdhe()?;
    let (p, g) = dh.p_and_g();
    let name = match group {
        Group::Ffdhe2048 => NamedGroup::FFDHE2048,
        Group::Ffdhe3072 => NamedGroup::FFDHE3072,
        Group::Ffdhe4096 => NamedGroup::FFDHE4096,
        Group::Ffdhe6144 => NamedGroup::FFDHE6144,
        Group::Ffdhe8192 => NamedGroup::FFDHE8192,
        Group::X25519
        | Group::X448
        | Group::Secp256r1
        | Group::Secp384r1
        | Group::Secp521r1
        | Group::X25519Mlkem768 => return None,
    };
    Some(chosen_ffdhe(FfdheKx::new(name, p, g), policy))
}

fn chosen_ec(name: NamedGroup, policy: Policy) -> Option<&'static dyn SupportedKxGroup> {
    EcKx::of(name).map(|kx| leak(ChosenEc { kx, policy }))
}

fn kx_group(group: Group, policy: Policy) -> Option<&'static dyn SupportedKxGroup> {
    use rustls::crypto::ring::kx_group;
    match group {
        Group::X25519 => Some(leak(Redrawn { inner: kx_group::X25519 })),
        Group::Secp256r1 => chosen_ec(NamedGroup::secp256r1, policy),
        Group::Secp384r1 => chosen_ec(NamedGroup::secp384r1, policy),
        Group::Secp521r1 => chosen_ec(NamedGroup::secp521r1, policy),
        Group::X448 => None,
        Group::X25519Mlkem768 => Some(leak(Redrawn { inner: rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768 })),
        Group::Ffdhe2048 | Group::Ffdhe3072 | Group::Ffdhe4096 | Group::Ffdhe6144 | Group::Ffdhe8192 => {
            named_ffdhe(group, policy)
        }
    }
}

fn suite_name(s: &SupportedCipherSuite) -> String {
    ffdhe::suite_name(s.suite())
}

pub(super) fn build(profile: &ServerProfile, pki: &TestPki) -> Result<Arc<ServerConfig>, String> {
    let policy = Policy {
        forced: profile.force,
        strips_secret_zero: profile.fault == Some(report_format::Fault::StripsSecretLeadingZero),
    };
    let ring = rustls::crypto::ring::default_provider();
    let mut available: Vec<SupportedCipherSuite> = ring.cipher_suites.clone();
    available.extend_from_slice(dhe_suites());
    let pick = |wanted: &[String]| -> Result<Vec<SupportedCipherSuite>, String> {
        wanted
            .iter()
            .map(|w| {
                available.iter().find(|s| suite_name(s) == *w).copied().ok_or_else(|| format!("no cipher suite {w}"))
            })
            .collect()
    };
    let mut suites = match &profile.tls13_suites {
        Some(list) => pick(list)?,
        None => ring.cipher_suites.iter().filter(|s| s.tls13().is_some()).copied().collect(),
    };
    match &profile.ciphers {
        Some(list) => suites.extend(pick(list)?),
        // TLS 1.3 only: no TLS 1.2 suite (rustls refuses an ECDHE suite without an ECDHE group,
        // and a TLS 1.3 ffdhe-only profile has none).
        None if !profile.speaks_tls12_or_below() => {}
        None => {
            suites.extend(ring.cipher_suites.iter().filter(|s| s.tls13().is_none()).copied());
            if profile.dh.is_some() {
                suites.extend_from_slice(dhe_suites());
            }
        }
    }

    // The DH group goes first among the finite-field groups: rustls picks the first one for a
    // TLS 1.2 client that names none (RFC 7919 §4).
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    if let Some(dh) = profile.dh {
        let (p, g) = dh.p_and_g();
        match Group::for_dh(dh).and_then(|g| named_ffdhe(g, policy)) {
            Some(named) => groups.push(named),
            None => {
                groups.push(chosen_ffdhe(
                    FfdheKx::new(NamedGroup::Unknown(CUSTOM_GROUP_ID), p.clone(), g.clone()),
                    policy,
                ));
                for name in RFC7919_NAMES {
                    groups.push(chosen_ffdhe(FfdheKx::legacy_under(name, p.clone(), g.clone()), policy));
                }
            }
        }
    }
    match &profile.groups {
        Some(list) => {
            for g in list {
                let kx = kx_group(*g, policy).ok_or_else(|| format!("no group {}", g.name()))?;
                if !groups
                    .iter()
                    .any(|k| k.name() == kx.name() && k.usable_for_version(rustls::ProtocolVersion::TLSv1_3))
                {
                    groups.push(kx);
                }
            }
        }
        // ring's defaults (X25519, P-256, P-384), with keys chosen.
        None => groups.extend(
            [Group::X25519, Group::Secp256r1, Group::Secp384r1].into_iter().filter_map(|g| kx_group(g, policy)),
        ),
    }

    let provider = CryptoProvider { cipher_suites: suites, kx_groups: groups, ..ring };
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if profile.min_tls <= TlsVersion::Tls12 && profile.max_tls >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if profile.max_tls == TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.cert(profile.cert))
        .map_err(|e| format!("read certificate: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(pki.key(profile.cert)).map_err(|e| format!("read key: {e}"))?;
    let key = provider.key_provider.load_private_key(key).map_err(|e| format!("load key: {e}"))?;
    let key = Arc::new(ChosenKey { inner: key, policy });
    let certified = rustls::sign::CertifiedKey::new(certs, key);
    let config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    Ok(Arc::new(config))
}

/// rustls' words for a failed handshake: the inner `rustls::Error` when there is one.
fn words(err: &std::io::Error) -> String {
    match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(inner) => inner.to_string(),
        None => err.to_string(),
    }
}

/// The server side of a handshake, with the choices of keys and signatures made in it.
pub(super) async fn accept(
    config: Arc<ServerConfig>,
    tcp: Replay<TcpStream>,
) -> (Result<(Box<dyn super::TlsStream>, Negotiated), String>, Vec<EncodingChoice>) {
    super::choose::scoped(handshake(config, tcp)).await
}

async fn handshake(
    config: Arc<ServerConfig>,
    tcp: Replay<TcpStream>,
) -> Result<(Box<dyn super::TlsStream>, Negotiated), String> {
    let stream = TlsAcceptor::from(config).accept(tcp).await.map_err(|e| words(&e))?;
    let (_, conn) = stream.get_ref();
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => Some(report_format::Protocol::Tls12),
        Some(rustls::ProtocolVersion::TLSv1_3) => Some(report_format::Protocol::Tls13),
        _ => None,
    };
    let kx = conn.negotiated_key_exchange_group();
    let negotiated = Negotiated {
        protocol,
        cipher: conn.negotiated_cipher_suite().map(|s| suite_name(&s)),
        // In TLS 1.2 the prime goes on the wire bare: no group name, as the client sees it.
        group: kx.and_then(|k| match (k.name(), conn.protocol_version()) {
            (NamedGroup::Unknown(_), _) => None,
            (_, Some(rustls::ProtocolVersion::TLSv1_2)) if k.ffdhe_group().is_some() => None,
            (named, _) => Some(openssl_ext::iana_group_name(&format!("{named:?}"))),
        }),
        dh_bits: kx.and_then(|k| k.ffdhe_group()).map(|g| prime_bits(g.p)),
    };
    Ok((Box::new(stream), negotiated))
}

fn prime_bits(p: &[u8]) -> u32 {
    let lead = p.iter().position(|b| *b != 0).unwrap_or(p.len());
    let p = &p[lead..];
    match p.first() {
        Some(top) => (p.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
        None => 0,
    }
}
