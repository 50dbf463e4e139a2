//! The built-in server over real sockets on 127.0.0.1 port 0: the ESMTP dialogue, its limits,
//! and STARTTLS without the CVE-2011-0411 plaintext injection.

use openssl::ssl::{SslConnector, SslMethod};
use servers::{ConnectionRecord, End, RunningServer, ServeOptions, ServerProfile, TestPki};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wire::{Reply, ReplyParser, Stage};

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: RunningServer,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

fn start(options: ServeOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let profile: ServerProfile = serde_json::from_value(serde_json::json!({"id": "t", "backend": "openssl"})).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(servers::start(servers::TlsBackend::Openssl, &profile, &pki, options)).unwrap();
    Fixture { rt, server, pki, _dir: dir }
}

impl Fixture {
    fn records(&mut self) -> Vec<ConnectionRecord> {
        self.rt.block_on(self.server.quiesce(Duration::from_secs(5)));
        self.server.take_records()
    }
}

fn read_reply<R: BufRead>(r: &mut R) -> Reply {
    let mut p = ReplyParser::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "server closed early");
        if let Some(reply) = p.feed(&line).unwrap() {
            return reply;
        }
    }
}

fn say<S: Read + Write>(r: &mut BufReader<S>, line: &str) -> Reply {
    r.get_mut().write_all(line.as_bytes()).unwrap();
    read_reply(r)
}

#[test]
fn plaintext_dialogue_and_a_message() {
    let mut f = start(ServeOptions::default());
    let mut r = BufReader::new(TcpStream::connect(f.server.addr()).unwrap());
    assert_eq!(read_reply(&mut r).code, 220);
    let ehlo = say(&mut r, "EHLO c.test\r\n");
    for k in ["STARTTLS", "PIPELINING", "8BITMIME", "SIZE"] {
        assert!(ehlo.has_keyword(k), "{k} in {ehlo}");
    }
    assert_eq!(say(&mut r, "MAIL FROM:<a@b.test>\r\n").code, 250);
    assert_eq!(say(&mut r, "RCPT TO:<c@d.test>\r\n").code, 250);
    assert_eq!(say(&mut r, "DATA\r\n").code, 354);
    assert_eq!(say(&mut r, "Subject: x\r\n\r\nhello\r\n.\r\n").code, 250);
    assert_eq!(say(&mut r, "QUIT\r\n").code, 221);
    let recs = f.records();
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].messages, recs[0].end, recs[0].stage), (Some(1), Some(End::Quit), Some(Stage::Smtp)));
}

#[test]
fn an_overlong_line_is_refused_and_closed() {
    let mut f = start(ServeOptions::default());
    let mut r = BufReader::new(TcpStream::connect(f.server.addr()).unwrap());
    read_reply(&mut r);
    let reply = say(&mut r, &format!("EHLO {}\r\n", "a".repeat(2000)));
    assert_eq!(reply.code, 500);
    assert_eq!(f.records()[0].end, Some(End::Limit));
}

#[test]
fn the_connection_timeout_ends_an_idle_client() {
    let mut f = start(ServeOptions { connection_timeout: Duration::from_millis(300), ..ServeOptions::default() });
    let _idle = TcpStream::connect(f.server.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(f.records()[0].end, Some(End::Timeout));
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded_not_answered_over_tls() {
    let mut f = start(ServeOptions::default());
    let tcp = TcpStream::connect(f.server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(tcp);
    read_reply(&mut r);
    say(&mut r, "EHLO c.test\r\n");
    // CVE-2011-0411: a man in the middle appends a command to the client's STARTTLS.
    let reply = say(&mut r, "STARTTLS\r\nRSET\r\n");
    assert_eq!(reply.code, 220);
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_ca_file(&f.pki.ca_cert).unwrap();
    let tls = connector.build().connect("mx.test", r.into_inner()).unwrap();
    let mut r = BufReader::new(tls);
    // Over TLS the first reply must answer our EHLO, not the injected RSET.
    let ehlo = say(&mut r, "EHLO c.test\r\n");
    assert_eq!(ehlo.code, 250);
    assert!(ehlo.lines[0].contains("greets c.test"), "{ehlo}");
    assert!(!ehlo.has_keyword("STARTTLS"), "not offered again over TLS");
    assert_eq!(say(&mut r, "QUIT\r\n").code, 221);
    let rec = &f.records()[0];
    assert_eq!(rec.pipelined_plaintext_bytes, Some("RSET\r\n".len()));
    assert_eq!(rec.commands, Some(4), "EHLO, STARTTLS, EHLO, QUIT: the RSET was never read");
    assert_eq!(rec.tls.as_ref().unwrap().protocol, Some(wire::Protocol::Tls13));
    assert_eq!((rec.stage, rec.end), (Some(Stage::PostTls), Some(End::Quit)));
}

#[test]
fn a_failed_handshake_is_logged_in_the_servers_words() {
    let mut f = start(ServeOptions::default());
    let mut r = BufReader::new(TcpStream::connect(f.server.addr()).unwrap());
    read_reply(&mut r);
    say(&mut r, "EHLO c.test\r\n");
    say(&mut r, "STARTTLS\r\n");
    r.get_mut().write_all(b"this is not a TLS ClientHello\r\n").unwrap();
    let rec = &f.records()[0];
    assert_eq!((rec.stage, rec.end), (Some(Stage::Handshake), Some(End::HandshakeFailed)));
    assert!(rec.error.as_deref().unwrap().contains("SSL routines"), "{:?}", rec.error);
}

#[test]
fn only_loopback_addresses_are_served() {
    let f = start(ServeOptions::default());
    let profile: ServerProfile = serde_json::from_value(serde_json::json!({"id": "t", "backend": "openssl"})).unwrap();
    let options = ServeOptions { bind: "0.0.0.0:0".parse().unwrap(), ..ServeOptions::default() };
    let err = f.rt.block_on(servers::start(servers::TlsBackend::Openssl, &profile, &f.pki, options)).err().unwrap();
    assert!(matches!(err, servers::StartError::NotLoopback(_)));
}

#[test]
fn the_pipelined_plaintext_fault_counts_what_a_client_sends_past_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let profile: ServerProfile =
        serde_json::from_value(serde_json::json!({"id": "t", "backend": "openssl", "fault": "pipelined-plaintext"}))
            .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut server =
        rt.block_on(servers::start(servers::TlsBackend::Openssl, &profile, &pki, ServeOptions::default())).unwrap();
    let mut r = BufReader::new(TcpStream::connect(server.addr()).unwrap());
    read_reply(&mut r);
    say(&mut r, "EHLO c.test\r\n");
    // Written one after the other, as a client that pipelines past STARTTLS would.
    r.get_mut().write_all(b"STARTTLS\r\n").unwrap();
    r.get_mut().write_all(b"MAIL FROM:<a@b.test>\r\n").unwrap();
    assert_eq!(read_reply(&mut r).code, 220);
    drop(r);
    rt.block_on(server.quiesce(Duration::from_secs(5)));
    let rec = &server.take_records()[0];
    assert_eq!(rec.pipelined_plaintext_bytes, Some("MAIL FROM:<a@b.test>\r\n".len()));
}
