#!/usr/bin/env python3
"""python-smtplib: Python's smtplib with ssl.create_default_context(), as a Python program that
sends mail gets it, speaking the starttls-matrix client contract.

Flags in (--connect, --servername, --cafile, --ehlo, --timeout, --describe); exactly one
`RESULT {json}` line out; exit 89 for a flag it does not know. The error text is Python's own.
"""

import argparse
import json
import smtplib
import socket
import ssl
import sys

UNSUPPORTED = 89


def result(**fields):
    print("RESULT " + json.dumps(fields), flush=True)
    return 0


def error(stage, text):
    return result(status="error", stage=stage, error=text)


def reply_text(code, message):
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return "%d %s" % (code, " / ".join(message.splitlines()))


def main(argv):
    parser = argparse.ArgumentParser(prog="smtplib_client.py", add_help=True)
    parser.add_argument("--connect")
    parser.add_argument("--servername", default="mx.test")
    parser.add_argument("--cafile")
    parser.add_argument("--ehlo", default="client.test")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--describe", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print("unsupported: %s" % " ".join(unknown), file=sys.stderr)
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
        print("DESCRIBE " + json.dumps({"stack": "python-smtplib", "library": library, "policy": policy}))
        return 0
    if not args.connect:
        print("--connect is required", file=sys.stderr)
        return 2
    host, _, port = args.connect.rpartition(":")
    try:
        smtp = smtplib.SMTP(timeout=args.timeout)
        code, message = smtp.connect(host.strip("[]"), int(port))
    except smtplib.SMTPConnectError as e:
        return error("smtp", "greeting: " + reply_text(e.smtp_code, e.smtp_error))
    except smtplib.SMTPServerDisconnected as e:
        return error("smtp", "greeting: %s" % e)
    except OSError as e:
        return error("connect", "connect to %s: %s" % (args.connect, e))
    # smtplib's connect() returns a refusal in the banner rather than raising it.
    if code != 220:
        return error("smtp", "greeting: " + reply_text(code, message))
    # As if the name had been resolved: SNI and verification use the server's name.
    smtp._host = args.servername
    try:
        code, message = smtp.ehlo(args.ehlo)
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        return error("smtp", "EHLO: %s: %s" % (type(e).__name__, e))
    if code != 250:
        return error("smtp", "EHLO: " + reply_text(code, message))
    if not smtp.has_extn("starttls"):
        return error("starttls", "STARTTLS not offered: " + reply_text(code, message))
    try:
        smtp.starttls(context=context)
    except smtplib.SMTPResponseException as e:
        return error("starttls", "STARTTLS refused: " + reply_text(e.smtp_code, e.smtp_error))
    except smtplib.SMTPServerDisconnected as e:
        # Raised while reading the reply to STARTTLS; a handshake that fails raises SSLError.
        return error("starttls", "STARTTLS: %s: %s" % (type(e).__name__, e))
    except ssl.SSLCertVerificationError as e:
        return error("verify", str(e))
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        return error("handshake", "%s: %s" % (type(e).__name__, e))
    sock = smtp.sock
    name, _, _ = sock.cipher()
    protocol = sock.version()
    try:
        code, message = smtp.ehlo(args.ehlo)
        if code != 250:
            return error("post-tls", "EHLO over TLS: " + reply_text(code, message))
        code, message = smtp.docmd("QUIT")
        if code != 221:
            return error("post-tls", "QUIT: " + reply_text(code, message))
        smtp.close()
    except (smtplib.SMTPException, OSError) as e:
        return error("post-tls", "%s: %s" % (type(e).__name__, e))
    # Python does not say which group or how large a DH prime was used.
    return result(status="ok", protocol=protocol, cipher=name, group=None, dh_bits=None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
