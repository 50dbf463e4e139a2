// java-jsse: Java's own TLS (JSSE) with the JDK's default policy, speaking the starttls-matrix
// client contract: flags in, SMTP up to STARTTLS, the handshake (SNI and host name verification
// against --cafile), EHLO again over TLS, QUIT, and one `RESULT {json}` line out; exit 89 for a
// flag it does not know. The error text is Java's own. Compiled once by clients/java/java-client.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.Security;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
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

    static int error(String stage, String text) {
        System.out.println("RESULT {\"status\":\"error\",\"stage\":" + json(stage) + ",\"error\":" + json(text) + "}");
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
        System.exit(run(argv));
    }

    static int run(String[] argv) throws Exception {
        String connect = null, servername = "mx.test", cafile = null, ehlo = "client.test";
        int timeout = 10;
        boolean describe = false;
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (a.equals("--describe")) { describe = true; continue; }
            if (i + 1 >= argv.length || !a.startsWith("--")) { System.err.println("unsupported: " + a); return UNSUPPORTED; }
            switch (a) {
                case "--connect": connect = argv[++i]; break;
                case "--servername": servername = argv[++i]; break;
                case "--cafile": cafile = argv[++i]; break;
                case "--ehlo": ehlo = argv[++i]; break;
                case "--timeout": timeout = Integer.parseInt(argv[++i]); break;
                default: System.err.println("unsupported: " + a); return UNSUPPORTED;
            }
        }
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
            System.out.println("DESCRIBE {\"stack\":\"java-jsse\",\"library\":" + json(library) + ",\"policy\":" + policy + "}");
            return 0;
        }
        if (connect == null) { System.err.println("--connect is required"); return 2; }
        int colon = connect.lastIndexOf(':');
        String host = connect.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(connect.substring(colon + 1));
        Socket tcp = new Socket();
        try {
            tcp.connect(new InetSocketAddress(host, port), timeout * 1000);
            tcp.setSoTimeout(timeout * 1000);
            tcp.setTcpNoDelay(true);
        } catch (IOException e) {
            return error("connect", "connect to " + connect + ": " + e.getMessage());
        }
        // Unbuffered beyond what a line needs, so nothing read past the 220 is kept.
        BufferedReader in = new BufferedReader(new InputStreamReader(tcp.getInputStream(), StandardCharsets.US_ASCII), 1);
        OutputStream out = tcp.getOutputStream();
        try {
            String[] r = reply(in);
            if (!r[0].equals("220")) return error("smtp", "greeting: " + r[1]);
            r = command(in, out, "EHLO " + ehlo);
            if (!r[0].equals("250")) return error("smtp", "EHLO: " + r[1]);
            if (!r[1].toUpperCase().contains("STARTTLS")) return error("starttls", "STARTTLS not offered: " + r[1]);
            r = command(in, out, "STARTTLS");
            if (!r[0].equals("220")) return error("starttls", "STARTTLS refused: " + r[1]);
        } catch (IOException e) {
            return error("smtp", e.getMessage());
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
            return error(verify ? "verify" : "handshake", e.getClass().getSimpleName() + ": " + m);
        } catch (IOException e) {
            return error("handshake", e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        String protocol = tls.getSession().getProtocol();
        String cipher = tls.getSession().getCipherSuite();
        try {
            BufferedReader tin = new BufferedReader(new InputStreamReader(tls.getInputStream(), StandardCharsets.US_ASCII));
            OutputStream tout = tls.getOutputStream();
            String[] r = command(tin, tout, "EHLO " + ehlo);
            if (!r[0].equals("250")) return error("post-tls", "EHLO over TLS: " + r[1]);
            r = command(tin, tout, "QUIT");
            if (!r[0].equals("221")) return error("post-tls", "QUIT: " + r[1]);
        } catch (IOException e) {
            return error("post-tls", e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        String proto = protocol.equals("TLSv1") || protocol.startsWith("TLSv1.") ? protocol : protocol;
        // JSSE does not say which group or DH size a handshake used.
        System.out.println("RESULT {\"status\":\"ok\",\"protocol\":" + json(proto) + ",\"cipher\":" + json(cipher) + ",\"group\":null,\"dh_bits\":null}");
        return 0;
    }
}
