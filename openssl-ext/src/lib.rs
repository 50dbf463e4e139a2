//! What the `openssl` crate does not wrap and both the built-in server and the OpenSSL client
//! need: a security callback that allows everything (OpenSSL refuses DH under 1024 bits even at
//! security level 0), the negotiated group, and cipher names in IANA form.

use foreign_types_shared::ForeignTypeRef;
use openssl::pkey::Id;
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
const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;

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

unsafe fn c_string(p: *const c_char) -> Option<String> {
    // SAFETY: OpenSSL returns NUL-terminated static strings or null.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The key-exchange group of a finished handshake in IANA spelling (`x25519`, `secp256r1`,
/// `ffdhe2048`), or `None` when OpenSSL names none (a TLS 1.2 DHE exchange with a bare prime,
/// RSA key transport).
pub fn negotiated_group(ssl: &SslRef) -> Option<String> {
    // SAFETY: SSL_ctrl with GET_NEGOTIATED_GROUP only reads the connection's state.
    let nid = unsafe {
        openssl_sys::SSL_ctrl(ssl.as_ptr(), SSL_CTRL_GET_NEGOTIATED_GROUP, 0 as c_long, std::ptr::null_mut())
    };
    if nid <= 0 {
        return None;
    }
    // SAFETY: OBJ_nid2sn returns a static string or null.
    let short = unsafe { c_string(openssl_sys::OBJ_nid2sn(nid as c_int)) }?;
    Some(iana_group_name(&short))
}

/// OpenSSL's short names to the IANA TLS Supported Groups names.
pub fn iana_group_name(openssl_name: &str) -> String {
    match openssl_name {
        "prime256v1" | "P-256" => "secp256r1".into(),
        "P-384" => "secp384r1".into(),
        "P-521" => "secp521r1".into(),
        other => other.to_ascii_lowercase(),
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
    use openssl::ssl::{SslContext, SslMethod};

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
