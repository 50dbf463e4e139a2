//! The fuzzing oracle: each client stack's policy declared as data (`harness/policies/*.toml`),
//! and from it a prediction of what the stack does against a server profile — connected (with
//! which protocol and key-exchange family), the failure class, or a wait that never ends, with
//! the policy field that decided it. A run that disagrees is a finding.
//!
//! The handshake faults of the built-in server act on the client's first ClientHello alone
//! (`servers::fault::on_client_hello`), so the policy declares that hello as measured: its size
//! and its key shares. What the server then does with an acceptable hello is the TLS library's,
//! predicted as for a profile without a fault.

use report_format::{Backend, CertKind, DhGroup, DhKind, Fault, Group, ServerProfile, TlsBackend, TlsVersion};
use report_format::{ErrorClass, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const BUILTIN: &[(&str, &str)] = &[
    ("lettre-native-tls", include_str!("../policies/lettre-native-tls.toml")),
    ("openssl-level1", include_str!("../policies/openssl-level1.toml")),
    ("openssl-level2", include_str!("../policies/openssl-level2.toml")),
    ("openssl-1.1.1", include_str!("../policies/openssl-1.1.1.toml")),
    ("openssl-3.6", include_str!("../policies/openssl-3.6.toml")),
    ("rustls-aws-lc", include_str!("../policies/rustls-aws-lc.toml")),
    ("rustls-ffdhe", include_str!("../policies/rustls-ffdhe.toml")),
    ("rustls-ring", include_str!("../policies/rustls-ring.toml")),
    ("rustls-ring-require-ems", include_str!("../policies/rustls-ring-require-ems.toml")),
];

/// A client stack's declared policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub description: String,
    /// Versions it negotiates and completes.
    pub versions: Vec<TlsVersion>,
    /// Versions it negotiates but then refuses at the server's key-exchange signature.
    pub legacy_versions: Vec<TlsVersion>,
    /// TLS ≤ 1.2 suites offered, in preference order (IANA names).
    pub tls12_suites: Vec<String>,
    pub tls13_suites: Vec<String>,
    /// Groups offered (`supported_groups`), in the client's order, IANA names as the built-in
    /// server records them (`client_hello.groups`; compared without regard to case).
    pub groups: Vec<String>,
    /// Groups its first ClientHello carries a TLS 1.3 key share for, in order
    /// (`client_hello.key_shares`). A TLS 1.3 server with none of them needs a
    /// HelloRetryRequest; one that cannot send it (fault `no-hrr`) refuses.
    pub key_shares: Vec<String>,
    /// Its first ClientHello's size in bytes: the handshake message with its 4-byte header, which
    /// is the payload of the one record it comes in (`client_hello.length`), sending SNI `mx.test`.
    /// Measured, not derived: the hybrid key share makes it exceed one 1,460-byte segment with
    /// its 5-byte record header (fault `clienthello-one-segment`), and a hello of 256–511 bytes
    /// meets the length-intolerant server (fault `clienthello-length-intolerant`).
    pub client_hello_bytes: u32,
    pub dh_min_bits: u32,
    pub dh_max_bits: u32,
    /// Accepts a DH prime that is not an RFC 7919 group.
    pub dh_custom_primes: bool,
    /// Refuses composite and small-subgroup primes.
    pub dh_validates_primes: bool,
    /// The smallest RSA key it accepts in the server's certificate, in bits (measured with the
    /// 1024-bit leaf `cert = "rsa1024"`: 1024 where it is accepted, the library's bound where not).
    pub cert_rsa_min_bits: u32,
    /// Accepts a certificate its CA signed with SHA-1 (`cert = "rsa-sha1"`).
    pub cert_sha1: bool,
    /// Refuses a TLS 1.2 server that does not do the extended master secret (RFC 7627), as
    /// FIPS-mode clients do (fault `no-ems`).
    pub requires_ems: bool,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("parse policy {name}: {message}")]
    Parse { name: String, message: String },
    #[error("read policy file {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
}

impl Policy {
    pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Parse { name: name.into(), message: e.to_string() })
    }

    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|cause| PolicyError::Read { path: path.display().to_string(), cause })?;
        Policy::parse(&path.display().to_string(), &text)
    }

    /// The policies shipped with the binary, by name.
    pub fn builtin() -> Result<BTreeMap<String, Policy>, PolicyError> {
        BUILTIN.iter().map(|(n, t)| Policy::parse(n, t).map(|p| (n.to_string(), p))).collect()
    }

    pub fn names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// Whether its ClientHello offers TLS 1.3.
    pub fn offers_tls13(&self) -> bool {
        self.versions.contains(&TlsVersion::Tls13) || self.legacy_versions.contains(&TlsVersion::Tls13)
    }

    /// Whether it offers `group` (IANA names, compared without regard to case).
    fn offers(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }
}

/// What the oracle expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Predicted {
    /// Connected with this protocol and one of these key-exchange families (`ecdhe`,
    /// `x25519mlkem768`, `dhe-2048`, `ffdhe-2048`, `rsa`).
    Connected {
        protocol: String,
        kx: Vec<String>,
    },
    Failed {
        class: ErrorClass,
    },
    /// The server never answers and the client waits until the cell's timeout ends it.
    Timeout,
}

/// A prediction and the policy field that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    #[serde(flatten)]
    pub outcome: Predicted,
    pub because: &'static str,
    /// Other outcomes the oracle cannot rule out: the server may serve one of several primes,
    /// or the stack's words may not say why it refused a certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub or: Vec<Predicted>,
}

fn fail(class: ErrorClass, because: &'static str) -> Prediction {
    Prediction { outcome: Predicted::Failed { class }, because, or: Vec::new() }
}

fn timeout(because: &'static str) -> Prediction {
    Prediction { outcome: Predicted::Timeout, because, or: Vec::new() }
}

fn connected(protocol: &str, kx: &str, because: &'static str) -> Prediction {
    Prediction {
        outcome: Predicted::Connected { protocol: protocol.into(), kx: vec![kx.into()] },
        because,
        or: Vec::new(),
    }
}

const OPENSSL_SERVER_GROUPS: &[&str] = &[
    "x25519",
    "secp256r1",
    "x448",
    "secp521r1",
    "secp384r1",
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
];
const RUSTLS_SERVER_GROUPS: &[&str] = &["x25519", "secp256r1", "secp384r1"];
const TLS13_SUITES: &[&str] = &["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"];

/// A group TLS 1.2 ECDHE can use: elliptic, and not a TLS 1.3-only hybrid.
fn is_ec(group: &str) -> bool {
    !group.starts_with("ffdhe") && !group_named(group).is_some_and(|g| g.tls13_only())
}

/// The key-exchange family of a TLS 1.3 group.
fn tls13_family(group: &str) -> String {
    match group_named(group) {
        Some(g) if g.tls13_only() => g.name().to_ascii_lowercase(),
        Some(g) => g.ffdhe().map_or_else(|| "ecdhe".into(), |dh| format!("ffdhe-{}", dh.bits())),
        None => "ecdhe".into(),
    }
}

/// The key-exchange family a completed handshake used.
pub fn kx_family(protocol: &str, group: Option<&str>, dh_bits: Option<u32>) -> String {
    match (protocol, group, dh_bits) {
        ("TLSv1.3", Some(g), Some(b)) if g.starts_with("ffdhe") => format!("ffdhe-{b}"),
        ("TLSv1.3", Some(g), _) if group_named(g).is_some_and(|g| g.tls13_only()) => tls13_family(g),
        ("TLSv1.3", _, _) => "ecdhe".into(),
        (_, _, Some(b)) => format!("dhe-{b}"),
        (_, Some(_), None) => "ecdhe".into(),
        (_, None, None) => "rsa".into(),
    }
}

/// The group of an IANA name, without regard to case (`x25519mlkem768` is `X25519MLKEM768`).
fn group_named(name: &str) -> Option<Group> {
    const ALL: [Group; 11] = [
        Group::X25519,
        Group::X448,
        Group::Secp256r1,
        Group::Secp384r1,
        Group::Secp521r1,
        Group::Ffdhe2048,
        Group::Ffdhe3072,
        Group::Ffdhe4096,
        Group::Ffdhe6144,
        Group::Ffdhe8192,
        Group::X25519Mlkem768,
    ];
    ALL.into_iter().find(|g| g.name().eq_ignore_ascii_case(name))
}

/// What one of the built-in server's handshake faults does with the stack's first ClientHello,
/// as `servers::fault::on_client_hello` decides it: `Some` when the fault ends the cell there,
/// `None` when the hello goes on to the TLS library.
fn hello_fault(fault: Fault, profile: &ServerProfile, policy: &Policy) -> Option<Prediction> {
    let hello = usize::try_from(policy.client_hello_bytes).unwrap_or(usize::MAX);
    match fault {
        // The hello comes in one record: the handshake message plus the 5-byte record header.
        Fault::ClienthelloOneSegment if hello.saturating_add(5) > servers::fault::ONE_SEGMENT => {
            Some(fail(ErrorClass::ConnectionClosed, "client_hello_bytes"))
        }
        Fault::ClienthelloLengthIntolerant if servers::fault::INTOLERANT_LENGTHS.contains(&hello) => {
            Some(timeout("client_hello_bytes"))
        }
        // It acts on what the client offers, whatever versions the server allows.
        Fault::Tls13Intolerant if policy.offers_tls13() => Some(fail(ErrorClass::ConnectionClosed, "versions")),
        Fault::NoHrr if policy.offers_tls13() => {
            let server: Vec<&str> = profile.groups.iter().flatten().map(|g| g.name()).collect();
            let shared = policy.key_shares.iter().any(|k| server.iter().any(|g| g.eq_ignore_ascii_case(k)));
            (!shared).then(|| fail(ErrorClass::HandshakeFailure, "key_shares"))
        }
        _ => None,
    }
}

/// Predict what a stack with `policy` does against `profile`; `None` for profiles the oracle
/// does not model (real MTAs, the hostile SMTP dialogues).
pub fn predict(profile: &ServerProfile, policy: &Policy) -> Option<Prediction> {
    let Backend::Builtin(backend) = profile.backend else { return None };
    match profile.fault {
        None => {}
        Some(
            f @ (Fault::ClienthelloOneSegment
            | Fault::ClienthelloLengthIntolerant
            | Fault::Tls13Intolerant
            | Fault::NoHrr),
        ) => {
            if let Some(ended) = hello_fault(f, profile, policy) {
                return Some(ended);
            }
        }
        Some(Fault::NoEms) => {}
        Some(_) => return None,
    }
    let prediction = predict_handshake(profile, policy, backend);
    if profile.fault == Some(Fault::NoEms) && policy.requires_ems {
        // The client reads the missing extension in the ServerHello: what is decided before it
        // (version, suite, group) stands; anything after is its own refusal, ems_missing
        // ('ExtendedMasterSecretExtensionRequired' in rustls' words).
        return Some(match prediction.outcome {
            Predicted::Failed {
                class: ErrorClass::ProtocolVersion | ErrorClass::NoSharedCipher | ErrorClass::NoSharedGroup,
            } => prediction,
            _ => fail(ErrorClass::EmsMissing, "requires_ems"),
        });
    }
    Some(prediction)
}

/// What a client with `policy` does with the server's certificate, when it refuses it. Both
/// libraries verify the certificate before the key exchange's parameters: OpenSSL as the
/// Certificate message arrives, rustls at ServerHelloDone before it looks at the DH group.
fn judge_cert(cert: CertKind, policy: &Policy) -> Option<Prediction> {
    let (class, because) = match cert {
        CertKind::Rsa1024 if policy.cert_rsa_min_bits > 1024 => (ErrorClass::CertKeyTooSmall, "cert_rsa_min_bits"),
        CertKind::RsaSha1 if !policy.cert_sha1 => (ErrorClass::CertWeakSignature, "cert_sha1"),
        CertKind::Rsa | CertKind::Ecdsa | CertKind::Rsa1024 | CertKind::RsaSha1 => return None,
    };
    // Words that do not say why come out as cert_untrusted (webpki reports a 1024-bit key as
    // 'BadSignature' when it checks the handshake signature with it). Every generated
    // certificate chains to the trusted CA and names mx.test, so nothing else makes it untrusted.
    Some(Prediction {
        outcome: Predicted::Failed { class },
        because,
        or: vec![Predicted::Failed { class: ErrorClass::CertUntrusted }],
    })
}

/// The prediction for a ClientHello the server's TLS library gets to answer.
fn predict_handshake(profile: &ServerProfile, policy: &Policy, backend: TlsBackend) -> Prediction {
    let server_versions: Vec<TlsVersion> = [TlsVersion::Tls10, TlsVersion::Tls11, TlsVersion::Tls12, TlsVersion::Tls13]
        .into_iter()
        .filter(|v| *v >= profile.min_tls && *v <= profile.max_tls)
        .collect();
    let negotiable: Vec<TlsVersion> = server_versions
        .iter()
        .copied()
        .filter(|v| policy.versions.contains(v) || policy.legacy_versions.contains(v))
        .collect();
    let Some(&version) = negotiable.iter().max() else {
        return fail(ErrorClass::ProtocolVersion, "versions");
    };
    let mut server_groups: Vec<String> = match &profile.groups {
        Some(g) => g.iter().map(|g| g.name().to_string()).collect(),
        None => match backend {
            TlsBackend::Openssl => OPENSSL_SERVER_GROUPS.iter().map(|s| s.to_string()).collect(),
            TlsBackend::Rustls => RUSTLS_SERVER_GROUPS.iter().map(|s| s.to_string()).collect(),
        },
    };
    // The rustls backend registers an RFC 7919 `dh` under its own name, TLS 1.3 included (a
    // private prime goes under the RFC 7919 names for TLS 1.2 only).
    if version == TlsVersion::Tls13
        && backend == TlsBackend::Rustls
        && let Some(named) = profile.dh.and_then(Group::for_dh)
        && !server_groups.iter().any(|g| g == named.name())
    {
        server_groups.insert(0, named.name().to_string());
    }
    let serves = |g: &str| server_groups.iter().any(|s| s.eq_ignore_ascii_case(g));
    let shared_groups: Vec<&String> = policy.groups.iter().filter(|g| serves(g)).collect();

    if version == TlsVersion::Tls13 {
        let Some(&client_first) = shared_groups.first() else {
            return fail(ErrorClass::NoSharedGroup, "groups");
        };
        let server_suites: Vec<String> =
            profile.tls13_suites.clone().unwrap_or_else(|| TLS13_SUITES.iter().map(|s| s.to_string()).collect());
        if !policy.tls13_suites.iter().any(|s| server_suites.contains(s)) {
            return fail(ErrorClass::NoSharedCipher, "tls13_suites");
        }
        if let Some(refused) = judge_cert(profile.cert, policy) {
            return refused;
        }
        // Which group (measured): rustls takes the first of the client's groups it has, with the
        // key share sent or by HelloRetryRequest; OpenSSL takes the first key share it can, and
        // without one asks for its own first shared group.
        let share = policy.key_shares.iter().find(|k| serves(k));
        let chosen: &str = match (backend, share) {
            (TlsBackend::Rustls, _) => client_first,
            (TlsBackend::Openssl, Some(share)) => share,
            (TlsBackend::Openssl, None) => {
                server_groups.iter().find(|g| policy.offers(g)).expect("shared groups exist")
            }
        };
        let retried = !policy.key_shares.iter().any(|k| k.eq_ignore_ascii_case(chosen));
        return connected(
            version.protocol_name(),
            &tls13_family(chosen),
            if retried { "groups" } else { "key_shares" },
        );
    }

    let shared_ec = shared_groups.iter().any(|g| is_ec(g));
    let server_suites: Option<&Vec<String>> = profile.ciphers.as_ref();
    // rustls serves DHE by RFC 7919 §4: to a client that lists finite-field groups, only one of
    // them (a private prime is registered under every RFC 7919 name, an RFC 7919 `dh` under its
    // own, beside the profile's groups). Measured: OpenSSL 3.6, which lists ffdhe2048 and
    // ffdhe3072 only, gets no DHE suite from a rustls server of ffdhe4096.
    let rfc7919_allows_dhe = || {
        let offered: Vec<Group> =
            policy.groups.iter().filter_map(|g| group_named(g)).filter(|g| g.ffdhe().is_some()).collect();
        let registered = |g: &Group| {
            profile.dh.is_some_and(|dh| dh.kind() != DhKind::Rfc7919 || Group::for_dh(dh) == Some(*g))
                || profile.groups.iter().flatten().any(|s| s == g)
        };
        backend == TlsBackend::Openssl || offered.is_empty() || offered.iter().any(registered)
    };
    let usable = |suite: &str| -> bool {
        let offered_by_server = match server_suites {
            Some(list) => list.iter().any(|s| s == suite),
            None => match backend {
                TlsBackend::Openssl => true,
                TlsBackend::Rustls => report_format::profile::RUSTLS_TLS12_SUITES.contains(&suite),
            },
        };
        let cert_ok = if suite.contains("_ECDSA_") { profile.cert == CertKind::Ecdsa } else { profile.cert.is_rsa() };
        let kx_ok = if suite.starts_with("TLS_ECDHE_") {
            shared_ec
        } else if suite.starts_with("TLS_DHE_") {
            profile.dh.is_some() && rfc7919_allows_dhe()
        } else {
            true
        };
        let version_ok = version == TlsVersion::Tls12 || suite.ends_with("_CBC_SHA");
        offered_by_server && cert_ok && kx_ok && version_ok
    };
    let Some(suite) = policy.tls12_suites.iter().find(|s| usable(s)) else {
        return fail(ErrorClass::NoSharedCipher, "tls12_suites");
    };
    if let Some(refused) = judge_cert(profile.cert, policy) {
        return refused;
    }
    let protocol = version.protocol_name().to_string();
    let legacy = policy.legacy_versions.contains(&version);
    if suite.starts_with("TLS_RSA_") {
        // No ServerKeyExchange, so no signature for a legacy version to fail on.
        return connected(&protocol, "rsa", "tls12_suites");
    }
    if suite.starts_with("TLS_ECDHE_") {
        if legacy {
            return fail(ErrorClass::LegacySigalg, "legacy_versions");
        }
        return connected(&protocol, "ecdhe", "tls12_suites");
    }
    // DHE. Which prime is served: a server that lists RFC 7919 groups the client also offers
    // may serve one of those instead of its own (OpenSSL 3 was seen doing both, depending on
    // the rest of its configuration; rustls picks in the client's order among its groups, where
    // our backend registers a private prime under every name). The oracle accepts any of them.
    let dh = profile.dh.expect("a DHE suite is usable only with a DH group");
    let listed_ffdhe: Vec<DhGroup> =
        profile.groups.iter().flatten().filter(|g| policy.offers(g.name())).filter_map(|g| g.ffdhe()).collect();
    let candidates: Vec<DhGroup> = match (backend, dh.kind()) {
        (TlsBackend::Openssl, _) | (TlsBackend::Rustls, DhKind::Rfc7919) => {
            std::iter::once(dh).chain(listed_ffdhe).collect()
        }
        (TlsBackend::Rustls, _) => vec![dh],
    };
    let mut judged = candidates.iter().map(|d| judge_dh(*d, policy, &protocol, legacy));
    let mut first = judged.next().expect("at least the profile's own group");
    for other in judged {
        if other.outcome != first.outcome && !first.or.contains(&other.outcome) {
            first.or.push(other.outcome);
        }
    }
    first
}

/// What a client with `policy` does with a served DH group.
fn judge_dh(dh: DhGroup, policy: &Policy, protocol: &str, legacy: bool) -> Prediction {
    let kind = dh.kind();
    // A client that takes only the groups it offered refuses any other prime outright.
    if !policy.dh_custom_primes && kind != DhKind::Rfc7919 {
        return fail(ErrorClass::UnofferedGroup, "dh_custom_primes");
    }
    if kind.is_invalid() {
        let class = if policy.dh_validates_primes { ErrorClass::DhInvalid } else { ErrorClass::DhInvalidAccepted };
        return fail(class, "dh_validates_primes");
    }
    if dh.bits() < policy.dh_min_bits {
        return fail(ErrorClass::DhTooSmall, "dh_min_bits");
    }
    if dh.bits() > policy.dh_max_bits {
        return fail(ErrorClass::DhTooLarge, "dh_max_bits");
    }
    if legacy {
        return fail(ErrorClass::LegacySigalg, "legacy_versions");
    }
    connected(protocol, &format!("dhe-{}", dh.bits()), "dh_min_bits")
}

/// Whether an observed outcome is what was predicted. `None`: the observation says nothing
/// about the stack (skipped, harness error).
pub fn agrees(prediction: &Prediction, observed: &Outcome) -> Option<bool> {
    let matches = |p: &Predicted| match (p, observed) {
        (Predicted::Connected { protocol, kx }, Outcome::Connected(n)) => {
            let seen = n.protocol.map_or("", |p| p.as_str());
            protocol == seen && kx.contains(&kx_family(seen, n.group.as_deref(), n.dh_bits))
        }
        (Predicted::Failed { class }, Outcome::Failed { class: seen, .. }) => class == seen,
        (Predicted::Timeout, Outcome::Timeout { .. }) => true,
        _ => false,
    };
    match observed {
        Outcome::Skipped { .. } | Outcome::HarnessError { .. } | Outcome::Unsupported { .. } => None,
        // The server refused its own configuration: that says nothing about the client.
        Outcome::Failed { class: ErrorClass::ServerConfigRejected, .. } => None,
        _ => Some(matches(&prediction.outcome) || prediction.or.iter().any(matches)),
    }
}

/// The policy field a disagreement points at: what the observation says about the stack
/// against `profile`.
pub fn field_to_check(profile: &ServerProfile, prediction: &Prediction, observed: &Outcome) -> &'static str {
    // What a handshake fault does depends on the hello alone: a disagreement there is about
    // the hello the policy declares.
    let hello_fault = match profile.fault {
        Some(Fault::ClienthelloOneSegment | Fault::ClienthelloLengthIntolerant) => Some("client_hello_bytes"),
        Some(Fault::Tls13Intolerant) => Some("versions"),
        Some(Fault::NoHrr) => Some("key_shares"),
        Some(Fault::NoEms) => Some("requires_ems"),
        _ => None,
    };
    match observed {
        Outcome::Timeout { .. } => hello_fault.unwrap_or(prediction.because),
        Outcome::Failed { class, .. } => match class {
            ErrorClass::DhTooSmall => "dh_min_bits",
            ErrorClass::DhTooLarge => "dh_max_bits",
            ErrorClass::UnofferedGroup => "dh_custom_primes",
            ErrorClass::DhInvalid | ErrorClass::DhInvalidAccepted => "dh_validates_primes",
            ErrorClass::ProtocolVersion => "versions",
            ErrorClass::LegacySigalg => "legacy_versions",
            ErrorClass::NoSharedGroup => "groups",
            ErrorClass::CertKeyTooSmall => "cert_rsa_min_bits",
            ErrorClass::CertWeakSignature => "cert_sha1",
            ErrorClass::ConnectionClosed | ErrorClass::HandshakeFailure => hello_fault.unwrap_or(prediction.because),
            ErrorClass::NoSharedCipher => {
                if matches!(&prediction.outcome, Predicted::Connected { protocol, .. } if protocol == "TLSv1.3") {
                    "tls13_suites"
                } else {
                    "tls12_suites"
                }
            }
            _ => prediction.because,
        },
        _ => prediction.because,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> ServerProfile {
        let p: ServerProfile = serde_json::from_value(json).unwrap();
        p.validate().unwrap();
        p
    }

    fn dhe(dh: &str) -> ServerProfile {
        profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2", "dh": dh,
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}))
    }

    #[test]
    fn the_shipped_policies_predict_the_default_matrix_breakage() {
        let p = Policy::builtin().unwrap();
        let class = said;
        assert_eq!(class(predict(&dhe("custom-512"), &p["openssl-level2"])), "dh_too_small");
        assert_eq!(class(predict(&dhe("oakley-1024"), &p["openssl-level1"])), "dhe-1024");
        assert_eq!(class(predict(&dhe("ffdhe2048"), &p["openssl-level2"])), "dhe-2048");
        assert_eq!(class(predict(&dhe("ffdhe2048"), &p["rustls-ring"])), "no_shared_cipher");
        assert_eq!(class(predict(&dhe("composite-2048"), &p["openssl-level2"])), "dh_invalid_accepted");
        let tls13 =
            profile(serde_json::json!({"id": "t", "backend": "openssl", "min_tls": "1.3", "groups": ["ffdhe2048"]}));
        assert_eq!(class(predict(&tls13, &p["openssl-level2"])), "ffdhe-2048");
        assert_eq!(class(predict(&tls13, &p["rustls-ring"])), "no_shared_group");
        let tls10 = profile(serde_json::json!({"id": "t", "backend": "openssl", "min_tls": "1.0", "max_tls": "1.0",
            "ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]}));
        assert_eq!(class(predict(&tls10, &p["openssl-level2"])), "legacy_sigalg");
        assert_eq!(class(predict(&tls10, &p["rustls-ring"])), "protocol_version");
    }

    /// The prediction as one word: the class, the key-exchange families, or `timeout`.
    fn said(pr: Option<Prediction>) -> String {
        match pr {
            None => "not modelled".into(),
            Some(p) => match p.outcome {
                Predicted::Failed { class } => class.to_string(),
                Predicted::Connected { kx, .. } => kx.join("|"),
                Predicted::Timeout => "timeout".into(),
            },
        }
    }

    #[test]
    fn the_hybrid_group_connects_the_stacks_that_offer_it_only() {
        let p = Policy::builtin().unwrap();
        let mlkem_only = profile(
            serde_json::json!({"id": "t", "backend": "rustls", "min_tls": "1.3", "groups": ["X25519MLKEM768"]}),
        );
        assert_eq!(said(predict(&mlkem_only, &p["rustls-aws-lc"])), "x25519mlkem768");
        assert_eq!(said(predict(&mlkem_only, &p["openssl-3.6"])), "x25519mlkem768");
        for classic in ["rustls-ring", "rustls-ffdhe", "openssl-level2", "openssl-1.1.1", "lettre-native-tls"] {
            assert_eq!(said(predict(&mlkem_only, &p[classic])), "no_shared_group", "{classic}");
        }
        // Both of the client's key shares are the server's: rustls takes the client's first.
        let both = profile(serde_json::json!({"id": "t", "backend": "rustls", "groups": ["x25519", "X25519MLKEM768"]}));
        let pr = predict(&both, &p["rustls-aws-lc"]).unwrap();
        assert_eq!(pr.because, "key_shares");
        assert_eq!(said(Some(pr)), "x25519mlkem768");
        assert_eq!(said(predict(&both, &p["openssl-level2"])), "ecdhe");
        // TLS 1.2 has no hybrid: a server whose only EC group it is has no ECDHE to offer.
        let tls12 = profile(serde_json::json!({"id": "t", "backend": "rustls", "max_tls": "1.2",
            "groups": ["X25519MLKEM768"], "ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}));
        assert_eq!(said(predict(&tls12, &p["rustls-aws-lc"])), "no_shared_cipher");
        // The group seen on the wire is named in either spelling.
        assert_eq!(kx_family("TLSv1.3", Some("X25519MLKEM768"), None), "x25519mlkem768");
        assert_eq!(kx_family("TLSv1.3", Some("x25519mlkem768"), None), "x25519mlkem768");
    }

    #[test]
    fn a_group_without_a_key_share_is_reached_by_hello_retry() {
        let p = Policy::builtin().unwrap();
        let p384 =
            profile(serde_json::json!({"id": "t", "backend": "openssl", "min_tls": "1.3", "groups": ["secp384r1"]}));
        for name in ["openssl-level2", "rustls-ring", "rustls-aws-lc", "openssl-3.6"] {
            let pr = predict(&p384, &p[name]).unwrap();
            assert_eq!((said(Some(pr.clone())), pr.because), ("ecdhe".into(), "groups"), "{name}");
        }
    }

    #[test]
    fn the_tls13_group_is_the_clients_choice_on_rustls_and_the_servers_on_openssl() {
        // Measured: openssl-client against groups = ["ffdhe2048", "secp384r1"], no key share
        // for either: OpenSSL retries for ffdhe2048 (its first), rustls for secp384r1 (the
        // client lists it first).
        let p = Policy::builtin().unwrap();
        let order = |backend: &str| {
            profile(
                serde_json::json!({"id": "t", "backend": backend, "min_tls": "1.3", "groups": ["ffdhe2048", "secp384r1"]}),
            )
        };
        let pr = predict(&order("openssl"), &p["openssl-level2"]).unwrap();
        assert_eq!((said(Some(pr.clone())), pr.because), ("ffdhe-2048".into(), "groups"));
        assert_eq!(said(predict(&order("rustls"), &p["openssl-level2"])), "ecdhe");
        // The rustls backend's RFC 7919 `dh` is a TLS 1.3 group too (measured: ffdhe2048
        // negotiated though `groups` has only ffdhe3072).
        let dh_too = profile(serde_json::json!({"id": "t", "backend": "rustls", "groups": ["ffdhe3072"],
            "dh": "ffdhe2048", "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}));
        assert_eq!(said(predict(&dh_too, &p["openssl-level2"])), "ffdhe-2048");
        assert_eq!(said(predict(&dh_too, &p["rustls-ffdhe"])), "ffdhe-2048");
        assert_eq!(said(predict(&dh_too, &p["rustls-ring"])), "no_shared_group");
        // A private prime is not.
        let private = profile(serde_json::json!({"id": "t", "backend": "rustls", "groups": ["ffdhe3072"],
            "dh": "custom-2048", "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}));
        assert_eq!(said(predict(&private, &p["openssl-level2"])), "ffdhe-3072");
    }

    #[test]
    fn rustls_serves_dhe_only_in_a_finite_field_group_the_client_lists() {
        let p = Policy::builtin().unwrap();
        let rustls_dhe = |dh: &str, groups: serde_json::Value| {
            profile(serde_json::json!({"id": "t", "backend": "rustls", "max_tls": "1.2", "dh": dh, "groups": groups,
                "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}))
        };
        // OpenSSL 3.6 lists ffdhe2048 and ffdhe3072 only; OpenSSL 3.0 all five.
        let ffdhe4096 = rustls_dhe("ffdhe4096", serde_json::json!(["secp384r1"]));
        assert_eq!(said(predict(&ffdhe4096, &p["openssl-3.6"])), "no_shared_cipher");
        assert_eq!(said(predict(&ffdhe4096, &p["openssl-level2"])), "dhe-4096");
        // A group the profile lists is registered too; a private prime goes under every name.
        let listed = rustls_dhe("ffdhe4096", serde_json::json!(["ffdhe3072"]));
        assert_eq!(said(predict(&listed, &p["openssl-3.6"])), "dhe-4096");
        let private = rustls_dhe("custom-2048", serde_json::json!(["secp384r1"]));
        assert_eq!(said(predict(&private, &p["openssl-3.6"])), "dhe-2048");
        // OpenSSL serves its prime whatever the client lists.
        let openssl = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2", "dh": "ffdhe4096",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}));
        assert_eq!(said(predict(&openssl, &p["openssl-3.6"])), "dhe-4096");
    }

    #[test]
    fn weak_certificates_are_refused_by_the_policy_before_the_key_exchange() {
        let p = Policy::builtin().unwrap();
        let cert = |kind: &str| profile(serde_json::json!({"id": "t", "backend": "openssl", "cert": kind}));
        let pr = predict(&cert("rsa1024"), &p["openssl-level2"]).unwrap();
        assert_eq!((said(Some(pr.clone())), pr.because), ("cert_key_too_small".into(), "cert_rsa_min_bits"));
        assert_eq!(pr.or, vec![Predicted::Failed { class: ErrorClass::CertUntrusted }], "words that do not say why");
        assert_eq!(said(predict(&cert("rsa1024"), &p["rustls-ring"])), "cert_key_too_small");
        assert_eq!(said(predict(&cert("rsa1024"), &p["openssl-level1"])), "ecdhe");
        assert_eq!(said(predict(&cert("rsa1024"), &p["openssl-1.1.1"])), "ecdhe");
        let pr = predict(&cert("rsa-sha1"), &p["rustls-aws-lc"]).unwrap();
        assert_eq!((said(Some(pr.clone())), pr.because), ("cert_weak_signature".into(), "cert_sha1"));
        assert_eq!(said(predict(&cert("rsa-sha1"), &p["openssl-level1"])), "cert_weak_signature");
        assert_eq!(said(predict(&cert("rsa-sha1"), &p["openssl-1.1.1"])), "ecdhe");
        // Verified before the DH prime is looked at, by OpenSSL and rustls alike.
        let small_dh = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2",
            "dh": "custom-512", "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "cert": "rsa1024"}));
        assert_eq!(said(predict(&small_dh, &p["openssl-level2"])), "cert_key_too_small");
        assert_eq!(said(predict(&small_dh, &p["openssl-level1"])), "dh_too_small");
        // A weak RSA certificate serves the RSA suites, not the ECDSA ones.
        let ecdsa_suites = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"], "cert": "rsa-sha1"}));
        assert_eq!(said(predict(&ecdsa_suites, &p["openssl-1.1.1"])), "no_shared_cipher");
        let kx_rsa = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_RSA_WITH_AES_128_GCM_SHA256"], "cert": "rsa1024"}));
        assert_eq!(said(predict(&kx_rsa, &p["openssl-level2"])), "cert_key_too_small");
        assert_eq!(said(predict(&kx_rsa, &p["openssl-level1"])), "rsa");
    }

    #[test]
    fn tls13_intolerance_acts_on_what_the_client_offers() {
        let p = Policy::builtin().unwrap();
        let intolerant = |max: &str| {
            profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": max, "fault": "tls13-intolerant"}))
        };
        // Even where the server would settle on TLS 1.2: the hello offered 1.3.
        for max in ["1.2", "1.3"] {
            for name in ["openssl-level2", "rustls-ring", "openssl-1.1.1"] {
                let pr = predict(&intolerant(max), &p[name]).unwrap();
                assert_eq!((said(Some(pr.clone())), pr.because), ("connection_closed".into(), "versions"));
            }
        }
        let mut tls12_only = p["openssl-level2"].clone();
        tls12_only.versions = vec![TlsVersion::Tls12];
        assert_eq!(said(predict(&intolerant("1.2"), &tls12_only)), "ecdhe");
    }

    #[test]
    fn a_hello_past_one_segment_is_closed_on() {
        let p = Policy::builtin().unwrap();
        let one_segment =
            profile(serde_json::json!({"id": "t", "backend": "rustls", "fault": "clienthello-one-segment"}));
        for big in ["rustls-aws-lc", "openssl-3.6"] {
            let pr = predict(&one_segment, &p[big]).unwrap();
            assert_eq!((said(Some(pr.clone())), pr.because), ("connection_closed".into(), "client_hello_bytes"));
        }
        for small in ["rustls-ring", "openssl-level2", "lettre-native-tls"] {
            assert_eq!(said(predict(&one_segment, &p[small])), "ecdhe", "{small}");
        }
        // 1,455 bytes and the record header fill the segment exactly.
        let mut edge = p["rustls-ring"].clone();
        edge.client_hello_bytes = 1455;
        assert_eq!(said(predict(&one_segment, &edge)), "ecdhe");
        edge.client_hello_bytes = 1456;
        assert_eq!(said(predict(&one_segment, &edge)), "connection_closed");
    }

    #[test]
    fn a_hello_of_256_to_511_bytes_waits_on_the_length_intolerant_server() {
        let p = Policy::builtin().unwrap();
        let intolerant =
            profile(serde_json::json!({"id": "t", "backend": "openssl", "fault": "clienthello-length-intolerant"}));
        for stalled in ["openssl-level2", "openssl-level1", "openssl-1.1.1"] {
            let pr = predict(&intolerant, &p[stalled]).unwrap();
            assert_eq!((pr.outcome, pr.because), (Predicted::Timeout, "client_hello_bytes"), "{stalled}");
        }
        // rustls below the window, native-tls padded to 512 just above it, the hybrid far above.
        for through in ["rustls-ring", "rustls-ffdhe", "lettre-native-tls", "rustls-aws-lc", "openssl-3.6"] {
            assert_eq!(said(predict(&intolerant, &p[through])), "ecdhe", "{through}");
        }
        let timed_out = Outcome::Timeout { after_ms: 2000 };
        assert_eq!(agrees(&predict(&intolerant, &p["openssl-level2"]).unwrap(), &timed_out), Some(true));
        assert_eq!(agrees(&predict(&intolerant, &p["rustls-ring"]).unwrap(), &timed_out), Some(false));
        let field = field_to_check(&intolerant, &predict(&intolerant, &p["rustls-ring"]).unwrap(), &timed_out);
        assert_eq!(field, "client_hello_bytes");
    }

    #[test]
    fn without_hello_retry_a_missing_key_share_is_a_handshake_failure() {
        let p = Policy::builtin().unwrap();
        let no_hrr = |groups: serde_json::Value, backend: &str| {
            profile(
                serde_json::json!({"id": "t", "backend": backend, "min_tls": "1.3", "groups": groups, "fault": "no-hrr"}),
            )
        };
        let p384 = no_hrr(serde_json::json!(["secp384r1"]), "openssl");
        for name in ["openssl-level2", "rustls-ring", "rustls-aws-lc", "openssl-3.6"] {
            let pr = predict(&p384, &p[name]).unwrap();
            assert_eq!((said(Some(pr.clone())), pr.because), ("handshake_failure".into(), "key_shares"), "{name}");
        }
        // A key share the server takes: no retry needed, the library goes on.
        let x25519_too = no_hrr(serde_json::json!(["secp384r1", "x25519"]), "openssl");
        assert_eq!(said(predict(&x25519_too, &p["openssl-level2"])), "ecdhe");
        let hybrid = no_hrr(serde_json::json!(["X25519MLKEM768"]), "rustls");
        assert_eq!(said(predict(&hybrid, &p["rustls-aws-lc"])), "x25519mlkem768");
        assert_eq!(said(predict(&hybrid, &p["rustls-ring"])), "handshake_failure");
        // Where a fault-free server would have found no group at all: a stack that says so
        // points at its groups, not at the fault.
        let wrong = Outcome::Failed {
            class: ErrorClass::NoSharedGroup,
            side: report_format::Side::Server,
            stage: report_format::Stage::Handshake,
            client_error: String::new(),
            server_error: None,
        };
        assert_eq!(field_to_check(&hybrid, &predict(&hybrid, &p["rustls-ring"]).unwrap(), &wrong), "groups");
    }

    #[test]
    fn a_server_without_ems_is_refused_by_a_stack_that_requires_it() {
        let p = Policy::builtin().unwrap();
        let no_ems = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2", "fault": "no-ems"}));
        assert_eq!(said(predict(&no_ems, &p["rustls-ring"])), "ecdhe");
        assert_eq!(said(predict(&no_ems, &p["openssl-3.6"])), "ecdhe");
        let pr = predict(&no_ems, &p["rustls-ring-require-ems"]).unwrap();
        assert_eq!((said(Some(pr.clone())), pr.because), ("ems_missing".into(), "requires_ems"));
        // Before the certificate: the ServerHello already said it.
        let weak = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2", "fault": "no-ems",
            "cert": "rsa1024"}));
        assert_eq!(said(predict(&weak, &p["rustls-ring-require-ems"])), "ems_missing");
        assert_eq!(said(predict(&weak, &p["rustls-ring"])), "cert_key_too_small");
        // What is decided before the ServerHello still is.
        let no_suite = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_RSA_WITH_AES_128_GCM_SHA256"], "fault": "no-ems"}));
        assert_eq!(said(predict(&no_suite, &p["rustls-ring-require-ems"])), "no_shared_cipher");
        // Against a server that does EMS it is plain rustls.
        let ems = profile(serde_json::json!({"id": "t", "backend": "openssl", "max_tls": "1.2"}));
        assert_eq!(said(predict(&ems, &p["rustls-ring-require-ems"])), "ecdhe");
    }

    #[test]
    fn the_smtp_faults_stay_unmodelled() {
        let p = Policy::builtin().unwrap();
        let stall = profile(serde_json::json!({"id": "t", "backend": "openssl", "fault": "stall"}));
        assert_eq!(said(predict(&stall, &p["openssl-level2"])), "not modelled");
    }

    #[test]
    fn every_policy_declares_its_hello_and_certificates() {
        let text = include_str!("../policies/rustls-ring.toml").replace("requires_ems = false", "");
        let e = Policy::parse("x", &text).unwrap_err().to_string();
        assert!(e.contains("requires_ems"), "{e}");
        for (name, policy) in Policy::builtin().unwrap() {
            assert!(!policy.key_shares.is_empty() && policy.client_hello_bytes > 0, "{name}");
            for share in &policy.key_shares {
                assert!(policy.offers(share), "{name}: a key share for {share}, which it does not offer");
            }
        }
    }

    #[test]
    fn kx_families() {
        assert_eq!(kx_family("TLSv1.3", Some("x25519"), None), "ecdhe");
        assert_eq!(kx_family("TLSv1.3", Some("ffdhe2048"), Some(2048)), "ffdhe-2048");
        assert_eq!(kx_family("TLSv1.2", None, Some(1024)), "dhe-1024");
        assert_eq!(kx_family("TLSv1.2", None, None), "rsa");
    }
}
