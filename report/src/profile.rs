//! A server profile: one server implementation (backend) plus one TLS configuration. Parsed from
//! a matrix entry or JSON, then checked so that a profile that cannot mean anything (a DH group
//! on a TLS 1.3-only profile, a suite the backend does not have) never reaches a server. Checks
//! that need a TLS library (is this suite name known to OpenSSL?) are the server's, at load time.

use crate::dh::DhGroup;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A built-in server's TLS implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsBackend {
    /// The system OpenSSL through the `openssl` crate, with a permissive security callback so
    /// that any DH size can be served.
    Openssl,
    /// rustls 0.23 with the ring provider plus our TLS 1.2 DHE suites and finite-field groups.
    Rustls,
}

impl TlsBackend {
    pub const ALL: [TlsBackend; 2] = [TlsBackend::Openssl, TlsBackend::Rustls];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsBackend::Openssl => "openssl",
            TlsBackend::Rustls => "rustls",
        }
    }
}

/// One of the real MTAs the matrix runs (as a server, and as a sender), from its extracted
/// Debian package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mta {
    /// Debian 12's Postfix (OpenSSL).
    Postfix,
    /// Debian 12's Exim (GnuTLS).
    Exim,
    /// Debian 12's sendmail (OpenSSL).
    Sendmail,
    /// OpenSMTPD 7.4 (libtls on OpenSSL) from bookworm-backports.
    Opensmtpd,
}

impl Mta {
    pub const ALL: [Mta; 4] = [Mta::Postfix, Mta::Exim, Mta::Sendmail, Mta::Opensmtpd];

    pub fn name(self) -> &'static str {
        match self {
            Mta::Postfix => "postfix",
            Mta::Exim => "exim",
            Mta::Sendmail => "sendmail",
            Mta::Opensmtpd => "opensmtpd",
        }
    }

    /// The TLS library family it is built on.
    pub fn library(self) -> Library {
        match self {
            Mta::Postfix | Mta::Sendmail | Mta::Opensmtpd => Library::Openssl,
            Mta::Exim => Library::Gnutls,
        }
    }
}

impl fmt::Display for Mta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TLS library family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Library {
    Openssl,
    Gnutls,
    Rustls,
    /// Go's crypto/tls.
    Go,
    /// Java's JSSE.
    Jsse,
}

impl Library {
    pub const ALL: [Library; 5] = [Library::Openssl, Library::Gnutls, Library::Rustls, Library::Go, Library::Jsse];

    pub fn as_str(self) -> &'static str {
        match self {
            Library::Openssl => "openssl",
            Library::Gnutls => "gnutls",
            Library::Rustls => "rustls",
            Library::Go => "go",
            Library::Jsse => "jsse",
        }
    }
}

/// How a stack gets its TLS library, which decides whether a candidate build can be swapped
/// under it (`compare --candidate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Linkage {
    /// A shared object the dynamic loader finds (`libssl.so.3`): `LD_LIBRARY_PATH` swaps it.
    Dynamic,
    /// Linked into the program: nothing swaps it but a rebuild.
    Static,
    /// A Rust crate compiled into a program we build (rustls): a candidate is a rebuild against
    /// its checkout.
    Built,
}

impl Linkage {
    pub fn as_str(self) -> &'static str {
        match self {
            Linkage::Dynamic => "dynamic",
            Linkage::Static => "static",
            Linkage::Built => "built",
        }
    }
}

/// A stack's TLS library and how it links it, as the matrix declares it (`library = "openssl"`,
/// `linkage = "dynamic"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkedLibrary {
    pub library: Library,
    pub linkage: Linkage,
}

impl fmt::Display for LinkedLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.library.as_str(), self.linkage.as_str())
    }
}

/// What serves a profile: the built-in server on one of its TLS backends, or a real MTA.
/// Written as one word in matrix files (`backend = "openssl" | "rustls" | "postfix" | …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Backend {
    Builtin(TlsBackend),
    Mta(Mta),
}

impl Backend {
    pub const ALL: [Backend; 6] = [
        Backend::Builtin(TlsBackend::Openssl),
        Backend::Builtin(TlsBackend::Rustls),
        Backend::Mta(Mta::Postfix),
        Backend::Mta(Mta::Exim),
        Backend::Mta(Mta::Sendmail),
        Backend::Mta(Mta::Opensmtpd),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Builtin(b) => b.as_str(),
            Backend::Mta(m) => m.name(),
        }
    }

    /// The real MTA behind this backend, if it is one (else it is the built-in server).
    pub fn mta(self) -> Option<Mta> {
        match self {
            Backend::Mta(m) => Some(m),
            Backend::Builtin(_) => None,
        }
    }

    /// The TLS library family that serves it.
    pub fn library(self) -> Library {
        match self {
            Backend::Builtin(TlsBackend::Openssl) => Library::Openssl,
            Backend::Builtin(TlsBackend::Rustls) => Library::Rustls,
            Backend::Mta(m) => m.library(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Backend {
    type Error = String;
    fn try_from(name: String) -> Result<Backend, String> {
        Backend::ALL.into_iter().find(|b| b.as_str() == name).ok_or_else(|| {
            let known: Vec<&str> = Backend::ALL.iter().map(|b| b.as_str()).collect();
            format!("unknown backend `{name}`, expected one of {}", known.join(", "))
        })
    }
}

impl From<Backend> for String {
    fn from(b: Backend) -> String {
        b.as_str().to_string()
    }
}

/// OpenSMTPD's `pki … dhe` setting: it takes no DH file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DheMode {
    /// No DHE suites (OpenSMTPD's default).
    None,
    /// OpenSSL picks a group to match the key (2048 bits for RSA 2048).
    Auto,
    /// A 1024-bit group, served only where the OpenSSL security level allows it (≤ 1).
    Legacy,
}

impl DheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DheMode::None => "none",
            DheMode::Auto => "auto",
            DheMode::Legacy => "legacy",
        }
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.0")]
    Tls10,
    #[serde(rename = "1.1")]
    Tls11,
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// The spelling OpenSSL and the reports use: `TLSv1`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`.
    pub fn protocol_name(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLSv1",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol_name())
    }
}

/// A named group (IANA TLS Supported Groups names) for ECDHE, TLS 1.3 or RFC 7919 FFDHE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    X25519,
    X448,
    Secp256r1,
    Secp384r1,
    Secp521r1,
    Ffdhe2048,
    Ffdhe3072,
    Ffdhe4096,
    Ffdhe6144,
    Ffdhe8192,
    /// The post-quantum hybrid of X25519 and ML-KEM-768 (codepoint 0x11EC), TLS 1.3 only.
    #[serde(rename = "X25519MLKEM768")]
    X25519Mlkem768,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::X25519 => "x25519",
            Group::X448 => "x448",
            Group::Secp256r1 => "secp256r1",
            Group::Secp384r1 => "secp384r1",
            Group::Secp521r1 => "secp521r1",
            Group::Ffdhe2048 => "ffdhe2048",
            Group::Ffdhe3072 => "ffdhe3072",
            Group::Ffdhe4096 => "ffdhe4096",
            Group::Ffdhe6144 => "ffdhe6144",
            Group::Ffdhe8192 => "ffdhe8192",
            Group::X25519Mlkem768 => "X25519MLKEM768",
        }
    }

    /// The group of an IANA name.
    pub fn for_name(name: &str) -> Option<Group> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }

    /// The RFC 7919 name of a DH group, if it is one.
    pub fn for_dh(dh: DhGroup) -> Option<Group> {
        match dh {
            DhGroup::Ffdhe2048 => Some(Group::Ffdhe2048),
            DhGroup::Ffdhe3072 => Some(Group::Ffdhe3072),
            DhGroup::Ffdhe4096 => Some(Group::Ffdhe4096),
            DhGroup::Ffdhe6144 => Some(Group::Ffdhe6144),
            DhGroup::Ffdhe8192 => Some(Group::Ffdhe8192),
            DhGroup::Custom512
            | DhGroup::Oakley768
            | DhGroup::Oakley1024
            | DhGroup::Modp1536
            | DhGroup::Modp4096
            | DhGroup::Custom2048
            | DhGroup::Custom2048G5
            | DhGroup::Composite2048
            | DhGroup::SmallSubgroup2048 => None,
        }
    }

    /// The DH group behind an RFC 7919 name.
    pub fn ffdhe(self) -> Option<DhGroup> {
        match self {
            Group::Ffdhe2048 => Some(DhGroup::Ffdhe2048),
            Group::Ffdhe3072 => Some(DhGroup::Ffdhe3072),
            Group::Ffdhe4096 => Some(DhGroup::Ffdhe4096),
            Group::Ffdhe6144 => Some(DhGroup::Ffdhe6144),
            Group::Ffdhe8192 => Some(DhGroup::Ffdhe8192),
            Group::X25519
            | Group::X448
            | Group::Secp256r1
            | Group::Secp384r1
            | Group::Secp521r1
            | Group::X25519Mlkem768 => None,
        }
    }

    /// Whether the group exists only in TLS 1.3 (a post-quantum hybrid).
    pub fn tls13_only(self) -> bool {
        self == Group::X25519Mlkem768
    }
}

/// The server's leaf certificate (all issued by the run's test CA, for `mx.test`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertKind {
    /// RSA 2048 signed with SHA-256, needed by `*_RSA_*` suites.
    #[default]
    Rsa,
    /// ECDSA P-256 signed with SHA-256, needed by `*_ECDSA_*` suites.
    Ecdsa,
    /// RSA 1024 signed with SHA-256: below OpenSSL's security level 2 (`ee key too small`).
    Rsa1024,
    /// RSA 2048 whose signature by the CA is SHA-1 (`sha1WithRSAEncryption`).
    RsaSha1,
}

impl CertKind {
    pub const ALL: [CertKind; 4] = [CertKind::Rsa, CertKind::Ecdsa, CertKind::Rsa1024, CertKind::RsaSha1];

    /// The name used in matrix files.
    pub fn name(self) -> &'static str {
        match self {
            CertKind::Rsa => "rsa",
            CertKind::Ecdsa => "ecdsa",
            CertKind::Rsa1024 => "rsa1024",
            CertKind::RsaSha1 => "rsa-sha1",
        }
    }

    /// Whether the leaf's key is RSA (for `*_RSA_*` suites) rather than ECDSA.
    pub fn is_rsa(self) -> bool {
        match self {
            CertKind::Rsa | CertKind::Rsa1024 | CertKind::RsaSha1 => true,
            CertKind::Ecdsa => false,
        }
    }
}

fn tls12() -> TlsVersion {
    TlsVersion::Tls12
}
fn tls13() -> TlsVersion {
    TlsVersion::Tls13
}

/// One server profile as written in a matrix (`[[server]]`) or as JSON for `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerProfile {
    /// Unique in a matrix; no `/` (cell ids are `client/server`).
    pub id: String,
    /// One line for the published table: what real server this stands for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub backend: Backend,
    #[serde(default = "tls12")]
    pub min_tls: TlsVersion,
    #[serde(default = "tls13")]
    pub max_tls: TlsVersion,
    /// TLS ≤ 1.2 cipher suites by IANA name, in preference order; absent = the backend's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
    /// TLS 1.3 cipher suites by IANA name; absent = the backend's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls13_suites: Option<Vec<String>>,
    /// Named groups (ECDHE, TLS 1.3, RFC 7919) in preference order; absent = the backend's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    /// The DH group served with TLS ≤ 1.2 DHE suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh: Option<DhGroup>,
    #[serde(default)]
    pub cert: CertKind,
    /// How the server misbehaves (a hostile STARTTLS server), if it does. Built-in server only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<crate::fault::Fault>,
    /// The OpenSSL security level in the MTA's own `openssl.cnf` (sendmail: bind-mounted over
    /// `/etc/ssl/openssl.cnf` in its mount namespace; OpenSMTPD: `OPENSSL_CONF`). Absent = the
    /// system's (Debian 12: level 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<u8>,
    /// OpenSMTPD's `pki … dhe` mode; absent = OpenSMTPD's default (`none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhe: Option<DheMode>,
    /// A rare encoding the built-in server makes happen in every handshake (a forced profile,
    /// `rare-*`); absent = the rustls backend keeps every rare encoding out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<crate::encoding::RareCase>,
    /// The table the row goes in; absent = decided by `force` or the fault (neither: TLS
    /// configurations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<Section>,
    /// A candidate TLS library's directory, first on the MTA's `LD_LIBRARY_PATH` (set by
    /// `compare --candidate` on a twin of the profile; never read from a matrix).
    #[serde(skip)]
    pub library_dir: Option<std::path::PathBuf>,
}

/// The tables of a report, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// A server's TLS configuration: DH sizes, groups, versions, suites, MTAs as shipped.
    Tls,
    /// Servers a client update breaks: large ClientHellos, HelloRetryRequest, version and length
    /// intolerance, weak certificates, no EMS.
    ClientUpdates,
    /// Forced rare encodings: the one-handshake-in-256 cases made to happen every time.
    RareEncodings,
    /// Hostile or broken SMTP dialogue around STARTTLS.
    Starttls,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Tls, Section::ClientUpdates, Section::RareEncodings, Section::Starttls];

    /// The table's title.
    pub fn title(self) -> &'static str {
        match self {
            Section::Tls => "TLS configurations",
            Section::ClientUpdates => "Client updates that break servers",
            Section::RareEncodings => "Rare encodings, forced (one handshake in 256, every time)",
            Section::Starttls => "STARTTLS behaviour (hostile servers)",
        }
    }
}

/// A profile that cannot mean anything; `field` names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProfileError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> ProfileError {
    ProfileError { field, message: message.into() }
}

/// The TLS ≤ 1.2 suites the rustls backend can serve: ring's ECDHE suites and our DHE ones.
pub const RUSTLS_TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// The TLS 1.3 suites the rustls backend can serve.
pub const RUSTLS_TLS13_SUITES: &[&str] =
    &["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"];

impl ServerProfile {
    /// Check that the profile means something for its backend.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.id.is_empty() || self.id.contains('/') || self.id.chars().any(char::is_whitespace) {
            return Err(err("id", format!("server id {:?} must be non-empty, without '/' or spaces", self.id)));
        }
        if self.min_tls > self.max_tls {
            return Err(err("min_tls", format!("min_tls {} is above max_tls {}", self.min_tls, self.max_tls)));
        }
        let tls13_only = self.min_tls == TlsVersion::Tls13;
        if tls13_only && self.dh.is_some() {
            return Err(err(
                "dh",
                "`dh` has no effect on a TLS 1.3-only profile: TLS 1.3 negotiates named groups; use groups = [\"ffdhe2048\"] instead, or set min_tls = \"1.2\"",
            ));
        }
        if tls13_only && self.ciphers.is_some() {
            return Err(err(
                "ciphers",
                "`ciphers` lists TLS ≤ 1.2 suites, but the profile is TLS 1.3-only; use tls13_suites",
            ));
        }
        if self.max_tls < TlsVersion::Tls13 && self.tls13_suites.is_some() {
            return Err(err("tls13_suites", "`tls13_suites` is set but max_tls is below 1.3"));
        }
        for (field, list) in [("ciphers", &self.ciphers), ("tls13_suites", &self.tls13_suites)] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                return Err(err(field, format!("`{field}` is empty: leave it out for the backend's default")));
            }
        }
        if self.groups.as_ref().is_some_and(Vec::is_empty) {
            return Err(err("groups", "`groups` is empty: leave it out for the backend's default"));
        }
        let offers_dhe = self.ciphers.as_ref().is_some_and(|c| c.iter().any(|s| s.starts_with("TLS_DHE_")));
        let dhe_without_file =
            self.backend == Backend::Mta(Mta::Opensmtpd) && matches!(self.dhe, Some(DheMode::Auto | DheMode::Legacy));
        if offers_dhe && self.dh.is_none() && !dhe_without_file {
            return Err(err("dh", "a TLS_DHE_* suite is listed but no `dh` group is set (e.g. dh = \"ffdhe2048\")"));
        }
        if self.fault.is_some() && self.backend.mta().is_some() {
            return Err(err(
                "fault",
                format!("`fault` needs the built-in server; {} behaves as it was built to", self.backend.as_str()),
            ));
        }
        if self.security_level.is_some() && !matches!(self.backend, Backend::Mta(Mta::Sendmail | Mta::Opensmtpd)) {
            return Err(err(
                "security_level",
                "`security_level` sets the openssl.cnf of sendmail or OpenSMTPD; the built-in server serves any DH size, Postfix sets its own level and Exim uses GnuTLS",
            ));
        }
        if self.security_level.is_some_and(|l| l > 5) {
            return Err(err("security_level", "OpenSSL security levels are 0 to 5"));
        }
        if self.dhe.is_some() && self.backend != Backend::Mta(Mta::Opensmtpd) {
            return Err(err("dhe", "`dhe` is OpenSMTPD's DHE mode; other servers take `dh = \"<group>\"`"));
        }
        if let Some(g) = self.groups.iter().flatten().find(|g| g.tls13_only())
            && self.backend != Backend::Builtin(TlsBackend::Rustls)
        {
            return Err(err(
                "groups",
                format!(
                    "{} needs backend = \"rustls\" (aws-lc-rs): the system OpenSSL 3.0 and Debian 12's MTAs do not have it",
                    g.name()
                ),
            ));
        }
        if self.fault == Some(crate::fault::Fault::NoEms)
            && (self.backend != Backend::Builtin(TlsBackend::Openssl) || self.max_tls != TlsVersion::Tls12)
        {
            return Err(err(
                "fault",
                "fault no-ems needs backend = \"openssl\" (rustls always offers EMS) and max_tls = \"1.2\" (TLS 1.3 has no EMS to leave out)",
            ));
        }
        if self.fault == Some(crate::fault::Fault::StripsSecretLeadingZero)
            && self.force != Some(crate::encoding::RareCase::SecretLeadingZero)
        {
            return Err(err(
                "fault",
                "fault strips-secret-leading-zero needs force = \"secret-leading-zero\" (a secret with a zero byte to strip)",
            ));
        }
        if self.fault == Some(crate::fault::Fault::NoHrr)
            && (self.groups.is_none() || self.max_tls != TlsVersion::Tls13)
        {
            return Err(err(
                "fault",
                "fault no-hrr needs `groups` (the key shares the server can take) and max_tls = \"1.3\"",
            ));
        }
        if let Some(case) = self.force {
            self.validate_force(case)?;
        }
        match self.backend {
            Backend::Builtin(TlsBackend::Rustls) => self.validate_rustls(),
            Backend::Builtin(TlsBackend::Openssl) | Backend::Mta(_) => Ok(()),
        }
    }

    /// A forced case needs the backend that chooses its own keys and signatures, and a profile
    /// where the case can happen.
    fn validate_force(&self, case: crate::encoding::RareCase) -> Result<(), ProfileError> {
        use crate::encoding::RareCase as R;
        let name = case.name();
        if self.backend != Backend::Builtin(TlsBackend::Rustls) {
            return Err(err(
                "force",
                format!(
                    "force = \"{name}\" needs backend = \"rustls\": only the built-in rustls backend chooses its own keys and signatures"
                ),
            ));
        }
        let strips = self.fault == Some(crate::fault::Fault::StripsSecretLeadingZero);
        if self.fault.is_some() && !(strips && case == R::SecretLeadingZero) {
            return Err(err(
                "force",
                "a forced profile carries no fault but strips-secret-leading-zero (with force = \"secret-leading-zero\"): one thing at a time",
            ));
        }
        match case {
            R::SecretLeadingZero => {
                let one_group = self.groups.as_ref().filter(|g| g.len() == 1).map(|g| g[0]);
                let choosable = one_group.is_some_and(|g| {
                    g.ffdhe().is_some() || matches!(g, Group::Secp256r1 | Group::Secp384r1 | Group::Secp521r1)
                });
                if self.min_tls != TlsVersion::Tls13 || !choosable {
                    return Err(err(
                        "force",
                        format!(
                            "force = \"{name}\" needs min_tls = \"1.3\" (in TLS 1.2 the client picks its key last) and one finite-field or NIST group, e.g. groups = [\"ffdhe2048\"]"
                        ),
                    ));
                }
            }
            R::PublicLeadingZeroMinimal | R::PublicLeadingZeroPadded => {
                let dhe_only = self.ciphers.as_ref().is_some_and(|c| c.iter().all(|s| s.starts_with("TLS_DHE_")));
                if self.max_tls != TlsVersion::Tls12 || self.dh.is_none() || !dhe_only {
                    return Err(err(
                        "force",
                        format!("force = \"{name}\" needs max_tls = \"1.2\", a `dh` group and TLS_DHE_* suites only"),
                    ));
                }
            }
            R::SignatureLeadingZero => {
                if !self.cert.is_rsa() {
                    return Err(err("force", format!("force = \"{name}\" needs an RSA certificate (cert = \"rsa\")")));
                }
            }
            R::EcdsaShortR | R::EcdsaShortS => {
                if self.cert != CertKind::Ecdsa {
                    return Err(err("force", format!("force = \"{name}\" needs cert = \"ecdsa\"")));
                }
            }
        }
        Ok(())
    }

    fn validate_rustls(&self) -> Result<(), ProfileError> {
        if self.min_tls < TlsVersion::Tls12 {
            return Err(err("min_tls", "the rustls backend speaks TLS 1.2 and 1.3 only"));
        }
        let unknown = |list: &Option<Vec<String>>, known: &[&str]| {
            list.iter().flatten().find(|s| !known.contains(&s.as_str())).cloned()
        };
        if let Some(s) = unknown(&self.ciphers, RUSTLS_TLS12_SUITES) {
            return Err(err(
                "ciphers",
                format!("the rustls backend has no suite {s}; it has {}", RUSTLS_TLS12_SUITES.join(", ")),
            ));
        }
        if let Some(s) = unknown(&self.tls13_suites, RUSTLS_TLS13_SUITES) {
            return Err(err("tls13_suites", format!("the rustls backend has no TLS 1.3 suite {s}")));
        }
        if let Some(g) = self.groups.iter().flatten().find(|g| matches!(g, Group::X448)) {
            return Err(err("groups", format!("the rustls backend has no group {}", g.name())));
        }
        Ok(())
    }

    /// The table the profile's row goes in.
    pub fn section(&self) -> Section {
        match (self.section, self.force, self.fault) {
            (Some(s), _, _) => s,
            (None, Some(_), _) => Section::RareEncodings,
            (None, None, Some(f)) if f.in_handshake() => Section::ClientUpdates,
            (None, None, Some(_)) => Section::Starttls,
            (None, None, None) => Section::Tls,
        }
    }

    /// Whether the profile can negotiate TLS ≤ 1.2.
    pub fn speaks_tls12_or_below(&self) -> bool {
        self.min_tls <= TlsVersion::Tls12
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> ServerProfile {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn dh_on_a_tls13_only_profile_is_rejected() {
        let p = profile(serde_json::json!({"id": "x", "backend": "openssl", "min_tls": "1.3", "dh": "ffdhe2048"}));
        assert_eq!(p.validate().unwrap_err().field, "dh");
    }

    #[test]
    fn dhe_suites_need_a_group() {
        let p = profile(serde_json::json!({"id": "x", "backend": "openssl", "max_tls": "1.2",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]}));
        assert_eq!(p.validate().unwrap_err().field, "dh");
    }

    #[test]
    fn rustls_backend_limits() {
        let p = profile(serde_json::json!({"id": "x", "backend": "rustls", "min_tls": "1.0"}));
        assert_eq!(p.validate().unwrap_err().field, "min_tls");
        let p = profile(
            serde_json::json!({"id": "x", "backend": "rustls", "ciphers": ["TLS_RSA_WITH_AES_128_GCM_SHA256"]}),
        );
        assert_eq!(p.validate().unwrap_err().field, "ciphers");
        let p = profile(serde_json::json!({"id": "x", "backend": "rustls", "groups": ["x448"]}));
        assert_eq!(p.validate().unwrap_err().field, "groups");
    }

    #[test]
    fn a_forced_case_needs_a_profile_where_it_can_happen() {
        let ok = |json| profile(json).validate().is_ok();
        let field = |json| profile(json).validate().unwrap_err().field;
        assert!(ok(serde_json::json!({"id": "rare-x", "backend": "rustls", "min_tls": "1.3",
            "groups": ["ffdhe2048"], "force": "secret-leading-zero"})));
        assert!(ok(serde_json::json!({"id": "rare-x", "backend": "rustls", "min_tls": "1.3",
            "groups": ["secp521r1"], "force": "secret-leading-zero"})));
        // Not on OpenSSL, which picks its own keys; not in TLS 1.2, where the client answers last.
        assert_eq!(
            field(serde_json::json!({"id": "x", "backend": "openssl", "min_tls": "1.3",
            "groups": ["ffdhe2048"], "force": "secret-leading-zero"})),
            "force"
        );
        assert_eq!(
            field(serde_json::json!({"id": "x", "backend": "rustls",
            "groups": ["ffdhe2048"], "force": "secret-leading-zero"})),
            "force"
        );
        assert_eq!(
            field(serde_json::json!({"id": "x", "backend": "rustls", "min_tls": "1.3",
            "groups": ["x25519"], "force": "secret-leading-zero"})),
            "force"
        );
        assert!(ok(serde_json::json!({"id": "x", "backend": "rustls", "max_tls": "1.2", "dh": "ffdhe2048",
            "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "force": "public-leading-zero-minimal"})));
        assert_eq!(
            field(serde_json::json!({"id": "x", "backend": "rustls", "max_tls": "1.2", "dh": "ffdhe2048",
            "force": "public-leading-zero-padded"})),
            "force"
        );
        assert_eq!(field(serde_json::json!({"id": "x", "backend": "rustls", "force": "ecdsa-short-r"})), "force");
        assert!(ok(serde_json::json!({"id": "x", "backend": "rustls", "cert": "ecdsa", "force": "ecdsa-short-s"})));
        assert_eq!(
            field(serde_json::json!({"id": "x", "backend": "rustls", "cert": "ecdsa",
            "force": "signature-leading-zero"})),
            "force"
        );
        let forced = profile(serde_json::json!({"id": "x", "backend": "rustls", "force": "signature-leading-zero"}));
        assert_eq!(forced.section(), Section::RareEncodings);
    }

    #[test]
    fn unknown_keys_and_values_are_rejected() {
        let unknown = serde_json::json!({"id": "x", "backend": "openssl", "dh_bits": 512});
        assert!(serde_json::from_value::<ServerProfile>(unknown).is_err());
        let bad = serde_json::json!({"id": "x", "backend": "openssl", "dh": "dh512"});
        assert!(serde_json::from_value::<ServerProfile>(bad).is_err());
    }

    #[test]
    fn ids_cannot_hold_a_slash() {
        let p = profile(serde_json::json!({"id": "a/b", "backend": "openssl"}));
        assert_eq!(p.validate().unwrap_err().field, "id");
    }
}

#[cfg(test)]
mod backend_tests {
    use super::*;

    #[test]
    fn backends_are_one_word() {
        for b in Backend::ALL {
            assert_eq!(serde_json::to_value(b).unwrap(), serde_json::Value::String(b.as_str().into()));
            assert_eq!(serde_json::from_value::<Backend>(serde_json::to_value(b).unwrap()).unwrap(), b);
        }
        let e = serde_json::from_str::<Backend>("\"qmail\"").unwrap_err().to_string();
        assert!(e.contains("unknown backend `qmail`") && e.contains("opensmtpd"), "{e}");
        assert_eq!(Backend::Mta(Mta::Exim).library(), Library::Gnutls);
    }
}
