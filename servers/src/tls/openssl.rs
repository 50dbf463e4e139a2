//! The OpenSSL backend: the system OpenSSL through the `openssl` crate, with a permissive
//! security callback so that the profile, not the library's security level, decides what is
//! served (OpenSSL refuses DH under 1024 bits even at level 0 otherwise).

use crate::dh::DhParams;
use crate::hello::Replay;
use crate::pki::TestPki;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslOptions, SslVersion};
use report_format::{ServerProfile, TlsVersion};
use std::pin::Pin;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use wire::Negotiated;

fn version(v: TlsVersion) -> SslVersion {
    match v {
        TlsVersion::Tls10 => SslVersion::TLS1,
        TlsVersion::Tls11 => SslVersion::TLS1_1,
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    }
}

pub(super) fn build(profile: &ServerProfile, pki: &TestPki) -> Result<SslContext, String> {
    let e = |what: &str, err: openssl::error::ErrorStack| format!("{what}: {err}");
    let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(|err| e("create context", err))?;
    // Before set_tmp_dh, which checks the DH size against the callback when it is called.
    openssl_ext::allow_all_security(&mut b);
    b.set_min_proto_version(Some(version(profile.min_tls))).map_err(|err| e("set min version", err))?;
    b.set_max_proto_version(Some(version(profile.max_tls))).map_err(|err| e("set max version", err))?;
    if let Some(ciphers) = &profile.ciphers {
        b.set_cipher_list(&openssl_ext::openssl_cipher_list(ciphers)?).map_err(|err| e("set cipher list", err))?;
    }
    if let Some(suites) = &profile.tls13_suites {
        b.set_ciphersuites(&suites.join(":")).map_err(|err| e("set TLS 1.3 suites", err))?;
    }
    if let Some(groups) = &profile.groups {
        let list: Vec<&str> = groups.iter().map(|g| openssl_ext::openssl_group_name(g.name())).collect();
        b.set_groups_list(&list.join(":")).map_err(|err| e("set groups", err))?;
    }
    match profile.dh {
        Some(dh) => b.set_tmp_dh(&dh.params()).map_err(|err| e("set DH parameters", err))?,
        // What an admin gets from `auto` (Postfix ≥ 3.7): OpenSSL picks a group by key size.
        None => openssl_ext::set_dh_auto(&mut b),
    }
    if profile.fault == Some(report_format::Fault::NoEms) {
        // SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL ≥ 3.0), which the crate does not name.
        b.set_options(SslOptions::from_bits_retain(0x1));
    }
    b.set_certificate_chain_file(pki.cert(profile.cert)).map_err(|err| e("load certificate", err))?;
    b.set_private_key_file(pki.key(profile.cert), SslFiletype::PEM).map_err(|err| e("load key", err))?;
    b.check_private_key().map_err(|err| e("check key", err))?;
    Ok(b.build())
}

/// The words of an OpenSSL handshake failure: the error queue if there is one, else the I/O error.
fn words(err: &openssl::ssl::Error) -> String {
    if let Some(stack) = err.ssl_error() {
        stack.to_string()
    } else if let Some(io) = err.io_error() {
        io.to_string()
    } else {
        err.to_string()
    }
}

pub(super) async fn accept(
    ctx: &SslContext,
    configured_dh_bits: Option<u32>,
    tcp: Replay<TcpStream>,
) -> Result<(Box<dyn super::TlsStream>, Negotiated), String> {
    let ssl = Ssl::new(ctx).map_err(|e| e.to_string())?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    Pin::new(&mut stream).accept().await.map_err(|e| words(&e))?;
    let ssl = stream.ssl();
    let cipher = ssl.current_cipher().map(|c| c.standard_name().unwrap_or(c.name()).to_string()).unwrap_or_default();
    let group = openssl_ext::negotiated_group(ssl);
    let dh_bits = match ssl.tmp_key() {
        Ok(k) => openssl_ext::dh_bits(k.id(), k.bits()),
        // TLS 1.2 DHE: the key is gone after the handshake; the prime is the configured one.
        Err(_) if cipher.starts_with("TLS_DHE_") => configured_dh_bits,
        Err(_) => None,
    };
    let negotiated = Negotiated {
        protocol: report_format::Protocol::parse(ssl.version_str()),
        cipher: (!cipher.is_empty()).then_some(cipher),
        group,
        dh_bits,
    };
    Ok((Box::new(stream), negotiated))
}
