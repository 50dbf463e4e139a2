// go-crypto-tls, go-1.23 and go-1.24: Go's crypto/tls with its defaults (Config.CurvePreferences
// nil), speaking the starttls-matrix client contract: flags in, SMTP up to STARTTLS (net/textproto,
// every reply checked), the handshake with SNI and verification against --cafile, EHLO again over
// TLS, QUIT, and one `RESULT {json}` line out; exit 89 for a flag it does not know. The error text
// is Go's own. Built once per toolchain by clients/go/go-client (Debian's Go 1.19, GOPATH mode)
// and clients/go/go-versioned-client (Go 1.23 from bookworm-backports, Go 1.24 from trixie, each
// under a go.mod whose go line is its version), which set stackName and goModLine with -ldflags
// -X. Go 1.19, 1.23 and 1.24 all build it.
//
// `--batch` alone makes it a batch worker (the harness's protocol, harness/src/batch.rs):
// READY, then `RUN <id> <argv as JSON>` answered by `ANSWER <id> {"exit":…,"stdout":…,"stderr":…}`,
// each cell on a goroutine of its own; `CANCEL <id>` closes the cell's connection. The program
// (and its launcher script) then starts once per run, not once per cell.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

const unsupported = 89

// Set by the launcher at link time (-ldflags "-X main.stackName=… -X main.goModLine=…").
var (
	stackName = "go-crypto-tls"
	// The go.mod `go` line the program was built under, empty in GOPATH mode. From Go 1.21 on
	// it picks the GODEBUG defaults: Go 1.23 sends an X25519Kyber768Draft00 key share by
	// default only for a main module that says go 1.23 or later, Go 1.24 an X25519MLKEM768 one
	// only for go 1.24 or later.
	goModLine = ""
)

// cell is one run of the client: what it prints, and its connection (for CANCEL).
type cell struct {
	stdout, stderr bytes.Buffer
	mu             sync.Mutex
	conn           net.Conn
	cancelled      bool
}

// holds keeps the cell's connection; one cancelled already is closed at once.
func (c *cell) holds(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	if c.cancelled {
		conn.Close()
	}
}

func (c *cell) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelled = true
	if c.conn != nil {
		c.conn.Close()
	}
}

func (c *cell) emit(fields map[string]interface{}) int {
	line, _ := json.Marshal(fields)
	fmt.Fprintln(&c.stdout, "RESULT "+string(line))
	return 0
}

func (c *cell) fail(stage, text string) int {
	return c.emit(map[string]interface{}{"status": "error", "stage": stage, "error": text})
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

func run(args []string, c *cell) int {
	fs := flag.NewFlagSet("go-client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	connect := fs.String("connect", "", "HOST:PORT")
	servername := fs.String("servername", "mx.test", "SNI and verified name")
	cafile := fs.String("cafile", "", "CA certificates (PEM)")
	ehlo := fs.String("ehlo", "client.test", "EHLO name")
	timeout := fs.Int("timeout", 10, "seconds")
	describe := fs.Bool("describe", false, "print DESCRIBE and exit")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintln(&c.stderr, "unsupported:", err)
		return unsupported
	}
	config := &tls.Config{ServerName: *servername}
	if *cafile != "" {
		pem, err := os.ReadFile(*cafile)
		if err != nil {
			fmt.Fprintln(&c.stderr, err)
			return 2
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		config.RootCAs = pool
	}
	if *describe {
		line, _ := json.Marshal(map[string]interface{}{"stack": stackName, "library": "Go " + runtime.Version() + " crypto/tls", "policy": policy(config)})
		fmt.Fprintln(&c.stdout, "DESCRIBE "+string(line))
		return 0
	}
	conn, err := net.DialTimeout("tcp", *connect, time.Duration(*timeout)*time.Second)
	if err != nil {
		return c.fail("connect", err.Error())
	}
	defer conn.Close()
	c.holds(conn)
	conn.SetDeadline(time.Now().Add(time.Duration(*timeout) * time.Second))
	// The dialogue up to STARTTLS by hand (net/textproto), so that every reply is checked and
	// the first refusal is reported with its code: net/smtp hides a rejected EHLO behind HELO.
	text := textproto.NewConn(conn)
	if _, msg, err := text.ReadResponse(220); err != nil {
		return c.fail("smtp", "greeting: "+refusal(err, msg))
	}
	_, msg, err := command(text, 250, "EHLO %s", *ehlo)
	if err != nil {
		return c.fail("smtp", "EHLO: "+refusal(err, msg))
	}
	if !offers(msg, "STARTTLS") {
		return c.fail("starttls", "STARTTLS not offered")
	}
	if _, msg, err := command(text, 220, "STARTTLS"); err != nil {
		return c.fail("starttls", "STARTTLS refused: "+refusal(err, msg))
	}
	// crypto/tls does not say which group a handshake used (ConnectionState has no CurveID
	// before Go 1.25): the server's plaintext flight, recorded during the handshake, does.
	wire := &recorder{Conn: conn, on: true}
	tlsConn := tls.Client(wire, config)
	err = tlsConn.Handshake()
	wire.stop()
	if err != nil {
		stage := "handshake"
		if strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "certificate") {
			stage = "verify"
		}
		return c.fail(stage, err.Error())
	}
	state := tlsConn.ConnectionState()
	secure := textproto.NewConn(tlsConn)
	if _, msg, err := command(secure, 250, "EHLO %s", *ehlo); err != nil {
		return c.fail("post-tls", "EHLO over TLS: "+refusal(err, msg))
	}
	if _, msg, err := command(secure, 221, "QUIT"); err != nil {
		return c.fail("post-tls", "QUIT: "+refusal(err, msg))
	}
	var group interface{}
	if id, ok := negotiatedGroup(wire.seen()); ok {
		group = groupName(id)
	}
	return c.emit(map[string]interface{}{
		"status": "ok", "protocol": versionName(state.Version),
		"cipher": tls.CipherSuiteName(state.CipherSuite), "group": group, "dh_bits": nil,
	})
}

// policy is what --describe reports: the toolchain, the go.mod go line and GODEBUG that pick
// crypto/tls's defaults, and the ClientHello those defaults make, measured by handshaking into
// a pipe rather than inferred from the version.
func policy(config *tls.Config) map[string]interface{} {
	var suites []string
	for _, s := range tls.CipherSuites() {
		suites = append(suites, s.Name)
	}
	p := map[string]interface{}{
		"suites": suites, "min_version": "TLSv1.2 (crypto/tls client default)", "dhe": false,
		"go_version": runtime.Version(), "curve_preferences": "nil (crypto/tls defaults)",
	}
	if goModLine != "" {
		p["go_mod_go"] = goModLine
	} else {
		p["go_mod_go"] = nil
		p["build_mode"] = "GOPATH (no go.mod)"
	}
	godebug, set := os.LookupEnv("GODEBUG")
	if set {
		p["godebug"] = godebug
	} else {
		p["godebug"] = nil
	}
	// The defaults the go line chose where they differ from the toolchain's own (Go 1.21+).
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "DefaultGODEBUG" {
				p["godebug_default"] = s.Value
			}
		}
	}
	hello, err := defaultHello(config)
	if err != nil {
		p["key_shares"] = nil
		p["default_key_shares"] = "unknown: " + err.Error()
		return p
	}
	p["client_hello_length"] = hello.length
	p["groups"] = hello.groups
	p["key_shares"] = hello.keyShares
	why := "go " + goModLine + " defaults"
	if goModLine == "" {
		why = "GOPATH build"
	}
	if set {
		why += ", GODEBUG=" + godebug
	}
	p["default_key_shares"] = strings.Join(hello.keyShares, " + ") + " by default (" + runtime.Version() + ", " + why + ")"
	return p
}

type helloInfo struct {
	length    int
	groups    []string
	keyShares []string
}

// defaultHello runs the client's handshake into an in-memory pipe and reads the ClientHello it
// writes: its length (the handshake message with its header, as the server's record counts
// it), supported_groups and the groups of its key shares.
func defaultHello(config *tls.Config) (helloInfo, error) {
	client, server := net.Pipe()
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		tls.Client(client, config.Clone()).Handshake()
		client.Close()
	}()
	// Closing our end fails the handshake, which ends the goroutine.
	defer done.Wait()
	defer server.Close()
	server.SetDeadline(time.Now().Add(5 * time.Second))
	header := make([]byte, 5)
	if _, err := io.ReadFull(server, header); err != nil {
		return helloInfo{}, err
	}
	record := make([]byte, binary.BigEndian.Uint16(header[3:]))
	if _, err := io.ReadFull(server, record); err != nil {
		return helloInfo{}, err
	}
	if header[0] != 22 || len(record) < 4 || record[0] != 1 {
		return helloInfo{}, errors.New("not a ClientHello")
	}
	info := helloInfo{length: 4 + (int(record[1])<<16 | int(record[2])<<8 | int(record[3]))}
	if info.length > len(record) {
		return info, errors.New("ClientHello in more than one record")
	}
	// version, random, session id, cipher suites, compression methods, extensions
	b := record[4:info.length]
	if len(b) < 35 {
		return info, errors.New("short ClientHello")
	}
	b = b[34:]
	for _, width := range []int{1, 2, 1} {
		var ok bool
		if _, b, ok = vector(b, width); !ok {
			return info, errors.New("malformed ClientHello")
		}
	}
	exts, _, ok := vector(b, 2)
	if !ok {
		return info, errors.New("malformed ClientHello extensions")
	}
	for len(exts) >= 4 {
		typ := binary.BigEndian.Uint16(exts)
		var body []byte
		if body, exts, ok = vector(exts[2:], 2); !ok {
			break
		}
		switch typ {
		case 10: // supported_groups
			list, _, _ := vector(body, 2)
			for ; len(list) >= 2; list = list[2:] {
				info.groups = append(info.groups, groupName(binary.BigEndian.Uint16(list)))
			}
		case 51: // key_share
			list, _, _ := vector(body, 2)
			for len(list) >= 4 {
				info.keyShares = append(info.keyShares, groupName(binary.BigEndian.Uint16(list)))
				if _, list, ok = vector(list[2:], 2); !ok {
					break
				}
			}
		}
	}
	return info, nil
}

// vector splits off a vector with a length prefix of width bytes: its body and the rest.
func vector(b []byte, width int) ([]byte, []byte, bool) {
	if len(b) < width {
		return nil, nil, false
	}
	n := 0
	for _, c := range b[:width] {
		n = n<<8 | int(c)
	}
	if len(b) < width+n {
		return nil, nil, false
	}
	return b[width : width+n], b[width+n:], true
}

// groupName spells a named group as the rest of starttls-matrix does: IANA names, lower case
// for the classic curves, the registry's spelling for the hybrids. tls.CurveID's String() has
// no name for the hybrids in Go 1.23 (CurveID(25497)).
func groupName(id uint16) string {
	switch id {
	case 0x0017:
		return "secp256r1"
	case 0x0018:
		return "secp384r1"
	case 0x0019:
		return "secp521r1"
	case 0x001d:
		return "x25519"
	case 0x001e:
		return "x448"
	case 0x0100:
		return "ffdhe2048"
	case 0x0101:
		return "ffdhe3072"
	case 0x0102:
		return "ffdhe4096"
	case 0x0103:
		return "ffdhe6144"
	case 0x0104:
		return "ffdhe8192"
	case 0x11eb:
		return "SecP256r1MLKEM768"
	case 0x11ec:
		return "X25519MLKEM768"
	case 0x11ed:
		return "SecP384r1MLKEM1024"
	case 0x6399:
		return "X25519Kyber768Draft00"
	case 0x639a:
		return "SecP256r1Kyber768Draft00"
	}
	return fmt.Sprintf("0x%04x", id)
}

// recorder keeps what the server sends while on: the handshake's plaintext records.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	if r.on && r.buf.Len() < 1<<20 {
		r.buf.Write(p[:n])
	}
	r.mu.Unlock()
	return n, err
}

func (r *recorder) stop() {
	r.mu.Lock()
	r.on = false
	r.mu.Unlock()
}

func (r *recorder) seen() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Bytes()
}

// negotiatedGroup reads the group from the server's flight: the key_share of a TLS 1.3
// ServerHello (a HelloRetryRequest's names the same group the next one must use), or the named
// curve of a TLS 1.2 ServerKeyExchange (Go has no finite-field DHE). Handshake messages are
// reassembled across records up to the first ChangeCipherSpec or application_data record: what
// follows is encrypted. (TLS 1.3's compatibility ChangeCipherSpec after a HelloRetryRequest
// cuts the flight there: the HelloRetryRequest already names the group.)
func negotiatedGroup(wire []byte) (uint16, bool) {
	var handshake []byte
	for len(wire) >= 5 {
		typ := wire[0]
		body, rest, ok := vector(wire[3:], 2)
		if !ok {
			break
		}
		wire = rest
		if typ == 20 || typ == 23 {
			break
		}
		if typ != 22 {
			continue
		}
		handshake = append(handshake, body...)
	}
	var group uint16
	found := false
	for len(handshake) >= 4 {
		msg, rest, ok := vector(handshake[1:], 3)
		if !ok {
			break
		}
		switch handshake[0] {
		case 2: // ServerHello: version, random, session id, suite, compression, extensions
			if len(msg) < 35 {
				return group, found
			}
			_, b, ok := vector(msg[34:], 1)
			if !ok || len(b) < 3 {
				return group, found
			}
			exts, _, _ := vector(b[3:], 2)
			for len(exts) >= 4 {
				typ := binary.BigEndian.Uint16(exts)
				body, more, ok := vector(exts[2:], 2)
				if !ok {
					break
				}
				exts = more
				if typ == 51 && len(body) >= 2 {
					group, found = binary.BigEndian.Uint16(body), true
				}
			}
		case 12: // ServerKeyExchange: ECParameters with curve_type named_curve (3)
			if len(msg) >= 3 && msg[0] == 3 {
				group, found = binary.BigEndian.Uint16(msg[1:]), true
			}
		}
		handshake = rest
	}
	return group, found
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

// batch serves cells from stdin until it ends, a goroutine each.
func batch() int {
	var out sync.Mutex
	var cellsMu sync.Mutex
	cells := map[string]*cell{}
	write := func(line string) {
		out.Lock()
		defer out.Unlock()
		os.Stdout.WriteString(line + "\n")
	}
	write("READY")
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<20)
	for in.Scan() {
		kind, rest, _ := strings.Cut(in.Text(), " ")
		switch kind {
		case "RUN":
			id, argv, _ := strings.Cut(rest, " ")
			var args []string
			if err := json.Unmarshal([]byte(argv), &args); err != nil {
				fmt.Fprintln(os.Stderr, "batch: malformed request:", in.Text())
				continue
			}
			c := &cell{}
			cellsMu.Lock()
			cells[id] = c
			cellsMu.Unlock()
			go func() {
				code := run(args, c)
				cellsMu.Lock()
				delete(cells, id)
				cellsMu.Unlock()
				answer, _ := json.Marshal(map[string]interface{}{"exit": code, "stdout": c.stdout.String(), "stderr": c.stderr.String()})
				write("ANSWER " + id + " " + string(answer))
			}()
		case "CANCEL":
			cellsMu.Lock()
			c := cells[strings.TrimSpace(rest)]
			cellsMu.Unlock()
			if c != nil {
				c.cancel()
			}
		default:
			fmt.Fprintln(os.Stderr, "batch: unknown request:", in.Text())
		}
	}
	return 0
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--batch" {
		os.Exit(batch())
	}
	c := &cell{}
	code := run(os.Args[1:], c)
	os.Stdout.Write(c.stdout.Bytes())
	os.Stderr.Write(c.stderr.Bytes())
	os.Exit(code)
}
