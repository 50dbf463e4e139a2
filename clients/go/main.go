// go-crypto-tls: Go's crypto/tls with its defaults, speaking the starttls-matrix client
// contract: flags in, SMTP up to STARTTLS (net/smtp), the handshake with SNI and verification
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
	"net/smtp"
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
	conn.SetDeadline(time.Now().Add(time.Duration(*timeout) * time.Second))
	host, _, _ := net.SplitHostPort(*connect)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fail("smtp", "greeting: "+err.Error())
	}
	if err := c.Hello(*ehlo); err != nil {
		return fail("smtp", "EHLO: "+err.Error())
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return fail("starttls", "STARTTLS not offered")
	}
	if err := c.StartTLS(config); err != nil {
		text := err.Error()
		stage := "handshake"
		switch {
		case strings.HasPrefix(text, "4") || strings.HasPrefix(text, "5"):
			stage, text = "starttls", "STARTTLS refused: "+text
		case strings.Contains(text, "x509:") || strings.Contains(text, "certificate"):
			stage = "verify"
		}
		return fail(stage, text)
	}
	state, _ := c.TLSConnectionState()
	// net/smtp's StartTLS has already sent EHLO again over TLS and read its reply.
	if err := c.Quit(); err != nil {
		return fail("post-tls", "QUIT: "+err.Error())
	}
	// crypto/tls does not say which curve a handshake used.
	return emit(map[string]interface{}{
		"status": "ok", "protocol": versionName(state.Version),
		"cipher": tls.CipherSuiteName(state.CipherSuite), "group": nil, "dh_bits": nil,
	})
}

func main() { os.Exit(run()) }
