//! Real MTAs as senders against the built-in server: one message each, followed to its fate.
//! MTAs that are not extracted (scripts/install-stacks) are reported and skipped.

use mta::sender::{self, Destination, SenderOptions, SenderPolicy, TlsPolicy};
use report_format::{Fate, Mta, ServerProfile, TlsBackend};
use servers::{ServeOptions, TestPki};
use std::path::PathBuf;
use std::time::Duration;

fn roots() -> PathBuf {
    mta::extracted_roots(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn profile(json: serde_json::Value) -> ServerProfile {
    let p: ServerProfile = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

struct Case {
    profile: ServerProfile,
    /// (fate, connections made, last attempt over TLS)
    want: (Fate, usize, bool),
}

async fn run(mta: Mta, policy: SenderPolicy, cases: &[Case]) {
    let base = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(base.path()).unwrap();
    let opts = SenderOptions {
        roots: roots(),
        work: base.path().join("sender"),
        base: base.path().to_path_buf(),
        ca_cert: pki.ca_cert.clone(),
        source: std::net::Ipv4Addr::new(127, 0, 0, 10 + mta as u8),
        candidate: None,
    };
    let s = match sender::start(mta, policy, &opts).await {
        Ok(s) => s,
        Err(mta::StartError::NotInstalled(why)) => {
            eprintln!("{}: skipped: {why}", mta.name());
            return;
        }
        Err(e) => panic!("{}: {e}", mta.name()),
    };
    for case in cases {
        let mut server =
            servers::start(TlsBackend::Openssl, &case.profile, &pki, ServeOptions::default()).await.unwrap();
        let to = Destination { host: "127.0.0.1".into(), port: server.addr().port() };
        let cell = format!("{}/{}", mta.name(), case.profile.id);
        let t = std::time::Instant::now();
        let view = match s.deliver(&cell, &to, 2, Duration::from_secs(15)).await {
            Ok(v) => v,
            Err(e) => {
                let log = std::fs::read_to_string(opts.work.join("postfix.log")).unwrap_or_default();
                let main = std::fs::read_to_string(opts.work.join("etc/main.cf")).unwrap_or_default();
                panic!("{cell}: {e}\n{log}\n{main}");
            }
        };
        server.quiesce(Duration::from_secs(2)).await;
        let records = server.take_records();
        server.stop().await;
        eprintln!(
            "{cell}: {:?} in {} ms; attempts {:#?}\nlog:\n{}\nqueue: {}\nserver saw {} connection(s)",
            view.fate,
            t.elapsed().as_millis(),
            view.attempts,
            view.log.join("\n"),
            view.queue,
            records.len()
        );
        let (fate, connections, tls) = case.want;
        assert_eq!(view.fate, fate, "{cell}");
        assert_eq!(view.attempts.len(), connections, "{cell}");
        // The server saw each connection, from the sender's own address.
        assert_eq!(records.len(), connections, "{cell}: {records:#?}");
        for r in &records {
            let peer: std::net::SocketAddr = r.peer.as_deref().unwrap().parse().unwrap();
            assert_eq!(peer.ip(), std::net::IpAddr::V4(opts.source), "{cell}");
        }
        assert_eq!(view.attempts.last().is_some_and(|a| a.tls.is_some()), tls, "{cell}");
    }
    let report = s.stop().await;
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
}

fn dhe(dh: &str) -> ServerProfile {
    profile(serde_json::json!({"id": dh, "backend": "openssl", "max_tls": "1.2",
        "ciphers": ["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"], "dh": dh}))
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_defers_then_falls_back_and_encrypt_never_does() {
    let no_starttls = profile(serde_json::json!({"id": "no-starttls", "backend": "openssl", "fault": "no-starttls"}));
    run(
        Mta::Postfix,
        SenderPolicy::default(),
        &[
            Case { profile: dhe("ffdhe2048"), want: (Fate::Sent, 1, true) },
            Case { profile: dhe("custom-512"), want: (Fate::Sent, 3, false) },
            Case { profile: no_starttls.clone(), want: (Fate::Sent, 1, false) },
        ],
    )
    .await;
    run(
        Mta::Postfix,
        SenderPolicy { tls: TlsPolicy::Encrypt, fallback_to_clear: None },
        &[
            Case { profile: dhe("custom-512"), want: (Fate::Queued, 2, false) },
            Case { profile: no_starttls, want: (Fate::Queued, 2, false) },
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exim_falls_back_at_once_and_require_tls_never_does() {
    let no_starttls = profile(serde_json::json!({"id": "no-starttls", "backend": "openssl", "fault": "no-starttls"}));
    run(
        Mta::Exim,
        SenderPolicy::default(),
        &[
            Case { profile: dhe("ffdhe2048"), want: (Fate::Sent, 1, true) },
            Case { profile: dhe("custom-512"), want: (Fate::Sent, 2, false) },
            Case { profile: no_starttls.clone(), want: (Fate::Sent, 1, false) },
        ],
    )
    .await;
    run(
        Mta::Exim,
        SenderPolicy { tls: TlsPolicy::Encrypt, fallback_to_clear: None },
        &[
            Case { profile: dhe("custom-512"), want: (Fate::Queued, 2, false) },
            Case { profile: no_starttls, want: (Fate::Queued, 2, false) },
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sendmail_defers_and_falls_back_only_when_told() {
    let no_starttls = profile(serde_json::json!({"id": "no-starttls", "backend": "openssl", "fault": "no-starttls"}));
    run(
        Mta::Sendmail,
        SenderPolicy::default(),
        &[
            Case { profile: dhe("ffdhe2048"), want: (Fate::Sent, 1, true) },
            Case { profile: dhe("custom-512"), want: (Fate::Queued, 2, false) },
            Case { profile: no_starttls, want: (Fate::Sent, 1, false) },
        ],
    )
    .await;
    run(
        Mta::Sendmail,
        SenderPolicy { tls: TlsPolicy::May, fallback_to_clear: Some(true) },
        &[Case { profile: dhe("custom-512"), want: (Fate::Sent, 2, false) }],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn opensmtpd_downgrades_at_once_and_tls_stays_queued() {
    let no_starttls = profile(serde_json::json!({"id": "no-starttls", "backend": "openssl", "fault": "no-starttls"}));
    run(
        Mta::Opensmtpd,
        SenderPolicy::default(),
        &[
            Case { profile: dhe("ffdhe2048"), want: (Fate::Sent, 1, true) },
            Case { profile: dhe("custom-512"), want: (Fate::Sent, 2, false) },
            Case { profile: no_starttls.clone(), want: (Fate::Sent, 1, false) },
        ],
    )
    .await;
    // After a failed connection OpenSMTPD disables the route for 15 s: the forced second
    // attempt makes no connection within the cell.
    run(
        Mta::Opensmtpd,
        SenderPolicy { tls: TlsPolicy::Encrypt, fallback_to_clear: None },
        &[
            Case { profile: dhe("custom-512"), want: (Fate::Queued, 1, false) },
            Case { profile: no_starttls, want: (Fate::Queued, 1, false) },
        ],
    )
    .await;
}
