//! The rustls backend's choice of its own keys and signatures: each key exchange and signature is
//! made again until what goes on the wire has the profile's forced rare case (`force = "…"`) or,
//! everywhere else, none of them — so no cell's verdict depends on a one-in-256 draw. Each choice
//! is logged for the connection's record through a task-local the accept future is scoped in.

use crate::tls::ecdhe::EcKx;
use ffdhe::{FfdheKx, PubEncoding};
use report_format::{EncodingChoice, RareCase};
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::sign::{Signer, SigningKey};
use rustls::{NamedGroup, ProtocolVersion, SignatureAlgorithm, SignatureScheme, SupportedProtocolVersion};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

/// The most keys a key exchange tries: a case of 1 in 256 is missed by all of them with
/// probability e^-78.
pub const MAX_KX_TRIES: u32 = 20_000;
/// The most signatures made for one handshake (an RSA signature costs about a millisecond).
pub const MAX_SIGN_TRIES: u32 = 4_000;

tokio::task_local! {
    static CHOICES: RefCell<Vec<EncodingChoice>>;
}

/// Run a handshake, collecting the choices made in it (also when it fails).
pub async fn scoped<F: std::future::Future>(handshake: F) -> (F::Output, Vec<EncodingChoice>) {
    CHOICES
        .scope(RefCell::new(Vec::new()), async {
            let out = handshake.await;
            (out, CHOICES.with(|c| c.take()))
        })
        .await
}

fn log(choice: EncodingChoice) {
    // Outside a scope (a unit test driving rustls directly) there is nobody to tell.
    let _ = CHOICES.try_with(|c| c.borrow_mut().push(choice));
}

/// What a profile asks of the server's choices: the case to force, if any (every other case
/// is kept out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub forced: Option<RareCase>,
    /// Fault `strips-secret-leading-zero`: a TLS 1.3 secret's zero byte is dropped, as TLS 1.2
    /// does, so the server derives other keys than a correct client.
    pub strips_secret_zero: bool,
}

impl Policy {
    /// Whether a value with these cases present is what the policy wants, of the `checked` ones.
    fn fits(self, checked: &[RareCase], present: &[RareCase]) -> bool {
        checked.iter().all(|c| present.contains(c) == (self.forced == Some(*c)))
    }

    /// The exchange as the server will use it: with the secret's leading zero bytes dropped
    /// when the profile's fault says so.
    fn strip(self, mut done: CompletedKeyExchange) -> CompletedKeyExchange {
        if self.strips_secret_zero {
            let bytes = done.secret.secret_bytes();
            let lead = bytes.iter().take_while(|b| **b == 0).count();
            done.secret = SharedSecret::from(bytes[lead..].to_vec());
        }
        done
    }

    fn choice(self, what: &str, checked: &[RareCase], tries: u32, started: Instant) -> EncodingChoice {
        EncodingChoice {
            what: what.into(),
            forced: self.forced.filter(|f| checked.contains(f)),
            avoided: checked.iter().copied().filter(|c| self.forced != Some(*c)).collect(),
            by_chance: Vec::new(),
            tries,
            micros: started.elapsed().as_micros() as u64,
        }
    }
}

/// Whether a big-endian value at its full length starts with a zero byte.
fn leading_zero(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0)
}

/// A finite-field group whose private values are chosen.
#[derive(Debug)]
pub struct ChosenFfdhe {
    pub kx: &'static FfdheKx,
    pub policy: Policy,
}

impl SupportedKxGroup for ChosenFfdhe {
    /// TLS 1.2: the server's public value first, with a zero top byte only where forced (sent at
    /// the prime's length, or minimal for the `minimal` case).
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let started = Instant::now();
        let (checked, encoding) = match self.policy.forced {
            Some(RareCase::PublicLeadingZeroMinimal) => {
                (vec![RareCase::PublicLeadingZeroMinimal], PubEncoding::Minimal)
            }
            Some(RareCase::PublicLeadingZeroPadded) => (vec![RareCase::PublicLeadingZeroPadded], PubEncoding::Padded),
            _ => (vec![RareCase::PublicLeadingZeroPadded], PubEncoding::Padded),
        };
        let wanted = self.policy.forced.is_some_and(|f| checked.contains(&f));
        let (active, tries) = self.kx.start_fitting(|p| leading_zero(p) == wanted, encoding, MAX_KX_TRIES)?;
        log(self.policy.choice("key share", &checked, tries, started));
        Ok(Box::new(Observed { inner: active, secret_len: self.kx.group.p.len() }))
    }

    /// TLS 1.3: the server answers the client's share, so it chooses the secret too.
    fn start_and_complete(&self, peer: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        let started = Instant::now();
        let checked = [RareCase::SecretLeadingZero, RareCase::PublicLeadingZeroPadded];
        let policy = self.policy;
        let fits = |public: &[u8], secret: &[u8]| {
            let mut present = Vec::new();
            if leading_zero(secret) {
                present.push(RareCase::SecretLeadingZero);
            }
            if leading_zero(public) {
                present.push(RareCase::PublicLeadingZeroPadded);
            }
            policy.fits(&checked, &present)
        };
        let (done, tries) = self.kx.complete_fitting(peer, fits, MAX_KX_TRIES)?;
        log(policy.choice("key exchange", &checked, tries, started));
        Ok(policy.strip(done))
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        Some(self.kx.group)
    }

    fn name(&self) -> NamedGroup {
        self.kx.name
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        self.kx.usable_for_version(version)
    }
}

/// A NIST curve (OpenSSL's arithmetic) whose TLS 1.3 private values are chosen.
#[derive(Debug)]
pub struct ChosenEc {
    pub kx: EcKx,
    pub policy: Policy,
}

impl SupportedKxGroup for ChosenEc {
    /// TLS 1.2: the server's point first (fixed length: no rare encoding); the secret is the
    /// client's draw, recorded when it is known.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let active = self.kx.start_active()?;
        Ok(Box::new(Observed { inner: active, secret_len: self.kx.field_len() }))
    }

    fn start_and_complete(&self, peer: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        let started = Instant::now();
        let checked = [RareCase::SecretLeadingZero];
        let policy = self.policy;
        let fits = |secret: &[u8]| {
            let present: &[RareCase] = if leading_zero(secret) { &[RareCase::SecretLeadingZero] } else { &[] };
            policy.fits(&checked, present)
        };
        let (done, tries) = self.kx.complete_fitting(peer, fits, MAX_KX_TRIES)?;
        log(policy.choice("key exchange", &checked, tries, started));
        Ok(policy.strip(done))
    }

    fn name(&self) -> NamedGroup {
        self.kx.name()
    }
}

/// A group with no arithmetic of ours (X25519, the ML-KEM hybrid): a TLS 1.3 exchange is made
/// again until its secret does not start with a zero byte.
#[derive(Debug)]
pub struct Redrawn {
    pub inner: &'static dyn SupportedKxGroup,
}

impl SupportedKxGroup for Redrawn {
    /// TLS 1.2 (X25519: the hybrid is TLS 1.3 only): the secret is the client's draw, recorded.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let inner = self.inner.start()?;
        Ok(Box::new(Observed { inner, secret_len: 32 }))
    }

    fn start_and_complete(&self, peer: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        let started = Instant::now();
        let policy = Policy { forced: None, strips_secret_zero: false };
        let checked = [RareCase::SecretLeadingZero];
        for tries in 1..=64 {
            let done = self.inner.start_and_complete(peer)?;
            if !leading_zero(done.secret.secret_bytes()) {
                log(policy.choice("key exchange", &checked, tries, started));
                return Ok(done);
            }
        }
        Err(rustls::Error::General("no key exchange without a leading zero in 64 tries".into()))
    }

    fn name(&self) -> NamedGroup {
        self.inner.name()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        self.inner.usable_for_version(version)
    }
}

/// A TLS 1.2 exchange whose secret the client decided: recorded when it starts with a zero byte.
struct Observed {
    inner: Box<dyn ActiveKeyExchange>,
    /// The secret's full length (the prime's, or the curve field's).
    secret_len: usize,
}

impl ActiveKeyExchange for Observed {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        self.inner.complete(peer)
    }

    fn complete_for_tls_version(
        self: Box<Self>,
        peer: &[u8],
        version: &SupportedProtocolVersion,
    ) -> Result<SharedSecret, rustls::Error> {
        let secret_len = self.secret_len;
        let secret = self.inner.complete_for_tls_version(peer, version)?;
        let bytes = secret.secret_bytes();
        // TLS 1.2 FFDHE strips leading zeros (RFC 5246 §8.1.2): a shorter secret had one.
        let zero = bytes.len() < secret_len || leading_zero(bytes);
        log(EncodingChoice {
            what: "secret (the client's draw)".into(),
            by_chance: if zero { vec![RareCase::SecretLeadingZero] } else { Vec::new() },
            tries: 1,
            ..EncodingChoice::default()
        });
        Ok(secret)
    }

    fn pub_key(&self) -> &[u8] {
        self.inner.pub_key()
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        self.inner.ffdhe_group()
    }

    fn group(&self) -> NamedGroup {
        self.inner.group()
    }
}

/// The server's key, whose signatures are chosen.
#[derive(Debug)]
pub struct ChosenKey {
    pub inner: Arc<dyn SigningKey>,
    pub policy: Policy,
}

impl SigningKey for ChosenKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(ChosenSigner { inner, policy: self.policy }))
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
}

#[derive(Debug)]
struct ChosenSigner {
    inner: Box<dyn Signer>,
    policy: Policy,
}

/// The rare cases a signature of `scheme` can have, and which of them `sig` has.
pub fn signature_cases(scheme: SignatureScheme, sig: &[u8]) -> (Vec<RareCase>, Vec<RareCase>) {
    match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 | SignatureScheme::ECDSA_NISTP384_SHA384 => {
            let field = if scheme == SignatureScheme::ECDSA_NISTP256_SHA256 { 32 } else { 48 };
            let checked = vec![RareCase::EcdsaShortR, RareCase::EcdsaShortS];
            let mut present = Vec::new();
            if let Some((r, s)) = der_integers(sig) {
                if r < field {
                    present.push(RareCase::EcdsaShortR);
                }
                if s < field {
                    present.push(RareCase::EcdsaShortS);
                }
            }
            (checked, present)
        }
        _ if is_rsa(scheme) => {
            let present = if leading_zero(sig) { vec![RareCase::SignatureLeadingZero] } else { Vec::new() };
            (vec![RareCase::SignatureLeadingZero], present)
        }
        _ => (Vec::new(), Vec::new()),
    }
}

fn is_rsa(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::RSA_PSS_SHA256
            | SignatureScheme::RSA_PSS_SHA384
            | SignatureScheme::RSA_PSS_SHA512
            | SignatureScheme::RSA_PKCS1_SHA1
            | SignatureScheme::RSA_PKCS1_SHA256
            | SignatureScheme::RSA_PKCS1_SHA384
            | SignatureScheme::RSA_PKCS1_SHA512
    )
}

/// Whether re-signing gives a new signature (PSS and ECDSA draw randomness; PKCS#1 v1.5 does not).
fn randomised(scheme: SignatureScheme) -> bool {
    !matches!(
        scheme,
        SignatureScheme::RSA_PKCS1_SHA1
            | SignatureScheme::RSA_PKCS1_SHA256
            | SignatureScheme::RSA_PKCS1_SHA384
            | SignatureScheme::RSA_PKCS1_SHA512
    )
}

/// The magnitudes' lengths (leading zero octets of the DER INTEGERs dropped) of an ECDSA
/// signature's r and s: `SEQUENCE { INTEGER r, INTEGER s }` (short-form lengths: P-256 and P-384).
fn der_integers(sig: &[u8]) -> Option<(usize, usize)> {
    let body = match sig {
        [0x30, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => return None,
    };
    let integer = |b: &[u8]| -> Option<(usize, usize)> {
        match b {
            [0x02, len, rest @ ..] if usize::from(*len) <= rest.len() => {
                let value = &rest[..usize::from(*len)];
                let magnitude = value.iter().skip_while(|x| **x == 0).count();
                Some((magnitude, 2 + usize::from(*len)))
            }
            _ => None,
        }
    };
    let (r, used) = integer(body)?;
    let (s, _) = integer(&body[used..])?;
    Some((r, s))
}

impl Signer for ChosenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let started = Instant::now();
        let scheme = self.inner.scheme();
        let mut tries = 0;
        loop {
            tries += 1;
            let sig = self.inner.sign(message)?;
            let (checked, present) = signature_cases(scheme, &sig);
            if self.policy.fits(&checked, &present) {
                log(self.policy.choice("signature", &checked, tries, started));
                return Ok(sig);
            }
            if !randomised(scheme) || tries >= MAX_SIGN_TRIES {
                if self.policy.forced.is_some_and(|f| checked.contains(&f)) {
                    return Err(rustls::Error::General(format!(
                        "no {scheme:?} signature with {} in {tries} tries",
                        self.policy.forced.map_or("", RareCase::name)
                    )));
                }
                // A deterministic signature: what it is, it is; recorded as the handshake's luck.
                log(EncodingChoice {
                    what: "signature".into(),
                    by_chance: present,
                    tries,
                    micros: started.elapsed().as_micros() as u64,
                    ..EncodingChoice::default()
                });
                return Ok(sig);
            }
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integer_lengths() {
        // r = 0x00 0x80.. (32 bytes of magnitude, padded), s = 0x7f.. (31 bytes after a zero).
        let mut sig = vec![0x30, 0];
        sig.extend([0x02, 33, 0x00, 0x80]);
        sig.extend([0x11; 31]);
        sig.extend([0x02, 31, 0x7f]);
        sig.extend([0x22; 30]);
        sig[1] = (sig.len() - 2) as u8;
        assert_eq!(der_integers(&sig), Some((32, 31)));
        let (checked, present) = signature_cases(SignatureScheme::ECDSA_NISTP256_SHA256, &sig);
        assert_eq!(checked, vec![RareCase::EcdsaShortR, RareCase::EcdsaShortS]);
        assert_eq!(present, vec![RareCase::EcdsaShortS]);
        assert_eq!(der_integers(&[0x30, 5, 0x02]), None);
    }

    #[test]
    fn a_policy_forces_one_case_and_keeps_out_the_rest() {
        let avoid = Policy { forced: None, strips_secret_zero: false };
        let checked = [RareCase::EcdsaShortR, RareCase::EcdsaShortS];
        assert!(avoid.fits(&checked, &[]));
        assert!(!avoid.fits(&checked, &[RareCase::EcdsaShortR]));
        let force = Policy { forced: Some(RareCase::EcdsaShortR), strips_secret_zero: false };
        assert!(force.fits(&checked, &[RareCase::EcdsaShortR]));
        assert!(!force.fits(&checked, &[RareCase::EcdsaShortR, RareCase::EcdsaShortS]));
        assert!(!force.fits(&checked, &[]));
        let c = force.choice("signature", &checked, 3, Instant::now());
        assert_eq!((c.forced, c.avoided, c.tries), (Some(RareCase::EcdsaShortR), vec![RareCase::EcdsaShortS], 3));
    }
}

#[cfg(test)]
mod props;
