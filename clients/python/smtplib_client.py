#!/usr/bin/env python3
"""python-smtplib: Python's smtplib with ssl.create_default_context(), as a Python program that
sends mail gets it, speaking the starttls-matrix client contract.

Flags in (--connect, --servername, --cafile, --ehlo, --timeout, --describe); exactly one
`RESULT {json}` line out; exit 89 for a flag it does not know. The error text is Python's own.

`--batch` alone makes it a batch worker (the harness's protocol, harness/src/batch.rs): READY,
then `RUN <id> <argv as JSON>` answered by `ANSWER <id> {"exit":…,"stdout":…,"stderr":…}`, each
cell on a thread of its own; `CANCEL <id>` shuts the cell's socket down. The interpreter and
its ssl module start once per run instead of once per cell.
"""

import argparse
import json
import os
import smtplib
import socket
import ssl
import sys
import threading

UNSUPPORTED = 89


class Cell:
    """What one run of the client printed, and its connection (for CANCEL)."""

    def __init__(self):
        self.stdout = []
        self.stderr = []
        # A duplicate of the connection's descriptor, held for the cell's life: a shutdown
        # through it reaches the connection whatever smtplib and ssl did with their own.
        self.fd = None
        self.cancelled = False
        self.lock = threading.Lock()

    def out(self, line):
        self.stdout.append(line + "\n")

    def err(self, line):
        self.stderr.append(line + "\n")

    def holds(self, sock):
        """Keep the cell's connection; one cancelled already is shut down at once."""
        with self.lock:
            if self.fd is None:
                self.fd = os.dup(sock.fileno())
            if self.cancelled:
                self.shut()

    def cancel(self):
        with self.lock:
            self.cancelled = True
            if self.fd is not None:
                self.shut()

    def shut(self):
        s = socket.socket(fileno=self.fd)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.detach()

    def release(self):
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


class CellSMTP(smtplib.SMTP):
    """smtplib.SMTP whose connection the cell holds from the moment it exists (before the
    greeting is read: a server that never sends one must not keep a cancelled cell waiting)."""

    def __init__(self, cell, **kwargs):
        self.cell = cell
        super().__init__(**kwargs)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.cell.holds(sock)
        return sock


def result(cell, **fields):
    cell.out("RESULT " + json.dumps(fields))
    return 0


def error(cell, stage, text):
    return result(cell, status="error", stage=stage, error=text)


def reply_text(code, message):
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return "%d %s" % (code, " / ".join(message.splitlines()))


def main(argv, cell):
    parser = argparse.ArgumentParser(prog="smtplib_client.py", add_help=True)
    parser.add_argument("--connect")
    parser.add_argument("--servername", default="mx.test")
    parser.add_argument("--cafile")
    parser.add_argument("--ehlo", default="client.test")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--describe", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        cell.err("unsupported: %s" % " ".join(unknown))
        return UNSUPPORTED
    context = ssl.create_default_context(cafile=args.cafile)
    if args.describe:
        policy = {
            "security_level": context.security_level,
            "minimum_version": context.minimum_version.name,
            "maximum_version": context.maximum_version.name,
            "ciphers": [c["name"] for c in context.get_ciphers()],
        }
        library = "Python %s, %s" % (sys.version.split()[0], ssl.OPENSSL_VERSION)
        cell.out("DESCRIBE " + json.dumps({"stack": "python-smtplib", "library": library, "policy": policy}))
        return 0
    if not args.connect:
        cell.err("--connect is required")
        return 2
    host, _, port = args.connect.rpartition(":")
    try:
        smtp = CellSMTP(cell, timeout=args.timeout)
        code, message = smtp.connect(host.strip("[]"), int(port))
    except smtplib.SMTPConnectError as e:
        return error(cell, "smtp", "greeting: " + reply_text(e.smtp_code, e.smtp_error))
    except smtplib.SMTPServerDisconnected as e:
        return error(cell, "smtp", "greeting: %s" % e)
    except OSError as e:
        return error(cell, "connect", "connect to %s: %s" % (args.connect, e))
    # smtplib's connect() returns a refusal in the banner rather than raising it.
    if code != 220:
        return error(cell, "smtp", "greeting: " + reply_text(code, message))
    # As if the name had been resolved: SNI and verification use the server's name.
    smtp._host = args.servername
    try:
        code, message = smtp.ehlo(args.ehlo)
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        return error(cell, "smtp", "EHLO: %s: %s" % (type(e).__name__, e))
    if code != 250:
        return error(cell, "smtp", "EHLO: " + reply_text(code, message))
    if not smtp.has_extn("starttls"):
        return error(cell, "starttls", "STARTTLS not offered: " + reply_text(code, message))
    try:
        smtp.starttls(context=context)
    except smtplib.SMTPResponseException as e:
        return error(cell, "starttls", "STARTTLS refused: " + reply_text(e.smtp_code, e.smtp_error))
    except smtplib.SMTPServerDisconnected as e:
        # Raised while reading the reply to STARTTLS; a handshake that fails raises SSLError.
        return error(cell, "starttls", "STARTTLS: %s: %s" % (type(e).__name__, e))
    except ssl.SSLCertVerificationError as e:
        return error(cell, "verify", str(e))
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        return error(cell, "handshake", "%s: %s" % (type(e).__name__, e))
    sock = smtp.sock
    name, _, _ = sock.cipher()
    protocol = sock.version()
    try:
        code, message = smtp.ehlo(args.ehlo)
        if code != 250:
            return error(cell, "post-tls", "EHLO over TLS: " + reply_text(code, message))
        code, message = smtp.docmd("QUIT")
        if code != 221:
            return error(cell, "post-tls", "QUIT: " + reply_text(code, message))
        smtp.close()
    except (smtplib.SMTPException, OSError) as e:
        return error(cell, "post-tls", "%s: %s" % (type(e).__name__, e))
    # Python does not say which group or how large a DH prime was used.
    return result(cell, status="ok", protocol=protocol, cipher=name, group=None, dh_bits=None)


def batch():
    """The batch worker: requests on stdin, answers on stdout, a thread per cell."""
    cells = {}
    out = threading.Lock()

    def answer(id, cell, code):
        line = "ANSWER %s %s\n" % (id, json.dumps({"exit": code, "stdout": "".join(cell.stdout), "stderr": "".join(cell.stderr)}))
        with out:
            sys.stdout.write(line)
            sys.stdout.flush()
        cells.pop(id, None)

    def run(id, argv, cell):
        try:
            code = main(argv, cell)
        except Exception as e:  # a bug of ours: the cell says so, the worker lives on
            cell.err("%s: %s" % (type(e).__name__, e))
            code = 70
        cell.release()
        answer(id, cell, code)

    print("READY", flush=True)
    for line in sys.stdin:
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "RUN":
            id, _, argv = rest.partition(" ")
            cell = Cell()
            cells[id] = cell
            threading.Thread(target=run, args=(id, json.loads(argv), cell), daemon=True).start()
        elif kind == "CANCEL":
            cell = cells.get(rest.strip())
            if cell is not None:
                cell.cancel()
        else:
            print("batch: unknown request: " + line.strip(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--batch"]:
        sys.exit(batch())
    one = Cell()
    code = main(sys.argv[1:], one)
    one.release()
    sys.stdout.write("".join(one.stdout))
    sys.stderr.write("".join(one.stderr))
    sys.exit(code)
