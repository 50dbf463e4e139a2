//! Tells the code which OpenSSL it is built against. openssl-sys passes the version it found to
//! the build scripts of the crates that depend on it directly (`DEP_OPENSSL_VERSION_NUMBER`, hex
//! `0xMNNFFPPS`); the `openssl` crate turns it into `cfg(ossl300)` and the like for itself only, so
//! this crate sets the one it needs: `ossl300` for OpenSSL 3.0 and later.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ossl300)");
    println!("cargo::rerun-if-changed=build.rs");
    if is_ossl300(std::env::var("DEP_OPENSSL_VERSION_NUMBER").ok().as_deref()) {
        println!("cargo::rustc-cfg=ossl300");
    }
}

/// Whether openssl-sys's version number is OpenSSL 3.0 or later.
fn is_ossl300(version_number: Option<&str>) -> bool {
    version_number.and_then(|v| u64::from_str_radix(v, 16).ok()).is_some_and(|v| v >= 0x3000_0000)
}
