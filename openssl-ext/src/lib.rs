//! What the `openssl` crate does not wrap and both the built-in server and the OpenSSL client
//! need: a security callback that allows everything (OpenSSL refuses DH under 1024 bits even at
//! security level 0), the negotiated group, the peer's key-exchange key, and cipher names in IANA
//! form.
//!
//! It builds against OpenSSL 3 (the system's, and 3.6 for the `openssl-3.6` stack) and OpenSSL
//! 1.1.1 (the `openssl-1.1.1` stack). `build.rs` sets `cfg(ossl300)` from the version openssl-sys
//! found; what OpenSSL 1.1.1 lacks (`SSL_get_negotiated_group`) is answered there from the
//! server's temporary key instead.

use foreign_types_shared::{ForeignType, ForeignTypeRef};
use openssl::pkey::{HasParams, Id, PKey, PKeyRef, Public};
use openssl::ssl::{SslContextBuilder, SslRef};
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_long, c_void};

type SecurityCallback = unsafe extern "C" fn(
    *const openssl_sys::SSL,
    *const openssl_sys::SSL_CTX,
    c_int,
    c_int,
    c_int,
    *mut c_void,
    *mut c_void,
) -> c_int;

unsafe extern "C" {
    fn SSL_CTX_set_security_callback(ctx: *mut openssl_sys::SSL_CTX, cb: Option<SecurityCallback>);
    fn SSL_CTX_get_ciphers(ctx: *const openssl_sys::SSL_CTX) -> *mut openssl_sys::OPENSSL_STACK;
}

/// `SSL_CTRL_GET_NEGOTIATED_GROUP` from `ssl.h` (OpenSSL 3.0).
#[cfg(ossl300)]
const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;

/// `SSL_CTRL_GET_PEER_TMP_KEY` from `ssl.h`: the ctrl behind `SSL_get_peer_tmp_key` (OpenSSL 3)
/// and `SSL_get_server_tmp_key` (OpenSSL 1.0.2 and 1.1.1, where openssl-sys does not declare it).
const SSL_CTRL_GET_PEER_TMP_KEY: c_int = 109;

unsafe extern "C" fn allow_everything(
    _: *const openssl_sys::SSL,
    _: *const openssl_sys::SSL_CTX,
    _: c_int,
    _: c_int,
    _: c_int,
    _: *mut c_void,
    _: *mut c_void,
) -> c_int {
    1
}

/// Replace the context's security callback by one that allows every key size, curve, digest
/// and protocol. Call it before `set_tmp_dh`, which checks the DH size when it is called.
pub fn allow_all_security(builder: &mut SslContextBuilder) {
    // SAFETY: the pointer is a live SSL_CTX owned by `builder`; the callback is a plain function.
    unsafe { SSL_CTX_set_security_callback(builder.as_ptr(), Some(allow_everything)) }
}

/// Let OpenSSL pick the DH group by the certificate's key size (what `auto` means in MTAs).
pub fn set_dh_auto(builder: &mut SslContextBuilder) {
    // SAFETY: a plain ctrl on a live context.
    unsafe { openssl_sys::SSL_CTX_set_dh_auto(builder.as_ptr(), 1) };
}

/// The IANA (RFC) name of every cipher suite the context would offer, keyed by that name, with
/// OpenSSL's own name as the value: `TLS_DHE_RSA_WITH_AES_128_GCM_SHA256 → DHE-RSA-AES128-GCM-SHA256`.
pub fn cipher_names(builder: &SslContextBuilder) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // SAFETY: SSL_CTX_get_ciphers returns a stack owned by the context, read here and not kept.
    unsafe {
        let stack = SSL_CTX_get_ciphers(builder.as_ptr());
        if stack.is_null() {
            return out;
        }
        for i in 0..openssl_sys::OPENSSL_sk_num(stack) {
            let cipher = openssl_sys::OPENSSL_sk_value(stack, i) as *const openssl_sys::SSL_CIPHER;
            let std_name = c_string(openssl_sys::SSL_CIPHER_standard_name(cipher));
            let name = c_string(openssl_sys::SSL_CIPHER_get_name(cipher));
            if let (Some(std_name), Some(name)) = (std_name, name) {
                out.insert(std_name, name);
            }
        }
    }
    out
}

/// Every cipher suite this OpenSSL knows, TLS ≤ 1.2 and TLS 1.3, keyed by IANA name with
/// OpenSSL's name as the value (whatever a security level would allow).
pub fn all_cipher_names() -> Result<BTreeMap<String, String>, openssl::error::ErrorStack> {
    let mut all = openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls())?;
    all.set_cipher_list("ALL:COMPLEMENTOFALL:@SECLEVEL=0")?;
    Ok(cipher_names(&all))
}

/// IANA suite names as an OpenSSL cipher list (`DHE-RSA-AES128-GCM-SHA256:…`); a name this
/// OpenSSL does not know is an error naming it.
pub fn openssl_cipher_list(iana: &[String]) -> Result<String, String> {
    let names = all_cipher_names().map_err(|e| e.to_string())?;
    iana.iter()
        .map(|s| {
            names
                .get(s)
                .cloned()
                .ok_or_else(|| format!("OpenSSL {} has no cipher suite {s}", openssl::version::version()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.join(":"))
}

unsafe fn c_string(p: *const c_char) -> Option<String> {
    // SAFETY: OpenSSL returns NUL-terminated static strings or null.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The key-exchange group of a finished handshake in IANA spelling (`x25519`, `secp256r1`,
/// `ffdhe2048`), or `None` when OpenSSL names none (a TLS 1.2 DHE exchange with a bare prime,
/// RSA key transport).
///
/// OpenSSL 3 says it itself (`SSL_get_negotiated_group`), on either side of the connection.
#[cfg(ossl300)]
pub fn negotiated_group(ssl: &SslRef) -> Option<String> {
    // Before a handshake there is no session, and OpenSSL 3 reads the group from it unchecked.
    ssl.session()?;
    // SAFETY: SSL_ctrl with GET_NEGOTIATED_GROUP only reads the connection's state, which has a
    // session (checked above).
    let nid = unsafe {
        openssl_sys::SSL_ctrl(ssl.as_ptr(), SSL_CTRL_GET_NEGOTIATED_GROUP, 0 as c_long, std::ptr::null_mut())
    };
    if nid <= 0 {
        return None;
    }
    // A group with no NID of its own (the ML-KEM hybrids in OpenSSL ≥ 3.5) comes back as
    // TLSEXT_nid_unknown | its codepoint.
    if nid & TLSEXT_NID_UNKNOWN != 0 {
        return Some(group_name_of_codepoint((nid & 0xffff) as u16));
    }
    // SAFETY: OBJ_nid2sn returns a static string or null.
    let short = unsafe { c_string(openssl_sys::OBJ_nid2sn(nid as c_int)) }?;
    Some(iana_group_name(&short))
}

/// OpenSSL's flag on a "NID" that is really a TLS group codepoint (`ssl/ssl_local.h`).
#[cfg(ossl300)]
const TLSEXT_NID_UNKNOWN: c_long = 0x0100_0000;

/// The key-exchange group of a finished handshake in IANA spelling (`x25519`, `secp256r1`), or
/// `None` when there is none to name (a TLS 1.2 DHE exchange, RSA key transport).
///
/// OpenSSL 1.1.1 has no `SSL_get_negotiated_group`: the group is read from the server's
/// temporary key, which only a client has. (1.1.1 offers no finite-field groups in TLS 1.3, so a
/// DH key never has a group name here.)
#[cfg(not(ossl300))]
pub fn negotiated_group(ssl: &SslRef) -> Option<String> {
    peer_tmp_key(ssl).and_then(|key| key_group(&key))
}

/// The key the peer sent for the key exchange (the server's ECDHE or DHE share, seen from a
/// client), on OpenSSL 1.1.1 and 3 alike; `None` before a handshake or with RSA key transport.
pub fn peer_tmp_key(ssl: &SslRef) -> Option<PKey<Public>> {
    let mut key: *mut openssl_sys::EVP_PKEY = std::ptr::null_mut();
    // SAFETY: the ctrl stores a new reference to the peer's key (or nothing) in `key`.
    let ok = unsafe {
        openssl_sys::SSL_ctrl(ssl.as_ptr(), SSL_CTRL_GET_PEER_TMP_KEY, 0 as c_long, (&raw mut key).cast::<c_void>())
    };
    // SAFETY: on success `key` is a reference we own; PKey frees it when dropped.
    (ok > 0 && !key.is_null()).then(|| unsafe { PKey::from_ptr(key) })
}

/// The named group of a key-exchange key in IANA spelling: `x25519`, `x448`, or an EC key's
/// curve (`secp256r1`). `None` for a DH key and anything else.
pub fn key_group<T: HasParams>(key: &PKeyRef<T>) -> Option<String> {
    match key.id() {
        Id::X25519 => Some("x25519".into()),
        Id::X448 => Some("x448".into()),
        Id::EC => {
            let ec = key.ec_key().ok()?;
            let short = ec.group().curve_name()?.short_name().ok()?.to_string();
            Some(iana_group_name(&short))
        }
        _ => None,
    }
}

/// OpenSSL's short names to the IANA TLS Supported Groups names.
pub fn iana_group_name(openssl_name: &str) -> String {
    match openssl_name {
        "prime256v1" | "P-256" => "secp256r1".into(),
        "P-384" => "secp384r1".into(),
        "P-521" => "secp521r1".into(),
        // The hybrids keep their IANA spelling (RFC 8446 registry, draft-ietf-tls-ecdhe-mlkem).
        other => match other.to_ascii_lowercase().as_str() {
            "x25519mlkem768" => "X25519MLKEM768".into(),
            "secp256r1mlkem768" => "SecP256r1MLKEM768".into(),
            "secp384r1mlkem1024" => "SecP384r1MLKEM1024".into(),
            "x25519kyber768draft00" => "X25519Kyber768Draft00".into(),
            "mlkem512" | "mlkem768" | "mlkem1024" => other.to_ascii_uppercase(),
            lower => lower.to_string(),
        },
    }
}

/// The IANA name of a TLS supported-groups codepoint (lower case for the classic curves and
/// finite-field groups, as the reports write them; the hybrids in the registry's spelling), or
/// `0x…` for one not known here.
pub fn group_name_of_codepoint(id: u16) -> String {
    match id {
        0x0017 => "secp256r1".into(),
        0x0018 => "secp384r1".into(),
        0x0019 => "secp521r1".into(),
        0x001d => "x25519".into(),
        0x001e => "x448".into(),
        0x0100 => "ffdhe2048".into(),
        0x0101 => "ffdhe3072".into(),
        0x0102 => "ffdhe4096".into(),
        0x0103 => "ffdhe6144".into(),
        0x0104 => "ffdhe8192".into(),
        0x0200 => "MLKEM512".into(),
        0x0201 => "MLKEM768".into(),
        0x0202 => "MLKEM1024".into(),
        0x11eb => "SecP256r1MLKEM768".into(),
        0x11ec => "X25519MLKEM768".into(),
        0x11ed => "SecP384r1MLKEM1024".into(),
        0x6399 => "X25519Kyber768Draft00".into(),
        0x639a => "SecP256r1Kyber768Draft00".into(),
        other => format!("0x{other:04x}"),
    }
}

/// The IANA group names to the ones OpenSSL's `set_groups_list` takes.
pub fn openssl_group_name(iana: &str) -> &str {
    match iana {
        "secp256r1" => "P-256",
        "secp384r1" => "P-384",
        "secp521r1" => "P-521",
        "x25519" => "X25519",
        "x448" => "X448",
        other => other,
    }
}

/// Bits of the DH prime of a key the peer (client side) or we (server side) used, if it was DH.
pub fn dh_bits(key_id: Id, bits: u32) -> Option<u32> {
    (key_id == Id::DH || key_id == Id::DHX).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::dh::Dh;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::Private;
    use openssl::rsa::Rsa;
    use openssl::ssl::{Ssl, SslAcceptor, SslConnector, SslContext, SslMethod, SslVerifyMode, SslVersion};
    use openssl::x509::{X509, X509NameBuilder};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A self-signed RSA-2048 certificate and its key, made once for all tests.
    fn identity() -> &'static (X509, PKey<Private>) {
        static IDENTITY: std::sync::OnceLock<(X509, PKey<Private>)> = std::sync::OnceLock::new();
        IDENTITY.get_or_init(make_identity)
    }

    fn make_identity() -> (X509, PKey<Private>) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "openssl-ext.test").unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        (cert.build(), key)
    }

    /// What the client learnt from a handshake over a socket pair (no network) with a server
    /// configured by `server`: (protocol, group, DH bits of the server's key).
    fn handshake(server: impl FnOnce(&mut openssl::ssl::SslAcceptorBuilder)) -> (String, Option<String>, Option<u32>) {
        let (cert, key) = identity();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_certificate(cert).unwrap();
        acceptor.set_private_key(key).unwrap();
        server(&mut acceptor);
        let acceptor = acceptor.build();
        let (client_end, server_end) = UnixStream::pair().unwrap();
        let served = std::thread::spawn(move || {
            let mut tls = acceptor.accept(server_end).unwrap();
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).unwrap();
        });
        let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        let mut tls = connector.build().configure().unwrap().connect("openssl-ext.test", client_end).unwrap();
        let ssl = tls.ssl();
        let seen = (
            ssl.version_str().to_string(),
            negotiated_group(ssl),
            peer_tmp_key(ssl).and_then(|k| dh_bits(k.id(), k.bits())),
        );
        tls.write_all(b"x").unwrap();
        served.join().unwrap();
        seen
    }

    #[test]
    fn tls13_x25519_is_named() {
        let seen = handshake(|s| s.set_groups_list("X25519").unwrap());
        assert_eq!(seen, ("TLSv1.3".to_string(), Some("x25519".to_string()), None));
    }

    #[test]
    fn tls12_ecdhe_names_the_curve() {
        let seen = handshake(|s| {
            s.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
            s.set_cipher_list("ECDHE-RSA-AES128-GCM-SHA256").unwrap();
            s.set_groups_list("P-256").unwrap();
        });
        assert_eq!(seen, ("TLSv1.2".to_string(), Some("secp256r1".to_string()), None));
    }

    #[test]
    fn tls12_dhe_gives_the_prime_size_and_no_group() {
        let seen = handshake(|s| {
            s.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
            s.set_cipher_list("DHE-RSA-AES128-GCM-SHA256").unwrap();
            let p = BigNum::get_rfc3526_prime_2048().unwrap();
            s.set_tmp_dh(&Dh::from_pqg(p, None, BigNum::from_u32(2).unwrap()).unwrap()).unwrap();
        });
        assert_eq!(seen, ("TLSv1.2".to_string(), None, Some(2048)));
    }

    /// TLS 1.3 finite-field groups came with OpenSSL 3.0.
    #[cfg(ossl300)]
    #[test]
    fn tls13_ffdhe_is_named_on_openssl_3() {
        let seen = handshake(|s| s.set_groups_list("ffdhe2048").unwrap());
        assert_eq!(seen, ("TLSv1.3".to_string(), Some("ffdhe2048".to_string()), Some(2048)));
    }

    #[test]
    fn key_groups_by_key_type() {
        let x25519 = PKey::generate_x25519().unwrap();
        assert_eq!(key_group(&x25519).as_deref(), Some("x25519"));
        let p384 = EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap();
        assert_eq!(key_group(&PKey::from_ec_key(p384).unwrap()).as_deref(), Some("secp384r1"));
        assert_eq!(key_group(&identity().1), None, "an RSA key");
    }

    #[test]
    fn no_tmp_key_before_a_handshake() {
        let ctx = SslContext::builder(SslMethod::tls_client()).unwrap().build();
        let ssl = Ssl::new(&ctx).unwrap();
        assert!(peer_tmp_key(&ssl).is_none());
        assert_eq!(negotiated_group(&ssl), None);
    }

    #[test]
    fn lists_ciphers_by_iana_name() {
        let mut b = SslContext::builder(SslMethod::tls()).unwrap();
        b.set_cipher_list("ALL:@SECLEVEL=0").unwrap();
        let names = cipher_names(&b);
        assert_eq!(names["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "DHE-RSA-AES128-GCM-SHA256");
        assert_eq!(names["TLS_AES_128_GCM_SHA256"], "TLS_AES_128_GCM_SHA256");
    }

    #[test]
    fn group_names_round_trip() {
        for iana in ["secp256r1", "secp384r1", "x25519", "ffdhe2048"] {
            let ossl = openssl_group_name(iana);
            assert_eq!(iana_group_name(ossl), iana);
        }
        assert_eq!(iana_group_name("prime256v1"), "secp256r1");
    }
}
