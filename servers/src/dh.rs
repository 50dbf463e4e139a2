//! Finite-field DH groups as data: the committed PEM files in `servers/dh/`, each with a header
//! saying where it comes from. Nothing is generated at run time. The groups' names, sizes and
//! kinds are the report's vocabulary (`report_format::DhGroup`); their parameters are here.

use openssl::dh::Dh;
use openssl::pkey::Params;
pub use report_format::{DhGroup, DhKind};

/// The parameters behind a [`DhGroup`].
pub trait DhParams {
    /// The committed PEM text (with its provenance header).
    fn pem(self) -> &'static str;
    /// The parameters, parsed by OpenSSL.
    fn params(self) -> Dh<Params>;
    /// Prime and generator as big-endian bytes without leading zeros.
    fn p_and_g(self) -> (Vec<u8>, Vec<u8>);
}

impl DhParams for DhGroup {
    fn pem(self) -> &'static str {
        match self {
            DhGroup::Custom512 => include_str!("../dh/custom-512.pem"),
            DhGroup::Oakley768 => include_str!("../dh/oakley-768.pem"),
            DhGroup::Oakley1024 => include_str!("../dh/oakley-1024.pem"),
            DhGroup::Modp1536 => include_str!("../dh/modp-1536.pem"),
            DhGroup::Custom2048 => include_str!("../dh/custom-2048.pem"),
            DhGroup::Ffdhe2048 => include_str!("../dh/ffdhe2048.pem"),
            DhGroup::Ffdhe3072 => include_str!("../dh/ffdhe3072.pem"),
            DhGroup::Ffdhe4096 => include_str!("../dh/ffdhe4096.pem"),
            DhGroup::Ffdhe6144 => include_str!("../dh/ffdhe6144.pem"),
            DhGroup::Ffdhe8192 => include_str!("../dh/ffdhe8192.pem"),
            DhGroup::Modp4096 => include_str!("../dh/modp-4096.pem"),
            DhGroup::Custom2048G5 => include_str!("../dh/custom-2048-g5.pem"),
            DhGroup::Composite2048 => include_str!("../dh/composite-2048.pem"),
            DhGroup::SmallSubgroup2048 => include_str!("../dh/small-subgroup-2048.pem"),
        }
    }

    fn params(self) -> Dh<Params> {
        Dh::params_from_pem(self.pem().as_bytes()).expect("the committed DH PEM files parse")
    }

    fn p_and_g(self) -> (Vec<u8>, Vec<u8>) {
        let dh = self.params();
        (dh.prime_p().to_vec(), dh.generator().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNum;

    #[test]
    fn every_group_parses_with_its_stated_size() {
        for g in DhGroup::ALL {
            let dh = g.params();
            assert_eq!(dh.prime_p().num_bits() as u32, g.bits(), "{}", g.name());
            let expected_g = match g {
                DhGroup::Custom2048G5 => Some(5),
                DhGroup::SmallSubgroup2048 => None,
                _ => Some(2),
            };
            if let Some(v) = expected_g {
                assert_eq!(dh.generator(), &*BigNum::from_u32(v).unwrap(), "{}", g.name());
            }
        }
    }

    #[test]
    fn invalid_groups_are_what_they_claim() {
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let composite = DhGroup::Composite2048.params();
        assert!(!composite.prime_p().is_prime(20, &mut ctx).unwrap());
        let small = DhGroup::SmallSubgroup2048.params();
        let p = small.prime_p();
        assert!(p.is_prime(20, &mut ctx).unwrap());
        let order = BigNum::from_u32(65537).unwrap();
        let mut r = BigNum::new().unwrap();
        r.mod_exp(small.generator(), &order, p, &mut ctx).unwrap();
        assert_eq!(r, BigNum::from_u32(1).unwrap(), "g has order 65537");
        assert!(DhGroup::Composite2048.kind().is_invalid() && DhGroup::SmallSubgroup2048.kind().is_invalid());
    }

    #[test]
    fn standard_groups_match_the_well_known_constants() {
        let p = |g: DhGroup| g.params().prime_p().to_vec();
        assert_eq!(p(DhGroup::Oakley768), BigNum::get_rfc2409_prime_768().unwrap().to_vec());
        assert_eq!(p(DhGroup::Oakley1024), BigNum::get_rfc2409_prime_1024().unwrap().to_vec());
        assert_eq!(p(DhGroup::Modp1536), BigNum::get_rfc3526_prime_1536().unwrap().to_vec());
        assert_eq!(p(DhGroup::Modp4096), BigNum::get_rfc3526_prime_4096().unwrap().to_vec());
        let rfc7919 = [
            (DhGroup::Ffdhe2048, rustls::ffdhe_groups::FFDHE2048),
            (DhGroup::Ffdhe3072, rustls::ffdhe_groups::FFDHE3072),
            (DhGroup::Ffdhe4096, rustls::ffdhe_groups::FFDHE4096),
            (DhGroup::Ffdhe6144, rustls::ffdhe_groups::FFDHE6144),
            (DhGroup::Ffdhe8192, rustls::ffdhe_groups::FFDHE8192),
        ];
        for (ours, theirs) in rfc7919 {
            assert_eq!(p(ours), theirs.p, "{}", ours.name());
        }
    }

    #[test]
    fn custom_primes_are_safe_primes_and_not_rfc7919() {
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        for g in [DhGroup::Custom512, DhGroup::Custom2048] {
            let p = g.params().prime_p().to_owned().unwrap();
            assert!(p.is_prime(20, &mut ctx).unwrap());
            let mut q = BigNum::new().unwrap();
            q.rshift1(&p).unwrap();
            assert!(q.is_prime(20, &mut ctx).unwrap(), "{} is a safe prime", g.name());
            assert!(report_format::Group::for_dh(g).is_none());
        }
        assert_ne!(DhGroup::Custom2048.p_and_g().0, rustls::ffdhe_groups::FFDHE2048.p);
    }
}
