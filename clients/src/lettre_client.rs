//! `lettre-client`: the lettre SMTP client (crate `lettre` 0.11 with its default features, whose
//! TLS backend is native-tls: the system OpenSSL on Linux) sending one message with STARTTLS
//! required, as a lettre user gets it. lettre does not say what the handshake negotiated, so a
//! success reports no protocol or cipher ([`Negotiated::unreported`]); the runner takes them
//! from its own server's record of the connection.

use crate::contract::{self, Common, TlsPolicy};
use clap::Parser;
use lettre::Message;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::client::{Certificate, CertificateStore, SmtpConnection, TlsParameters, TlsVersion};
use lettre::transport::smtp::extension::ClientId;
use std::ffi::OsString;
use wire::{ClientResult, Negotiated, Stage};

/// A contract client on lettre.
#[derive(Debug, Parser)]
#[command(
    name = "lettre-client",
    about = "SMTP STARTTLS client on lettre with its default TLS backend, native-tls (the client contract)"
)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Lowest TLS version: 1.0, 1.1 or 1.2 (lettre's default). lettre's TLS parameters offer
    /// nothing else: no ciphers, groups, highest version or security level.
    #[arg(long, value_name = "V")]
    tls_min: Option<String>,
}

/// What a run needs: lettre's TLS parameters and the message it sends.
struct Config {
    tls: TlsParameters,
    tls_min: &'static str,
    message: Message,
}

/// The message: built with lettre's own builder, as its users build theirs.
fn message(ehlo: &str) -> Result<Message, String> {
    let from = "starttls-matrix <probe@client.test>".parse().map_err(|e| format!("{e}"))?;
    let to = "postmaster@mx.test".parse().map_err(|e| format!("{e}"))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(format!("starttls-matrix probe from {ehlo}"))
        .body("sent by lettre over STARTTLS\r\n".to_string())
        .map_err(|e| e.to_string())
}

fn config(args: &Args) -> Result<Config, i32> {
    if args.common.unsafe_keep_plaintext_buffer {
        return Err(contract::unsupported("--unsafe-keep-plaintext-buffer: lettre has no such switch"));
    }
    let (version, tls_min) = match args.tls_min.as_deref() {
        None | Some("1.2") => (TlsVersion::Tlsv12, "1.2"),
        Some("1.1") => (TlsVersion::Tlsv11, "1.1"),
        Some("1.0") => (TlsVersion::Tlsv10, "1.0"),
        Some(other) => {
            return Err(contract::unsupported(&format!(
                "--tls-min {other}: lettre on native-tls takes 1.0, 1.1 or 1.2"
            )));
        }
    };
    let mut builder = TlsParameters::builder(args.common.servername.clone()).set_min_tls_version(version);
    if let Some(path) = &args.common.cafile {
        let cannot_read = |e: String| contract::cannot_run(&format!("--cafile {}: {e}", path.display()));
        let pem = std::fs::read(path).map_err(|e| cannot_read(e.to_string()))?;
        let certs = openssl::x509::X509::stack_from_pem(&pem).map_err(|e| cannot_read(e.to_string()))?;
        if certs.is_empty() {
            return Err(cannot_read("no certificate in it".into()));
        }
        // Only the test CA: lettre's way to leave out the system's roots.
        builder = builder.certificate_store(CertificateStore::None);
        for cert in certs {
            let der = cert.to_der().map_err(|e| cannot_read(e.to_string()))?;
            builder = builder.add_root_certificate(Certificate::from_der(der).map_err(|e| cannot_read(e.to_string()))?);
        }
    }
    // With lettre's default features `build()` is this same call; naming it keeps the backend
    // native-tls should a feature elsewhere in the build graph ever enable lettre's rustls.
    let tls = builder.build_native().map_err(|e| contract::unsupported(&e.to_string()))?;
    let message = message(&args.common.ehlo).map_err(|e| contract::cannot_run(&format!("build the message: {e}")))?;
    Ok(Config { tls, tls_min, message })
}

fn describe(config: &Config, common: &Common) -> i32 {
    // native-tls builds its context on the system OpenSSL's defaults; a fresh context shows the
    // security level it starts from (compiled in, or from OPENSSL_CONF).
    let security_level = openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls_client())
        .ok()
        .map(|b| b.build().security_level());
    let policy = serde_json::json!({
        "tls_backend": "native-tls: lettre's default, the system OpenSSL on Linux",
        "starttls": match common.tls_policy {
            TlsPolicy::Encrypt => "required (Tls::Required)",
            TlsPolicy::May => "opportunistic (Tls::Opportunistic)",
        },
        "tls_min": config.tls_min,
        "tls_min_source": if config.tls_min == "1.2" { "lettre's default" } else { "--tls-min" },
        "ciphers": "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK (the openssl crate's SslConnector)",
        "groups": "default",
        "security_level": security_level,
        "security_level_source": "the system OpenSSL's default or OPENSSL_CONF (lettre offers no control)",
        "trust": if common.cafile.is_some() {
            "--cafile only (CertificateStore::None, then add_root_certificate)"
        } else {
            "the system's roots; with --cafile, that CA only"
        },
        "negotiated_parameters": "not exposed by lettre: the runner takes them from its server's record",
    });
    let library = format!(
        "lettre {} (native-tls {}, {})",
        crate::LETTRE_VERSION,
        crate::NATIVE_TLS_VERSION,
        openssl::version::version()
    );
    contract::describe("lettre", &library, policy)
}

impl contract::Program for Args {
    type Config = Config;

    fn common(&self) -> &Common {
        &self.common
    }

    fn config(&self) -> Result<Config, i32> {
        config(self)
    }

    fn describe(&self, config: &Config) -> i32 {
        describe(config, &self.common)
    }

    fn run(&self, config: Config) -> ClientResult {
        run(&config, &self.common)
    }
}

/// Run the program; returns its exit code.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> i32 {
    contract::main::<Args>(argv)
}

/// lettre's error kind "Connection", which it gives a failed TCP connect and a failed TLS
/// handshake alike. lettre has no predicate for it (`is_tls`, `is_client`… cover the others),
/// so its Display prefix, fixed in lettre's `error.rs`, tells.
fn is_connection_error(e: &SmtpError) -> bool {
    e.to_string().starts_with("Connection error")
}

/// Whether OpenSSL, under native-tls, refused the certificate or its name: its error queue,
/// reached through the error's sources, has the reason `certificate verify failed`.
fn is_verify_failure(e: &SmtpError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(stack) = s.downcast_ref::<openssl::error::ErrorStack>() {
            return stack.errors().iter().any(|e| e.reason() == Some("certificate verify failed"));
        }
        source = s.source();
    }
    false
}

fn failed(stage: Stage, e: &SmtpError) -> ClientResult {
    ClientResult::error(stage, e.to_string())
}

/// `SmtpTransport::send` with `Tls::Required` is `SmtpConnection::connect`, `starttls` and
/// `send` (lettre's `transport.rs`); the same calls, made here one by one on the same TLS
/// parameters, let each failure carry its stage. `Tls::Opportunistic` (`--tls-policy may`)
/// calls `starttls` only when the server offers it, as lettre does.
fn run(config: &Config, common: &Common) -> ClientResult {
    let connect = common.connect.as_deref().unwrap_or_default();
    let hello = ClientId::Domain(common.ehlo.clone());
    let mut conn = match SmtpConnection::connect(connect, Some(common.io_timeout()), &hello, None, None) {
        Ok(conn) => conn,
        Err(e) if is_connection_error(&e) => return failed(Stage::Connect, &e),
        Err(e) => return failed(Stage::Smtp, &e),
    };
    let tls = match common.tls_policy {
        TlsPolicy::Encrypt => true,
        TlsPolicy::May => conn.can_starttls(),
    };
    if tls && let Err(e) = conn.starttls(&config.tls, &hello) {
        let stage = if is_connection_error(&e) {
            // The handshake failed. (lettre's stream is left without its socket then: ask it
            // nothing more.)
            if is_verify_failure(&e) { Stage::Verify } else { Stage::Handshake }
        } else if conn.is_encrypted() {
            Stage::PostTls
        } else {
            Stage::Starttls
        };
        return failed(stage, &e);
    }
    let after = if tls { Stage::PostTls } else { Stage::Smtp };
    if let Err(e) = conn.send(config.message.envelope(), &config.message.formatted()) {
        return failed(after, &e);
    }
    if let Err(e) = conn.quit() {
        return failed(after, &e);
    }
    if tls { ClientResult::Ok(Negotiated::unreported()) } else { ClientResult::Ok(Negotiated::plaintext()) }
}
