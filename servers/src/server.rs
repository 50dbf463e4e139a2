//! The built-in server: a listener on a loopback address, one task per connection driving the
//! ESMTP [`Session`] over plaintext and then TLS, and a log of one [`ConnectionRecord`] per
//! connection.

use crate::fault::{AfterStarttls, Fault, HelloVerdict, SLOW_BANNER_DELAY};
use crate::hello::{Replay, Short};
use crate::pki::TestPki;
use crate::session::{Action, Session, SessionConfig};
use crate::tls::{Acceptor, ConfigRejected};
use report_format::{ConnectionRecord, End, Refusal};
use report_format::{ServerProfile, TlsBackend};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use wire::{Reply, Stage};

/// The longest line read from a client: RFC 5321's 1000-octet text line limit.
const MAX_LINE: usize = 1000;
/// Connections served at once; more are answered 421 and closed.
const MAX_CONNECTIONS: usize = 64;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen. Must be a loopback address; port 0 picks a free one.
    pub bind: SocketAddr,
    /// A connection is closed this long after it was accepted, whatever it is doing.
    pub connection_timeout: Duration,
    pub session: SessionConfig,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            connection_timeout: Duration::from_secs(30),
            session: SessionConfig::default(),
        }
    }
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The profile was refused by the TLS library: a finding, not a harness fault.
    #[error(transparent)]
    ConfigRejected(#[from] ConfigRejected),
    #[error("bind {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: std::io::Error },
    #[error("refuse to listen on {0}: the built-in server binds loopback addresses only")]
    NotLoopback(SocketAddr),
}

/// What every connection of one server shares: its TLS configuration, and the groups it can
/// take a key share for (for [`Fault::NoHrr`]).
struct Serving {
    acceptor: Acceptor,
    groups: Vec<String>,
}

struct Shared {
    active: AtomicUsize,
    idle: Notify,
    records: mpsc::UnboundedSender<ConnectionRecord>,
}

/// A started server. Dropping it stops the listener and every connection.
pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    records: mpsc::UnboundedReceiver<ConnectionRecord>,
    task: JoinHandle<()>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start a server for `profile`: build its TLS configuration (refusal is
/// [`StartError::ConfigRejected`]), bind, and accept in the background.
pub async fn start(
    backend: TlsBackend,
    profile: &ServerProfile,
    pki: &TestPki,
    mut options: ServeOptions,
) -> Result<RunningServer, StartError> {
    options.session.fault = profile.fault;
    if !options.bind.ip().is_loopback() {
        return Err(StartError::NotLoopback(options.bind));
    }
    let acceptor = Arc::new(Serving {
        acceptor: Acceptor::build(backend, profile, pki)?,
        groups: profile.groups.iter().flatten().map(|g| g.name().to_string()).collect(),
    });
    let listener =
        TcpListener::bind(options.bind).await.map_err(|cause| StartError::Bind { addr: options.bind, cause })?;
    let addr = listener.local_addr().map_err(|cause| StartError::Bind { addr: options.bind, cause })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared { active: AtomicUsize::new(0), idle: Notify::new(), records: tx });
    let task = tokio::spawn(accept_loop(listener, acceptor, options, shared.clone()));
    Ok(RunningServer { addr, shared, records: rx, task })
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Wait until no connection is open, at most `bound`. Returns whether it got there.
    pub async fn quiesce(&self, bound: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.idle.notified();
                if self.shared.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(bound, wait).await.is_ok()
    }

    /// The records of connections that ended since the last call.
    pub fn take_records(&mut self) -> Vec<ConnectionRecord> {
        let mut out = Vec::new();
        while let Ok(r) = self.records.try_recv() {
            out.push(r);
        }
        out
    }

    /// The next record, waiting for a connection to end (for `serve`).
    pub async fn next_record(&mut self) -> Option<ConnectionRecord> {
        self.records.recv().await
    }

    /// Stop accepting and end every connection.
    pub async fn stop(self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Arc<Serving>, options: ServeOptions, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, peer)) = listener.accept().await else { continue };
        // Small SMTP writes right after a TLS flight otherwise wait ~40 ms for a delayed ACK.
        let _ = tcp.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        shared.active.fetch_add(1, Ordering::SeqCst);
        let (acceptor, options, shared) = (acceptor.clone(), options.clone(), shared.clone());
        connections.spawn(async move {
            let too_many = shared.active.load(Ordering::SeqCst) > MAX_CONNECTIONS;
            let record = serve_connection(tcp, peer, &acceptor, &options, too_many).await;
            let _ = shared.records.send(record);
            shared.active.fetch_sub(1, Ordering::SeqCst);
            shared.idle.notify_waiters();
        });
    }
}

/// What happened to one connection, filled in as it goes.
struct Progress {
    record: ConnectionRecord,
}

impl Progress {
    fn end(
        mut self,
        stage: Stage,
        end: End,
        error: Option<String>,
        started: Instant,
        session: &Session,
    ) -> ConnectionRecord {
        self.record.stage = Some(stage);
        self.record.end = Some(end);
        self.record.error = error;
        self.record.commands = Some(session.commands());
        self.record.messages = Some(session.messages);
        self.record.client_name = session.client_name.clone().or(self.record.client_name);
        self.record.refusal = self.record.refusal.take().or_else(|| session.refusal.clone());
        self.record.duration_ms = Some(started.elapsed().as_millis() as u64);
        self.record
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: &Serving,
    options: &ServeOptions,
    too_many: bool,
) -> ConnectionRecord {
    let started = Instant::now();
    let mut session = Session::new(options.session.clone());
    let progress = Progress {
        record: ConnectionRecord {
            peer: Some(peer.to_string()),
            client_name: None,
            starttls: Some(false),
            pipelined_plaintext_bytes: Some(0),
            tls: None,
            stage: Some(Stage::Smtp),
            end: Some(End::ClientClosed),
            error: None,
            commands: Some(0),
            messages: Some(0),
            duration_ms: Some(0),
            refusal: None,
            client_hello: None,
            encodings: Vec::new(),
        },
    };
    let deadline = tokio::time::Instant::now() + options.connection_timeout;
    match tokio::time::timeout_at(deadline, drive(tcp, acceptor, &mut session, progress, too_many, started)).await {
        Ok(record) => record,
        Err(_) => ConnectionRecord {
            peer: Some(peer.to_string()),
            client_name: session.client_name.clone(),
            starttls: Some(false),
            pipelined_plaintext_bytes: Some(0),
            tls: None,
            stage: Some(Stage::Smtp),
            end: Some(End::Timeout),
            error: Some(format!("connection timeout after {:?}", options.connection_timeout)),
            commands: Some(session.commands()),
            messages: Some(session.messages),
            duration_ms: Some(started.elapsed().as_millis() as u64),
            refusal: session.refusal.clone(),
            client_hello: None,
            encodings: Vec::new(),
        },
    }
}

/// How one phase (plaintext or TLS) of the dialogue ended.
enum PhaseEnd {
    /// STARTTLS was accepted; its 220 reply is not written yet (the driver writes it, with
    /// whatever a fault adds).
    StartTls(Reply),
    Closed(End, Option<String>),
}

async fn drive(
    tcp: TcpStream,
    serving: &Serving,
    session: &mut Session,
    mut progress: Progress,
    too_many: bool,
    started: Instant,
) -> ConnectionRecord {
    let mut reader = BufReader::new(tcp);
    if too_many {
        let _ = reader.get_mut().write_all(b"421 4.7.0 Too many connections, try later\r\n").await;
        return progress.end(Stage::Smtp, End::Limit, Some("too many connections".into()), started, session);
    }
    let fault = session.fault();
    match fault {
        Some(Fault::SlowBanner) => tokio::time::sleep(SLOW_BANNER_DELAY).await,
        Some(Fault::Stall) => {
            // A banner that never ends: the client waits until someone gives up.
            let _ = reader.get_mut().write_all(b"220-mx.test stalling\r\n").await;
            // Never finish the banner; notice when the client gives up (end of stream).
            let mut sink = [0u8; 1024];
            while matches!(tokio::io::AsyncReadExt::read(reader.get_mut(), &mut sink).await, Ok(n) if n > 0) {}
            return progress.end(
                Stage::Smtp,
                End::Fault,
                Some("fault stall: the banner never ended".into()),
                started,
                session,
            );
        }
        Some(Fault::NotSmtp) => {
            // An SSH server: its identification string, then OpenSSH's answer to whatever the
            // client says first; a client still waiting for a greeting after a second is let go
            // (OpenSSH's LoginGraceTime, shortened).
            let _ = reader.get_mut().write_all(crate::fault::SSH_BANNER.as_bytes()).await;
            let said = tokio::time::timeout(crate::fault::NOT_SMTP_GRACE, read_line(&mut reader)).await;
            if matches!(said, Ok(Ok(Some(_)))) {
                let _ = reader.get_mut().write_all(crate::fault::SSH_REFUSAL.as_bytes()).await;
            }
            let _ = reader.get_mut().shutdown().await;
            return progress.end(
                Stage::Smtp,
                End::Fault,
                Some("fault not-smtp: an SSH banner instead of an SMTP greeting".into()),
                started,
                session,
            );
        }
        _ => {}
    }
    let greeting = session.greeting();
    let reply = greeting.reply.as_ref().map(Reply::to_wire).unwrap_or_default();
    if let Err(e) = reader.get_mut().write_all(reply.as_bytes()).await {
        return progress.end(Stage::Smtp, End::IoError, Some(e.to_string()), started, session);
    }
    if let Some(reply) = greeting.reply.as_ref().filter(|r| r.code >= 400) {
        progress.record.refusal = Some(Refusal { stage: Stage::Smtp, reply: reply.to_string() });
    }
    if greeting.action == Action::Close {
        let _ = reader.get_mut().shutdown().await;
        return progress.end(
            Stage::Smtp,
            End::Fault,
            Some("fault banner-421: refused at the banner".into()),
            started,
            session,
        );
    }
    let starttls_reply = match phase(&mut reader, session).await {
        PhaseEnd::Closed(end, error) => return progress.end(Stage::Smtp, end, error, started, session),
        PhaseEnd::StartTls(reply) => reply,
    };
    progress.record.starttls = Some(true);
    progress.record.client_name = session.client_name.clone();
    // CVE-2011-0411: whatever the client pipelined after STARTTLS is dropped, never read as
    // if it had come over TLS. With the pipelined-plaintext fault the server first waits, so
    // that a pipelining client's extra bytes have arrived to be counted.
    let mut pipelined = reader.buffer().len();
    if fault == Some(Fault::PipelinedPlaintext) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.get_ref().try_read(&mut buf) {
            if n == 0 {
                break;
            }
            pipelined += n;
        }
    }
    progress.record.pipelined_plaintext_bytes = Some(pipelined);
    let mut tcp = reader.into_inner();
    let mut out = starttls_reply.to_wire().into_bytes();
    let after = crate::fault::after_starttls(fault);
    if let AfterStarttls::InjectThenHandshake(extra) = after {
        out.extend_from_slice(extra.as_bytes());
    }
    if let Err(e) = tcp.write_all(&out).await {
        return progress.end(Stage::Starttls, End::IoError, Some(e.to_string()), started, session);
    }
    if let AfterStarttls::SendThenClose(bytes) = after {
        // Answer the ClientHello, not the 220: wait for the client to start the handshake.
        let mut hello = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncReadExt::read(&mut tcp, &mut hello)).await;
        let _ = tcp.write_all(bytes).await;
    }
    if matches!(after, AfterStarttls::SendThenClose(_) | AfterStarttls::Close) {
        let _ = tcp.shutdown().await;
        let name = fault.map_or("?", Fault::name);
        let what = format!("fault {name}: the server broke off instead of doing the TLS handshake");
        progress.record.refusal = Some(Refusal { stage: Stage::Handshake, reply: what.clone() });
        return progress.end(Stage::Handshake, End::Fault, Some(what), started, session);
    }
    // The ClientHello, read off the wire first: its size and offers go in the record, and the
    // handshake faults act on it, as the buggy servers they model do.
    let limit = crate::fault::hello_read_limit(fault);
    let (read, short) = match crate::hello::read_first_flight(&mut tcp, limit).await {
        Ok(read) => read,
        Err(e) => return progress.end(Stage::Handshake, End::IoError, Some(e.to_string()), started, session),
    };
    progress.record.client_hello = read.info.clone();
    if let Some(Short::Closed(n)) = short {
        let what = if n == 0 {
            "the client closed the connection without sending a ClientHello".to_string()
        } else {
            format!("the client closed the connection after {n} bytes of its ClientHello")
        };
        return progress.end(Stage::Handshake, End::ClientClosed, Some(what), started, session);
    }
    match crate::fault::on_client_hello(fault, &read, short.as_ref(), &serving.groups) {
        HelloVerdict::Proceed => {}
        HelloVerdict::Close(what) => {
            // Unread bytes make the kernel reset the connection, as it would for the real server.
            drop(tcp);
            return progress.end(Stage::Handshake, End::Fault, Some(what), started, session);
        }
        HelloVerdict::Alert(what) => {
            let _ = tcp.write_all(crate::fault::ALERT_HANDSHAKE_FAILURE).await;
            let _ = tcp.shutdown().await;
            return progress.end(Stage::Handshake, End::Fault, Some(what), started, session);
        }
        HelloVerdict::Stall(what) => {
            // Never answer; notice when the client gives up (end of stream).
            let mut sink = [0u8; 4096];
            while matches!(tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await, Ok(n) if n > 0) {}
            return progress.end(Stage::Handshake, End::Fault, Some(what), started, session);
        }
    }
    let (accepted, encodings) = serving.acceptor.accept(Replay::new(read.bytes, tcp)).await;
    progress.record.encodings = encodings;
    let (tls, negotiated) = match accepted {
        Ok(ok) => ok,
        Err(words) => return progress.end(Stage::Handshake, End::HandshakeFailed, Some(words), started, session),
    };
    if let Some(hello) = progress.record.client_hello.as_mut() {
        hello.hello_retry = crate::fault::needed_hello_retry(hello, &negotiated);
    }
    progress.record.tls = Some(negotiated);
    session.tls_started();
    let mut reader = BufReader::new(tls);
    match phase(&mut reader, session).await {
        PhaseEnd::Closed(end, error) => progress.end(Stage::PostTls, end, error, started, session),
        PhaseEnd::StartTls(_) => unreachable!("the session refuses STARTTLS once TLS is active"),
    }
}

/// Read commands and message lines and answer them until STARTTLS or the end.
async fn phase<S: AsyncRead + AsyncWrite + Unpin>(reader: &mut BufReader<S>, session: &mut Session) -> PhaseEnd {
    loop {
        let line = match read_line(reader).await {
            Ok(Some(line)) => line,
            Ok(None) => return PhaseEnd::Closed(End::ClientClosed, None),
            Err(LineError::TooLong) => {
                let _ = reader.get_mut().write_all(b"500 5.5.2 Line too long, closing\r\n").await;
                return PhaseEnd::Closed(End::Limit, Some("line too long".into()));
            }
            Err(LineError::Io(e)) => return PhaseEnd::Closed(End::IoError, Some(e.to_string())),
        };
        let step = if session.in_data() { session.data_line(&line) } else { session.command(&line) };
        if step.action == Action::StartTls {
            return PhaseEnd::StartTls(step.reply.unwrap_or_else(|| Reply::single(220, "2.0.0 Ready to start TLS")));
        }
        if let Some(reply) = &step.reply
            && let Err(e) = reader.get_mut().write_all(reply.to_wire().as_bytes()).await
        {
            return PhaseEnd::Closed(End::IoError, Some(e.to_string()));
        }
        match step.action {
            Action::Continue => {}
            Action::StartTls => unreachable!("returned above"),
            Action::Close => {
                let _ = reader.get_mut().shutdown().await;
                let end = match step.reply.as_ref().map(|r| r.code) {
                    Some(221) => End::Quit,
                    _ if session.fault().is_some() => End::Fault,
                    _ => End::Limit,
                };
                return PhaseEnd::Closed(end, None);
            }
        }
    }
}

enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// One line including its LF, at most [`MAX_LINE`] bytes; `None` at a clean end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await.map_err(LineError::Io)?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(line) });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if line.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        if done {
            return Ok(Some(line));
        }
    }
}
