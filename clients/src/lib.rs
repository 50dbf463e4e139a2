//! Built-in client programs that speak the client contract: flags in, SMTP up to STARTTLS, a
//! TLS handshake with one library, EHLO again over TLS, QUIT, and one `RESULT {json}` line out.
//! Each is a binary of its own (`openssl-client`, `rustls-client`, `lettre-client`) and also
//! reachable as `starttls-matrix client NAME …`.

pub mod batch;
pub mod contract;
pub mod lettre_client;
pub mod openssl_client;
pub mod rustls_client;
pub mod smtp;

/// The rustls version this build links (the client's and the server backend's: one lock file).
pub const RUSTLS_VERSION: &str = env!("RUSTLS_VERSION");
/// The lettre version this build links, and the native-tls under it.
pub const LETTRE_VERSION: &str = env!("LETTRE_VERSION");
pub const NATIVE_TLS_VERSION: &str = env!("NATIVE_TLS_VERSION");

/// The built-in client programs by name.
pub const BUILTIN: &[&str] = &["openssl-client", "rustls-client", "lettre-client"];

/// Run a built-in client program by name with its arguments (without the program name);
/// returns the process exit code. `None` if there is no such program.
pub fn run_builtin(name: &str, args: Vec<std::ffi::OsString>) -> Option<i32> {
    let argv = std::iter::once(std::ffi::OsString::from(name)).chain(args);
    match name {
        "openssl-client" => Some(openssl_client::main(argv)),
        "rustls-client" => Some(rustls_client::main(argv)),
        "lettre-client" => Some(lettre_client::main(argv)),
        _ => None,
    }
}
