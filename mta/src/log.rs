//! An MTA's own log, read back line by line (Postfix's `maillog_file`, Exim's `mainlog`,
//! sendmail's syslog through our socket, OpenSMTPD's stderr), and assembled into one
//! [`ConnectionRecord`] per connection holding only what the log said: a field the MTA does not
//! log stays `None`. Each MTA's module turns its messages into [`LogEvent`]s and names the
//! connection a line belongs to (a process id, a session id, the peer's address and port), so
//! connections logged at the same time — senders delivering concurrently — stay apart.

use report_format::{ConnectionRecord, End, Negotiated, Stage};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the counts an MTA logs when a connection ends say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndCounts {
    /// STARTTLS was accepted on the connection.
    pub starttls: Option<bool>,
    /// Messages accepted.
    pub messages: Option<usize>,
    pub commands: Option<usize>,
    pub end: Option<End>,
}

/// What one log message tells of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A connection began, from this peer (`127.0.0.5`, or with its port where logged).
    Connect { peer: Option<String> },
    /// The TLS handshake completed, with what the MTA says was negotiated.
    Tls(Negotiated),
    /// A message was accepted, over TLS or not (`None`: the line does not say), with what the
    /// line says was negotiated (Exim's `X=`).
    Message { over_tls: Option<bool>, tls: Option<Negotiated> },
    /// The server's side of a failure, in its words (TLS errors and the like).
    Error(String),
    /// The MTA refused or dropped part of its own configuration (kept per profile, not per
    /// connection).
    ConfigWarning(String),
    /// Words that detail the configuration warning logged just before them (Postfix's "TLS
    /// library problem" after "error configuring…"); anywhere else, a server error.
    WarningDetail(String),
    /// The connection ended, with what the MTA counted.
    End(EndCounts),
}

impl LogEvent {
    /// Whether the connection it belongs to is over (or failed) once this is read.
    pub fn settles(&self) -> bool {
        matches!(self, LogEvent::End(_) | LogEvent::Error(_))
    }
}

/// Connections assembled from events, in the order they began.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Connections still open, by the key of their lines (`""` for lines that name none).
    open: Vec<(String, Building)>,
    done: Vec<(u64, ConnectionRecord)>,
    /// Connections begun so far (orders the records).
    seq: u64,
    /// Configuration warnings, each once.
    pub warnings: Vec<String>,
    /// The last event was a configuration warning (its detail may follow).
    after_warning: bool,
}

#[derive(Debug, Default)]
struct Building {
    seq: u64,
    record: ConnectionRecord,
    /// Messages counted from per-message lines.
    messages: usize,
    /// Whether this MTA logs every accepted message on a line of its own.
    counted: bool,
}

impl Assembler {
    /// Feed one event of the connection whose lines carry `key` (`None`: the line names none).
    pub fn push(&mut self, key: Option<&str>, event: LogEvent) {
        let key = key.unwrap_or_default();
        let after_warning = std::mem::take(&mut self.after_warning);
        match event {
            LogEvent::ConfigWarning(w) => {
                // Every new server process says it again (Postfix: each smtpd): keep it once.
                let detailed = format!("{w}: ");
                if !self.warnings.iter().any(|x| *x == w || x.starts_with(&detailed)) {
                    self.warnings.push(w);
                }
                self.after_warning = true;
            }
            LogEvent::WarningDetail(d) if after_warning => {
                if let Some(w) = self.warnings.last_mut()
                    && !w.contains(&d)
                {
                    w.push_str(": ");
                    w.push_str(&d);
                }
                self.after_warning = true;
            }
            // Not after a warning: it is a server error like any other.
            LogEvent::WarningDetail(d) => self.push(Some(key), LogEvent::Error(d)),
            LogEvent::Connect { peer } => {
                self.flush(key);
                self.building(key).record.peer = peer;
            }
            LogEvent::Tls(n) => {
                let b = self.building(key);
                b.record.tls = Some(n);
                b.record.starttls = Some(true);
                b.record.stage = Some(Stage::PostTls);
            }
            LogEvent::Message { over_tls, tls } => {
                let b = self.building(key);
                b.messages += 1;
                b.counted = true;
                if b.record.tls.is_none() {
                    b.record.tls = tls;
                }
                if over_tls == Some(true) {
                    b.record.starttls = Some(true);
                }
                if over_tls == Some(false) && b.record.tls.is_none() {
                    b.record.stage = Some(Stage::Smtp);
                }
            }
            LogEvent::Error(e) => {
                let b = self.building(key);
                match &mut b.record.error {
                    Some(words) => {
                        words.push('\n');
                        words.push_str(&e);
                    }
                    None => b.record.error = Some(e),
                }
                if b.record.tls.is_none() {
                    b.record.stage.get_or_insert(Stage::Handshake);
                    b.record.end.get_or_insert(End::HandshakeFailed);
                }
            }
            // The end of a connection whose beginning we never saw (a queue run's status line):
            // nothing to record.
            LogEvent::End(_) if !self.open.iter().any(|(k, _)| k == key) => {}
            LogEvent::End(counts) => {
                let b = self.building(key);
                let r = &mut b.record;
                r.starttls = counts.starttls.or(r.starttls);
                r.commands = counts.commands.or(r.commands);
                r.end = counts.end.or(r.end);
                r.messages = counts.messages.or(b.counted.then_some(b.messages));
                self.flush(key);
            }
        }
    }

    /// The open connection of `key`, begun now if there is none (its first lines were missed).
    fn building(&mut self, key: &str) -> &mut Building {
        let i = match self.open.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.seq += 1;
                self.open.push((key.to_string(), Building { seq: self.seq, ..Building::default() }));
                self.open.len() - 1
            }
        };
        &mut self.open[i].1
    }

    fn flush(&mut self, key: &str) {
        if let Some(i) = self.open.iter().position(|(k, _)| k == key) {
            let (_, b) = self.open.remove(i);
            let mut record = b.record;
            if record.messages.is_none() && b.counted {
                record.messages = Some(b.messages);
            }
            self.done.push((b.seq, record));
        }
    }

    /// How many connections are open (begun, not yet ended in the log).
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The connections that ended, and (with `include_open`) those still open, in the order
    /// they began.
    pub fn take(&mut self, include_open: bool) -> Vec<ConnectionRecord> {
        if include_open {
            let keys: Vec<String> = self.open.iter().map(|(k, _)| k.clone()).collect();
            for key in keys {
                self.flush(&key);
            }
        }
        let mut done = std::mem::take(&mut self.done);
        done.sort_by_key(|(seq, _)| *seq);
        done.into_iter().map(|(_, r)| r).collect()
    }
}

/// Where a running MTA's log comes from.
pub enum LogReader {
    /// A file the MTA appends to; read from where we stopped.
    File { path: PathBuf, offset: u64, partial: String },
    /// Lines pushed by a task (stderr reader, syslog socket).
    Lines(mpsc::UnboundedReceiver<String>),
}

/// The most a log may grow between two reads before we stop reading it (a runaway daemon).
const MAX_READ: u64 = 4 << 20;

impl LogReader {
    /// The complete lines written since the last call.
    pub fn read_new(&mut self) -> Vec<String> {
        match self {
            LogReader::File { path, offset, partial } => {
                let Ok(mut f) = std::fs::File::open(&*path) else { return Vec::new() };
                if f.seek(SeekFrom::Start(*offset)).is_err() {
                    return Vec::new();
                }
                let mut buf = Vec::new();
                let Ok(n) = f.take(MAX_READ).read_to_end(&mut buf) else { return Vec::new() };
                *offset += n as u64;
                partial.push_str(&String::from_utf8_lossy(&buf));
                let Some(last) = partial.rfind('\n') else { return Vec::new() };
                let complete: Vec<String> = partial[..last].lines().map(str::to_string).collect();
                *partial = partial[last + 1..].to_string();
                complete
            }
            LogReader::Lines(rx) => {
                let mut out = Vec::new();
                while let Ok(l) = rx.try_recv() {
                    out.push(l);
                }
                out
            }
        }
    }
}

/// Our end of a program's syslog (the socket its `/dev/log` is): a task forwards each datagram,
/// in the order they reached the socket, to `tx` as one line.
pub(crate) fn listen_syslog(path: &Path, tx: mpsc::UnboundedSender<String>) -> std::io::Result<JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let sock = UnixDatagram::bind(path)?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = sock.recv(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).trim_end_matches(['\n', '\0']).to_string();
            if tx.send(text).is_err() {
                break;
            }
        }
    }))
}

/// Why a syslog could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum LogEndError {
    #[error("mark the end of the syslog at {}: {source}", path.display())]
    Mark { path: PathBuf, source: std::io::Error },
    #[error("read the syslog to its end within {} s: its reader fell behind", .0.as_secs())]
    NotReached(Duration),
    #[error("read the syslog to its end: its reader stopped")]
    ReaderStopped,
    #[error("read the log to its end: it is not a syslog")]
    NotSyslog,
}

/// Every line that reached the syslog socket at `path` (read by [`listen_syslog`] into
/// `reader`) before this call and was not read yet: for a program whose processes have all
/// ended, the rest of its log, to the last line.
///
/// A datagram is on the socket's queue once its sender's `send` has returned, and the queue is
/// read in order; a mark of ours sent now therefore comes out after every line logged before it.
/// Waiting for the mark, rather than for a while, makes the log whole however late the reader
/// task runs: a 30 ms pause lost a sendmail run's last lines (`stat=Sent`, `done`) under load,
/// and its message, delivered, read as still queued. `bound` is for a reader that has stopped
/// or hangs; the mark normally comes back at once.
pub async fn read_syslog_to_end(
    reader: &mut LogReader,
    path: &Path,
    bound: Duration,
) -> Result<Vec<String>, LogEndError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let LogReader::Lines(rx) = reader else { return Err(LogEndError::NotSyslog) };
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mark = format!("starttls-matrix: end of log {}.{n}", std::process::id());
    let deadline = tokio::time::Instant::now() + bound;
    let send = async {
        let sock = UnixDatagram::unbound()?;
        // Connected, so that a full queue (10 datagrams by default) makes it wait for room.
        sock.connect(path)?;
        sock.send(mark.as_bytes()).await
    };
    match tokio::time::timeout_at(deadline, send).await {
        Ok(Ok(_)) => {}
        Ok(Err(source)) => return Err(LogEndError::Mark { path: path.to_path_buf(), source }),
        Err(_) => return Err(LogEndError::NotReached(bound)),
    }
    let mut lines = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if line == mark => return Ok(lines),
            Ok(Some(line)) => lines.push(line),
            Ok(None) => return Err(LogEndError::ReaderStopped),
            Err(_) => return Err(LogEndError::NotReached(bound)),
        }
    }
}

/// The `program[pid]` of a syslog-style line (`Nov 28 18:40:01 host postfix/smtpd[12]: …`): the
/// connection of MTAs that serve one connection per process at a time.
pub fn program_pid(line: &str) -> Option<&str> {
    let head = &line[..line.find("]: ")? + 1];
    Some(head.rsplit(' ').next().unwrap_or(head))
}

/// The first `[address]` of a log message, with the `:port` right after it where there is one:
/// `localhost[127.0.0.1]:41234` → `127.0.0.1:41234`, `relay=localhost [127.0.0.5]` → `127.0.0.5`.
pub fn bracketed_peer(msg: &str) -> Option<String> {
    let (_, rest) = msg.split_once('[')?;
    let (addr, after) = rest.split_once(']')?;
    addr.parse::<std::net::IpAddr>().ok()?;
    let port: String =
        after.strip_prefix(':').map(|p| p.chars().take_while(char::is_ascii_digit).collect()).unwrap_or_default();
    Some(if port.is_empty() { addr.to_string() } else { format!("{addr}:{port}") })
}

/// `key=value` counts of a log message (`ehlo=2 starttls=1 data=1 commands=7`).
pub fn count(msg: &str, key: &str) -> Option<usize> {
    msg.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.split('/').next()?.parse().ok())
}

/// A group name as the report spells it (IANA): `X25519` → `x25519`, `prime256v1` → `secp256r1`.
pub fn iana_group(name: &str) -> String {
    match name {
        "X25519" => "x25519".to_string(),
        "X448" => "x448".to_string(),
        other => openssl_ext::iana_group_name(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use report_format::Protocol;

    #[test]
    fn one_record_per_connection_with_only_what_was_logged() {
        let mut a = Assembler::default();
        a.push(None, LogEvent::Connect { peer: Some("127.0.0.1".into()) });
        a.push(None, LogEvent::Tls(Negotiated::tls(Protocol::Tls13, "TLS_AES_256_GCM_SHA384", None, None)));
        a.push(None, LogEvent::Message { over_tls: Some(true), tls: None });
        a.push(None, LogEvent::End(EndCounts { end: Some(End::Quit), ..EndCounts::default() }));
        a.push(None, LogEvent::Connect { peer: None });
        a.push(None, LogEvent::Error("no shared cipher".into()));
        let done = a.take(false);
        assert_eq!(done.len(), 1, "the second connection is still open");
        assert_eq!((done[0].messages, done[0].starttls, done[0].end), (Some(1), Some(true), Some(End::Quit)));
        assert_eq!(done[0].commands, None, "not logged: not known");
        assert_eq!(done[0].peer.as_deref(), Some("127.0.0.1"));
        let open = a.take(true);
        assert_eq!(open[0].error.as_deref(), Some("no shared cipher"));
        assert_eq!(open[0].messages, None, "no message line and no count: not known");
        assert_eq!(open[0].stage, Some(Stage::Handshake));
    }

    /// Two senders' connections logged at the same time stay two records, in the order they
    /// began, each with its own peer.
    #[test]
    fn interleaved_connections_stay_apart() {
        let mut a = Assembler::default();
        a.push(Some("smtpd[1]"), LogEvent::Connect { peer: Some("127.0.0.2".into()) });
        a.push(Some("smtpd[2]"), LogEvent::Connect { peer: Some("127.0.0.3".into()) });
        a.push(Some("smtpd[2]"), LogEvent::Error("dh key too small".into()));
        a.push(Some("smtpd[1]"), LogEvent::Tls(Negotiated::tls(Protocol::Tls12, "X", None, None)));
        a.push(Some("smtpd[2]"), LogEvent::End(EndCounts { messages: Some(0), ..EndCounts::default() }));
        a.push(Some("smtpd[1]"), LogEvent::End(EndCounts { messages: Some(1), ..EndCounts::default() }));
        let r = a.take(true);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].peer.as_deref(), r[0].tls.is_some(), r[0].messages), (Some("127.0.0.2"), true, Some(1)));
        assert_eq!((r[1].peer.as_deref(), r[1].error.is_some(), r[1].messages), (Some("127.0.0.3"), true, Some(0)));
    }

    #[test]
    fn a_warning_keeps_its_detail_once() {
        let mut a = Assembler::default();
        for _ in 0..2 {
            a.push(None, LogEvent::ConfigWarning("error configuring explicit DH parameters".into()));
            a.push(None, LogEvent::WarningDetail("dh key too small".into()));
        }
        assert_eq!(a.warnings, vec!["error configuring explicit DH parameters: dh key too small".to_string()]);
    }

    /// The lines a sendmail run logged last, as recorded when the 30 ms pause missed them.
    const LAST_LINES: [&str; 6] = [
        "<22>Dec  6 05:14:29 sm-sender[2]: STARTTLS=client, start=ok",
        "<22>Dec  6 05:14:30 sm-sender[2]: STARTTLS=client, relay=[127.0.0.1], version=TLSv1.3, verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256",
        "<22>Dec  6 05:14:30 sm-sender[2]: STARTTLS=client, cert-subject=/CN=mx.test, cert-issuer=/CN=starttls-matrix+20test+20CA, verifymsg=ok",
        "<22>Dec  6 05:14:30 sm-sender[2]: 6B65ETdS000002: to=postmaster@p33793.test, delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=30277, relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent (Ok: queued as 1C43F9D8041)",
        "<22>Dec  6 05:14:30 sm-sender[2]: 6B65ETdS000002: done; delay=00:00:01, ntries=1",
        "<20>Dec  6 05:14:30 sm-sender[2]: STARTTLS=client, SSL_shutdown failed: -1",
    ];

    /// Lines on the socket that its reader has not forwarded yet — in a one-thread runtime the
    /// reader task cannot run until we wait — are missed by a read of what arrived so far, and
    /// all read, in order and without the mark, by a read to the end.
    #[tokio::test(flavor = "current_thread")]
    async fn a_syslog_is_read_to_its_end_however_late_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("send.sock");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = listen_syslog(&path, tx).unwrap();
        let program = std::os::unix::net::UnixDatagram::unbound().unwrap();
        // Six datagrams fit the socket's queue (net.unix.max_dgram_qlen, 10 by default) while
        // nothing reads it; without blocking, a smaller queue fails here instead of hanging.
        program.set_nonblocking(true).unwrap();
        for line in LAST_LINES {
            program.send_to(line.as_bytes(), &path).unwrap();
        }
        let mut reader = LogReader::Lines(rx);
        assert!(reader.read_new().is_empty(), "the reader has not run: all a read after a pause would get");
        let lines = read_syslog_to_end(&mut reader, &path, Duration::from_secs(60)).await.unwrap();
        assert_eq!(lines, LAST_LINES);
        // Nothing more was logged: the next read to the end is empty (each call has its own mark).
        assert!(read_syslog_to_end(&mut reader, &path, Duration::from_secs(60)).await.unwrap().is_empty());
        // A reader that stopped is an error, never a shorter log.
        task.abort();
        let _ = task.await;
        assert!(read_syslog_to_end(&mut reader, &path, Duration::from_secs(60)).await.is_err());
        let mut file = LogReader::File { path: dir.path().join("log"), offset: 0, partial: String::new() };
        assert!(matches!(
            read_syslog_to_end(&mut file, &path, Duration::from_secs(60)).await,
            Err(LogEndError::NotSyslog)
        ));
    }

    #[test]
    fn peers() {
        assert_eq!(bracketed_peer("connect from localhost[127.0.0.1]:41234").as_deref(), Some("127.0.0.1:41234"));
        assert_eq!(bracketed_peer("NOQUEUE: connect from localhost [127.0.0.5]").as_deref(), Some("127.0.0.5"));
        assert_eq!(bracketed_peer("SMTP connection from (x) [127.0.0.1]:9 closed").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(bracketed_peer("warning: [not an address]"), None);
    }

    #[test]
    fn counts() {
        let m = "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7";
        assert_eq!((count(m, "starttls"), count(m, "data"), count(m, "commands")), (Some(1), Some(1), Some(7)));
        assert_eq!(count("disconnect from x ehlo=1 starttls=0/1 commands=1/2", "starttls"), Some(0));
        assert_eq!(count(m, "auth"), None);
    }
}
