//! Records the versions of the Rust TLS crates this build links (rustls, lettre, native-tls),
//! from the workspace's Cargo.lock, so the built-in clients can report their real stack versions.

fn main() {
    let lock_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let locked = |name: &str| {
        lock.split("[[package]]")
            .find(|p| p.contains(&format!("name = \"{name}\"\n")))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_else(|| "unknown".to_string())
    };
    for (crate_name, var) in
        [("rustls", "RUSTLS_VERSION"), ("lettre", "LETTRE_VERSION"), ("native-tls", "NATIVE_TLS_VERSION")]
    {
        println!("cargo::rustc-env={var}={}", locked(crate_name));
    }
}
