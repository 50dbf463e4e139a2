//! `openssl-client`: the system OpenSSL exactly as a user of it gets it — its compiled-in
//! security level, default ciphers and groups, certificate and host name verification — unless
//! a policy flag says otherwise. scripts/build-openssl-clients builds the same program against
//! OpenSSL 1.1.1w and 3.6 (the `openssl-1.1.1` and `openssl-3.6` stacks): what differs between
//! versions stays in `openssl_ext`.

use crate::contract::{self, Common};
use crate::smtp;
use clap::Parser;
use openssl::ssl::{HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509VerifyResult;
use std::ffi::OsString;
use wire::{ClientResult, Negotiated, Stage};

/// A contract client on the system OpenSSL.
#[derive(Debug, Parser)]
#[command(name = "openssl-client", about = "SMTP STARTTLS client on the system OpenSSL (the client contract)")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Security level (0–5) instead of the compiled-in default.
    #[arg(long, value_name = "N")]
    seclevel: Option<u32>,
    /// TLS ≤ 1.2 cipher list, OpenSSL syntax.
    #[arg(long, value_name = "LIST")]
    ciphers: Option<String>,
    /// TLS 1.3 suites, OpenSSL syntax.
    #[arg(long, value_name = "LIST")]
    ciphersuites: Option<String>,
    /// Groups to offer, OpenSSL syntax (`X25519:P-256:ffdhe2048`).
    #[arg(long, value_name = "LIST")]
    groups: Option<String>,
    /// Lowest TLS version: 1.0, 1.1, 1.2 or 1.3.
    #[arg(long, value_name = "V")]
    tls_min: Option<String>,
    /// Highest TLS version.
    #[arg(long, value_name = "V")]
    tls_max: Option<String>,
}

fn version(v: &str) -> Option<SslVersion> {
    match v {
        "1.0" => Some(SslVersion::TLS1),
        "1.1" => Some(SslVersion::TLS1_1),
        "1.2" => Some(SslVersion::TLS1_2),
        "1.3" => Some(SslVersion::TLS1_3),
        _ => None,
    }
}

/// Build the context; `Err` is an exit code (89: the policy cannot be expressed).
fn context(args: &Args) -> Result<SslContext, i32> {
    let unsupported = |what: String| contract::unsupported(&what);
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(|e| unsupported(e.to_string()))?;
    if let Some(level) = args.seclevel {
        b.set_security_level(level);
    }
    if let Some(list) = &args.ciphers {
        b.set_cipher_list(list).map_err(|e| unsupported(format!("--ciphers {list}: {e}")))?;
    }
    if let Some(list) = &args.ciphersuites {
        b.set_ciphersuites(list).map_err(|e| unsupported(format!("--ciphersuites {list}: {e}")))?;
    }
    if let Some(list) = &args.groups {
        b.set_groups_list(list).map_err(|e| unsupported(format!("--groups {list}: {e}")))?;
    }
    for (flag, value, min) in [("--tls-min", &args.tls_min, true), ("--tls-max", &args.tls_max, false)] {
        let Some(value) = value else { continue };
        let v = version(value).ok_or_else(|| unsupported(format!("{flag} {value}")))?;
        let set = if min { b.set_min_proto_version(Some(v)) } else { b.set_max_proto_version(Some(v)) };
        set.map_err(|e| unsupported(format!("{flag} {value}: {e}")))?;
    }
    match &args.common.cafile {
        Some(path) => {
            b.set_ca_file(path).map_err(|e| contract::cannot_run(&format!("--cafile {}: {e}", path.display())))?
        }
        None => b.set_default_verify_paths().map_err(|e| unsupported(e.to_string()))?,
    }
    b.set_verify(SslVerifyMode::PEER);
    Ok(b.build())
}

fn describe(ctx: &SslContext, args: &Args) -> i32 {
    let policy = serde_json::json!({
        "security_level": ctx.security_level(),
        "security_level_source": if args.seclevel.is_some() { "--seclevel" } else { "compiled-in default or OPENSSL_CONF" },
        "ciphers": args.ciphers.as_deref().unwrap_or("default"),
        "ciphersuites": args.ciphersuites.as_deref().unwrap_or("default"),
        "groups": args.groups.as_deref().unwrap_or("default"),
        "tls_min": args.tls_min.as_deref().unwrap_or("default"),
        "tls_max": args.tls_max.as_deref().unwrap_or("default"),
        "openssl_conf": std::env::var("OPENSSL_CONF").ok(),
    });
    contract::describe("openssl", openssl::version::version(), policy)
}

impl contract::Program for Args {
    type Config = SslContext;

    fn common(&self) -> &Common {
        &self.common
    }

    fn config(&self) -> Result<SslContext, i32> {
        context(self)
    }

    fn describe(&self, config: &SslContext) -> i32 {
        describe(config, self)
    }

    fn run(&self, config: SslContext) -> ClientResult {
        run(&config, &self.common)
    }
}

/// Run the program; returns its exit code.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> i32 {
    contract::main::<Args>(argv)
}

fn run(ctx: &SslContext, common: &Common) -> ClientResult {
    smtp::dialogue(common, |tcp| {
        let mut ssl = Ssl::new(ctx).map_err(|e| ClientResult::error(Stage::Handshake, e.to_string()))?;
        ssl.set_hostname(&common.servername)
            .and_then(|()| ssl.param_mut().set_host(&common.servername))
            .map_err(|e| ClientResult::error(Stage::Handshake, e.to_string()))?;
        let stream = ssl.connect(tcp).map_err(|e| match e {
            HandshakeError::Failure(mid) => {
                let verify = mid.ssl().verify_result();
                let words = mid.error().ssl_error().map(|s| s.to_string()).unwrap_or_else(|| mid.error().to_string());
                if verify != X509VerifyResult::OK {
                    ClientResult::error(Stage::Verify, format!("{words} (verify result: {})", verify.error_string()))
                } else {
                    ClientResult::error(Stage::Handshake, words)
                }
            }
            other => ClientResult::error(Stage::Handshake, other.to_string()),
        })?;
        let ssl = stream.ssl();
        let negotiated = Negotiated {
            protocol: wire::Protocol::parse(ssl.version_str()),
            cipher: ssl.current_cipher().map(|c| c.standard_name().unwrap_or(c.name()).to_string()),
            group: openssl_ext::negotiated_group(ssl),
            dh_bits: openssl_ext::peer_tmp_key(ssl).and_then(|k| openssl_ext::dh_bits(k.id(), k.bits())),
        };
        Ok((stream, negotiated))
    })
}
