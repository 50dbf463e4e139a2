//! The run's test PKI: a CA and four leaf certificates for `mx.test` and `127.0.0.1` (RSA 2048,
//! ECDSA P-256, RSA 1024, and RSA 2048 signed with SHA-1), made once per run into a directory of
//! the run's own: rcgen for the first three, OpenSSL for the SHA-1 signature rcgen does not make.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
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

fn rsa_key(bits: u32) -> Result<KeyPair, PkiError> {
    // ring cannot generate RSA keys; OpenSSL can, and rcgen signs with an imported one.
    let pem = PKey::from_rsa(Rsa::generate(bits)?)?.private_key_to_pem_pkcs8()?;
    Ok(KeyPair::from_pem_and_sign_algo(&String::from_utf8_lossy(&pem), &PKCS_RSA_SHA256)?)
}

/// A leaf like the others, for `key`, signed by the CA with `digest`, made by OpenSSL: rcgen
/// signs neither with SHA-1 nor for an RSA key under 2048 bits.
fn openssl_leaf(
    ca_pem: &str,
    ca_key: &KeyPair,
    key: &PKey<Private>,
    digest: MessageDigest,
) -> Result<X509, openssl::error::ErrorStack> {
    let ca = X509::from_pem(ca_pem.as_bytes())?;
    let ca_key: PKey<Private> = PKey::private_key_from_pem(ca_key.serialize_pem().as_bytes())?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", SERVER_NAME)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(0x05a1)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(key)?;
    let (from, until) = (Asn1Time::from_str("20000101000000Z")?, Asn1Time::from_str("20991231235959Z")?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    let ctx = b.x509v3_context(Some(&ca), None);
    let san = SubjectAlternativeName::new().dns(SERVER_NAME).ip("127.0.0.1").build(&ctx)?;
    b.append_extension(san)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    b.sign(&ca_key, digest)?;
    Ok(b.build())
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, PkiError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|cause| PkiError::Write { path: path.clone(), cause })?;
    Ok(path)
}

impl TestPki {
    /// Make a CA and every leaf into `dir` (which must exist): `ca.pem`, and `<kind>.pem` with
    /// `<kind>.key` for each [`CertKind`]. About 0.1–0.3 s, mostly the RSA keys.
    pub fn generate(dir: &Path) -> Result<TestPki, PkiError> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "starttls-matrix test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.not_before = date_time_ymd(2000, 1, 1);
        ca.not_after = date_time_ymd(2099, 12, 31);
        let ca_key = rsa_key(2048)?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let rsa = rsa_key(2048)?;
        let rsa_pkey = PKey::private_key_from_pem(rsa.serialize_pem().as_bytes())?;
        let rsa1024 = PKey::from_rsa(Rsa::generate(1024)?)?;
        for (kind, key, digest) in [
            (CertKind::RsaSha1, &rsa_pkey, MessageDigest::sha1()),
            (CertKind::Rsa1024, &rsa1024, MessageDigest::sha256()),
        ] {
            let leaf = openssl_leaf(&ca_cert.pem(), &ca_key, key, digest)?;
            write(dir, &file_name(kind, "pem"), &String::from_utf8_lossy(&leaf.to_pem()?))?;
            write(dir, &file_name(kind, "key"), &String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?))?;
        }
        let issuer = Issuer::new(ca, ca_key);
        let ca_path = write(dir, "ca.pem", &ca_cert.pem())?;

        for (kind, key) in [(CertKind::Rsa, rsa), (CertKind::Ecdsa, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)] {
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
    format!("{}.{ext}", kind.name())
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
        for kind in CertKind::ALL {
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
            let bits = leaf.public_key().unwrap().bits();
            let digest = leaf.signature_algorithm().object().to_string();
            match kind {
                CertKind::Rsa => assert_eq!((bits, digest.as_str()), (2048, "sha256WithRSAEncryption")),
                CertKind::Ecdsa => {
                    assert_eq!((bits, digest.as_str()), (256, "sha256WithRSAEncryption"), "the CA is RSA")
                }
                CertKind::Rsa1024 => assert_eq!((bits, digest.as_str()), (1024, "sha256WithRSAEncryption")),
                CertKind::RsaSha1 => assert_eq!((bits, digest.as_str()), (2048, "sha1WithRSAEncryption")),
            }
        }
    }
}
