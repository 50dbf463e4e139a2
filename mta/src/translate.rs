//! What every MTA's translation shares: the prepared launch (program, environment, namespaces,
//! log), the directories it may write, the run's certificates, and the spellings of protocol
//! versions, suites and groups in OpenSSL's and GnuTLS's words. A setting an MTA cannot express
//! is [`Prepare::Unsupported`], never silently dropped. Translations are pure enough to test
//! without the extracted MTAs: configuration in, configuration text out.

use crate::namespace::NsPlan;
use report_format::{Group, ServerProfile, TlsVersion};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the daemon's log is read from.
#[derive(Debug, Clone)]
pub enum LogPlan {
    File(PathBuf),
    Stderr,
    /// Our syslog socket at this path (reached as `/dev/log` in the daemon's namespace).
    Syslog(PathBuf),
}

/// A daemon ready to start.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub ns: NsPlan,
    pub log: LogPlan,
    /// The MTA's settings as written, for the report (`key`, `value`).
    pub settings: Vec<(String, String)>,
    /// A file its standard input is read from (a message handed to a one-shot sender).
    pub stdin: Option<PathBuf>,
    /// The group it runs as, when it checks it is "setgid" to one (smtpctl).
    pub gid: Option<u32>,
}

/// Why a profile did not become a daemon.
#[derive(Debug, Clone)]
pub enum Prepare {
    /// The MTA cannot express this setting: the profile's cells say so.
    Unsupported(String),
    /// Writing the configuration failed.
    Io(String),
}

pub type Result<T> = std::result::Result<T, Prepare>;

impl From<std::io::Error> for Prepare {
    fn from(e: std::io::Error) -> Self {
        Prepare::Io(e.to_string())
    }
}

/// The run's test PKI as an MTA needs it for one profile: the CA, the leaf certificate and key
/// of the profile's kind, the profile's DH group as PEM, and the name the server answers as.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The profile's DH group (name, PEM text), if it has one.
    pub dh: Option<(String, String)>,
    /// The host name the server answers as (`mx.test`).
    pub server_name: String,
}

/// What a translation works with.
pub struct Dirs<'a> {
    /// This MTA's extracted root.
    pub root: &'a Path,
    /// Extracted helper libraries (`usr/lib/x86_64-linux-gnu` inside).
    pub libs: &'a Path,
    /// The profile's own work directory (created, empty).
    pub work: &'a Path,
    pub port: u16,
    pub creds: &'a Credentials,
}

impl Dirs<'_> {
    pub fn lib_path(&self) -> PathBuf {
        self.libs.join("usr/lib/x86_64-linux-gnu")
    }

    /// Make a directory under the work directory with a mode (and owner).
    pub fn dir(&self, rel: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<PathBuf> {
        let p = self.work.join(rel);
        std::fs::create_dir_all(&p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
        }
        Ok(p)
    }

    /// Write a file under the work directory with a mode.
    pub fn file(&self, rel: &str, text: &str, mode: u32) -> Result<PathBuf> {
        let p = self.work.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(p)
    }

    /// Copy the profile's certificate and key (and the CA) into `tls/`, the key readable by
    /// `owner` only.
    pub fn tls_files(&self, owner: Option<(u32, u32)>) -> Result<(PathBuf, PathBuf)> {
        let dir = self.dir("tls", 0o755, None)?;
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::copy(&self.creds.cert, &cert)?;
        std::fs::copy(&self.creds.key, &key)?;
        std::fs::copy(&self.creds.ca_cert, dir.join("ca.pem"))?;
        std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
        }
        Ok((cert, key))
    }

    /// The profile's DH group as a PEM file, if it has one.
    pub fn dh_file(&self) -> Result<Option<PathBuf>> {
        match &self.creds.dh {
            Some((name, pem)) => Ok(Some(self.file(&format!("tls/{name}.pem"), pem, 0o644)?)),
            None => Ok(None),
        }
    }

    /// An `openssl.cnf` that sets the security level (and keeps Debian's minimum protocol).
    pub fn openssl_cnf(&self, level: u8) -> Result<PathBuf> {
        let text = format!(
            "# starttls-matrix: the MTA's own OpenSSL configuration (Debian's, with security level {level})\n\
             openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n\
             system_default = system_default_sect\n[system_default_sect]\nCipherString = DEFAULT:@SECLEVEL={level}\n"
        );
        self.file("openssl.cnf", &text, 0o644)
    }
}

pub fn unsupported<T>(why: impl Into<String>) -> Result<T> {
    Err(Prepare::Unsupported(why.into()))
}

/// The versions a profile allows, lowest first.
pub fn versions(profile: &ServerProfile) -> Vec<TlsVersion> {
    [TlsVersion::Tls10, TlsVersion::Tls11, TlsVersion::Tls12, TlsVersion::Tls13]
        .into_iter()
        .filter(|v| (profile.min_tls..=profile.max_tls).contains(v))
        .collect()
}

/// The profile's TLS ≤ 1.2 suites in OpenSSL's names.
pub fn openssl_ciphers(profile: &ServerProfile) -> Result<Option<String>> {
    match &profile.ciphers {
        None => Ok(None),
        Some(list) => openssl_ext::openssl_cipher_list(list).map(Some).map_err(Prepare::Unsupported),
    }
}

/// OpenSSL's name of a group (`prime256v1` for secp256r1…).
pub fn openssl_group(g: Group) -> &'static str {
    openssl_ext::openssl_group_name(g.name())
}

/// GnuTLS's priority-string name of a group.
pub fn gnutls_group(g: Group) -> &'static str {
    match g {
        Group::X25519 => "GROUP-X25519",
        Group::X448 => "GROUP-X448",
        Group::Secp256r1 => "GROUP-SECP256R1",
        Group::Secp384r1 => "GROUP-SECP384R1",
        Group::Secp521r1 => "GROUP-SECP521R1",
        Group::Ffdhe2048 => "GROUP-FFDHE2048",
        Group::Ffdhe3072 => "GROUP-FFDHE3072",
        Group::Ffdhe4096 => "GROUP-FFDHE4096",
        Group::Ffdhe6144 => "GROUP-FFDHE6144",
        Group::Ffdhe8192 => "GROUP-FFDHE8192",
        // GnuTLS ≥ 3.8.8 (Debian 12 has 3.7.9; profiles with it are refused at load).
        Group::X25519Mlkem768 => "GROUP-X25519-MLKEM768",
    }
}

/// GnuTLS's priority-string name of a version.
pub fn gnutls_version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls10 => "VERS-TLS1.0",
        TlsVersion::Tls11 => "VERS-TLS1.1",
        TlsVersion::Tls12 => "VERS-TLS1.2",
        TlsVersion::Tls13 => "VERS-TLS1.3",
    }
}

/// An IANA TLS ≤ 1.2 suite split into GnuTLS's key exchange, cipher and MAC names.
pub fn gnutls_suite(iana: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let rest = iana.strip_prefix("TLS_")?;
    let (kx, rest) = rest.split_once("_WITH_")?;
    let kx = match kx {
        "ECDHE_RSA" => "ECDHE-RSA",
        "ECDHE_ECDSA" => "ECDHE-ECDSA",
        "DHE_RSA" => "DHE-RSA",
        "DHE_DSS" => "DHE-DSS",
        "RSA" => "RSA",
        _ => return None,
    };
    let (cipher, mac) = match rest {
        "AES_128_GCM_SHA256" => ("AES-128-GCM", "AEAD"),
        "AES_256_GCM_SHA384" => ("AES-256-GCM", "AEAD"),
        "CHACHA20_POLY1305_SHA256" => ("CHACHA20-POLY1305", "AEAD"),
        "AES_128_CCM" => ("AES-128-CCM", "AEAD"),
        "AES_256_CCM" => ("AES-256-CCM", "AEAD"),
        "AES_128_CBC_SHA" => ("AES-128-CBC", "SHA1"),
        "AES_256_CBC_SHA" => ("AES-256-CBC", "SHA1"),
        "AES_128_CBC_SHA256" => ("AES-128-CBC", "SHA256"),
        "AES_256_CBC_SHA256" => ("AES-256-CBC", "SHA256"),
        "3DES_EDE_CBC_SHA" => ("3DES-CBC", "SHA1"),
        _ => return None,
    };
    Some((kx, cipher, mac))
}

/// Push `item` unless it is there.
pub fn push_unique<'a>(list: &mut Vec<&'a str>, item: &'a str) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnutls_suites_split() {
        assert_eq!(gnutls_suite("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"), Some(("DHE-RSA", "AES-128-GCM", "AEAD")));
        assert_eq!(gnutls_suite("TLS_RSA_WITH_AES_256_CBC_SHA"), Some(("RSA", "AES-256-CBC", "SHA1")));
        assert_eq!(gnutls_suite("TLS_AES_128_GCM_SHA256"), None);
    }
}
