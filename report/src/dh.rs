//! Finite-field DH groups by name: which group a profile serves, its size and kind. The
//! parameters themselves are committed data in `servers/dh/` (`servers::dh`).

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for g in DhGroup::ALL {
            assert_eq!(serde_json::to_value(g).unwrap(), serde_json::Value::String(g.name().into()));
        }
    }
}
