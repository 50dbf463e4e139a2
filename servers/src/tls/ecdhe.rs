//! ECDHE on the NIST curves (P-256, P-384, P-521) with OpenSSL's arithmetic, for the rustls
//! backend: ring's key exchanges draw their own private values and cannot be walked, and ring
//! has no P-521. A TLS 1.3 answer walks private values d, d+1, … (public point + G, secret point
//! + the client's point: two point additions a try) until the secret fits.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint, EcPointRef, PointConversionForm};
use openssl::nid::Nid;
use rustls::NamedGroup;
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret};

/// One curve.
#[derive(Debug, Clone, Copy)]
pub struct EcKx {
    name: NamedGroup,
    nid: Nid,
}

fn err(what: &str, e: openssl::error::ErrorStack) -> rustls::Error {
    rustls::Error::General(format!("ECDHE {what}: {e}"))
}

impl EcKx {
    /// The curve of a TLS group name, if it is one of the NIST curves.
    pub fn of(name: NamedGroup) -> Option<EcKx> {
        let nid = match name {
            NamedGroup::secp256r1 => Nid::X9_62_PRIME256V1,
            NamedGroup::secp384r1 => Nid::SECP384R1,
            NamedGroup::secp521r1 => Nid::SECP521R1,
            _ => return None,
        };
        Some(EcKx { name, nid })
    }

    pub fn name(&self) -> NamedGroup {
        self.name
    }

    fn group(&self) -> Result<EcGroup, rustls::Error> {
        EcGroup::from_curve_name(self.nid).map_err(|e| err("curve", e))
    }

    /// The length of a field element (and of the shared secret): 32, 48 or 66 bytes.
    pub fn field_len(&self) -> usize {
        match self.nid {
            Nid::X9_62_PRIME256V1 => 32,
            Nid::SECP384R1 => 48,
            _ => 66,
        }
    }

    /// A fresh private key and its public point, for TLS 1.2 (the server speaks first).
    pub fn start_active(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let group = self.group()?;
        let key = EcKey::generate(&group).map_err(|e| err("key", e))?;
        let mut ctx = BigNumContext::new().map_err(|e| err("context", e))?;
        let pub_key = key
            .public_key()
            .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
            .map_err(|e| err("public point", e))?;
        Ok(Box::new(ActiveEc { kx: *self, private: key.private_key().to_owned().map_err(|e| err("key", e))?, pub_key }))
    }

    fn peer_point(&self, group: &EcGroup, peer: &[u8], ctx: &mut BigNumContext) -> Result<EcPoint, rustls::Error> {
        // Only the uncompressed form is allowed in TLS 1.3 (RFC 8446 §4.2.8.2); from_bytes checks
        // the point is on the curve.
        if peer.first() != Some(&4) {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        let point = EcPoint::from_bytes(group, peer, ctx).map_err(|_| rustls::PeerMisbehaved::InvalidKeyShare)?;
        if point.is_infinity(group) {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(point)
    }

    fn x_of(&self, group: &EcGroup, point: &EcPointRef, ctx: &mut BigNumContext) -> Result<Vec<u8>, rustls::Error> {
        let (mut x, mut y) = (BigNum::new().map_err(|e| err("x", e))?, BigNum::new().map_err(|e| err("y", e))?);
        point.affine_coordinates(group, &mut x, &mut y, ctx).map_err(|e| err("coordinates", e))?;
        x.to_vec_padded(self.field_len() as i32).map_err(|e| err("x", e))
    }

    /// Answer a TLS 1.3 key share with a private value whose shared secret (the x-coordinate at
    /// the field's length) `fits`, at most `max_tries`. Returns the exchange and the tries.
    pub fn complete_fitting(
        &self,
        peer: &[u8],
        fits: impl Fn(&[u8]) -> bool,
        max_tries: u32,
    ) -> Result<(CompletedKeyExchange, u32), rustls::Error> {
        let group = self.group()?;
        let mut ctx = BigNumContext::new().map_err(|e| err("context", e))?;
        let q = self.peer_point(&group, peer, &mut ctx)?;
        let key = EcKey::generate(&group).map_err(|e| err("key", e))?;
        let generator = group.generator_opt().ok_or_else(|| rustls::Error::General("ECDHE: no generator".into()))?;
        let mut public = key.public_key().to_owned(&group).map_err(|e| err("public point", e))?;
        let mut shared = EcPoint::new(&group).map_err(|e| err("point", e))?;
        shared.mul2(&group, &q, key.private_key(), &mut ctx).map_err(|e| err("secret", e))?;
        for tries in 1..=max_tries {
            let secret = self.x_of(&group, &shared, &mut ctx)?;
            if fits(&secret) {
                let pub_key = public
                    .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
                    .map_err(|e| err("public point", e))?;
                return Ok((
                    CompletedKeyExchange { group: self.name, pub_key, secret: SharedSecret::from(secret) },
                    tries,
                ));
            }
            // d + 1: the public point gains G, the shared point gains the client's point.
            let mut next = EcPoint::new(&group).map_err(|e| err("point", e))?;
            next.add(&group, &public, generator, &mut ctx).map_err(|e| err("public point", e))?;
            public = next;
            let mut next = EcPoint::new(&group).map_err(|e| err("point", e))?;
            next.add(&group, &shared, &q, &mut ctx).map_err(|e| err("secret", e))?;
            shared = next;
        }
        Err(rustls::Error::General(format!("ECDHE: no key fitting the condition after {max_tries} tries")))
    }
}

struct ActiveEc {
    kx: EcKx,
    private: BigNum,
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for ActiveEc {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let group = self.kx.group()?;
        let mut ctx = BigNumContext::new().map_err(|e| err("context", e))?;
        let q = self.kx.peer_point(&group, peer, &mut ctx)?;
        let mut shared = EcPoint::new(&group).map_err(|e| err("point", e))?;
        shared.mul2(&group, &q, &self.private, &mut ctx).map_err(|e| err("secret", e))?;
        Ok(SharedSecret::from(self.kx.x_of(&group, &shared, &mut ctx)?))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        self.kx.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walked key is a real key: the client derives the same secret from the public point
    /// sent, and the condition holds — on each curve.
    #[test]
    fn both_sides_agree_on_a_chosen_secret() {
        for name in [NamedGroup::secp256r1, NamedGroup::secp384r1, NamedGroup::secp521r1] {
            let kx = EcKx::of(name).unwrap();
            let client = kx.start_active().unwrap();
            let (done, tries) = kx.complete_fitting(client.pub_key(), |s| s[0] == 0, 20_000).unwrap();
            assert_eq!(done.secret.secret_bytes()[0], 0, "{name:?}");
            assert_eq!(done.secret.secret_bytes().len(), kx.field_len());
            assert!(tries >= 1);
            let theirs = client.complete(&done.pub_key).unwrap();
            assert_eq!(theirs.secret_bytes(), done.secret.secret_bytes(), "{name:?}");
        }
    }

    #[test]
    fn a_point_off_the_curve_is_refused() {
        let kx = EcKx::of(NamedGroup::secp256r1).unwrap();
        let mut bogus = vec![4u8];
        bogus.extend([1u8; 64]);
        assert!(kx.complete_fitting(&bogus, |_| true, 1).is_err());
        assert!(kx.complete_fitting(&[], |_| true, 1).is_err());
    }
}
