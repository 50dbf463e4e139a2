//! What a completed dialogue negotiated, and where in the dialogue a client stopped: the
//! vocabulary shared by the client contract's RESULT line and the report.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where in the dialogue a client stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// TCP connect.
    Connect,
    /// Banner, EHLO: SMTP before STARTTLS.
    Smtp,
    /// The STARTTLS command and its reply (including "not advertised").
    Starttls,
    /// The TLS handshake.
    Handshake,
    /// Certificate or name verification.
    Verify,
    /// SMTP over TLS: EHLO again, QUIT.
    PostTls,
}

impl Stage {
    pub const ALL: [Stage; 6] =
        [Stage::Connect, Stage::Smtp, Stage::Starttls, Stage::Handshake, Stage::Verify, Stage::PostTls];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Smtp => "smtp",
            Stage::Starttls => "starttls",
            Stage::Handshake => "handshake",
            Stage::Verify => "verify",
            Stage::PostTls => "post-tls",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol a dialogue ran over. `Plaintext` is explicit: a client that carried on without
/// TLS says so, and it is never confused with "not reported".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "plaintext")]
    Plaintext,
    #[serde(rename = "SSLv3")]
    Ssl3,
    #[serde(rename = "TLSv1")]
    Tls10,
    #[serde(rename = "TLSv1.1")]
    Tls11,
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl Protocol {
    pub const ALL: [Protocol; 6] =
        [Protocol::Plaintext, Protocol::Ssl3, Protocol::Tls10, Protocol::Tls11, Protocol::Tls12, Protocol::Tls13];

    /// OpenSSL's spelling, which the reports use: `TLSv1`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl3 => "SSLv3",
            Protocol::Tls10 => "TLSv1",
            Protocol::Tls11 => "TLSv1.1",
            Protocol::Tls12 => "TLSv1.2",
            Protocol::Tls13 => "TLSv1.3",
        }
    }

    /// A protocol as the stacks spell it: OpenSSL's names, and `TLSv1.0`, `TLS1.2` (GnuTLS),
    /// `TLS 1.3`. `None` for anything else.
    pub fn parse(name: &str) -> Option<Protocol> {
        let compact: String = name.trim().chars().filter(|c| !c.is_whitespace()).collect();
        match compact.as_str() {
            "plaintext" => Some(Protocol::Plaintext),
            "SSLv3" | "SSL3.0" => Some(Protocol::Ssl3),
            "TLSv1" | "TLSv1.0" | "TLS1.0" | "TLS1" => Some(Protocol::Tls10),
            "TLSv1.1" | "TLS1.1" => Some(Protocol::Tls11),
            "TLSv1.2" | "TLS1.2" => Some(Protocol::Tls12),
            "TLSv1.3" | "TLS1.3" => Some(Protocol::Tls13),
            _ => None,
        }
    }

    pub fn is_tls13(self) -> bool {
        self == Protocol::Tls13
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a completed dialogue negotiated. Names follow the IANA TLS registries where the stack
/// exposes them (`TLS_DHE_RSA_WITH_AES_128_GCM_SHA256`, `x25519`, `ffdhe2048`); `group` is
/// `None` for a TLS 1.2 DHE exchange (the server sent a bare prime) and for RSA key transport.
/// Every field is `None` where the stack does not say: a stack that completes the handshake but
/// exposes nothing (lettre) reports [`Negotiated::unreported`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Negotiated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "non_empty")]
    pub cipher: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// The size of the finite-field DH prime, when the key exchange was DHE.
    #[serde(default)]
    pub dh_bits: Option<u32>,
}

/// An empty string reads as "not reported" (reports written before the field was optional).
fn non_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

impl Negotiated {
    /// A TLS session with these parameters.
    pub fn tls(protocol: Protocol, cipher: impl Into<String>, group: Option<String>, dh_bits: Option<u32>) -> Self {
        let cipher = cipher.into();
        Negotiated { protocol: Some(protocol), cipher: (!cipher.is_empty()).then_some(cipher), group, dh_bits }
    }

    /// A dialogue that went on without TLS.
    pub fn plaintext() -> Negotiated {
        Negotiated { protocol: Some(Protocol::Plaintext), ..Negotiated::default() }
    }

    /// A completed handshake whose parameters the stack does not expose.
    pub fn unreported() -> Negotiated {
        Negotiated::default()
    }

    /// Whether the stack named the protocol it negotiated (see [`Negotiated::unreported`]).
    pub fn is_reported(&self) -> bool {
        self.protocol.is_some()
    }

    pub fn is_plaintext(&self) -> bool {
        self.protocol == Some(Protocol::Plaintext)
    }

    /// The cipher's name, empty when not reported.
    pub fn cipher_name(&self) -> &str {
        self.cipher.as_deref().unwrap_or_default()
    }

    /// Whether a completed TLS ≤ 1.2 handshake used the server's finite-field DH prime (stacks
    /// that do not report the prime's size still name a DHE suite).
    pub fn is_finite_field_dhe(&self) -> bool {
        let cipher = self.cipher_name();
        let dhe_suite = cipher.contains("DHE") && !cipher.contains("ECDHE");
        matches!(self.protocol, Some(p) if p != Protocol::Tls13 && p != Protocol::Plaintext)
            && (self.dh_bits.is_some() || dhe_suite)
    }

    /// The key exchange in a table's words: a group, `DHE-2048`, `ECDHE`, `DHE`, `RSA`.
    pub fn key_exchange(&self) -> Option<String> {
        let cipher = self.cipher_name();
        match (&self.group, self.dh_bits) {
            (Some(g), _) if g.starts_with("ffdhe") => Some(g.clone()),
            (_, Some(bits)) => Some(format!("DHE-{bits}")),
            (Some(g), None) => Some(g.clone()),
            // A stack that names neither group nor prime size: say what its cipher implies.
            (None, None) if cipher.contains("ECDHE") => Some("ECDHE".into()),
            (None, None) if cipher.contains("DHE") => Some("DHE".into()),
            (None, None) if self.protocol != Some(Protocol::Tls13) => Some("RSA".into()),
            // TLS 1.3 from a stack that does not name the group.
            (None, None) => None,
        }
    }

    /// The short label a table shows: `TLSv1.2 DHE-2048`, `TLSv1.3 x25519`, `TLSv1.2 RSA`,
    /// `plaintext`, or `TLS (not reported)` for a stack that does not say.
    pub fn label(&self) -> String {
        match self.protocol {
            None => "TLS (not reported)".to_string(),
            Some(Protocol::Plaintext) => "plaintext".to_string(),
            Some(p) => match self.key_exchange() {
                Some(kx) => format!("{p} {kx}"),
                None => p.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: Protocol, g: Option<&str>, b: Option<u32>) -> Negotiated {
        Negotiated::tls(p, "", g.map(Into::into), b)
    }

    #[test]
    fn labels() {
        assert_eq!(n(Protocol::Tls12, None, Some(2048)).label(), "TLSv1.2 DHE-2048");
        assert_eq!(n(Protocol::Tls13, Some("ffdhe2048"), Some(2048)).label(), "TLSv1.3 ffdhe2048");
        assert_eq!(n(Protocol::Tls13, Some("x25519"), None).label(), "TLSv1.3 x25519");
        assert_eq!(n(Protocol::Tls12, None, None).label(), "TLSv1.2 RSA");
        assert_eq!(n(Protocol::Tls13, None, None).label(), "TLSv1.3");
        assert_eq!(Negotiated::unreported().label(), "TLS (not reported)");
        assert_eq!(Negotiated::plaintext().label(), "plaintext");
    }

    #[test]
    fn wire_shape() {
        let json = r#"{"protocol":"TLSv1.2","cipher":"X","group":null,"dh_bits":2048}"#;
        let parsed: Negotiated = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, Negotiated::tls(Protocol::Tls12, "X", None, Some(2048)));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        // Not reported: the fields are left out, and an empty string reads as left out.
        assert_eq!(serde_json::to_string(&Negotiated::unreported()).unwrap(), r#"{"group":null,"dh_bits":null}"#);
        let old: Negotiated = serde_json::from_str(r#"{"protocol":"TLSv1.3","cipher":""}"#).unwrap();
        assert_eq!(old.cipher, None);
        assert!(serde_json::from_str::<Negotiated>(r#"{"protocol":"TLSv9"}"#).is_err());
        let plain: Negotiated = serde_json::from_str(r#"{"protocol":"plaintext"}"#).unwrap();
        assert!(plain.is_plaintext());
    }

    #[test]
    fn protocol_spellings() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::Value::String(p.as_str().into()));
        }
        assert_eq!(Protocol::parse("TLSv1.0"), Some(Protocol::Tls10));
        assert_eq!(Protocol::parse("TLS1.3"), Some(Protocol::Tls13));
        assert_eq!(Protocol::parse("TLSv1/SSLv3"), None);
    }

    #[test]
    fn finite_field_dhe() {
        assert!(Negotiated::tls(Protocol::Tls12, "DHE-RSA-AES128-GCM-SHA256", None, None).is_finite_field_dhe());
        assert!(!Negotiated::tls(Protocol::Tls12, "ECDHE-RSA-AES128-GCM-SHA256", None, None).is_finite_field_dhe());
        assert!(!n(Protocol::Tls13, Some("ffdhe2048"), Some(2048)).is_finite_field_dhe());
        assert!(n(Protocol::Tls12, None, Some(1024)).is_finite_field_dhe());
    }
}
