//! lettre with its default TLS backend (native-tls), as a client program (see `clients::lettre_client`).
fn main() {
    std::process::exit(clients::lettre_client::main(std::env::args_os()));
}
