//! The run's test PKI: a CA and two leaf certificates (RSA 2048 and ECDSA P-256) for `mx.test`
//! and `127.0.0.1`, made with rcgen once per run into a directory of the run's own.

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, date_time_ymd,
};
use report_format::CertKind;
use std::path::{Path, PathBuf};

/// The name every built-in server answers to; clients send it as SNI and verify it.
pub const SERVER_NAME: &str = "mx.test";

/// Files of a generated test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub dir: PathBuf,
    /// The CA certificate clients trust (`--cafile`).
    pub ca_cert: PathBuf,
}

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generate a test key or certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("generate an RSA key with OpenSSL: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    #[error("write {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
}

fn rsa_key() -> Result<KeyPair, PkiError> {
    // ring cannot generate RSA keys; OpenSSL can, and rcgen signs with an imported one.
    let pem = PKey::from_rsa(Rsa::generate(2048)?)?.private_key_to_pem_pkcs8()?;
    Ok(KeyPair::from_pem_and_sign_algo(&String::from_utf8_lossy(&pem), &PKCS_RSA_SHA256)?)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, PkiError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|cause| PkiError::Write { path: path.clone(), cause })?;
    Ok(path)
}

impl TestPki {
    /// Make a CA and both leaves into `dir` (which must exist): `ca.pem`, `rsa.pem`,
    /// `rsa.key`, `ecdsa.pem`, `ecdsa.key`. About 0.1–0.3 s, mostly the two RSA keys.
    pub fn generate(dir: &Path) -> Result<TestPki, PkiError> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "starttls-matrix test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.not_before = date_time_ymd(2000, 1, 1);
        ca.not_after = date_time_ymd(2099, 12, 31);
        let ca_key = rsa_key()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let ca_path = write(dir, "ca.pem", &ca_cert.pem())?;

        for (kind, key) in
            [(CertKind::Rsa, rsa_key()?), (CertKind::Ecdsa, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)]
        {
            let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])?;
            leaf.distinguished_name.push(DnType::CommonName, SERVER_NAME);
            leaf.not_before = date_time_ymd(2000, 1, 1);
            leaf.not_after = date_time_ymd(2099, 12, 31);
            leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = leaf.signed_by(&key, &issuer)?;
            write(dir, &file_name(kind, "pem"), &cert.pem())?;
            write(dir, &file_name(kind, "key"), &key.serialize_pem())?;
        }
        Ok(TestPki { dir: dir.to_path_buf(), ca_cert: ca_path })
    }

    /// The leaf certificate file for a key type.
    pub fn cert(&self, kind: CertKind) -> PathBuf {
        self.dir.join(file_name(kind, "pem"))
    }

    /// The leaf's private key file (PKCS#8 PEM).
    pub fn key(&self, kind: CertKind) -> PathBuf {
        self.dir.join(file_name(kind, "key"))
    }
}

fn file_name(kind: CertKind, ext: &str) -> String {
    match kind {
        CertKind::Rsa => format!("rsa.{ext}"),
        CertKind::Ecdsa => format!("ecdsa.{ext}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509;

    #[test]
    fn leaves_verify_against_the_ca_for_mx_test() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        let ca = X509::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
        for kind in [CertKind::Rsa, CertKind::Ecdsa] {
            let leaf = X509::from_pem(&std::fs::read(pki.cert(kind)).unwrap()).unwrap();
            assert!(leaf.verify(&ca.public_key().unwrap()).unwrap(), "{kind:?} is signed by the CA");
            let sans: Vec<String> = leaf
                .subject_alt_names()
                .unwrap()
                .iter()
                .map(|n| n.dnsname().map(str::to_string).unwrap_or_else(|| format!("{:?}", n.ipaddress())))
                .collect();
            assert!(sans.contains(&SERVER_NAME.to_string()), "{sans:?}");
            assert!(sans.iter().any(|s| s.contains("[127, 0, 0, 1]")), "{sans:?}");
            let key = PKey::private_key_from_pem(&std::fs::read(pki.key(kind)).unwrap()).unwrap();
            assert!(leaf.public_key().unwrap().public_eq(&key));
        }
    }
}
