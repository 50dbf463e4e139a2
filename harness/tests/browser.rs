//! The published page in a real browser, headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it): the grid has every cell, a failing cell opens to its details, the page makes no
//! network request, and text a hostile server chose is shown, never run. A screenshot is kept
//! under `target/browser-artifacts/`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_starttls-matrix");

/// Chromium, or `None` (and a loud note) where it is not installed; in CI it must be.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
    });
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI must have chromium: run scripts/install-stacks --browser");
        eprintln!("SKIPPED: chromium is not installed (scripts/install-stacks --browser installs it)");
    }
    found
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the browser saw of a page.
struct Visit {
    dom: String,
    /// URL requests the page itself started (the browser's own background requests excluded).
    page_requests: Vec<String>,
}

/// Run Chromium headless on `url`, in its own process group, bounded in time; every process of
/// the group is ended before it is reaped.
fn chromium_run(browser: &Path, profile: &Path, args: &[String]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Nothing leaves this machine, whatever the browser wants to fetch for itself.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Exited (not yet reaped)?
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with WNOWAIT leaves it unreaped.
        let r = unsafe {
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        };
        // SAFETY: reading the pid field the kernel filled in.
        let exited = r == 0 && unsafe { info.si_pid() } == pid;
        if exited || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: the group's leader is our unreaped child.
    unsafe { libc::killpg(pid, libc::SIGKILL) };
    let _ = child.wait();
    reader.join().unwrap()
}

fn visit(browser: &Path, url: &str, screenshot: Option<&Path>) -> Visit {
    let tmp = tempfile::tempdir().unwrap();
    let netlog = tmp.path().join("net.json");
    let dom = chromium_run(
        browser,
        &tmp.path().join("profile"),
        &[format!("--log-net-log={}", netlog.display()), "--dump-dom".into(), url.into()],
    );
    if let Some(shot) = screenshot {
        chromium_run(
            browser,
            &tmp.path().join("profile2"),
            &["--window-size=1500,1100".into(), format!("--screenshot={}", shot.display()), url.into()],
        );
    }
    Visit { dom, page_requests: page_requests(&netlog) }
}

/// URL requests in a Chromium net log that a page started: the browser's own have the
/// initiator "not an origin".
fn page_requests(netlog: &Path) -> Vec<String> {
    let log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(netlog).unwrap()).unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_i64().unwrap();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_i64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect()
}

fn starttls_matrix(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(EXE).args(args).current_dir(dir).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_default_matrix_page_renders_with_every_cell_and_makes_no_request() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let matrix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix.toml");
    let (code, stderr) =
        starttls_matrix(dir.path(), &["run", "--matrix", matrix.to_str().unwrap(), "--out", "results"]);
    assert_eq!(code, Some(0), "{stderr}");
    for f in ["report.json", "README.md", "index.html"] {
        assert!(dir.path().join("results").join(f).is_file(), "results/{f}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results/report.json")).unwrap()).unwrap();
    let cells = report["cells"].as_object().unwrap().len();
    let page = dir.path().join("results/index.html");
    let url = format!("file://{}#openssl/dhe512", page.display());
    let v = visit(&browser, &url, Some(&artifacts().join("index.png")));
    assert!(v.dom.contains("data-js=\"ready\""), "the page's script ran");
    assert_eq!(v.dom.matches("<td class=\"cell ").count(), cells, "one grid cell per report cell");
    let id = v.dom.find("id=\"openssl/dhe512\"").expect("the cell is there");
    let start = v.dom[..id].rfind("<td").unwrap();
    let cell = &v.dom[start..id + v.dom[id..].find("</td>").unwrap()];
    assert!(cell.contains("dh_too_small") && cell.contains("f-key-exchange"), "{cell}");
    assert!(cell.contains("<details open"), "a linked cell opens to its details: {cell}");
    assert!(cell.contains("dh key too small"), "the client's own words are in the details");
    assert!(v.dom.contains("data-resources=\"0\""), "the page loaded no resource");
    assert!(v.page_requests.is_empty(), "the page requested {:?}", v.page_requests);
    assert!(artifacts().join("index.png").metadata().unwrap().len() > 10_000, "a screenshot was taken");

    // The request check is not vacuous: a page that fetches something is caught.
    let leaky = dir.path().join("leaky.html");
    std::fs::write(&leaky, "<!doctype html><img src=\"http://leak.invalid/x.png\">").unwrap();
    let v = visit(&browser, &format!("file://{}", leaky.display()), None);
    assert!(v.page_requests.iter().any(|u| u.contains("leak.invalid")), "{:?}", v.page_requests);
}

/// Markup that would mark the page if it ever ran.
const MARKUP: &str = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"><script>document.body.setAttribute('data-pwned','2')</script>";

/// A hostile SMTP server on 127.0.0.1: it answers every connection (at most 16, each bounded
/// in time) with markup in its banner, or with markup in its EHLO reply and a certificate
/// whose names are markup.
fn hostile_server(refuse_at_banner: bool) -> (String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![format!("x{}.test", MARKUP.replace(' ', ""))]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca = dir.path().join("hostile.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let mut acceptor = openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls()).unwrap();
    acceptor.set_certificate(&openssl::x509::X509::from_pem(cert.pem().as_bytes()).unwrap()).unwrap();
    acceptor
        .set_private_key(&openssl::pkey::PKey::private_key_from_pem(key.serialize_pem().as_bytes()).unwrap())
        .unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16).flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = serve_hostile(stream, refuse_at_banner, &acceptor);
        }
    });
    (addr, ca, dir)
}

fn serve_hostile(
    mut tcp: TcpStream,
    refuse_at_banner: bool,
    acceptor: &openssl::ssl::SslAcceptor,
) -> std::io::Result<()> {
    if refuse_at_banner {
        return tcp.write_all(format!("421 4.3.2 {MARKUP}\r\n").as_bytes());
    }
    tcp.write_all(b"220 mx.test ESMTP\r\n")?;
    let mut r = BufReader::new(tcp.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    tcp.write_all(format!("250-mx.test {MARKUP}\r\n250 STARTTLS\r\n").as_bytes())?;
    line.clear();
    r.read_line(&mut line)?;
    tcp.write_all(b"220 go ahead\r\n")?;
    if let Ok(mut tls) = acceptor.accept(tcp) {
        let _ = tls.write_all(b"250 ok\r\n");
    }
    Ok(())
}

#[test]
fn text_a_hostile_server_chose_is_shown_literally_and_never_runs() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        "[[server]]\nid = \"unused\"\nbackend = \"openssl\"\n[[client]]\nid = \"openssl\"\nbuiltin = \"openssl-client\"\n[[client]]\nid = \"rustls\"\nbuiltin = \"rustls-client\"\n",
    )
    .unwrap();
    for (n, refuse) in [(1, true), (2, false)] {
        let (addr, ca, _keep) = hostile_server(refuse);
        let out = format!("out{n}");
        let (code, stderr) = starttls_matrix(
            dir.path(),
            &[
                "probe",
                &addr,
                "--servername",
                "mx.test",
                "--cafile",
                ca.to_str().unwrap(),
                "--matrix",
                "m.toml",
                "--out",
                &out,
            ],
        );
        assert_eq!(code, Some(1), "the hostile server fails every cell: {stderr}");
        let report = std::fs::read_to_string(dir.path().join(&out).join("report.json")).unwrap();
        assert!(report.contains("data-pwned"), "the hostile text reached the report (as data)");
        let html = std::fs::read_to_string(dir.path().join(&out).join("index.html")).unwrap();
        assert!(!html.contains("<img src=x") && !html.contains("<script>document"), "raw markup in the page");
        assert!(html.contains("&lt;img"), "the markup is shown as text");
        let md = std::fs::read_to_string(dir.path().join(&out).join("README.md")).unwrap();
        assert!(!md.contains("<img") && !md.contains("<script"), "raw markup in the Markdown");
        if let Some(browser) = &browser {
            let page = dir.path().join(&out).join("index.html");
            let v = visit(
                browser,
                &format!("file://{}", page.display()),
                Some(&artifacts().join(format!("hostile{n}.png"))),
            );
            assert!(v.dom.contains("data-js=\"ready\""));
            assert!(!v.dom.contains("data-pwned=\""), "hostile markup ran");
            assert!(v.dom.contains("onerror="), "and it is on the page, as text");
            assert!(v.page_requests.is_empty(), "{:?}", v.page_requests);
        }
    }
}
