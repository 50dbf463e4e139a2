//! Configuration-space fuzzing: proptest generates server profiles from what the built-in server
//! can express, each chosen client stack runs against each, and the oracle's prediction (from
//! the stack's declared policy) is checked. A disagreement is shrunk by proptest to a minimal
//! profile, diagnosed (the policy declaration is wrong, or the stack is inconsistent), and
//! written as a replayable matrix.

use crate::matrix::{ClientStack, StackKind};
use crate::oracle::{self, Policy, Predicted, Prediction};
use crate::runner::Context;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use report_format::CellId;
use report_format::Outcome;
use report_format::{Backend, CertKind, DhGroup, Fault, Group, ServerProfile, TlsBackend, TlsVersion};
use serde::Serialize;
use std::cell::RefCell;

const OPENSSL_SUITES: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
];
const GROUPS: &[Group] = &[Group::X25519, Group::Secp256r1, Group::Ffdhe2048, Group::Secp384r1, Group::Ffdhe3072];
const VERSIONS: &[TlsVersion] = &[TlsVersion::Tls12, TlsVersion::Tls13, TlsVersion::Tls10, TlsVersion::Tls11];

/// The handshake faults the oracle predicts from the stack's ClientHello (and `no-ems`).
const FAULTS: &[Fault] = &[
    Fault::Tls13Intolerant,
    Fault::NoHrr,
    Fault::ClienthelloOneSegment,
    Fault::NoEms,
    Fault::ClienthelloLengthIntolerant,
];

/// Server profiles from the space the built-in server expresses; simpler values first, so
/// that shrinking heads for TLS 1.2, one suite, one group, a small DH group, RSA, no hybrid
/// group and no fault. The hybrid group, the weak certificates and the faults are rare: each
/// is a dimension of its own, and most of what the oracle checks is in the others.
pub fn profiles() -> impl Strategy<Value = ServerProfile> {
    let dh = proptest::sample::select(DhGroup::ALL.to_vec());
    (
        prop_oneof![3 => Just(TlsBackend::Openssl), 1 => Just(TlsBackend::Rustls)],
        0..VERSIONS.len(),
        0..VERSIONS.len(),
        proptest::sample::subsequence(OPENSSL_SUITES.to_vec(), 1..=4),
        proptest::sample::subsequence(GROUPS.to_vec(), 1..=3),
        dh,
        prop_oneof![
            12 => Just(CertKind::Rsa),
            4 => Just(CertKind::Ecdsa),
            1 => Just(CertKind::Rsa1024),
            1 => Just(CertKind::RsaSha1)
        ],
        proptest::option::weighted(
            0.3,
            proptest::sample::subsequence(vec!["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"], 1..=2),
        ),
        // X25519MLKEM768 (rustls backend, TLS 1.3): last among the groups, first, or alone.
        proptest::option::weighted(0.3, 0..3u8),
        proptest::option::weighted(0.15, proptest::sample::select(FAULTS.to_vec())),
    )
        .prop_map(|(backend, a, b, suites, groups, dh, cert, tls13, hybrid, fault)| {
            let (mut lo, mut hi) = (VERSIONS[a], VERSIONS[b]);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            // A fault takes the versions it needs (ServerProfile::validate): no-ems is TLS 1.2 at
            // most, no-hrr reaches 1.3. no-ems needs the openssl backend: on rustls it is left out.
            let fault = fault.filter(|f| *f != Fault::NoEms || backend == TlsBackend::Openssl);
            match fault {
                Some(Fault::NoEms) => {
                    hi = hi.min(TlsVersion::Tls12);
                    lo = lo.min(hi);
                }
                Some(Fault::NoHrr) => hi = TlsVersion::Tls13,
                _ => {}
            }
            let mut suites: Vec<String> = suites.into_iter().map(String::from).collect();
            let mut groups = groups;
            if backend == TlsBackend::Rustls {
                lo = lo.max(TlsVersion::Tls12);
                hi = hi.max(lo);
                suites.retain(|s| report_format::profile::RUSTLS_TLS12_SUITES.contains(&s.as_str()));
                if suites.is_empty() {
                    suites.push("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into());
                }
                groups.retain(|g| !matches!(g, Group::X448 | Group::Secp521r1));
                match hybrid.filter(|_| hi == TlsVersion::Tls13) {
                    Some(0) => groups.push(Group::X25519Mlkem768),
                    Some(1) => groups.insert(0, Group::X25519Mlkem768),
                    Some(_) => groups = vec![Group::X25519Mlkem768],
                    None => {}
                }
            }
            let tls12 = lo <= TlsVersion::Tls12;
            let dhe = tls12 && suites.iter().any(|s| s.starts_with("TLS_DHE_"));
            ServerProfile {
                id: "fuzz".into(),
                description: String::new(),
                backend: Backend::Builtin(backend),
                min_tls: lo,
                max_tls: hi,
                ciphers: tls12.then_some(suites),
                tls13_suites: if hi == TlsVersion::Tls13 {
                    tls13.map(|v| v.into_iter().map(String::from).collect())
                } else {
                    None
                },
                groups: Some(groups),
                dh: dhe.then_some(dh),
                security_level: None,
                dhe: None,
                cert,
                fault,
                force: None,
                section: None,
                library_dir: None,
            }
        })
        .prop_filter("a valid profile", |p| p.validate().is_ok())
}

/// What a finding says about the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Diagnosis {
    /// The stack does the same thing every time: its declared policy is wrong here.
    PolicyWrong { field: String },
    /// The stack does different things against the same profile.
    Inconsistent { outcomes: Vec<String> },
}

/// A disagreement between the oracle and a stack, shrunk.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: String,
    pub client: String,
    pub policy: String,
    pub seed: u64,
    pub profile: ServerProfile,
    pub predicted: Prediction,
    pub observed: Outcome,
    pub diagnosis: Diagnosis,
}

/// How a stack fared.
#[derive(Debug, Clone, Serialize)]
pub struct StackSummary {
    pub client: String,
    pub policy: String,
    pub cases: u32,
    pub agreed: u32,
    pub unjudged: u32,
    pub findings: Vec<Finding>,
}

/// Run one case: the stack against the profile, judged by the oracle.
async fn evaluate(ctx: &Context, client: &str, profile: &ServerProfile) -> Outcome {
    let mut state = ctx.start_server(profile).await;
    let id = CellId::new(client, profile.id.clone());
    let evidence = ctx.run_cell(&id, Some(profile), &mut state).await;
    ctx.stop_server(&profile.id, state).await;
    crate::derive::derive_outcome(&evidence, &ctx.tables)
}

fn seed_bytes(seed: u64, salt: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..16].copy_from_slice(&salt.to_le_bytes());
    out
}

/// Fuzz one stack with `cases` generated profiles from `seed`.
pub fn fuzz_stack(
    rt: &tokio::runtime::Runtime,
    ctx: &Context,
    stack: &ClientStack,
    policy_name: &str,
    policy: &Policy,
    cases: u32,
    seed: u64,
) -> StackSummary {
    let stats = RefCell::new((0u32, 0u32, 0u32)); // cases run, agreed, unjudged
    let mut findings: Vec<Finding> = Vec::new();
    let mut round = 0u64;
    while stats.borrow().0 < cases && round < 16 {
        let remaining = cases - stats.borrow().0;
        let config = Config { cases: remaining, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed, round));
        let mut runner = TestRunner::new_with_rng(config, rng);
        let shrinking = RefCell::new(false);
        let result = runner.run(&profiles(), |profile| {
            let Some(prediction) = oracle::predict(&profile, policy) else { return Ok(()) };
            let observed = rt.block_on(evaluate(ctx, &stack.id, &profile));
            let agreement = oracle::agrees(&prediction, &observed);
            if !*shrinking.borrow() {
                let mut s = stats.borrow_mut();
                s.0 += 1;
                match agreement {
                    Some(true) => s.1 += 1,
                    None => s.2 += 1,
                    Some(false) => {}
                }
            }
            match agreement {
                Some(false) => {
                    *shrinking.borrow_mut() = true;
                    Err(TestCaseError::fail(format!(
                        "predicted {:?}, observed {}",
                        prediction.outcome,
                        observed.label()
                    )))
                }
                _ => Ok(()),
            }
        });
        match result {
            Err(TestError::Fail(_, minimal)) => {
                let prediction = oracle::predict(&minimal, policy).expect("the oracle predicted it before");
                let observed = rt.block_on(evaluate(ctx, &stack.id, &minimal));
                let reruns: Vec<String> =
                    (0..3).map(|_| rt.block_on(evaluate(ctx, &stack.id, &minimal)).signature()).collect();
                let diagnosis = if reruns.iter().all(|r| *r == observed.signature()) {
                    Diagnosis::PolicyWrong {
                        field: oracle::field_to_check(&minimal, &prediction, &observed).to_string(),
                    }
                } else {
                    let mut outcomes = vec![observed.signature()];
                    outcomes.extend(reruns);
                    Diagnosis::Inconsistent { outcomes }
                };
                let duplicate =
                    findings.iter().any(|f| f.diagnosis == diagnosis && f.observed.signature() == observed.signature());
                if !duplicate {
                    let id = format!("{}-{seed}-{}", stack.id.replace(['@', '/'], "-"), findings.len() + 1);
                    findings.push(Finding {
                        id,
                        client: stack.id.clone(),
                        policy: policy_name.to_string(),
                        seed,
                        profile: ServerProfile { id: format!("fuzz-{seed}-{}", findings.len() + 1), ..minimal },
                        predicted: prediction,
                        observed,
                        diagnosis,
                    });
                }
            }
            Ok(()) | Err(TestError::Abort(_)) => break,
        }
        round += 1;
    }
    let (ran, agreed, unjudged) = *stats.borrow();
    StackSummary { client: stack.id.clone(), policy: policy_name.to_string(), cases: ran, agreed, unjudged, findings }
}

/// A finding as a matrix that replays it: the minimal profile, the stack, and the oracle's
/// prediction as the expectation (so the replay shows the disagreement).
pub fn replay_matrix(finding: &Finding, stack: &ClientStack) -> String {
    #[derive(Serialize)]
    struct Servers<'a> {
        server: Vec<&'a ServerProfile>,
    }
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut out = format!(
        "# Fuzz finding {} (seed {}): {} against a minimal profile.\n# Predicted from policy {:?} ({}): {:?}; observed: {}.\n# Diagnosis: {:?}\n# Replay: starttls-matrix run --matrix results/fuzz/{}.toml\n\n",
        finding.id,
        finding.seed,
        finding.client,
        finding.policy,
        finding.predicted.because,
        finding.predicted.outcome,
        finding.observed.label(),
        finding.diagnosis,
        finding.id
    );
    out.push_str(&toml::to_string(&Servers { server: vec![&finding.profile] }).expect("a profile serialises"));
    out.push_str(&format!("\n[[client]]\nid = {}\n", q(&stack.id)));
    match &stack.kind {
        StackKind::Builtin(b) => out.push_str(&format!("builtin = {}\n", q(b))),
        StackKind::Program { path: p, .. } => {
            // A path with a directory was resolved against the working directory (the matrix's
            // own, `.cache/openssl/3.6/bin/openssl-client`); the replay lives elsewhere, so it
            // names the program absolutely. A bare name is still looked up on PATH.
            let p = if p.components().count() > 1 {
                std::path::absolute(p).unwrap_or_else(|_| p.clone())
            } else {
                p.clone()
            };
            out.push_str(&format!("program = {}\nerrors = {}\n", q(&p.display().to_string()), q(&stack.errors)))
        }
        StackKind::Adapter(a) => out.push_str(&format!("adapter = {}\n", q(a.name()))),
        StackKind::Sender { mta, policy, attempts } => {
            out.push_str(&format!("sender = {}\ntls = {}\n", q(mta.name()), q(policy.tls.as_str())));
            if let Some(f) = policy.fallback_to_clear {
                out.push_str(&format!("fallback_to_clear = {f}\n"));
            }
            out.push_str(&format!("attempts = {attempts}\n"));
        }
    }
    if !stack.args.is_empty() {
        out.push_str(&format!("args = [{}]\n", stack.args.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")));
    }
    if !stack.env.is_empty() {
        let env: Vec<String> = stack.env.iter().map(|(k, v)| format!("{} = {}", q(k), q(v))).collect();
        out.push_str(&format!("env = {{ {} }}\n", env.join(", ")));
    }
    let cell = format!("{}/{}", stack.id, finding.profile.id);
    out.push_str(&format!("\n[[expect]]\ncell = {}\n", q(&cell)));
    match &finding.predicted.outcome {
        Predicted::Connected { .. } => out.push_str("outcome = \"connected\"\n"),
        Predicted::Failed { class } => out.push_str(&format!("outcome = \"failed\"\nclass = \"{class}\"\n")),
        Predicted::Timeout => out.push_str("outcome = \"timeout\"\n"),
    }
    out.push_str(&format!(
        "reason = {}\n",
        q(&format!("what policy {} predicts ({}); the run disagrees", finding.policy, finding.predicted.because))
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn generated_profiles_are_valid_and_cover_the_invalid_dh_kinds() {
        let mut runner =
            TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(1, 0)));
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let p = profiles().new_tree(&mut runner).unwrap().current();
            assert!(p.validate().is_ok(), "{p:?}");
            if let Some(dh) = p.dh {
                kinds.insert(format!("{:?}", dh.kind()));
            }
        }
        for k in ["Composite", "SmallSubgroup", "Rfc7919", "Custom", "WellKnown"] {
            assert!(kinds.contains(k), "{k} never generated: {kinds:?}");
        }
    }

    #[test]
    fn generated_profiles_cover_the_hybrid_group_the_weak_certificates_and_the_faults() {
        let mut runner =
            TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(1, 0)));
        let (mut seen, mut plain) = (std::collections::BTreeSet::new(), 0);
        let n = 1000;
        for _ in 0..n {
            let p = profiles().new_tree(&mut runner).unwrap().current();
            assert!(p.validate().is_ok(), "{p:?}");
            let groups = p.groups.clone().unwrap_or_default();
            if groups.contains(&Group::X25519Mlkem768) {
                assert_eq!(p.backend, Backend::Builtin(TlsBackend::Rustls), "{p:?}");
                seen.insert(if groups.len() == 1 { "hybrid alone".to_string() } else { "hybrid".into() });
            }
            seen.insert(p.cert.name().to_string());
            if let Some(f) = p.fault {
                assert!(FAULTS.contains(&f), "{f:?}");
                seen.insert(f.name().to_string());
            }
            if p.fault.is_none() && matches!(p.cert, CertKind::Rsa | CertKind::Ecdsa) {
                plain += 1;
            }
        }
        for want in ["hybrid", "hybrid alone", "rsa1024", "rsa-sha1"].into_iter().chain(FAULTS.iter().map(|f| f.name()))
        {
            assert!(seen.contains(want), "{want} never generated: {seen:?}");
        }
        assert!(plain > n * 3 / 4, "the new dimensions stay rare: {plain} of {n} plain");
    }

    #[test]
    fn a_fault_and_a_weak_certificate_shrink_away_first() {
        let mut runner =
            TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(5, 0)));
        let mut tree = loop {
            let t = profiles().new_tree(&mut runner).unwrap();
            let p = t.current();
            if p.fault.is_some() && p.cert == CertKind::RsaSha1 {
                break t;
            }
        };
        // Shrink as proptest does when every simplification still fails.
        while tree.simplify() {}
        let p = tree.current();
        assert_eq!((p.fault, p.cert), (None, CertKind::Rsa), "{p:?}");
    }

    #[test]
    fn a_finding_with_the_new_keys_replays_as_a_matrix() {
        let profile: ServerProfile = serde_json::from_value(serde_json::json!({"id": "fuzz-9-1", "backend": "rustls",
            "min_tls": "1.3", "groups": ["X25519MLKEM768"], "cert": "rsa-sha1", "fault": "clienthello-one-segment"}))
        .unwrap();
        profile.validate().unwrap();
        let tables = crate::classify::Tables::builtin().unwrap();
        let parse = |text: &str| crate::matrix::Matrix::parse(std::path::Path::new("/tmp/m.toml"), text, &tables);
        let declared = "[[server]]\nid = \"x\"\nbackend = \"openssl\"\n\n[[client]]\nid = \"rustls-aws-lc\"\nbuiltin = \"rustls-client\"\nargs = [\"--provider\", \"aws-lc-rs\"]\npolicy = \"rustls-aws-lc\"\n";
        let stack = parse(declared).unwrap().client("rustls-aws-lc").unwrap().clone();
        let finding = Finding {
            id: "rustls-aws-lc-9-1".into(),
            client: stack.id.clone(),
            policy: "rustls-aws-lc".into(),
            seed: 9,
            profile: profile.clone(),
            predicted: Prediction { outcome: Predicted::Timeout, because: "client_hello_bytes", or: Vec::new() },
            observed: Outcome::Timeout { after_ms: 2000 },
            diagnosis: Diagnosis::PolicyWrong { field: "client_hello_bytes".into() },
        };
        let text = replay_matrix(&finding, &stack);
        let matrix = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let server = matrix.server("fuzz-9-1").unwrap_or_else(|| panic!("{text}"));
        assert_eq!(server.profile, profile, "{text}");
        assert_eq!(matrix.client("rustls-aws-lc").unwrap().args, stack.args);
        let expected = matrix.expected_for("rustls-aws-lc/fuzz-9-1");
        assert_eq!(expected.outcome, report_format::ExpectedOutcome::Timeout, "{text}");

        // A program the matrix names by a relative path is named absolutely: the replay is
        // written elsewhere (results/fuzz/).
        let program = "[[server]]\nid = \"x\"\nbackend = \"openssl\"\n\n[[client]]\nid = \"openssl-3.6\"\nprogram = \".cache/openssl/3.6/bin/openssl-client\"\nerrors = \"openssl\"\n";
        let matrix = crate::matrix::Matrix::parse(std::path::Path::new("matrix.toml"), program, &tables).unwrap();
        let stack = matrix.client("openssl-3.6").unwrap().clone();
        let text = replay_matrix(&Finding { client: stack.id.clone(), ..finding }, &stack);
        let cwd = std::env::current_dir().unwrap();
        let want = format!("program = \"{}/.cache/openssl/3.6/bin/openssl-client\"", cwd.display());
        assert!(text.contains(&want), "{want}\n{text}");
    }

    #[test]
    fn the_same_seed_generates_the_same_profiles() {
        let generate = |seed| {
            let mut runner = TestRunner::new_with_rng(
                Config::default(),
                TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed, 0)),
            );
            (0..20).map(|_| format!("{:?}", profiles().new_tree(&mut runner).unwrap().current())).collect::<Vec<_>>()
        };
        assert_eq!(generate(7), generate(7));
        assert_ne!(generate(7), generate(8));
    }
}
