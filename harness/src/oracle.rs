//! The fuzzing oracle: each client stack's policy declared as data (`harness/policies/*.toml`),
//! and from it a prediction of what the stack does against a server profile — connected (with
//! which protocol and key-exchange family) or the failure class, with the policy field that
//! decided it. A run that disagrees is a finding.

use report_format::{Backend, CertKind, DhGroup, DhKind, ServerProfile, TlsBackend, TlsVersion};
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
    /// Groups offered, in preference order; the first is the TLS 1.3 key share.
    pub groups: Vec<String>,
    pub dh_min_bits: u32,
    pub dh_max_bits: u32,
    /// Accepts a DH prime that is not an RFC 7919 group.
    pub dh_custom_primes: bool,
    /// Refuses composite and small-subgroup primes.
    pub dh_validates_primes: bool,
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
}

/// What the oracle expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Predicted {
    /// Connected with this protocol and one of these key-exchange families (`ecdhe`,
    /// `dhe-2048`, `ffdhe-2048`, `rsa`).
    Connected {
        protocol: String,
        kx: Vec<String>,
    },
    Failed {
        class: ErrorClass,
    },
}

/// A prediction and the policy field that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    #[serde(flatten)]
    pub outcome: Predicted,
    pub because: &'static str,
    /// Other outcomes the oracle cannot rule out (when the server may serve one of several
    /// primes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub or: Vec<Predicted>,
}

fn fail(class: ErrorClass, because: &'static str) -> Prediction {
    Prediction { outcome: Predicted::Failed { class }, because, or: Vec::new() }
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

fn is_ec(group: &str) -> bool {
    !group.starts_with("ffdhe")
}

/// The key-exchange family a completed handshake used.
pub fn kx_family(protocol: &str, group: Option<&str>, dh_bits: Option<u32>) -> String {
    match (protocol, group, dh_bits) {
        ("TLSv1.3", Some(g), Some(b)) if g.starts_with("ffdhe") => format!("ffdhe-{b}"),
        ("TLSv1.3", _, _) => "ecdhe".into(),
        (_, _, Some(b)) => format!("dhe-{b}"),
        (_, Some(_), None) => "ecdhe".into(),
        (_, None, None) => "rsa".into(),
    }
}

/// Predict what a stack with `policy` does against `profile`; `None` for profiles the oracle
/// does not model (hostile servers, real MTAs).
pub fn predict(profile: &ServerProfile, policy: &Policy) -> Option<Prediction> {
    let Backend::Builtin(backend) = profile.backend else { return None };
    if profile.fault.is_some() {
        return None;
    }
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
        return Some(fail(ErrorClass::ProtocolVersion, "versions"));
    };
    let server_groups: Vec<String> = match &profile.groups {
        Some(g) => g.iter().map(|g| g.name().to_string()).collect(),
        None => match backend {
            TlsBackend::Openssl => OPENSSL_SERVER_GROUPS.iter().map(|s| s.to_string()).collect(),
            TlsBackend::Rustls => RUSTLS_SERVER_GROUPS.iter().map(|s| s.to_string()).collect(),
        },
    };
    let shared_groups: Vec<&String> = policy.groups.iter().filter(|g| server_groups.contains(g)).collect();

    if version == TlsVersion::Tls13 {
        if shared_groups.is_empty() {
            return Some(fail(ErrorClass::NoSharedGroup, "groups"));
        }
        let server_suites: Vec<String> =
            profile.tls13_suites.clone().unwrap_or_else(|| TLS13_SUITES.iter().map(|s| s.to_string()).collect());
        if !policy.tls13_suites.iter().any(|s| server_suites.contains(s)) {
            return Some(fail(ErrorClass::NoSharedCipher, "tls13_suites"));
        }
        // The key share is the client's first group; else the server asks for a shared one.
        let key_share = policy.groups.first().filter(|g| server_groups.contains(g));
        let chosen = key_share
            .or_else(|| server_groups.iter().find(|g| policy.groups.contains(g)))
            .expect("shared groups exist");
        let kx = match report_format::Group::for_name(chosen).and_then(|g| g.ffdhe()) {
            Some(dh) => format!("ffdhe-{}", dh.bits()),
            None => "ecdhe".into(),
        };
        return Some(connected(version.protocol_name(), &kx, "groups"));
    }

    let shared_ec = shared_groups.iter().any(|g| is_ec(g));
    let server_suites: Option<&Vec<String>> = profile.ciphers.as_ref();
    let usable = |suite: &str| -> bool {
        let offered_by_server = match server_suites {
            Some(list) => list.iter().any(|s| s == suite),
            None => match backend {
                TlsBackend::Openssl => true,
                TlsBackend::Rustls => report_format::profile::RUSTLS_TLS12_SUITES.contains(&suite),
            },
        };
        let cert_ok =
            if suite.contains("_ECDSA_") { profile.cert == CertKind::Ecdsa } else { profile.cert == CertKind::Rsa };
        let kx_ok = if suite.starts_with("TLS_ECDHE_") {
            shared_ec
        } else if suite.starts_with("TLS_DHE_") {
            profile.dh.is_some()
        } else {
            true
        };
        let version_ok = version == TlsVersion::Tls12 || suite.ends_with("_CBC_SHA");
        offered_by_server && cert_ok && kx_ok && version_ok
    };
    let Some(suite) = policy.tls12_suites.iter().find(|s| usable(s)) else {
        return Some(fail(ErrorClass::NoSharedCipher, "tls12_suites"));
    };
    let protocol = version.protocol_name().to_string();
    let legacy = policy.legacy_versions.contains(&version);
    if suite.starts_with("TLS_RSA_") {
        // No ServerKeyExchange, so no signature for a legacy version to fail on.
        return Some(connected(&protocol, "rsa", "tls12_suites"));
    }
    if suite.starts_with("TLS_ECDHE_") {
        if legacy {
            return Some(fail(ErrorClass::LegacySigalg, "legacy_versions"));
        }
        return Some(connected(&protocol, "ecdhe", "tls12_suites"));
    }
    // DHE. Which prime is served: a server that lists RFC 7919 groups the client also offers
    // may serve one of those instead of its own (OpenSSL 3 was seen doing both, depending on
    // the rest of its configuration; rustls picks in the client's order among its groups, where
    // our backend registers a private prime under every name). The oracle accepts any of them.
    let dh = profile.dh.expect("a DHE suite is usable only with a DH group");
    let listed_ffdhe: Vec<DhGroup> = profile
        .groups
        .iter()
        .flatten()
        .filter(|g| policy.groups.iter().any(|c| c == g.name()))
        .filter_map(|g| g.ffdhe())
        .collect();
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
    Some(first)
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
        _ => false,
    };
    match observed {
        Outcome::Skipped { .. } | Outcome::HarnessError { .. } | Outcome::Unsupported { .. } => None,
        // The server refused its own configuration: that says nothing about the client.
        Outcome::Failed { class: ErrorClass::ServerConfigRejected, .. } => None,
        _ => Some(matches(&prediction.outcome) || prediction.or.iter().any(matches)),
    }
}

/// The policy field a disagreement points at: what the observation says about the stack.
pub fn field_to_check(prediction: &Prediction, observed: &Outcome) -> &'static str {
    match observed {
        Outcome::Failed { class, .. } => match class {
            ErrorClass::DhTooSmall => "dh_min_bits",
            ErrorClass::DhTooLarge => "dh_max_bits",
            ErrorClass::UnofferedGroup => "dh_custom_primes",
            ErrorClass::DhInvalid | ErrorClass::DhInvalidAccepted => "dh_validates_primes",
            ErrorClass::ProtocolVersion => "versions",
            ErrorClass::LegacySigalg => "legacy_versions",
            ErrorClass::NoSharedGroup => "groups",
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
        let class = |pr: Option<Prediction>| match pr.unwrap().outcome {
            Predicted::Failed { class } => class.to_string(),
            Predicted::Connected { kx, .. } => kx.join("|"),
        };
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

    #[test]
    fn kx_families() {
        assert_eq!(kx_family("TLSv1.3", Some("x25519"), None), "ecdhe");
        assert_eq!(kx_family("TLSv1.3", Some("ffdhe2048"), Some(2048)), "ffdhe-2048");
        assert_eq!(kx_family("TLSv1.2", None, Some(1024)), "dhe-1024");
        assert_eq!(kx_family("TLSv1.2", None, None), "rsa");
    }
}
