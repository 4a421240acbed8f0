"""A local SMTP submission server (aiosmtpd) with a private CA's certificate.

STARTTLS is required before anything else (`require_starttls=True`), AUTH only over TLS, and a
wrong login answers 535 (the authenticator returns `AuthResult(handled=False)`, or the client
would hang). `implicit_tls=True` serves TLS from the first byte instead (port-465 style);
`starttls=False` serves a server that offers no STARTTLS at all (a client must refuse it).

Fault modes (`server.handler.mode`), switchable while running: ok, temp_fail (451 to RCPT),
bad_recipient (550 5.1.1 to RCPT), reject_data (554 to the message), hang (takes the whole
message, then never answers until released or shut down: the client's outcome is unknown).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import servers

USERNAME = "clinic-relay"
PASSWORD = "relay-password-canary-0002"


class Pki:
    """A private CA and a server certificate it signed for 127.0.0.1 / localhost."""

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carewire test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        folder = Path(tempfile.mkdtemp(prefix="carewire-smtp-pki-"))
        self.cert_file = folder / "server.pem"
        self.key_file = folder / "server.key"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _over_tls(server: SMTPServer, session: Session) -> bool:
    """STARTTLS sets session.ssl; an implicit-TLS socket shows in its transport only."""
    transport = server.transport
    return session.ssl is not None or (
        transport is not None and transport.get_extra_info("ssl_object") is not None)


class Handler:
    def __init__(self) -> None:
        self.mode = "ok"
        #: Accepted messages: {"mail_from", "rcpt_tos", "message" (EmailMessage), "tls"}.
        self.accepted: list[dict[str, Any]] = []
        #: Logins tried: (username, success, over_tls).
        self.logins: list[tuple[str, bool, bool]] = []
        self.release = threading.Event()

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.mode == "temp_fail":
            return "451 4.3.0 Temporary failure, try again later"
        if self.mode == "bad_recipient" or address.startswith("nobody@"):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        record = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                  "message": message_from_bytes(content, policy=policy.default), "raw": content,
                  "tls": _over_tls(server, session), "authenticated": bool(session.authenticated)}
        if self.mode == "reject_data":
            return "554 5.6.0 Message refused"
        if self.mode == "hang":
            # The whole message arrived; the answer never comes (until released).
            self.accepted.append(record)
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            return "451 4.3.0 Released"
        self.accepted.append(record)
        return "250 2.0.0 OK: queued"

    def messages(self) -> list[EmailMessage]:
        return [r["message"] for r in self.accepted]


class FakeSMTP:
    def __init__(self, *, starttls: bool = True, implicit_tls: bool = False) -> None:
        self.pki = Pki()
        self.handler = Handler()
        self.port = servers.free_port()
        self.host = "127.0.0.1"
        handler = self.handler

        def authenticator(server: SMTPServer, session: Session, envelope: Envelope,
                          mechanism: str, auth_data: Any) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USERNAME
                  and auth_data.password.decode() == PASSWORD)
            user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
            handler.logins.append((user, ok, _over_tls(server, session)))
            return AuthResult(success=ok, handled=False)

        kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": True}
        if implicit_tls:
            # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this socket is TLS anyway
            kwargs.update(ssl_context=self.pki.server_context(), auth_require_tls=False)
        elif starttls:
            kwargs.update(tls_context=self.pki.server_context(), require_starttls=True)
        else:
            # No TLS at all: AUTH would have to go in the clear, which our client never does.
            kwargs.update(auth_require_tls=False)
        self.controller = Controller(handler, hostname=self.host, port=self.port,
                                     server_hostname="localhost", **kwargs)

    def credentials(self, **over: str) -> dict[str, str]:
        creds = {"host": self.host, "port": str(self.port), "username": USERNAME,
                 "password": PASSWORD, "ca_pem": self.pki.ca_pem}
        creds.update(over)
        return creds


@contextmanager
def smtp_server(*, starttls: bool = True, implicit_tls: bool = False) -> Iterator[FakeSMTP]:
    server = FakeSMTP(starttls=starttls, implicit_tls=implicit_tls)
    server.controller.start()
    try:
        yield server
    finally:
        server.handler.release.set()
        server.controller.stop()
