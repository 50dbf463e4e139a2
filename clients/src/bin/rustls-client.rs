//! rustls with its stock ring provider, as a client program (see `clients::rustls_client`).
fn main() {
    std::process::exit(clients::rustls_client::main(std::env::args_os()));
}
