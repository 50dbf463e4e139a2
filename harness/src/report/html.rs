//! `results/index.html`: one self-contained static page (inline CSS and a little JavaScript, no
//! external request of any kind, readable without JavaScript). A grid of server profiles ×
//! client stacks coloured by outcome and error-class family, each cell opening to its details;
//! per-client and per-server summaries; filters; what changed since the previous run. Every
//! string that came from a run is escaped: servers choose their banners and certificates.

use super::summary;
use crate::diff::{ChangeKind, Diff};
use report_format::{CellReport, Report, Section};
use report_format::{ErrorClass, Family, Outcome, Reporter};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem}
.meta{color:#555;margin:0 0 1rem}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.25rem .4rem;vertical-align:top;text-align:left}
thead th{background:#f4f4f6;position:sticky;top:0}
th.server{background:#f9f9fb;min-width:11rem}
th small,td small{display:block;color:#555;font-weight:normal}
td.cell{scroll-margin-top:7rem;min-width:8.5rem;font-family:ui-monospace,monospace;font-size:12.5px}
td.cell summary{cursor:pointer;list-style:none}
td.cell details[open]{min-width:24rem}
dl{margin:.3rem 0 0;display:grid;grid-template-columns:max-content 1fr;gap:.1rem .5rem;font-family:system-ui,sans-serif;font-size:12.5px}
dt{color:#555}dd{margin:0;white-space:pre-wrap;word-break:break-word}
.o-connected,.d-tls{background:#d9f2dc}
.d-plaintext{background:#fff0a8}
.d-plaintext_fallback{background:#ffb3a8}
.d-deferred{background:#c9ddff}
.d-bounced{background:#e6a8ff}
.f-key-exchange{background:#ffd9b3}
.f-protocol{background:#fff0a8}
.f-certificate{background:#f4c7e8}
.f-starttls{background:#c9ddff}
.f-server-config{background:#ffc2c2}
.f-other,.o-timeout{background:#e3d4c4}
.o-unsupported{background:#e4e7ee;color:#555}
.o-skipped{background:#f4f4f4;color:#888}
.o-harness_error{background:#7a0e6d;color:#fff}
.unexpected{outline:3px solid #d00;outline-offset:-3px}
.ch-broken summary::before{content:"✗ ";color:#b00;font-weight:bold}
.ch-fixed summary::before{content:"✓ ";color:#070;font-weight:bold}
.ch-changed summary::before{content:"~ ";font-weight:bold}
.dim{opacity:.25}
.hide{display:none}
tr.section th{background:#1d1d1f;color:#fff;font-size:1rem}
td.summary,tfoot td{font-size:12.5px;background:#fafafa}
td.summary{min-width:26em}
#filters{margin:0 0 .8rem}#filters label{margin-right:1rem}
.legend span{display:inline-block;padding:.1rem .4rem;margin:.1rem;border:1px solid #ccc}
pre{margin:0;white-space:pre-wrap}
"#;

const SCRIPT: &str = r#"
(function(){
  var form=document.getElementById('filters');form.hidden=false;
  function apply(){
    var cf=form.elements.client.value,sf=form.elements.server.value,of=form.elements.outcome.value;
    document.querySelectorAll('[data-client-family]').forEach(function(e){
      e.classList.toggle('hide',cf!=='all'&&e.getAttribute('data-client-family')!==cf);});
    document.querySelectorAll('tr[data-server-family]').forEach(function(e){
      e.classList.toggle('hide',sf!=='all'&&e.getAttribute('data-server-family')!==sf);});
    document.querySelectorAll('td.cell').forEach(function(e){
      var m=of==='all'||e.getAttribute('data-outcome')===of||(of==='unexpected'&&e.classList.contains('unexpected'))
        ||(of==='changed'&&e.hasAttribute('data-change'));
      e.classList.toggle('dim',!m);});
  }
  form.addEventListener('change',apply);apply();
  function openHash(){
    var e=location.hash&&document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if(e){var d=e.querySelector('details');if(d)d.open=true;e.scrollIntoView();}
  }
  window.addEventListener('hashchange',openHash);openHash();
  function selfCheck(){
    var n=performance.getEntriesByType('resource').length;
    document.body.setAttribute('data-resources',String(n));
  }
  window.addEventListener('load',selfCheck);selfCheck();
  document.body.setAttribute('data-js','ready');
})();
"#;

pub(super) fn family_of_client(id: &str) -> String {
    id.split(['-', '@']).next().unwrap_or(id).to_string()
}

/// `TLSv1.2 DHE-2048` → `1.2 DHE-2048`; `TLSv1 …` → `1.0 …`.
pub(super) fn compact(label: &str) -> String {
    label.strip_prefix("TLSv1 ").map(|r| format!("1.0 {r}")).unwrap_or_else(|| label.replacen("TLSv", "", 1))
}

pub(super) fn cell_classes(cell: &CellReport) -> String {
    let mut c = format!("cell o-{}", cell.outcome.kind());
    if let Outcome::Failed { class, .. } = &cell.outcome {
        let _ = write!(c, " f-{}", class.family().as_str());
    }
    if !cell.verdict.is_as_expected() {
        c.push_str(" unexpected");
    }
    c
}

pub(super) fn dl_row(out: &mut String, term: &str, value: &str) {
    let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(term), esc(value));
}

/// A cell in the grid: its outcome, compact, and a failed-repeats count or a rare failure's odds.
fn grid_label(cell: &CellReport) -> String {
    let mut label = compact(&cell.outcome.label());
    if let Some(rate) = cell.rate.as_ref().filter(|r| r.failed > 0) {
        label.push_str(&format!(" · {}", rate.short()));
    }
    if let Some(note) = cell.rare.first() {
        label.push_str(&format!(" · {}", note.short()));
    }
    label
}

fn details(out: &mut String, cell: &CellReport, change: Option<(&String, ChangeKind)>) {
    out.push_str("<dl>");
    match &cell.outcome {
        Outcome::Connected(n) => {
            dl_row(out, "protocol", n.protocol.map_or("(not reported)", |p| p.as_str()));
            dl_row(out, "cipher", n.cipher.as_deref().unwrap_or("(not reported)"));
            dl_row(out, "group", n.group.as_deref().unwrap_or("(none named)"));
            dl_row(out, "DH bits", &n.dh_bits.map_or("–".to_string(), |b| b.to_string()));
            if n.reported_by == Reporter::Server {
                dl_row(out, "reported by", "the server: the client stack does not expose what it negotiated");
            }
        }
        Outcome::Failed { class, side, stage, client_error, server_error } => {
            dl_row(out, "class", class.as_str());
            dl_row(out, "meaning", class.explanation());
            dl_row(out, "remedy", class.remedy());
            dl_row(out, "stage", stage.as_str());
            dl_row(out, "refused by", &format!("{side:?}").to_lowercase());
            dl_row(out, "client said", client_error);
            dl_row(out, "server said", server_error.as_deref().unwrap_or("(nothing logged)"));
        }
        Outcome::Unsupported { reason } | Outcome::Skipped { reason } => dl_row(out, "why", reason),
        Outcome::Timeout { after_ms } => dl_row(out, "killed after", &format!("{after_ms} ms")),
        Outcome::HarnessError { detail } => dl_row(out, "we could not run it", detail),
    }
    for hello in cell.client_hellos() {
        dl_row(out, "the server read", &hello);
    }
    for choice in cell.encodings() {
        dl_row(out, "the server chose", &choice);
    }
    if let Some(rate) = &cell.rate {
        dl_row(out, &format!("over {} runs", rate.runs), &rate.summary());
    }
    if let Some(t) = cell.expected.rare {
        dl_row(out, "tolerated", &format!("{} about 1 run in {}", t.class, t.one_in));
    }
    for note in &cell.rare {
        dl_row(out, "rare failure", &note.summary());
    }
    if !cell.left_to_chance.is_empty() {
        let cases: Vec<&str> = cell.left_to_chance.iter().map(|c| c.words()).collect();
        dl_row(out, "left to chance", &format!("the server does not choose: {}", cases.join("; ")));
    }
    dl_row(out, "duration", &format!("{} ms", cell.duration_ms));
    let expected = cell.expected.outcome.to_string();
    dl_row(out, "expected", &format!("{expected} ({})", cell.expected.reason));
    dl_row(out, "verdict", cell.verdict.as_str());
    if let Some((old, kind)) = change {
        dl_row(out, "previous run", &format!("{old} ({kind:?})").to_lowercase());
    }
    out.push_str("</dl>");
}

pub(super) fn policy_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n"),
        serde_json::Value::Null => "unknown".into(),
        other => other.to_string(),
    }
}

fn select(out: &mut String, name: &str, label: &str, options: &[(String, String)]) {
    let _ = write!(out, "<label>{} <select name=\"{}\"><option value=\"all\">all</option>", esc(label), esc(name));
    for (value, text) in options {
        let _ = write!(out, "<option value=\"{}\">{}</option>", esc(value), esc(text));
    }
    out.push_str("</select></label>");
}

/// Render the page; `since` marks what changed since the previous published run.
pub fn render(report: &Report, since: Option<&Diff>) -> String {
    let r = &report.run;
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Nothing but this file: no fetch, font, image or script from anywhere.
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n");
    out.push_str("<title>starttls-matrix: which senders reach which SMTP TLS configuration</title>\n");
    let _ = write!(out, "<style>{STYLE}</style></head>\n<body>\n");
    out.push_str("<h1>SMTP STARTTLS compatibility: real client stacks × server TLS configurations</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"meta\">Run <code>{}</code> ({}), started {}, {} cells in {:.1} s. Matrix <code>{}</code>. {}</p>",
        esc(&r.id),
        esc(&r.mode),
        esc(&r.started),
        report.cells.len(),
        r.wall_ms as f64 / 1000.0,
        esc(&r.matrix),
        esc(&r.tool_versions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("; "))
    );

    if let Some(d) = since {
        let _ = write!(
            out,
            "<section id=\"changes\"><h2>Since run <code>{}</code></h2><p>{} newly broken, {} newly fixed, {} changed.</p><ul>",
            esc(&d.old_run),
            d.newly_broken.len(),
            d.newly_fixed.len(),
            d.changed.len()
        );
        for c in d.newly_broken.iter().chain(&d.newly_fixed).chain(&d.changed) {
            let _ = write!(
                out,
                "<li>{:?}: <code>{}</code> {} → {}</li>",
                c.kind,
                esc(&c.cell),
                esc(&c.old.label),
                esc(&c.new.label)
            );
        }
        out.push_str("</ul></section>\n");
    }

    let client_families: BTreeSet<String> = r.client_order.iter().map(|c| family_of_client(c)).collect();
    let server_families: BTreeSet<String> =
        r.server_order.iter().filter_map(|s| report.servers.get(s)).map(|p| p.backend.as_str().to_string()).collect();
    out.push_str("<form id=\"filters\" hidden>");
    select(
        &mut out,
        "client",
        "client family",
        &client_families.iter().map(|f| (f.clone(), f.clone())).collect::<Vec<_>>(),
    );
    select(
        &mut out,
        "server",
        "server family",
        &server_families.iter().map(|f| (f.clone(), f.clone())).collect::<Vec<_>>(),
    );
    let outcomes: Vec<(String, String)> =
        ["connected", "failed", "timeout", "unsupported", "skipped", "harness_error", "unexpected", "changed"]
            .iter()
            .map(|o| (o.to_string(), o.replace('_', " ")))
            .collect();
    select(&mut out, "outcome", "outcome", &outcomes);
    out.push_str("</form>\n");

    let programs = report.program_columns();
    out.push_str("<table id=\"grid\"><thead><tr><th>server \\ client</th>");
    for c in &programs {
        let info = report.clients.get(c.as_str());
        let version = info.and_then(|i| i.version.clone()).unwrap_or_else(|| "version unknown".into());
        let policy = info.map(|i| policy_text(&i.policy)).unwrap_or_default();
        let _ = write!(
            out,
            "<th class=\"client\" data-client-family=\"{}\">{}<small>{}</small><details><summary>policy</summary><pre>{}</pre></details></th>",
            esc(&family_of_client(c)),
            esc(c),
            esc(&version),
            esc(&policy)
        );
    }
    out.push_str("<th>reached by</th></tr></thead>\n<tbody>\n");
    let sections = report.sections();
    let titled = sections.len() > 1;
    for (title, rows) in sections {
        if titled {
            let _ =
                write!(out, "<tr class=\"section\"><th colspan=\"{}\">{}</th></tr>", programs.len() + 2, esc(title));
        }
        for s in rows {
            server_row(&mut out, report, since, s);
        }
        if title == Section::ClientUpdates.title() {
            out.push_str("<tr class=\"hello\"><th class=\"server\">ClientHello as sent<small>size and key shares, as the built-in server read them</small></th>");
            for c in &programs {
                let line = report.client_hello_line(c).unwrap_or_else(|| "–".into());
                let _ = write!(out, "<td data-client-family=\"{}\">{}</td>", esc(&family_of_client(c)), esc(&line));
            }
            out.push_str("<td></td></tr>\n");
        }
    }
    out.push_str("</tbody>\n<tfoot><tr><th>accepted by the stack</th>");
    for c in &programs {
        let _ = write!(
            out,
            "<td data-client-family=\"{}\">{}</td>",
            esc(&family_of_client(c)),
            esc(&summary::client(report, c).line())
        );
    }
    out.push_str("<td></td></tr></tfoot></table>\n");
    super::html_delivery::section(&mut out, report, since);

    out.push_str("<section class=\"legend\"><h2>Legend</h2><p><span class=\"o-connected\">connected: protocol and key exchange</span>");
    for f in [
        Family::KeyExchange,
        Family::Protocol,
        Family::Certificate,
        Family::Starttls,
        Family::ServerConfig,
        Family::Other,
    ] {
        let _ = write!(out, "<span class=\"f-{}\">{}</span>", f.as_str(), esc(f.title()));
    }
    out.push_str("<span class=\"o-unsupported\">unsupported</span><span class=\"o-skipped\">skipped (not installed)</span><span class=\"o-harness_error\">harness error (we could not run it)</span><span class=\"unexpected\">not as expected</span></p>\n<table><thead><tr><th>class</th><th>what happened</th><th>what to do</th></tr></thead><tbody>");
    let used: BTreeSet<ErrorClass> = report
        .cells
        .values()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed { class, .. } => Some(*class),
            _ => None,
        })
        .collect();
    for class in used {
        let _ = write!(
            out,
            "<tr><td class=\"f-{}\"><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            class.family().as_str(),
            class,
            esc(class.explanation()),
            esc(class.remedy())
        );
    }
    out.push_str("</tbody></table></section>\n");
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

/// One row of the grid: the profile's header, its cells, and who reaches it.
fn server_row(out: &mut String, report: &Report, since: Option<&Diff>, s: &String) {
    let profile = report.servers.get(s);
    let family = profile.map_or("external", |p| p.backend.as_str());
    let mut settings =
        profile.map(super::markdown::profile_summary).unwrap_or_else(|| "a server someone else runs".into());
    if let Some(run) = report.server_run_summary(s) {
        settings = format!("{settings} — {run}");
    }
    let description = profile.map(|p| p.description.as_str()).unwrap_or("");
    let _ = write!(
        out,
        "<tr data-server-family=\"{}\"><th class=\"server\">{}<small>{}</small><details><summary>settings</summary><small>{}</small></details></th>",
        esc(family),
        esc(s),
        esc(description),
        esc(&settings)
    );
    for c in report.program_columns() {
        let id = format!("{c}/{s}");
        let Some(cell) = report.cells.get(&id) else {
            let _ =
                write!(out, "<td class=\"cell o-none\" data-client-family=\"{}\">–</td>", esc(&family_of_client(c)));
            continue;
        };
        let change = since.and_then(|d| d.change(&id)).map(|ch| (&ch.old.label, ch.kind));
        let mut classes = cell_classes(cell);
        if let Some((_, kind)) = change {
            let _ = write!(classes, " ch-{}", format!("{kind:?}").to_lowercase());
        }
        let title = match &cell.outcome {
            Outcome::Failed { class, .. } => format!("{}: {}", class, class.explanation()),
            other => other.label(),
        };
        let _ = write!(
            out,
            "<td class=\"{}\" id=\"{}\" data-client-family=\"{}\" data-outcome=\"{}\" data-verdict=\"{}\"{} title=\"{}\"><details><summary>{}</summary>",
            esc(&classes),
            esc(&id),
            esc(&family_of_client(c)),
            esc(cell.outcome.kind()),
            esc(cell.verdict.as_str()),
            change.map_or(String::new(), |(_, k)| format!(" data-change=\"{}\"", format!("{k:?}").to_lowercase())),
            esc(&title),
            esc(&grid_label(cell))
        );
        details(out, cell, change);
        out.push_str("</details></td>");
    }
    let _ = writeln!(out, "<td class=\"summary\">{}</td></tr>", esc(&summary::server(report, s).line()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }

    #[test]
    fn every_string_from_a_run_is_escaped() {
        use report_format::{Availability, ClientInfo, Expected, ExpectedOutcome, RunInfo};
        use std::collections::BTreeMap;
        const BAD: &str = "<script>x()</script><img src=x onerror=y()>\"'&";
        let profile: servers::ServerProfile =
            serde_json::from_value(serde_json::json!({"id": "s", "backend": "openssl", "description": BAD})).unwrap();
        let cell = CellReport {
            client: BAD.into(),
            server: "s".into(),
            outcome: Outcome::Failed {
                class: ErrorClass::Unmapped,
                side: report_format::Side::Server,
                stage: wire::Stage::Smtp,
                client_error: BAD.into(),
                server_error: Some(BAD.into()),
            },
            expected: Expected::new(ExpectedOutcome::Connected, BAD),
            verdict: report_format::Verdict::UnexpectedFailure,
            duration_ms: 1,
            server_log: vec![],
            repeats: vec![],
            delivery: None,
            blind_check: None,
            rate: None,
            rare: Vec::new(),
            left_to_chance: Vec::new(),
        };
        let info = ClientInfo {
            kind: "program".into(),
            program: BAD.into(),
            args: vec![],
            env: BTreeMap::new(),
            description: BAD.into(),
            version: Some(BAD.into()),
            policy: serde_json::json!({ BAD: BAD }),
            readiness: Availability::Ready,
            errors: BAD.into(),
        };
        let report = Report {
            schema_version: 1,
            run: RunInfo {
                id: BAD.into(),
                mode: BAD.into(),
                started: BAD.into(),
                finished: BAD.into(),
                wall_ms: 1,
                matrix: BAD.into(),
                tool_versions: BTreeMap::from([(BAD.to_string(), BAD.to_string())]),
                server_order: vec!["s".into()],
                client_order: vec![BAD.into()],
                jobs: 1,
                cores: 1,
                matrix_digest: String::new(),
                shard: None,
                merged_from: vec![],
                repeat: 1,
                blind: false,
            },
            servers: BTreeMap::from([("s".to_string(), profile)]),
            server_runs: BTreeMap::from([(
                "s".to_string(),
                report_format::MtaRun {
                    info: report_format::MtaInfo {
                        mta: report_format::Mta::Postfix,
                        version: BAD.into(),
                        tls_library: BAD.into(),
                        loaded: None,
                        settings: vec![(BAD.into(), BAD.into())],
                        config_warnings: vec![BAD.into()],
                        ready_ms: 1,
                    },
                    stop: report_format::StopReport { stop_ms: 1, killed: false, port_free: true, leftovers: vec![] },
                },
            )]),
            sender_runs: BTreeMap::new(),
            clients: BTreeMap::from([(BAD.to_string(), info)]),
            cells: BTreeMap::from([(format!("{BAD}/s"), cell)]),
        };
        let page = render(&report, None);
        assert_eq!(page.matches("<script").count(), 1, "only our own script");
        assert!(!page.contains("<img") && !page.contains("onerror=y()>"), "no raw markup");
        assert!(page.contains("&lt;script&gt;x()&lt;/script&gt;"));
        let md = crate::report::markdown::render(&report);
        assert!(!md.contains("<script") && !md.contains("<img"), "{md}");
    }

    #[test]
    fn compact_labels() {
        assert_eq!(compact("TLSv1.3 x25519"), "1.3 x25519");
        assert_eq!(compact("TLSv1 RSA"), "1.0 RSA");
        assert_eq!(compact("dh_too_small"), "dh_too_small");
    }
}
