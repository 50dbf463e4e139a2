// java-jsse: Java's own TLS (JSSE) with the JDK's default policy, speaking the starttls-matrix
// client contract: flags in, SMTP up to STARTTLS, the handshake (SNI and host name verification
// against --cafile), EHLO again over TLS, QUIT, and one `RESULT {json}` line out; exit 89 for a
// flag it does not know. The error text is Java's own. Compiled once by clients/java/java-client.
//
// `--batch` (alone) runs many cells in one JVM, so the start-up is paid once per run: one request
// per line on stdin, `RUN <id> <the one-shot argv as a JSON array of strings>` or `CANCEL <id>`;
// `READY` once, then one `ANSWER <id> {"exit":N,"stdout":"…","stderr":"…"}` line per request on
// stdout (ASCII), holding exactly what the one-shot program would have exited with and printed.
// Requests run concurrently, each on its own thread and its own sockets (with their own
// timeouts) and its own SSLContext, so no session cache is shared and every cell is a fresh full
// handshake. A request that throws is answered with exit 1 and never ends the worker; CANCEL
// closes a late request's socket; end of stdin ends the worker.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.Security;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public final class StartTlsClient {
    static final int UNSUPPORTED = 89;

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static int error(PrintStream out, String stage, String text) {
        out.println("RESULT {\"status\":\"error\",\"stage\":" + json(stage) + ",\"error\":" + json(text) + "}");
        return 0;
    }

    /** One reply: its code and its lines joined by " / ". */
    static String[] reply(BufferedReader in) throws IOException {
        List<String> lines = new ArrayList<>();
        String code = "";
        for (int i = 0; i < 100; i++) {
            String line = in.readLine();
            if (line == null) throw new IOException("connection closed by the server");
            if (line.length() < 3) throw new IOException("malformed reply line: " + line);
            code = line.substring(0, 3);
            lines.add(line.length() > 4 ? line.substring(4) : "");
            if (line.length() == 3 || line.charAt(3) == ' ') break;
        }
        return new String[] {code, code + " " + String.join(" / ", lines)};
    }

    static String[] command(BufferedReader in, OutputStream out, String cmd) throws IOException {
        out.write((cmd + "\r\n").getBytes(StandardCharsets.US_ASCII));
        out.flush();
        return reply(in);
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 1 && argv[0].equals("--batch")) {
            batch();
            System.exit(0);
        }
        System.exit(run(argv, System.out, System.err, null));
    }

    /** One batch request: its id, and the socket CANCEL closes. */
    static final class Cell {
        final String id;
        private Socket socket;
        private boolean cancelled;

        Cell(String id) { this.id = id; }

        /** Remember the cell's socket; false if the cell was already cancelled. */
        synchronized boolean attach(Socket s) {
            socket = s;
            return !cancelled;
        }

        synchronized void cancel() {
            cancelled = true;
            if (socket != null) {
                try { socket.close(); } catch (IOException ignored) { }
            }
        }

        synchronized boolean cancelled() { return cancelled; }
    }

    /** `json(s)` with every non-ASCII character escaped too, for the batch protocol's lines. */
    static String asciiJson(String s) {
        String j = json(s);
        StringBuilder b = new StringBuilder();
        for (char c : j.toCharArray()) {
            if (c > 0x7e) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.toString();
    }

    /** The argv of a RUN line: a JSON array of strings. */
    static String[] parseArgv(String s) {
        List<String> out = new ArrayList<>();
        int[] at = {0};
        skipSpace(s, at);
        expect(s, at, '[');
        skipSpace(s, at);
        if (at[0] < s.length() && s.charAt(at[0]) == ']') {
            at[0]++;
        } else {
            while (true) {
                skipSpace(s, at);
                out.add(parseString(s, at));
                skipSpace(s, at);
                if (at[0] < s.length() && s.charAt(at[0]) == ',') { at[0]++; continue; }
                expect(s, at, ']');
                break;
            }
        }
        skipSpace(s, at);
        if (at[0] != s.length()) throw new IllegalArgumentException("trailing text after the argv array");
        return out.toArray(new String[0]);
    }

    static void skipSpace(String s, int[] at) {
        while (at[0] < s.length() && Character.isWhitespace(s.charAt(at[0]))) at[0]++;
    }

    static void expect(String s, int[] at, char c) {
        if (at[0] >= s.length() || s.charAt(at[0]) != c) throw new IllegalArgumentException("expected '" + c + "' at " + at[0]);
        at[0]++;
    }

    static String parseString(String s, int[] at) {
        expect(s, at, '"');
        StringBuilder b = new StringBuilder();
        while (true) {
            if (at[0] >= s.length()) throw new IllegalArgumentException("unterminated string");
            char c = s.charAt(at[0]++);
            if (c == '"') return b.toString();
            if (c != '\\') { b.append(c); continue; }
            if (at[0] >= s.length()) throw new IllegalArgumentException("unterminated escape");
            char e = s.charAt(at[0]++);
            switch (e) {
                case '"': case '\\': case '/': b.append(e); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (at[0] + 4 > s.length()) throw new IllegalArgumentException("short \\u escape");
                    b.append((char) Integer.parseInt(s.substring(at[0], at[0] + 4), 16));
                    at[0] += 4;
                    break;
                default: throw new IllegalArgumentException("unknown escape \\" + e);
            }
        }
    }

    /** The batch loop: requests in on stdin, answers out on stdout, cells on their own threads. */
    static void batch() throws IOException {
        // Our stdout carries the protocol only: anything else printing there goes to stderr.
        PrintStream protocol = System.out;
        System.setOut(System.err);
        Map<String, Cell> live = new ConcurrentHashMap<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        synchronized (protocol) {
            protocol.println("READY");
            protocol.flush();
        }
        String line;
        while ((line = in.readLine()) != null) {
            if (line.startsWith("RUN ")) {
                int space = line.indexOf(' ', 4);
                if (space < 0) { System.err.println("batch: malformed request: " + line); continue; }
                Cell cell = new Cell(line.substring(4, space));
                String argvJson = line.substring(space + 1);
                live.put(cell.id, cell);
                Thread t = new Thread(() -> {
                    try {
                        answer(protocol, cell, argvJson);
                    } finally {
                        live.remove(cell.id);
                    }
                }, "cell-" + cell.id);
                t.setDaemon(true);
                t.start();
            } else if (line.startsWith("CANCEL ")) {
                Cell cell = live.get(line.substring(7));
                if (cell != null) cell.cancel();
            } else {
                System.err.println("batch: unknown request: " + line);
            }
        }
        // End of input: the harness is done; cells still running end with the JVM.
    }

    /** Run one request as the one-shot program would, and answer with its exit and output. */
    static void answer(PrintStream protocol, Cell cell, String argvJson) {
        ByteArrayOutputStream stdout = new ByteArrayOutputStream();
        ByteArrayOutputStream stderr = new ByteArrayOutputStream();
        int code;
        // The default charset, as System.out's and System.err's when they are pipes.
        try (PrintStream out = new PrintStream(stdout, true); PrintStream err = new PrintStream(stderr, true)) {
            try {
                code = run(parseArgv(argvJson), out, err, cell);
            } catch (Throwable t) {
                // What the JVM prints for an exception out of main, and its exit status; the
                // batch machinery's frames below run() are left out.
                StackTraceElement[] frames = t.getStackTrace();
                int keep = frames.length;
                for (int i = 0; i < frames.length; i++) {
                    if (frames[i].getClassName().equals("StartTlsClient") && frames[i].getMethodName().equals("answer")) {
                        keep = i;
                        break;
                    }
                }
                t.setStackTrace(Arrays.copyOf(frames, keep));
                err.print("Exception in thread \"main\" ");
                t.printStackTrace(err);
                code = 1;
            }
        }
        if (cell.cancelled()) return;
        String line = "ANSWER " + cell.id + " {\"exit\":" + code
            + ",\"stdout\":" + asciiJson(new String(stdout.toByteArray(), StandardCharsets.UTF_8))
            + ",\"stderr\":" + asciiJson(new String(stderr.toByteArray(), StandardCharsets.UTF_8)) + "}";
        synchronized (protocol) {
            protocol.println(line);
            protocol.flush();
        }
    }

    /** One cell: the client contract's flags in, one RESULT line on `stdout`, the exit code back.
     *  `cell` is the batch request (null in one-shot mode). */
    static int run(String[] argv, PrintStream stdout, PrintStream stderr, Cell cell) throws Exception {
        String connect = null, servername = "mx.test", cafile = null, ehlo = "client.test";
        int timeout = 10;
        boolean describe = false;
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (a.equals("--describe")) { describe = true; continue; }
            if (i + 1 >= argv.length || !a.startsWith("--")) { stderr.println("unsupported: " + a); return UNSUPPORTED; }
            switch (a) {
                case "--connect": connect = argv[++i]; break;
                case "--servername": servername = argv[++i]; break;
                case "--cafile": cafile = argv[++i]; break;
                case "--ehlo": ehlo = argv[++i]; break;
                case "--timeout": timeout = Integer.parseInt(argv[++i]); break;
                default: stderr.println("unsupported: " + a); return UNSUPPORTED;
            }
        }
        // A fresh SSLContext for every cell, with its own (empty) client session cache: a batch
        // worker never resumes a session an earlier cell left, as a fresh JVM would not.
        SSLContext ctx = SSLContext.getInstance("TLS");
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        if (cafile != null) {
            KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
            ks.load(null, null);
            try (FileInputStream f = new FileInputStream(cafile)) {
                Collection<? extends Certificate> certs = CertificateFactory.getInstance("X.509").generateCertificates(f);
                int n = 0;
                for (Certificate c : certs) ks.setCertificateEntry("ca" + n++, c);
            }
            tmf.init(ks);
        } else {
            tmf.init((KeyStore) null);
        }
        ctx.init(null, tmf.getTrustManagers(), null);
        if (describe) {
            String policy = "{\"jdk.tls.disabledAlgorithms\":" + json(String.valueOf(Security.getProperty("jdk.tls.disabledAlgorithms")))
                + ",\"protocols\":" + json(String.join(",", ctx.getDefaultSSLParameters().getProtocols())) + "}";
            String library = "Java " + System.getProperty("java.version") + " (" + System.getProperty("java.vendor") + ") JSSE";
            stdout.println("DESCRIBE {\"stack\":\"java-jsse\",\"library\":" + json(library) + ",\"policy\":" + policy + "}");
            return 0;
        }
        if (connect == null) { stderr.println("--connect is required"); return 2; }
        int colon = connect.lastIndexOf(':');
        String host = connect.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(connect.substring(colon + 1));
        Socket tcp = new Socket();
        try {
            return converse(tcp, host, port, connect, timeout, servername, ehlo, ctx, stdout, cell);
        } finally {
            // The connection ends with the cell, as when a one-shot program exits: the TCP socket
            // beneath TLS is closed, with no close_notify (exit sends none either).
            tcp.close();
        }
    }

    /** The SMTP dialogue and the handshake over `tcp`, one RESULT line on `stdout`. */
    static int converse(Socket tcp, String host, int port, String connect, int timeout, String servername, String ehlo,
            SSLContext ctx, PrintStream stdout, Cell cell) throws Exception {
        if (cell != null && !cell.attach(tcp)) return error(stdout, "connect", "cancelled by the harness");
        try {
            tcp.connect(new InetSocketAddress(host, port), timeout * 1000);
            tcp.setSoTimeout(timeout * 1000);
            tcp.setTcpNoDelay(true);
        } catch (IOException e) {
            return error(stdout, "connect", "connect to " + connect + ": " + e.getMessage());
        }
        // Unbuffered beyond what a line needs, so nothing read past the 220 is kept.
        BufferedReader in = new BufferedReader(new InputStreamReader(tcp.getInputStream(), StandardCharsets.US_ASCII), 1);
        OutputStream out = tcp.getOutputStream();
        try {
            String[] r = reply(in);
            if (!r[0].equals("220")) return error(stdout, "smtp", "greeting: " + r[1]);
            r = command(in, out, "EHLO " + ehlo);
            if (!r[0].equals("250")) return error(stdout, "smtp", "EHLO: " + r[1]);
            if (!r[1].toUpperCase().contains("STARTTLS")) return error(stdout, "starttls", "STARTTLS not offered: " + r[1]);
            r = command(in, out, "STARTTLS");
            if (!r[0].equals("220")) return error(stdout, "starttls", "STARTTLS refused: " + r[1]);
        } catch (IOException e) {
            return error(stdout, "smtp", e.getMessage());
        }
        SSLSocket tls = (SSLSocket) ctx.getSocketFactory().createSocket(tcp, servername, port, true);
        SSLParameters p = tls.getSSLParameters();
        p.setServerNames(List.of(new SNIHostName(servername)));
        p.setEndpointIdentificationAlgorithm("HTTPS");
        tls.setSSLParameters(p);
        try {
            tls.startHandshake();
        } catch (SSLHandshakeException e) {
            String m = String.valueOf(e.getMessage());
            boolean verify = m.contains("PKIX") || m.contains("subject alternative") || m.contains("certificate");
            return error(stdout, verify ? "verify" : "handshake", e.getClass().getSimpleName() + ": " + m);
        } catch (IOException e) {
            return error(stdout, "handshake", e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        String protocol = tls.getSession().getProtocol();
        String cipher = tls.getSession().getCipherSuite();
        try {
            BufferedReader tin = new BufferedReader(new InputStreamReader(tls.getInputStream(), StandardCharsets.US_ASCII));
            OutputStream tout = tls.getOutputStream();
            String[] r = command(tin, tout, "EHLO " + ehlo);
            if (!r[0].equals("250")) return error(stdout, "post-tls", "EHLO over TLS: " + r[1]);
            r = command(tin, tout, "QUIT");
            if (!r[0].equals("221")) return error(stdout, "post-tls", "QUIT: " + r[1]);
        } catch (IOException e) {
            return error(stdout, "post-tls", e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        String proto = protocol.equals("TLSv1") || protocol.startsWith("TLSv1.") ? protocol : protocol;
        // JSSE does not say which group or DH size a handshake used.
        stdout.println("RESULT {\"status\":\"ok\",\"protocol\":" + json(proto) + ",\"cipher\":" + json(cipher) + ",\"group\":null,\"dh_bits\":null}");
        return 0;
    }
}
