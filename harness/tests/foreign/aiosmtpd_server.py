"""A STARTTLS server this project did not write: aiosmtpd (Debian's python3-aiosmtpd), on
127.0.0.1 and a free port, which it prints on its first line. For the `foreign` test.

    aiosmtpd_server.py MODE CERT KEY [DHPARAMS]

MODE: `tls` (a plain STARTTLS server), `dhe-only` (TLS 1.2 at most, DHE-RSA suites only, the
given DH parameters), `banner-421` (greets with 421 and closes, as a server at its connection
limit does). Ends by itself after 120 s.
"""

import asyncio
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Accept:
    """Take every message and drop it."""

    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok: dropped"


class Busy(SMTP):
    """aiosmtpd greeting with 421: the greeting it would push is replaced, then it closes."""

    async def push(self, status):
        if status.startswith("220 ") and not getattr(self, "_greeted", False):
            self._greeted = True
            await super().push("421 4.3.2 Too many connections, try again later")
            self.transport.close()
            return
        await super().push(status)


def main():
    mode, cert, key = sys.argv[1:4]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if mode == "dhe-only":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
        context.load_dh_params(sys.argv[4])
    kind = Busy if mode == "banner-421" else SMTP

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: kind(Accept(), hostname="mx.test", tls_context=context), "127.0.0.1", 0
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(120)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
