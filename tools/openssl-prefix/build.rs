//! Records the target triple this tool is built for, which is the one OpenSSL is configured for.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo::rustc-env=OPENSSL_PREFIX_TARGET={target}");
}
