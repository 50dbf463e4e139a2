//! Finite-field DH groups as data: the committed PEM files in `servers/dh/`, each with a header
//! saying where it comes from. Nothing is generated at run time.

use openssl::dh::Dh;
use openssl::pkey::Params;
use serde::{Deserialize, Serialize};

/// A DH group a server profile can serve for TLS ≤ 1.2 DHE suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DhGroup {
    /// A committed 512-bit safe prime (sendmail 8.12–8.14.3's size).
    #[serde(rename = "custom-512")]
    Custom512,
    /// RFC 2409 First Oakley Group, 768 bits.
    #[serde(rename = "oakley-768")]
    Oakley768,
    /// RFC 2409 Second Oakley Group, 1024 bits.
    #[serde(rename = "oakley-1024")]
    Oakley1024,
    /// RFC 3526 1536-bit MODP group.
    #[serde(rename = "modp-1536")]
    Modp1536,
    /// A committed 2048-bit safe prime that is not an RFC 7919 group.
    #[serde(rename = "custom-2048")]
    Custom2048,
    #[serde(rename = "ffdhe2048")]
    Ffdhe2048,
    #[serde(rename = "ffdhe3072")]
    Ffdhe3072,
    #[serde(rename = "ffdhe4096")]
    Ffdhe4096,
    #[serde(rename = "ffdhe6144")]
    Ffdhe6144,
    #[serde(rename = "ffdhe8192")]
    Ffdhe8192,
    /// RFC 3526 4096-bit MODP group: large, well known, not RFC 7919.
    #[serde(rename = "modp-4096")]
    Modp4096,
    /// custom-2048's prime with generator 5.
    #[serde(rename = "custom-2048-g5")]
    Custom2048G5,
    /// A 2048-bit composite modulus: must be refused.
    #[serde(rename = "composite-2048")]
    Composite2048,
    /// A 2048-bit prime whose generator has order 65537: must be refused.
    #[serde(rename = "small-subgroup-2048")]
    SmallSubgroup2048,
}

/// What kind of group a [`DhGroup`] is, for oracles and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DhKind {
    /// An RFC 7919 named group.
    Rfc7919,
    /// A well-known prime that is not RFC 7919 (RFC 2409, RFC 3526).
    WellKnown,
    /// A server's own safe prime.
    Custom,
    /// Not a prime at all.
    Composite,
    /// A prime with a generator of small order.
    SmallSubgroup,
}

impl DhKind {
    /// Whether a careful client must refuse the group whatever its size.
    pub fn is_invalid(self) -> bool {
        matches!(self, DhKind::Composite | DhKind::SmallSubgroup)
    }
}

impl DhGroup {
    pub const ALL: [DhGroup; 14] = [
        DhGroup::Custom512,
        DhGroup::Oakley768,
        DhGroup::Oakley1024,
        DhGroup::Modp1536,
        DhGroup::Custom2048,
        DhGroup::Ffdhe2048,
        DhGroup::Ffdhe3072,
        DhGroup::Ffdhe4096,
        DhGroup::Ffdhe6144,
        DhGroup::Ffdhe8192,
        DhGroup::Modp4096,
        DhGroup::Custom2048G5,
        DhGroup::Composite2048,
        DhGroup::SmallSubgroup2048,
    ];

    /// What kind of group it is.
    pub fn kind(self) -> DhKind {
        match self {
            DhGroup::Ffdhe2048 | DhGroup::Ffdhe3072 | DhGroup::Ffdhe4096 | DhGroup::Ffdhe6144 | DhGroup::Ffdhe8192 => {
                DhKind::Rfc7919
            }
            DhGroup::Oakley768 | DhGroup::Oakley1024 | DhGroup::Modp1536 | DhGroup::Modp4096 => DhKind::WellKnown,
            DhGroup::Custom512 | DhGroup::Custom2048 | DhGroup::Custom2048G5 => DhKind::Custom,
            DhGroup::Composite2048 => DhKind::Composite,
            DhGroup::SmallSubgroup2048 => DhKind::SmallSubgroup,
        }
    }

    /// The name used in matrix files and reports.
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Custom512 => "custom-512",
            DhGroup::Oakley768 => "oakley-768",
            DhGroup::Oakley1024 => "oakley-1024",
            DhGroup::Modp1536 => "modp-1536",
            DhGroup::Custom2048 => "custom-2048",
            DhGroup::Ffdhe2048 => "ffdhe2048",
            DhGroup::Ffdhe3072 => "ffdhe3072",
            DhGroup::Ffdhe4096 => "ffdhe4096",
            DhGroup::Ffdhe6144 => "ffdhe6144",
            DhGroup::Ffdhe8192 => "ffdhe8192",
            DhGroup::Modp4096 => "modp-4096",
            DhGroup::Custom2048G5 => "custom-2048-g5",
            DhGroup::Composite2048 => "composite-2048",
            DhGroup::SmallSubgroup2048 => "small-subgroup-2048",
        }
    }

    /// The size of the prime.
    pub fn bits(self) -> u32 {
        match self {
            DhGroup::Custom512 => 512,
            DhGroup::Oakley768 => 768,
            DhGroup::Oakley1024 => 1024,
            DhGroup::Modp1536 => 1536,
            DhGroup::Custom2048
            | DhGroup::Ffdhe2048
            | DhGroup::Custom2048G5
            | DhGroup::Composite2048
            | DhGroup::SmallSubgroup2048 => 2048,
            DhGroup::Ffdhe3072 => 3072,
            DhGroup::Ffdhe4096 | DhGroup::Modp4096 => 4096,
            DhGroup::Ffdhe6144 => 6144,
            DhGroup::Ffdhe8192 => 8192,
        }
    }

    /// The committed PEM text (with its provenance header).
    pub fn pem(self) -> &'static str {
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

    /// The parameters, parsed by OpenSSL.
    pub fn params(self) -> Dh<Params> {
        Dh::params_from_pem(self.pem().as_bytes()).expect("the committed DH PEM files parse")
    }

    /// Prime and generator as big-endian bytes without leading zeros.
    pub fn p_and_g(self) -> (Vec<u8>, Vec<u8>) {
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
            assert!(crate::profile::Group::for_dh(g).is_none());
        }
        assert_ne!(DhGroup::Custom2048.p_and_g().0, rustls::ffdhe_groups::FFDHE2048.p);
    }
}
