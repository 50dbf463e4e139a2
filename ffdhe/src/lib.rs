//! Finite-field DHE for rustls, which ships none: key exchange over any prime (RFC 7919 named
//! groups, or a server's own prime under a private-use group id) and TLS 1.2 `DHE_RSA` suites
//! made from ring's ECDHE_RSA ones (same AEAD, PRF and signature; only the key exchange differs).
//! The built-in server serves with it; the `rustls-client --ffdhe` stack offers it.

use openssl::bn::{BigNum, BigNumContext, BigNumRef, MsbOption};
use rustls::crypto::{
    ActiveKeyExchange, CipherSuiteCommon, CompletedKeyExchange, KeyExchangeAlgorithm, SharedSecret, SupportedKxGroup,
};
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

/// How a public value is written: at the prime's length (TLS 1.3 always, RFC 8446 §4.2.8.1;
/// OpenSSL in TLS 1.2), or without leading zero bytes (TLS 1.2 allows it, RFC 5246 §7.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubEncoding {
    Padded,
    Minimal,
}

/// A search that found nothing fitting within its bound.
fn exhausted(what: &str, tries: u32) -> rustls::Error {
    rustls::Error::General(format!("FFDHE: no {what} fitting the condition after {tries} tries"))
}

/// The numbers of one exchange in progress: a private exponent and its public value.
struct Keys {
    p: BigNum,
    x: BigNum,
    y: BigNum,
    /// The walk's stride c (a random 64-bit number), and g^c: x + c has the public value y·g^c.
    stride: BigNum,
    g_stride: BigNum,
    ctx: BigNumContext,
}

impl Keys {
    fn new(group: FfdheGroup<'static>) -> Result<Keys, rustls::Error> {
        let p = BigNum::from_slice(group.p).map_err(|e| crypto_err("prime", e))?;
        let g = BigNum::from_slice(group.g).map_err(|e| crypto_err("generator", e))?;
        let mut ctx = BigNumContext::new().map_err(|e| crypto_err("context", e))?;
        // A private exponent of up to 512 bits: twice the strength of the largest RFC 7919 group.
        let mut x = BigNum::new().map_err(|e| crypto_err("exponent", e))?;
        x.rand(p.num_bits().min(512), MsbOption::MAYBE_ZERO, false).map_err(|e| crypto_err("exponent", e))?;
        let mut y = BigNum::new().map_err(|e| crypto_err("public value", e))?;
        y.mod_exp(&g, &x, &p, &mut ctx).map_err(|e| crypto_err("public value", e))?;
        // A random stride rather than 1: with g = 2, x + 1 doubles y, and the top byte of a
        // doubled value is zero only after a run of eight zero bits — about 510 steps, where a
        // well-mixed walk needs 256.
        let mut stride = BigNum::new().map_err(|e| crypto_err("exponent", e))?;
        stride.rand(64, MsbOption::ONE, true).map_err(|e| crypto_err("exponent", e))?;
        let mut g_stride = BigNum::new().map_err(|e| crypto_err("public value", e))?;
        g_stride.mod_exp(&g, &stride, &p, &mut ctx).map_err(|e| crypto_err("public value", e))?;
        Ok(Keys { p, x, y, stride, g_stride, ctx })
    }

    /// The next private value, x + c, whose public value is y·g^c: one multiplication, not an
    /// exponentiation, so that a search over keys costs microseconds a try.
    fn step(&mut self) -> Result<(), rustls::Error> {
        let mut x = BigNum::new().map_err(|e| crypto_err("exponent", e))?;
        x.checked_add(&self.x, &self.stride).map_err(|e| crypto_err("exponent", e))?;
        self.x = x;
        let mut next = BigNum::new().map_err(|e| crypto_err("public value", e))?;
        next.mod_mul(&self.y, &self.g_stride, &self.p, &mut self.ctx).map_err(|e| crypto_err("public value", e))?;
        self.y = next;
        Ok(())
    }

    /// `base^c`: what a value derived from x gains each step (the secret: peer^c).
    fn stride_of(&mut self, base: &BigNumRef) -> Result<BigNum, rustls::Error> {
        let mut out = BigNum::new().map_err(|e| crypto_err("secret", e))?;
        out.mod_exp(base, &self.stride, &self.p, &mut self.ctx).map_err(|e| crypto_err("secret", e))?;
        Ok(out)
    }

    fn padded(&self, n: &BigNumRef) -> Result<Vec<u8>, rustls::Error> {
        n.to_vec_padded(self.p.num_bytes()).map_err(|e| crypto_err("encoding", e))
    }
}

/// RFC 7919 §5.1: the peer's value must lie in (1, p-1).
fn check_peer(p: &BigNum, peer: &[u8]) -> Result<BigNum, rustls::Error> {
    let y = BigNum::from_slice(peer).map_err(|e| crypto_err("peer value", e))?;
    let one = BigNum::from_u32(1).map_err(|e| crypto_err("constant", e))?;
    let mut p_minus_1 = BigNum::new().map_err(|e| crypto_err("constant", e))?;
    p_minus_1.checked_sub(p, &one).map_err(|e| crypto_err("constant", e))?;
    if y <= one || y >= p_minus_1 {
        return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
    }
    Ok(y)
}

impl FfdheKx {
    /// Start an exchange whose public value `fits` (given at the prime's length), trying the
    /// next private value until it does, at most `max_tries`; it is then sent as `encoding`
    /// says. Returns the exchange and the tries it took.
    pub fn start_fitting(
        &self,
        fits: impl Fn(&[u8]) -> bool,
        encoding: PubEncoding,
        max_tries: u32,
    ) -> Result<(Box<dyn ActiveKeyExchange>, u32), rustls::Error> {
        let mut keys = Keys::new(self.group)?;
        for tries in 1..=max_tries {
            let padded = keys.padded(&keys.y)?;
            if fits(&padded) {
                let pub_key = match encoding {
                    PubEncoding::Padded => padded,
                    PubEncoding::Minimal => keys.y.to_vec(),
                };
                let active = ActiveFfdhe { name: self.name, group: self.group, x: keys.x, pub_key };
                return Ok((Box::new(active), tries));
            }
            keys.step()?;
        }
        Err(exhausted("public value", max_tries))
    }

    /// Answer a TLS 1.3 key share with a private value whose public value and shared secret
    /// (both at the prime's length) `fit`, trying the next private value until they do (each
    /// try two multiplications), at most `max_tries`. Returns the exchange and the tries.
    pub fn complete_fitting(
        &self,
        peer: &[u8],
        fits: impl Fn(&[u8], &[u8]) -> bool,
        max_tries: u32,
    ) -> Result<(CompletedKeyExchange, u32), rustls::Error> {
        let mut keys = Keys::new(self.group)?;
        let peer = check_peer(&keys.p, peer)?;
        let mut z = BigNum::new().map_err(|e| crypto_err("secret", e))?;
        z.mod_exp(&peer, &keys.x, &keys.p, &mut keys.ctx).map_err(|e| crypto_err("secret", e))?;
        let peer_stride = keys.stride_of(&peer)?;
        for tries in 1..=max_tries {
            let (public, secret) = (keys.padded(&keys.y)?, keys.padded(&z)?);
            if fits(&public, &secret) {
                let done =
                    CompletedKeyExchange { group: self.name, pub_key: public, secret: SharedSecret::from(secret) };
                return Ok((done, tries));
            }
            keys.step()?;
            let mut next = BigNum::new().map_err(|e| crypto_err("secret", e))?;
            next.mod_mul(&z, &peer_stride, &keys.p, &mut keys.ctx).map_err(|e| crypto_err("secret", e))?;
            z = next;
        }
        Err(exhausted("key", max_tries))
    }
}

impl SupportedKxGroup for FfdheKx {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        self.start_fitting(|_| true, PubEncoding::Padded, 1).map(|(active, _)| active)
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
        let y = check_peer(&p, peer)?;
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

    /// The search walks private values x, x+c, … whose public values and secrets are the real
    /// ones: the other side derives the same secret from what was sent, and the condition holds.
    #[test]
    fn a_chosen_key_is_a_real_key() {
        let g = rustls::ffdhe_groups::FFDHE2048;
        let kx = FfdheKx::new(NamedGroup::FFDHE2048, g.p.to_vec(), g.g.to_vec());
        let client = kx.start().unwrap();
        let (done, tries) = kx.complete_fitting(client.pub_key(), |_, s| s[0] == 0, 20_000).unwrap();
        assert_eq!(done.secret.secret_bytes()[0], 0);
        assert!(tries >= 1);
        assert_eq!(done.pub_key.len(), 256);
        let theirs = client.complete(&done.pub_key).unwrap();
        assert_eq!(theirs.secret_bytes(), done.secret.secret_bytes());
        // A public value with a zero top byte, sent minimal: one byte or more shorter.
        let (active, _) = kx.start_fitting(|p| p[0] == 0, PubEncoding::Minimal, 20_000).unwrap();
        assert!(active.pub_key().len() < 256 && active.pub_key()[0] != 0);
        let peer = kx.start().unwrap();
        let peer_pub = peer.pub_key().to_vec();
        assert_eq!(
            peer.complete(active.pub_key()).unwrap().secret_bytes(),
            active.complete(&peer_pub).unwrap().secret_bytes()
        );
    }

    #[test]
    fn rejects_trivial_peer_values() {
        let g = rustls::ffdhe_groups::FFDHE2048;
        let kx = FfdheKx::new(NamedGroup::FFDHE2048, g.p.to_vec(), g.g.to_vec());
        assert!(kx.start().unwrap().complete(&[1]).is_err());
    }
}
