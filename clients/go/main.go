// go-crypto-tls: Go's crypto/tls with its defaults, speaking the starttls-matrix client
// contract: flags in, SMTP up to STARTTLS (net/textproto, every reply checked), the handshake with SNI and verification
// against --cafile, EHLO again over TLS, QUIT, and one `RESULT {json}` line out; exit 89 for a
// flag it does not know. The error text is Go's own. Built once by clients/go/go-client.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"runtime"
	"strings"
	"time"
)

const unsupported = 89

func emit(fields map[string]interface{}) int {
	line, _ := json.Marshal(fields)
	fmt.Println("RESULT " + string(line))
	return 0
}

func fail(stage, text string) int {
	return emit(map[string]interface{}{"status": "error", "stage": stage, "error": text})
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func run() int {
	fs := flag.NewFlagSet("go-client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	connect := fs.String("connect", "", "HOST:PORT")
	servername := fs.String("servername", "mx.test", "SNI and verified name")
	cafile := fs.String("cafile", "", "CA certificates (PEM)")
	ehlo := fs.String("ehlo", "client.test", "EHLO name")
	timeout := fs.Int("timeout", 10, "seconds")
	describe := fs.Bool("describe", false, "print DESCRIBE and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "unsupported:", err)
		return unsupported
	}
	config := &tls.Config{ServerName: *servername}
	if *cafile != "" {
		pem, err := os.ReadFile(*cafile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		config.RootCAs = pool
	}
	if *describe {
		var suites []string
		for _, s := range tls.CipherSuites() {
			suites = append(suites, s.Name)
		}
		policy := map[string]interface{}{"suites": suites, "min_version": "TLSv1.2 (crypto/tls client default)", "dhe": false}
		line, _ := json.Marshal(map[string]interface{}{"stack": "go-crypto-tls", "library": "Go " + runtime.Version() + " crypto/tls", "policy": policy})
		fmt.Println("DESCRIBE " + string(line))
		return 0
	}
	conn, err := net.DialTimeout("tcp", *connect, time.Duration(*timeout)*time.Second)
	if err != nil {
		return fail("connect", err.Error())
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Duration(*timeout) * time.Second))
	// The dialogue up to STARTTLS by hand (net/textproto), so that every reply is checked and
	// the first refusal is reported with its code: net/smtp hides a rejected EHLO behind HELO.
	text := textproto.NewConn(conn)
	if _, msg, err := text.ReadResponse(220); err != nil {
		return fail("smtp", "greeting: "+refusal(err, msg))
	}
	_, msg, err := command(text, 250, "EHLO %s", *ehlo)
	if err != nil {
		return fail("smtp", "EHLO: "+refusal(err, msg))
	}
	if !offers(msg, "STARTTLS") {
		return fail("starttls", "STARTTLS not offered")
	}
	if _, msg, err := command(text, 220, "STARTTLS"); err != nil {
		return fail("starttls", "STARTTLS refused: "+refusal(err, msg))
	}
	tlsConn := tls.Client(conn, config)
	if err := tlsConn.Handshake(); err != nil {
		stage := "handshake"
		if strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "certificate") {
			stage = "verify"
		}
		return fail(stage, err.Error())
	}
	state := tlsConn.ConnectionState()
	secure := textproto.NewConn(tlsConn)
	if _, msg, err := command(secure, 250, "EHLO %s", *ehlo); err != nil {
		return fail("post-tls", "EHLO over TLS: "+refusal(err, msg))
	}
	if _, msg, err := command(secure, 221, "QUIT"); err != nil {
		return fail("post-tls", "QUIT: "+refusal(err, msg))
	}
	// crypto/tls does not say which curve a handshake used.
	return emit(map[string]interface{}{
		"status": "ok", "protocol": versionName(state.Version),
		"cipher": tls.CipherSuiteName(state.CipherSuite), "group": nil, "dh_bits": nil,
	})
}

// command sends one SMTP command and reads its reply, expecting the given code.
func command(c *textproto.Conn, expect int, format string, args ...interface{}) (int, string, error) {
	id, err := c.Cmd(format, args...)
	if err != nil {
		return 0, "", err
	}
	c.StartResponse(id)
	defer c.EndResponse(id)
	return c.ReadResponse(expect)
}

// refusal is a reply that was not the one expected, as "421 4.3.2 text", or the I/O error.
func refusal(err error, msg string) string {
	if e, ok := err.(*textproto.Error); ok {
		return fmt.Sprintf("%d %s", e.Code, strings.ReplaceAll(e.Msg, "\n", " / "))
	}
	if msg != "" {
		return err.Error() + ": " + msg
	}
	return err.Error()
}

// offers says whether an EHLO reply lists an extension.
func offers(reply, extension string) bool {
	for _, line := range strings.Split(reply, "\n") {
		if strings.EqualFold(strings.Fields(line + " ")[0], extension) {
			return true
		}
	}
	return false
}

func main() { os.Exit(run()) }
