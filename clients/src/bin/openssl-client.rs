//! The system OpenSSL as a user of it gets it, as a client program (see `clients::openssl_client`).
fn main() {
    std::process::exit(clients::openssl_client::main(std::env::args_os()));
}
