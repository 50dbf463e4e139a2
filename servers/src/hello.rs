//! The client's first ClientHello, read off the wire after STARTTLS before the TLS library sees
//! it: how many bytes it took, what it offered (versions, groups, key shares, EMS), and the
//! bytes themselves, handed back to the library unchanged ([`Replay`]).

use report_format::ClientHelloInfo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most a ClientHello may take here: a handshake message of up to 64 KiB in records of at
/// most 16 KiB each (RFC 8446 §5.1), with their headers.
const MAX_HELLO_BYTES: usize = 5 * 5 + 65_540;

/// What was read of the first flight.
#[derive(Debug)]
pub struct Read {
    /// Every byte read, to be replayed to the TLS library.
    pub bytes: Vec<u8>,
    /// The bytes that formed the ClientHello's records, when it was complete.
    pub hello_end: Option<usize>,
    /// What it offered, when it was complete and parsed.
    pub info: Option<ClientHelloInfo>,
}

/// How reading stopped short of a whole ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Short {
    /// The client closed the connection first (after `0` or more bytes).
    Closed(usize),
    /// The first bytes are not a TLS handshake record.
    NotTls,
    /// The limit given to [`read_first_flight`] was reached before the message ended.
    Limit(usize),
}

/// Read from `stream` until the first ClientHello is complete, or `limit` bytes were read, or
/// the stream ended. Returns every byte read and, when complete, what the hello offered.
pub async fn read_first_flight<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> io::Result<(Read, Option<Short>)> {
    let limit = limit.min(MAX_HELLO_BYTES);
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        match frame(&bytes) {
            Framing::Complete { end, message } => {
                let info = parse(&message, records_in(&bytes[..end]));
                // A message that is not a ClientHello is the TLS library's to refuse.
                return Ok((Read { bytes, hello_end: Some(end), info }, None));
            }
            Framing::NotTls => return Ok((Read { bytes, hello_end: None, info: None }, Some(Short::NotTls))),
            Framing::Incomplete => {}
        }
        if bytes.len() >= limit {
            let (n, info) = (bytes.len(), parse_prefix(&bytes));
            return Ok((Read { bytes, hello_end: None, info }, Some(Short::Limit(n))));
        }
        let want = (limit - bytes.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            let (n, info) = (bytes.len(), parse_prefix(&bytes));
            return Ok((Read { bytes, hello_end: None, info }, Some(Short::Closed(n))));
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

enum Framing {
    Incomplete,
    NotTls,
    /// The handshake message is whole: it ends at byte `end` of the input, and is `message`
    /// (its 4-byte header included) once the record headers are taken out.
    Complete {
        end: usize,
        message: Vec<u8>,
    },
}

/// Find the first handshake message in a run of handshake records.
fn frame(bytes: &[u8]) -> Framing {
    let mut message = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = bytes.get(at..at + 5) else { return Framing::Incomplete };
        // A handshake record (22) of a TLS 1.x record version.
        if header[0] != 22 || header[1] != 3 {
            return Framing::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(payload) = bytes.get(at + 5..at + 5 + len) else { return Framing::Incomplete };
        message.extend_from_slice(payload);
        at += 5 + len;
        if message.len() >= 4 {
            let want = 4 + (usize::from(message[1]) << 16 | usize::from(message[2]) << 8 | usize::from(message[3]));
            if message.len() >= want {
                message.truncate(want);
                return Framing::Complete { end: at, message };
            }
        }
    }
}

fn records_in(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while let Some(h) = bytes.get(at..at + 5) {
        at += 5 + usize::from(u16::from_be_bytes([h[3], h[4]]));
        n += 1;
    }
    n
}

/// A cursor over a byte slice that never panics: every read past the end is `None`, except
/// that a lenient cursor (reading a truncated hello) gives a variable-length field whatever of
/// it is there.
struct Cursor<'a>(&'a [u8], bool);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn take_up_to(&mut self, n: usize) -> Option<&'a [u8]> {
        match self.take(n) {
            Some(v) => Some(v),
            None if self.1 && !self.0.is_empty() => Some(std::mem::take(&mut self.0)),
            None => None,
        }
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take_up_to(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take_up_to(n)
    }
}

/// GREASE values (RFC 8701): 0x0A0A, 0x1A1A, … 0xFAFA.
fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1".into(),
        0x0302 => "TLSv1.1".into(),
        0x0303 => "TLSv1.2".into(),
        0x0304 => "TLSv1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// What a ClientHello handshake message (4-byte header included) offers; `None` if it is not
/// a well-formed ClientHello.
pub fn parse(message: &[u8], records: usize) -> Option<ClientHelloInfo> {
    parse_with(message, records, false)
}

/// What the first bytes of a ClientHello that did not arrive whole offer: its declared length
/// from the headers, and whatever of its fields those bytes hold (`read_only` says how many).
pub fn parse_prefix(bytes: &[u8]) -> Option<ClientHelloInfo> {
    let payload = bytes.get(5..).filter(|_| bytes.first() == Some(&22))?;
    let declared =
        4 + (usize::from(*payload.get(1)?) << 16 | usize::from(*payload.get(2)?) << 8 | usize::from(*payload.get(3)?));
    let mut info = parse_with(payload, 1, true)?;
    info.length = declared;
    info.read_only = Some(bytes.len());
    Some(info)
}

fn parse_with(message: &[u8], records: usize, lenient: bool) -> Option<ClientHelloInfo> {
    let mut c = Cursor(message, lenient);
    if c.u8()? != 1 {
        return None;
    }
    c.take(3)?;
    let legacy_version = c.u16()?;
    c.take(32)?;
    c.vec8()?;
    let suites = c.vec16()?;
    let cipher_suites = suites.chunks_exact(2).filter(|s| !grease(u16::from_be_bytes([s[0], s[1]]))).count();
    c.vec8()?;
    let mut info = ClientHelloInfo {
        length: message.len(),
        records,
        max_version: version_name(legacy_version),
        cipher_suites,
        ..ClientHelloInfo::default()
    };
    // No extensions at all is a valid (old) ClientHello.
    let Some(extensions) = c.vec16() else { return Some(info) };
    let mut ext = Cursor(extensions, lenient);
    while let (Some(kind), Some(body)) = (ext.u16(), ext.vec16()) {
        if read_extension(&mut info, kind, Cursor(body, lenient), lenient).is_none() {
            // A prefix (`lenient`) may end inside any extension, in whatever order the client
            // put them (rustls shuffles its own): what came before stands. A whole hello with a
            // malformed extension is not a ClientHello we can read.
            if lenient {
                break;
            }
            return None;
        }
    }
    Some(info)
}

/// What one extension of a ClientHello says, into `info`; `None` when its body does not parse.
fn read_extension(info: &mut ClientHelloInfo, kind: u16, mut b: Cursor<'_>, lenient: bool) -> Option<()> {
    match kind {
        // supported_groups
        10 => {
            let list = b.vec16()?;
            info.groups = list
                .chunks_exact(2)
                .map(|g| u16::from_be_bytes([g[0], g[1]]))
                .filter(|g| !grease(*g))
                .map(openssl_ext::group_name_of_codepoint)
                .collect();
        }
        // extended_master_secret
        23 => info.ems = true,
        // supported_versions
        43 => {
            let list = b.vec8()?;
            if let Some(max) =
                list.chunks_exact(2).map(|v| u16::from_be_bytes([v[0], v[1]])).filter(|v| !grease(*v)).max()
            {
                info.max_version = version_name(max);
            }
        }
        // key_share
        51 => {
            let mut shares = Cursor(b.vec16()?, lenient);
            while let (Some(group), Some(_)) = (shares.u16(), shares.vec16()) {
                if !grease(group) {
                    info.key_shares.push(openssl_ext::group_name_of_codepoint(group));
                }
            }
        }
        _ => {}
    }
    Some(())
}

/// A stream that first gives back bytes already read from it, then reads on.
pub struct Replay<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Replay<S> {
        Replay { prefix, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a test builds it: the given suites and extensions, in records of at
    /// most `record` bytes.
    fn hello(extensions: &[(u16, Vec<u8>)], record: usize) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x0a, 0x0a, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]);
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut message = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        message.extend_from_slice(&body);
        message
            .chunks(record)
            .flat_map(|c| [&[22, 3, 1, (c.len() >> 8) as u8, c.len() as u8][..], c].concat())
            .collect()
    }

    fn key_share(groups: &[(u16, usize)]) -> Vec<u8> {
        let mut list = Vec::new();
        for (g, n) in groups {
            list.extend_from_slice(&g.to_be_bytes());
            list.extend_from_slice(&(*n as u16).to_be_bytes());
            list.extend(std::iter::repeat_n(0x42, *n));
        }
        [(list.len() as u16).to_be_bytes().to_vec(), list].concat()
    }

    fn modern() -> Vec<(u16, Vec<u8>)> {
        vec![
            (10, vec![0, 8, 0x11, 0xec, 0x00, 0x1d, 0x3a, 0x3a, 0x00, 0x17]),
            (23, vec![]),
            (43, vec![6, 0x2a, 0x2a, 0x03, 0x04, 0x03, 0x03]),
            (51, key_share(&[(0x11ec, 1216), (0x001d, 32)])),
            // signature_algorithms and the rest of a real hello, as padding
            (13, vec![0; 200]),
        ]
    }

    #[tokio::test]
    async fn a_hybrid_hello_in_two_records_is_read_whole_and_named() {
        let wire = hello(&modern(), 1000);
        let mut tail = wire.clone();
        tail.extend_from_slice(b"more after the hello");
        let (read, short) = read_first_flight(&mut &tail[..], 100_000).await.unwrap();
        assert_eq!(short, None);
        assert_eq!(read.hello_end, Some(wire.len()));
        let info = read.info.unwrap();
        assert_eq!(info.records, 2);
        assert_eq!(info.length, wire.len() - 10);
        assert_eq!(info.max_version, "TLSv1.3");
        assert_eq!(info.cipher_suites, 2, "GREASE is not counted");
        assert_eq!(info.groups, ["X25519MLKEM768", "x25519", "secp256r1"]);
        assert_eq!(info.key_shares, ["X25519MLKEM768", "x25519"]);
        assert!(info.ems);
        assert!(info.length > 1300, "{}", info.length);
    }

    #[tokio::test]
    async fn a_limit_stops_reading_and_bytes_are_kept() {
        let wire = hello(&modern(), 16384);
        let (read, short) = read_first_flight(&mut &wire[..], 1460).await.unwrap();
        assert_eq!(short, Some(Short::Limit(1460)));
        assert_eq!(read.bytes, wire[..1460]);
        let partial = read.info.unwrap();
        assert_eq!((partial.length, partial.read_only), (wire.len() - 5, Some(1460)), "declared size, bytes read");
        assert_eq!(partial.key_shares, ["X25519MLKEM768", "x25519"], "fields within the bytes read are named");
        let (_, short) = read_first_flight(&mut &wire[..700], 1460).await.unwrap();
        assert_eq!(short, Some(Short::Closed(700)));
        let (_, short) = read_first_flight(&mut &b"EHLO x\r\n"[..], 1460).await.unwrap();
        assert_eq!(short, Some(Short::NotTls));
    }

    /// A prefix of a ClientHello, cut anywhere after its extensions begin and with its
    /// extensions in any order (rustls shuffles its own), still says what the hello's version,
    /// suites and the extensions read whole offer: the one-segment fault's record must not lose
    /// the hello because the cut fell inside a short extension (a flake seen with rustls-aws-lc,
    /// whose 1,464-byte hello the 1,460-byte cut ended in the last extension, whichever it was).
    /// Every order of five extensions, every cut: 120 × ~1,500 prefixes.
    #[test]
    fn every_prefix_in_every_extension_order_is_read() {
        fn orders(items: Vec<(u16, Vec<u8>)>) -> Vec<Vec<(u16, Vec<u8>)>> {
            if items.len() <= 1 {
                return vec![items];
            }
            let mut out = Vec::new();
            for i in 0..items.len() {
                let mut rest = items.clone();
                let first = rest.remove(i);
                for mut tail in orders(rest) {
                    tail.insert(0, first.clone());
                    out.push(tail);
                }
            }
            out
        }
        let mut checked = 0;
        for exts in orders(modern()) {
            let wire = hello(&exts, 16384);
            // The extensions block starts after 5 + 4 + 2 + 32 + 1 + 8 + 2 + 2 bytes.
            for cut in 56..wire.len() {
                let kinds: Vec<u16> = exts.iter().map(|(k, _)| *k).collect();
                let info = parse_prefix(&wire[..cut]).unwrap_or_else(|| panic!("cut at {cut}, extensions {kinds:?}"));
                assert_eq!(info.cipher_suites, 2);
                let mut at = 56;
                for (kind, data) in &exts {
                    at += 4 + data.len();
                    if at <= cut && *kind == 51 {
                        assert_eq!(info.key_shares, ["X25519MLKEM768", "x25519"], "cut at {cut}");
                    }
                    if at <= cut && *kind == 23 {
                        assert!(info.ems, "cut at {cut}");
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn a_tls12_hello_without_extensions_and_garbage_do_not_panic() {
        let old = hello(&[], 16384);
        let info = parse(&old[5..], 1).unwrap();
        assert_eq!((info.max_version.as_str(), info.ems, info.key_shares.len()), ("TLSv1.2", false, 0));
        for n in 0..old.len() {
            let _ = parse(&old[5..5 + n.min(old.len() - 5)], 1);
        }
        assert_eq!(parse(&[2, 0, 0, 0], 1), None, "a ServerHello is not a ClientHello");
    }

    #[tokio::test]
    async fn replay_gives_the_prefix_then_the_rest() {
        let mut r = Replay::new(b"abc".to_vec(), &b"def"[..]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdef");
    }

    #[test]
    fn grease_values() {
        assert!(grease(0x0a0a) && grease(0xfafa) && !grease(0x0a1a) && !grease(0x001d));
    }
}
