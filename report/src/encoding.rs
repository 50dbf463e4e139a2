//! Rare encodings: the one-handshake-in-256 cases of a server's own key share, shared secret or
//! signature (a leading zero byte, a short ECDSA integer) that real stacks mishandle. A forced
//! profile (`force = "…"`, ids `rare-*`) makes one happen in every handshake; everywhere else the
//! built-in server's rustls backend keeps them all out, and its connection record says which it
//! chose, forced or left to chance, and after how many tries.

use crate::negotiated::{Negotiated, Protocol};
use crate::profile::{CertKind, Group, Library, ServerProfile, TlsVersion};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A one-in-N encoding case of what a server sends or derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RareCase {
    /// The key exchange's shared secret starts with a zero byte: RFC 8446 §7.4.1 keeps it in
    /// TLS 1.3 (FFDHE padded to the prime's length; ECDHE's x-coordinate at the field's length),
    /// TLS 1.2 FFDHE strips it (RFC 5246 §8.1.2). An implementation mixing the two derives other
    /// keys. TLS 1.3 only: in TLS 1.2 the client picks its key last.
    SecretLeadingZero,
    /// TLS 1.2 DHE: the server's public value's top byte is zero and it is sent at its minimal
    /// length, shorter than the prime (RFC 5246 allows it; some stacks want the prime's length).
    PublicLeadingZeroMinimal,
    /// TLS 1.2 DHE: the server's public value's top byte is zero and it is sent padded to the
    /// prime's length, starting with 00 (what OpenSSL sends).
    PublicLeadingZeroPadded,
    /// The server's RSA signature (TLS 1.3 CertificateVerify, RSA-PSS) is a number below
    /// 2^(8(k-1)): its first byte is zero at the modulus' length.
    SignatureLeadingZero,
    /// The server's ECDSA signature has an `r` a byte short (below 2^(8(n-1))) in its DER.
    EcdsaShortR,
    /// The server's ECDSA signature has an `s` a byte short in its DER.
    EcdsaShortS,
}

impl RareCase {
    pub const ALL: [RareCase; 6] = [
        RareCase::SecretLeadingZero,
        RareCase::PublicLeadingZeroMinimal,
        RareCase::PublicLeadingZeroPadded,
        RareCase::SignatureLeadingZero,
        RareCase::EcdsaShortR,
        RareCase::EcdsaShortS,
    ];

    /// The name used in matrix files (`force = "…"`) and reports.
    pub fn name(self) -> &'static str {
        match self {
            RareCase::SecretLeadingZero => "secret-leading-zero",
            RareCase::PublicLeadingZeroMinimal => "public-leading-zero-minimal",
            RareCase::PublicLeadingZeroPadded => "public-leading-zero-padded",
            RareCase::SignatureLeadingZero => "signature-leading-zero",
            RareCase::EcdsaShortR => "ecdsa-short-r",
            RareCase::EcdsaShortS => "ecdsa-short-s",
        }
    }

    /// A few words for a table: "the shared secret starts with 00".
    pub fn words(self) -> &'static str {
        match self {
            RareCase::SecretLeadingZero => "the shared secret starts with 00",
            RareCase::PublicLeadingZeroMinimal => "the server's DH public value has a zero top byte, sent minimal",
            RareCase::PublicLeadingZeroPadded => "the server's DH public value starts with 00, padded to the prime",
            RareCase::SignatureLeadingZero => "the server's RSA signature starts with 00",
            RareCase::EcdsaShortR => "the server's ECDSA signature has r a byte short",
            RareCase::EcdsaShortS => "the server's ECDSA signature has s a byte short",
        }
    }

    /// Which part of the handshake carries it.
    pub fn part(self) -> Part {
        match self {
            RareCase::SecretLeadingZero => Part::Secret,
            RareCase::PublicLeadingZeroMinimal | RareCase::PublicLeadingZeroPadded => Part::KeyShare,
            RareCase::SignatureLeadingZero | RareCase::EcdsaShortR | RareCase::EcdsaShortS => Part::Signature,
        }
    }
}

impl fmt::Display for RareCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server chose: its key share (which decides the secret in TLS 1.3), or a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The server's key share (TLS 1.2 ServerKeyExchange, TLS 1.3 key_share).
    KeyShare,
    /// The shared secret (chosen in TLS 1.3, where the server answers the client's share; left
    /// to chance in TLS 1.2, where the client answers the server's).
    Secret,
    /// The handshake signature (CertificateVerify, or ServerKeyExchange in TLS 1.2).
    Signature,
}

/// One choice the built-in server made in a handshake: a key exchange or a signature, made
/// again until what it sends has the forced case, or none of the rare cases it checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodingChoice {
    /// `key exchange` (key share and, in TLS 1.3, secret) or `signature`.
    pub what: String,
    /// The case this choice was made to have (a forced profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<RareCase>,
    /// The cases checked and kept out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoided: Vec<RareCase>,
    /// Cases present in what was sent or derived that the server could not choose (a TLS 1.2
    /// secret, a deterministic signature): the handshake's luck, recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_chance: Vec<RareCase>,
    /// Keys or signatures made until one fit (1 when the first did).
    pub tries: u32,
    /// Time spent choosing, in microseconds.
    pub micros: u64,
}

impl EncodingChoice {
    /// One line: `key exchange: forced secret-leading-zero after 212 tries (1.9 ms)`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = self.forced {
            parts.push(format!("forced {f}"));
        }
        if !self.avoided.is_empty() {
            let names: Vec<&str> = self.avoided.iter().map(|c| c.name()).collect();
            parts.push(format!("avoided {}", names.join(", ")));
        }
        if !self.by_chance.is_empty() {
            let names: Vec<&str> = self.by_chance.iter().map(|c| c.name()).collect();
            parts.push(format!("by chance {}", names.join(", ")));
        }
        let tries = if self.tries == 1 { "1 try".to_string() } else { format!("{} tries", self.tries) };
        format!("{}: {} after {tries} ({:.1} ms)", self.what, parts.join("; "), self.micros as f64 / 1000.0)
    }
}

/// The odds of a rare case in one handshake where nobody chooses, as "1 in N": a byte that is
/// zero one time in 256, but P-521's 66-byte values have a 1-bit top byte (zero half the time).
pub fn one_in(case: RareCase, group: Option<Group>) -> u32 {
    match (case, group) {
        (RareCase::SecretLeadingZero, Some(Group::Secp521r1)) => 2,
        _ => 256,
    }
}

/// How a server on this TLS library sends a TLS 1.2 DH public value whose top byte is zero, as
/// far as we know: OpenSSL pads it to the prime's length (for Microsoft's stack, since 1.0.2),
/// and so does the built-in rustls backend; of the others we do not know.
pub fn dh_public_encoding(library: Library) -> Option<RareCase> {
    match library {
        Library::Openssl | Library::Rustls => Some(RareCase::PublicLeadingZeroPadded),
        Library::Gnutls | Library::Go | Library::Jsse => None,
    }
}

/// Whether a connected handshake (its negotiated parameters, against a server with `cert` on
/// `library`) is exposed to the case a forced profile forces: the same TLS version and group
/// for a secret, TLS 1.2 finite-field DHE sent the same way for a DH public value, the same kind
/// of certificate for a signature.
pub fn exposed(
    forced: &ServerProfile,
    case: RareCase,
    negotiated: &Negotiated,
    cert: CertKind,
    library: Library,
) -> bool {
    let tls13 = negotiated.protocol == Some(Protocol::Tls13);
    match case {
        RareCase::SecretLeadingZero => {
            tls13
                && forced.min_tls == TlsVersion::Tls13
                && forced.groups.iter().flatten().any(|g| negotiated.group.as_deref() == Some(g.name()))
        }
        RareCase::PublicLeadingZeroMinimal | RareCase::PublicLeadingZeroPadded => {
            negotiated.is_finite_field_dhe() && dh_public_encoding(library) == Some(case)
        }
        RareCase::SignatureLeadingZero => {
            cert.is_rsa() && tls13 == (forced.min_tls == TlsVersion::Tls13) && negotiated.protocol.is_some()
        }
        RareCase::EcdsaShortR | RareCase::EcdsaShortS => !cert.is_rsa() && negotiated.protocol.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for c in RareCase::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::Value::String(c.name().into()));
        }
    }

    #[test]
    fn a_choice_reads_as_one_line() {
        let c = EncodingChoice {
            what: "key exchange".into(),
            forced: Some(RareCase::SecretLeadingZero),
            avoided: vec![],
            by_chance: vec![],
            tries: 212,
            micros: 1900,
        };
        assert_eq!(c.summary(), "key exchange: forced secret-leading-zero after 212 tries (1.9 ms)");
    }
}
