"""Any SMTP submission server (the clinic's own, or a provider's SMTP relay) via aiosmtplib.

Credentials (per clinic; host and port are the clinic's by nature, unlike HTTP providers' URLs):
`host`, `port` (default 587 for starttls, 465 for tls), `username`, `password`, `security` =
"starttls" (default: STARTTLS is demanded, so a server that does not offer it fails closed before
AUTH sends the password) | "tls" (implicit TLS from the first byte). There is no plaintext mode.
The server's certificate is always verified against the system CAs, or against `ca_pem` (the
PEM of a private CA) when given; there is no switch to turn verification off.

Idempotency: SMTP has none. The Message-ID is derived from the idempotency key, so if an unknown
outcome is retried, the duplicate is recognisable (same Message-ID) in mailboxes and logs.

The session is driven step by step (connect/EHLO/STARTTLS/AUTH, MAIL, RCPT, DATA) because what
a failure means depends on where it happens:
- anything before DATA (refused or timed-out connect, no STARTTLS, bad certificate, AUTH refused,
  MAIL FROM refused, a 4xx to RCPT, a disconnect or timeout) → Unavailable: no message exists on
  the server yet;
- a 5xx to RCPT (SMTPRecipientRefused: no such mailbox, relay denied for that address) and a 5xx
  answer to the message (SMTPDataError 5xx: content refused, too large) → Rejected; a 4xx answer
  to the message → Unavailable (the server answered "not taken, try later");
- a timeout or a dropped connection once DATA has started → MaybeSent: the server may have
  queued the message before its answer was lost (RFC 1047's duplicate window);
- after DATA succeeded, QUIT failures are ignored (the message was accepted).

`provider_timeout_seconds` bounds each step (aiosmtplib's per-command timeout), not the whole
session: a server slow at every step can take a few times that before failing.
EHLO names us `carewire.localdomain` (a fixed FQDN: no DNS lookup of our own name per send).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import ClassVar

import aiosmtplib

from domain.communication.models import Channel, Outbound
from domain.communication.providers import mime
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from domain.settings import get as app_settings

SECURITY = ("starttls", "tls")
DEFAULT_PORT = {"starttls": 587, "tls": 465}


def tls_context(ca_pem: str | None) -> ssl.SSLContext:
    """Verifying context: hostname and chain checked, against the clinic's CA when given."""
    if ca_pem:
        try:
            return ssl.create_default_context(cadata=ca_pem)
        except (ssl.SSLError, ValueError):
            raise Unavailable("smtp: ca_pem is not a PEM certificate") from None
    return ssl.create_default_context()


def _code(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code}"


class SMTP:
    name: ClassVar[str] = "smtp"
    channels: ClassVar[frozenset[Channel]] = frozenset({"email"})
    required_fields: ClassVar[tuple[str, ...]] = ("host", "username", "password")
    optional_fields: ClassVar[tuple[str, ...]] = ("port", "security", "ca_pem")
    default_rate_per_second: ClassVar[int] = 5

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        missing = [f for f in self.required_fields if not credentials.get(f)]
        if missing:
            raise Unavailable(f"smtp: missing credential fields: {', '.join(missing)}")
        security = (credentials.get("security") or "starttls").strip().lower()
        if security not in SECURITY:
            raise Unavailable("smtp: security must be starttls or tls")
        try:
            port = int(credentials.get("port") or DEFAULT_PORT[security])
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise Unavailable("smtp: port must be a number from 1 to 65535")
        msg = mime.render("smtp", message)
        raw = msg.as_bytes()
        sender = message.sender.from_address or ""
        client = aiosmtplib.SMTP(
            hostname=credentials["host"], port=port, username=credentials["username"],
            password=credentials["password"], use_tls=security == "tls",
            start_tls=security == "starttls", tls_context=tls_context(credentials.get("ca_pem")),
            timeout=app_settings().provider_timeout_seconds, local_hostname="carewire.localdomain")
        try:
            await self._before_data(client, sender, message.to)
            try:
                await client.data(raw)
            except aiosmtplib.SMTPDataError as exc:
                if exc.code >= 500:
                    raise Rejected(f"smtp: message refused ({_code(exc)})", status_code=exc.code) \
                        from None
                raise Unavailable(f"smtp: message deferred ({_code(exc)})", status_code=exc.code) \
                    from None
            except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
                raise MaybeSent(f"smtp: no answer after the message was sent "
                                f"({type(exc).__name__})") from None
            except aiosmtplib.SMTPException as exc:
                raise MaybeSent(f"smtp: {type(exc).__name__} after the message was sent") from None
        finally:
            await _close(client)
        return Sent(provider_message_id=str(msg["Message-ID"]), status_code=250)

    @staticmethod
    async def _before_data(client: aiosmtplib.SMTP, sender: str, to: str) -> None:
        """Connect, EHLO, STARTTLS, AUTH, MAIL, RCPT: every failure here left nothing queued."""
        try:
            await client.connect()
            await client.mail(sender)
            await client.rcpt(to)
        except aiosmtplib.SMTPRecipientRefused as exc:
            if exc.code >= 500:
                raise Rejected(f"smtp: recipient refused ({_code(exc)})", status_code=exc.code) \
                    from None
            raise Unavailable(f"smtp: recipient deferred ({_code(exc)})", status_code=exc.code) \
                from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise Unavailable(f"smtp: authentication refused ({_code(exc)})", status_code=exc.code) \
                from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise Unavailable(f"smtp: sender refused ({_code(exc)})", status_code=exc.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise Unavailable(f"smtp: {type(exc).__name__} ({_code(exc)})", status_code=exc.code) \
                from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise Unavailable(f"smtp: server does not offer what we require ({exc.message})") \
                from None
        except aiosmtplib.SMTPException as exc:
            # aiosmtplib's own words ("SMTP STARTTLS extension not supported by server."), no
            # server text: response-carrying errors were handled above
            raise Unavailable(f"smtp: cannot use the server ({type(exc).__name__}: "
                              f"{str(exc)[:120]})") from None
        except (ssl.SSLError, OSError) as exc:
            raise Unavailable(f"smtp: cannot reach the server ({type(exc).__name__})") from None


async def _close(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=1.0)
    except (aiosmtplib.SMTPException, OSError):
        client.close()
