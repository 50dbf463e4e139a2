//! Finite-field DHE for rustls, which ships none: key exchange over any prime (RFC 7919 named
//! groups, or a server's own prime under a private-use group id) and TLS 1.2 `DHE_RSA` suites
//! made from ring's ECDHE_RSA ones (same AEAD, PRF and signature; only the key exchange differs).
//! The built-in server serves with it; the `rustls-client --ffdhe` stack offers it.

use openssl::bn::{BigNum, BigNumContext, MsbOption};
use rustls::crypto::{ActiveKeyExchange, CipherSuiteCommon, KeyExchangeAlgorithm, SharedSecret, SupportedKxGroup};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::{CipherSuite, NamedGroup, SupportedCipherSuite, Tls12CipherSuite};

/// The group id used for a prime that is not an RFC 7919 group (from the private-use FFDHE range
/// 0x01FC–0x01FF, so rustls treats it as finite-field).
pub const CUSTOM_GROUP_ID: u16 = 0x01ff;

/// A finite-field group rustls can use for key exchange.
#[derive(Debug)]
pub struct FfdheKx {
    pub name: NamedGroup,
    pub group: FfdheGroup<'static>,
    /// Usable in TLS 1.2 only: set for a prime registered under another group's name.
    pub tls12_only: bool,
}

impl FfdheKx {
    /// A group with leaked (static) parameters; built once per server profile.
    pub fn new(name: NamedGroup, p: Vec<u8>, g: Vec<u8>) -> &'static FfdheKx {
        Self::leak(name, p, g, false)
    }

    /// A prime served under an RFC 7919 name in TLS 1.2 only. A rustls server follows RFC 7919
    /// strictly: a client that lists FFDHE groups gets one of those or no DHE at all. Servers
    /// with their own prime (OpenSSL, sendmail, Postfix) ignore the list and send the prime in
    /// ServerKeyExchange anyway; registering the profile's prime under every RFC 7919 name makes
    /// the rustls backend do the same. TLS 1.3 names the group on the wire, so not there.
    pub fn legacy_under(name: NamedGroup, p: Vec<u8>, g: Vec<u8>) -> &'static FfdheKx {
        Self::leak(name, p, g, true)
    }

    fn leak(name: NamedGroup, p: Vec<u8>, g: Vec<u8>, tls12_only: bool) -> &'static FfdheKx {
        let p: &'static [u8] = Box::leak(p.into_boxed_slice());
        let g: &'static [u8] = Box::leak(g.into_boxed_slice());
        Box::leak(Box::new(FfdheKx { name, group: FfdheGroup::from_params_trimming_leading_zeros(p, g), tls12_only }))
    }
}

fn crypto_err(what: &str, e: openssl::error::ErrorStack) -> rustls::Error {
    rustls::Error::General(format!("FFDHE {what}: {e}"))
}

impl SupportedKxGroup for FfdheKx {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let p = BigNum::from_slice(self.group.p).map_err(|e| crypto_err("prime", e))?;
        let g = BigNum::from_slice(self.group.g).map_err(|e| crypto_err("generator", e))?;
        let mut ctx = BigNumContext::new().map_err(|e| crypto_err("context", e))?;
        // A private exponent of up to 512 bits: twice the strength of the largest RFC 7919 group.
        let mut x = BigNum::new().map_err(|e| crypto_err("exponent", e))?;
        x.rand(p.num_bits().min(512), MsbOption::MAYBE_ZERO, false).map_err(|e| crypto_err("exponent", e))?;
        let mut y = BigNum::new().map_err(|e| crypto_err("public value", e))?;
        y.mod_exp(&g, &x, &p, &mut ctx).map_err(|e| crypto_err("public value", e))?;
        let pub_key = y.to_vec_padded(self.group.p.len() as i32).map_err(|e| crypto_err("public value", e))?;
        Ok(Box::new(ActiveFfdhe { name: self.name, group: self.group, x, pub_key }))
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        Some(self.group)
    }

    fn name(&self) -> NamedGroup {
        self.name
    }

    fn usable_for_version(&self, version: rustls::ProtocolVersion) -> bool {
        !self.tls12_only || version == rustls::ProtocolVersion::TLSv1_2
    }
}

struct ActiveFfdhe {
    name: NamedGroup,
    group: FfdheGroup<'static>,
    x: BigNum,
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for ActiveFfdhe {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let p = BigNum::from_slice(self.group.p).map_err(|e| crypto_err("prime", e))?;
        let y = BigNum::from_slice(peer).map_err(|e| crypto_err("peer value", e))?;
        let one = BigNum::from_u32(1).map_err(|e| crypto_err("constant", e))?;
        let mut p_minus_1 = BigNum::new().map_err(|e| crypto_err("constant", e))?;
        p_minus_1.checked_sub(&p, &one).map_err(|e| crypto_err("constant", e))?;
        // RFC 7919 §5.1: the peer's value must lie in (1, p-1).
        if y <= one || y >= p_minus_1 {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        let mut z = BigNum::new().map_err(|e| crypto_err("secret", e))?;
        let mut ctx = BigNumContext::new().map_err(|e| crypto_err("context", e))?;
        z.mod_exp(&y, &self.x, &p, &mut ctx).map_err(|e| crypto_err("secret", e))?;
        let secret = z.to_vec_padded(self.group.p.len() as i32).map_err(|e| crypto_err("secret", e))?;
        Ok(SharedSecret::from(secret))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        Some(self.group)
    }

    fn group(&self) -> NamedGroup {
        self.name
    }
}

/// A TLS 1.2 DHE_RSA suite made from an ECDHE_RSA one.
fn dhe_from(ecdhe: SupportedCipherSuite, id: CipherSuite) -> SupportedCipherSuite {
    let SupportedCipherSuite::Tls12(s) = ecdhe else { unreachable!("ring's ECDHE_RSA suites are TLS 1.2 suites") };
    SupportedCipherSuite::Tls12(Box::leak(Box::new(Tls12CipherSuite {
        common: CipherSuiteCommon {
            suite: id,
            hash_provider: s.common.hash_provider,
            confidentiality_limit: s.common.confidentiality_limit,
        },
        prf_provider: s.prf_provider,
        kx: KeyExchangeAlgorithm::DHE,
        sign: s.sign,
        aead_alg: s.aead_alg,
    })))
}

/// The IANA name of a suite. rustls' `Debug` names only the suites it implements, so the DHE
/// ones made here would otherwise print as `CipherSuite(0x9e)`.
pub fn suite_name(suite: CipherSuite) -> String {
    match u16::from(suite) {
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256".into(),
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384".into(),
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256".into(),
        _ => format!("{suite:?}"),
    }
}

/// The TLS 1.2 DHE_RSA suites, built once.
pub fn dhe_suites() -> &'static [SupportedCipherSuite] {
    static SUITES: std::sync::OnceLock<Vec<SupportedCipherSuite>> = std::sync::OnceLock::new();
    SUITES.get_or_init(|| {
        use rustls::crypto::ring::cipher_suite as cs;
        vec![
            dhe_from(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, CipherSuite::TLS_DHE_RSA_WITH_AES_256_GCM_SHA384),
            dhe_from(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, CipherSuite::TLS_DHE_RSA_WITH_AES_128_GCM_SHA256),
            dhe_from(
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ]
    })
}

/// The RFC 7919 groups as key exchanges, what a rustls user who enables FFDHE gets.
pub fn rfc7919_groups() -> Vec<&'static dyn SupportedKxGroup> {
    use rustls::ffdhe_groups as g;
    [
        (NamedGroup::FFDHE2048, g::FFDHE2048),
        (NamedGroup::FFDHE3072, g::FFDHE3072),
        (NamedGroup::FFDHE4096, g::FFDHE4096),
        (NamedGroup::FFDHE6144, g::FFDHE6144),
        (NamedGroup::FFDHE8192, g::FFDHE8192),
    ]
    .into_iter()
    .map(|(name, group)| FfdheKx::new(name, group.p.to_vec(), group.g.to_vec()) as &'static dyn SupportedKxGroup)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sides_agree() {
        let g = rustls::ffdhe_groups::FFDHE2048;
        let kx = FfdheKx::new(NamedGroup::Unknown(CUSTOM_GROUP_ID), g.p.to_vec(), g.g.to_vec());
        let a = kx.start().unwrap();
        let b = kx.start().unwrap();
        let b_pub = b.pub_key().to_vec();
        let a_pub = a.pub_key().to_vec();
        assert_eq!(a.complete(&b_pub).unwrap().secret_bytes(), b.complete(&a_pub).unwrap().secret_bytes());
    }

    #[test]
    fn rejects_trivial_peer_values() {
        let g = rustls::ffdhe_groups::FFDHE2048;
        let kx = FfdheKx::new(NamedGroup::FFDHE2048, g.p.to_vec(), g.g.to_vec());
        assert!(kx.start().unwrap().complete(&[1]).is_err());
    }
}
