"""The email adapters (ZeptoMail, SES, SMTP) against local servers speaking each protocol.

Each adapter is called directly with an Outbound: it is our code talking to a protocol server,
so what the server received (headers, sender name, both bodies) and how every failure is
classified (Rejected / Unavailable / MaybeSent) are asserted on the wire, nothing patched.
Settings reach the adapters as everywhere in-process: environment + `settings.get.cache_clear()`.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from domain.communication.models import Outbound, Sender
from domain.communication.providers import PROVIDERS, ses
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from tests import servers
from tests.communication.adapter_loop import run
from tests.communication.fakes import aws, smtp, zeptomail

TIMEOUT = 1.0
TOKEN = "zepto-token-canary-0003"
FROM = "clinic@mail.carewire.test"
#: As long as a real one-click link (a signed token): past a 78-character line, it must still
#: arrive verbatim on one line, not as an RFC 2047 encoded-word nor folded.
UNSUBSCRIBE = "<https://carewire.test/api/v1/unsubscribe/" + "eyJhbGciOiJIUzI1NiJ9." + "a" * 300 + ">"


@contextmanager
def settings_env(**values: str) -> Iterator[None]:
    """The in-process settings read `values` (CAREWIRE_* names) inside the block."""
    from domain import settings

    with pytest.MonkeyPatch.context() as mp:
        # required settings the adapters never use, when no session server set them
        for name, placeholder in (("DATABASE_URL", "postgresql://nobody@/none"),
                                  ("REDIS_URL", "redis://127.0.0.1:1"),
                                  ("CAREWIRE_JWT_SECRET", "x" * 40)):
            if not os.environ.get(name):
                mp.setitem(os.environ, name, placeholder)
        for name, value in values.items():
            mp.setitem(os.environ, name, value)
        settings.get.cache_clear()
        try:
            yield
        finally:
            settings.get.cache_clear()
    settings.get.cache_clear()


def outbound(to: str = "patient@example.test", **over: Any) -> Outbound:
    fields: dict[str, Any] = dict(
        message_id=uuid.uuid4(), clinic_id=uuid.uuid4(), channel="email", to=to,
        subject="Your appointment on Friday", text="See you at 10:00.",
        html="<p>See you at <b>10:00</b>.</p>",
        headers={"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        sender=Sender(from_address=FROM, from_name="Sunrise Clinic", reply_to="desk@carewire.test"),
        idempotency_key=f"msg-{uuid.uuid4().hex}")
    fields.update(over)
    return Outbound(**fields)


def fails(exc_type: type[Exception], coro: Awaitable[Any]) -> Any:
    with pytest.raises(exc_type) as caught:
        run(coro)
    return caught.value


@pytest.fixture(scope="module")
def zepto() -> Iterator[zeptomail.FakeZeptoMail]:
    with zeptomail.zeptomail_server(TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def moto() -> Iterator[aws.Moto]:
    with aws.moto_server() as m:
        boto3.client("sesv2", endpoint_url=m.url, region_name=aws.REGION,
                     aws_access_key_id=aws.ACCESS_KEY_ID,
                     aws_secret_access_key=aws.SECRET_ACCESS_KEY,
                     ).create_email_identity(EmailIdentity="mail.carewire.test")
        yield m


@pytest.fixture
def wired(zepto: zeptomail.FakeZeptoMail, moto: aws.Moto) -> Iterator[None]:
    zepto.reset()
    with settings_env(CAREWIRE_ZEPTOMAIL_URL=zepto.url, CAREWIRE_AWS_ENDPOINT_URL=moto.url,
                      CAREWIRE_PROVIDER_TIMEOUT_SECONDS=str(TIMEOUT)):
        yield


def test_the_three_are_registered_for_email() -> None:
    assert {"zeptomail", "ses", "smtp"} <= set(PROVIDERS)
    assert all(PROVIDERS[n].channels == frozenset({"email"}) for n in ("zeptomail", "ses", "smtp"))
    assert PROVIDERS["ses"].required_fields == ("access_key_id", "secret_access_key", "region")


# --- ZeptoMail ---------------------------------------------------------------------------------

ZEPTO = PROVIDERS["zeptomail"]


def test_zeptomail_sends_what_the_api_takes(wired: None, zepto: zeptomail.FakeZeptoMail) -> None:
    msg = outbound()
    sent = run(ZEPTO.send(msg, {"api_key": TOKEN}))
    assert len(zepto.accepted) == 1
    got = zepto.accepted[0]
    assert sent == Sent(provider_message_id=got["request_id"], status_code=201)
    assert got["headers"]["Authorization"] == f"Zoho-enczapikey {TOKEN}"
    body = got["body"]
    assert body["from"] == {"address": FROM, "name": "Sunrise Clinic"}
    assert body["to"] == [{"email_address": {"address": "patient@example.test"}}]
    assert body["reply_to"] == [{"address": "desk@carewire.test"}]
    assert body["subject"] == "Your appointment on Friday"
    assert body["htmlbody"] == msg.html and body["textbody"] == msg.text
    assert body["mime_headers"]["List-Unsubscribe"] == UNSUBSCRIBE
    assert body["client_reference"] == msg.idempotency_key


def test_zeptomail_does_not_dedupe_so_a_resend_is_a_second_mail(
        wired: None, zepto: zeptomail.FakeZeptoMail) -> None:
    msg = outbound()
    first = run(ZEPTO.send(msg, {"api_key": TOKEN}))
    second = run(ZEPTO.send(msg, {"api_key": TOKEN}))
    assert first.provider_message_id != second.provider_message_id
    assert [a["body"]["client_reference"] for a in zepto.accepted] == [msg.idempotency_key] * 2


@pytest.mark.parametrize(("mode", "expected", "status", "code"), [
    ("500", Unavailable, 500, None),
    ("429", Unavailable, 429, None),
    ("unauthorized", Unavailable, 401, "TM_4001"),
    ("account", Unavailable, 400, "TM_3601"),
    ("unverified_sender", Unavailable, 400, "TM_4001"),
    ("bad_recipient", Rejected, 400, "TM_4001"),
])
def test_zeptomail_failure_classes(wired: None, zepto: zeptomail.FakeZeptoMail, mode: str,
                                   expected: type[Exception], status: int, code: str | None) -> None:
    zepto.mode = mode
    exc = fails(expected, ZEPTO.send(outbound(), {"api_key": TOKEN}))
    assert exc.status_code == status
    assert exc.code == code
    assert TOKEN not in str(exc) and "patient@example.test" not in str(exc)
    if mode == "429":
        assert exc.retry_after == 7.0
    assert zepto.accepted == [] and len(zepto.requests) == 1


def test_zeptomail_wrong_token_is_the_account_not_the_message(
        wired: None, zepto: zeptomail.FakeZeptoMail) -> None:
    exc = fails(Unavailable, ZEPTO.send(outbound(), {"api_key": "not-the-token"}))
    assert exc.status_code == 401 and zepto.accepted == []
    assert "not-the-token" not in str(exc)


def test_zeptomail_refuses_a_mail_missing_a_mandatory_field(
        wired: None, zepto: zeptomail.FakeZeptoMail) -> None:
    exc = fails(Rejected, ZEPTO.send(outbound(subject=None), {"api_key": TOKEN}))
    assert exc.code == "TM_3201" and "GE_102" in str(exc)
    exc = fails(Rejected, ZEPTO.send(outbound(to="no-at-sign"), {"api_key": TOKEN}))
    assert exc.code == "TM_4001"
    assert zepto.accepted == []


def test_zeptomail_no_answer_is_maybe_sent_within_the_timeout(
        wired: None, zepto: zeptomail.FakeZeptoMail) -> None:
    zepto.mode = "hang"
    started = time.monotonic()
    fails(MaybeSent, ZEPTO.send(outbound(), {"api_key": TOKEN}))
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 2
    assert len(zepto.requests) == 1  # the request did arrive: its fate is unknown


def test_zeptomail_wrong_base_url_is_unavailable(wired: None, zepto: zeptomail.FakeZeptoMail) -> None:
    with settings_env(CAREWIRE_ZEPTOMAIL_URL=zepto.url + "/nope"):
        exc = fails(Unavailable, ZEPTO.send(outbound(), {"api_key": TOKEN}))
    assert exc.status_code == 404 and zepto.accepted == []


def test_zeptomail_refused_port_is_unavailable(wired: None) -> None:
    with settings_env(CAREWIRE_ZEPTOMAIL_URL=f"http://127.0.0.1:{servers.free_port()}"):
        fails(Unavailable, ZEPTO.send(outbound(), {"api_key": TOKEN}))


# --- SES (moto) --------------------------------------------------------------------------------

SES = PROVIDERS["ses"]
SES_CREDENTIALS = {"access_key_id": aws.ACCESS_KEY_ID, "secret_access_key": aws.SECRET_ACCESS_KEY,
                   "region": aws.REGION}


def _moto_raw(moto: aws.Moto, message_id: str) -> dict[str, Any]:
    found = [m for m in moto.data()["ses"]["RawMessage"] if m["id"] == message_id]
    assert len(found) == 1
    return found[0]  # type: ignore[no-any-return]


def test_ses_sends_raw_mime_with_our_headers(wired: None, moto: aws.Moto) -> None:
    from email import message_from_string, policy

    msg = outbound()
    sent = run(SES.send(msg, SES_CREDENTIALS))
    assert sent.provider_message_id and sent.status_code == 200
    stored = _moto_raw(moto, sent.provider_message_id)
    assert set(stored["destinations"]) == {"patient@example.test"}
    mail = message_from_string(stored["raw_data"], policy=policy.default)
    assert mail["List-Unsubscribe"] == UNSUBSCRIBE
    assert re.search("^List-Unsubscribe: " + re.escape(UNSUBSCRIBE) + "\r?$", stored["raw_data"],
                     re.M)  # one line, verbatim
    assert mail["From"].addresses[0].display_name == "Sunrise Clinic"
    assert mail["Reply-To"] == "desk@carewire.test"
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("plain",)).get_content().strip() == msg.text
    assert mail.get_body(("html",)).get_content().strip() == msg.html


def test_ses_unverified_sender_is_rejected(wired: None, moto: aws.Moto) -> None:
    before = len(moto.data()["ses"]["RawMessage"])
    exc = fails(Rejected, SES.send(outbound(sender=Sender(from_address="x@unverified.test")),
                                   SES_CREDENTIALS))
    assert exc.code == "MessageRejected"
    assert aws.SECRET_ACCESS_KEY not in str(exc)
    assert len(moto.data()["ses"]["RawMessage"]) == before


@pytest.mark.parametrize(("mode", "expected"), [("500", Unavailable), ("hang", MaybeSent)])
def test_ses_server_faults_once_no_botocore_retry(wired: None, zepto: zeptomail.FakeZeptoMail,
                                                  mode: str, expected: type[Exception]) -> None:
    # The fake's fault modes answer any path, so it stands in for a failing SES endpoint.
    zepto.mode = mode
    started = time.monotonic()
    with settings_env(CAREWIRE_AWS_ENDPOINT_URL=zepto.url):
        fails(expected, SES.send(outbound(), SES_CREDENTIALS))
    assert time.monotonic() - started < TIMEOUT + 2
    assert len(zepto.requests) == 1  # botocore did not retry: the pipeline decides


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("MessageRejected", 400, Rejected),
    ("BadRequestException", 400, Rejected),
    ("TooManyRequestsException", 429, Unavailable),
    ("Throttling", 400, Unavailable),
    ("LimitExceededException", 400, Unavailable),
    ("AccountSuspendedException", 400, Unavailable),
    ("SendingPausedException", 400, Unavailable),
    ("MailFromDomainNotVerifiedException", 400, Unavailable),
    ("NotFoundException", 404, Unavailable),
    ("UnrecognizedClientException", 403, Unavailable),
    ("InternalFailure", 500, Unavailable),
    ("SomethingNew", 400, Unavailable),
])
def test_ses_error_codes(code: str, status: int, expected: type[Exception]) -> None:
    """The classification of botocore's ClientError as botocore builds it (no fake answers these
    codes: moto never throttles or suspends)."""
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": code, "Message": "m"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")
    failure = ses._failure(error)
    assert type(failure) is expected
    assert failure.code == code and failure.status_code == status  # type: ignore[attr-defined]


def test_ses_refused_port_is_unavailable(wired: None) -> None:
    with settings_env(CAREWIRE_AWS_ENDPOINT_URL=f"http://127.0.0.1:{servers.free_port()}"):
        fails(Unavailable, SES.send(outbound(), SES_CREDENTIALS))


def test_ses_reuses_one_client_per_loop_and_credentials(wired: None, moto: aws.Moto) -> None:
    other = {**SES_CREDENTIALS, "access_key_id": "AKIAOTHEROTHEROTHER1"}

    async def many() -> tuple[list[Sent], int, int]:
        loop = asyncio.get_running_loop()
        sent = await asyncio.gather(*(SES.send(outbound(), SES_CREDENTIALS) for _ in range(20)))
        one = len([k for k in ses._clients if k[0] is loop])
        await SES.send(outbound(), other)
        two = len([k for k in ses._clients if k[0] is loop])
        return list(sent), one, two

    sent, one, two = run(many())
    assert len({s.provider_message_id for s in sent}) == 20
    assert (one, two) == (1, 2)  # 20 concurrent sends shared a client; other keys get their own
    assert ses._clients == {}  # run() closed them with its loop


# --- SMTP (aiosmtpd) ---------------------------------------------------------------------------

SMTP = PROVIDERS["smtp"]


@pytest.fixture(scope="module")
def relay() -> Iterator[smtp.FakeSMTP]:
    with smtp.smtp_server() as server:
        yield server


@pytest.fixture
def relay_env(wired: None, relay: smtp.FakeSMTP) -> smtp.FakeSMTP:
    relay.handler.release.set()  # a hang left by an earlier test answers and goes
    relay.handler.release = threading.Event()
    relay.handler.mode = "ok"
    relay.handler.accepted.clear()
    relay.handler.logins.clear()
    return relay


def test_smtp_starttls_auth_and_the_mail_as_sent(relay_env: smtp.FakeSMTP) -> None:
    msg = outbound()
    sent = run(SMTP.send(msg, relay_env.credentials()))
    [got] = relay_env.handler.accepted
    mail = got["message"]
    assert got["tls"] and got["authenticated"]
    assert relay_env.handler.logins == [(smtp.USERNAME, True, True)]
    assert got["mail_from"] == FROM and got["rcpt_tos"] == ["patient@example.test"]
    assert sent.provider_message_id == mail["Message-ID"]
    assert mail["From"].addresses[0].display_name == "Sunrise Clinic"
    assert mail["From"].addresses[0].addr_spec == FROM
    assert mail["Reply-To"] == "desk@carewire.test"
    assert mail["List-Unsubscribe"] == UNSUBSCRIBE
    assert f"\r\nList-Unsubscribe: {UNSUBSCRIBE}\r\n".encode() in got["raw"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("plain",)).get_content().strip() == msg.text
    assert mail.get_body(("html",)).get_content().strip() == msg.html


def test_smtp_a_resend_carries_the_same_message_id(relay_env: smtp.FakeSMTP) -> None:
    msg = outbound()
    first = run(SMTP.send(msg, relay_env.credentials()))
    second = run(SMTP.send(msg, relay_env.credentials()))
    assert first.provider_message_id == second.provider_message_id
    assert msg.idempotency_key in str(first.provider_message_id)
    assert [m["Message-ID"] for m in relay_env.handler.messages()] == [first.provider_message_id] * 2


def test_smtp_verifies_the_certificate(relay_env: smtp.FakeSMTP) -> None:
    creds = relay_env.credentials()
    del creds["ca_pem"]  # the private CA is not among the system's: the handshake must fail
    exc = fails(Unavailable, SMTP.send(outbound(), creds))
    assert smtp.PASSWORD not in str(exc)
    assert relay_env.handler.logins == [] and relay_env.handler.accepted == []


def test_smtp_wrong_password_is_unavailable(relay_env: smtp.FakeSMTP) -> None:
    exc = fails(Unavailable, SMTP.send(outbound(), relay_env.credentials(password="wrong-password")))
    assert exc.status_code == 535 and "wrong-password" not in str(exc)
    # aiosmtplib tries each mechanism the server offers (PLAIN, LOGIN): all refused, all over TLS
    assert relay_env.handler.logins
    assert set(relay_env.handler.logins) == {(smtp.USERNAME, False, True)}
    assert relay_env.handler.accepted == []


@pytest.mark.parametrize(("mode", "expected", "status"), [
    ("bad_recipient", Rejected, 550),
    ("temp_fail", Unavailable, 451),
    ("reject_data", Rejected, 554),
])
def test_smtp_server_answers(relay_env: smtp.FakeSMTP, mode: str, expected: type[Exception],
                             status: int) -> None:
    relay_env.handler.mode = mode
    exc = fails(expected, SMTP.send(outbound(), relay_env.credentials()))
    assert exc.status_code == status
    assert relay_env.handler.accepted == []


def test_smtp_no_answer_after_data_is_maybe_sent(relay_env: smtp.FakeSMTP) -> None:
    relay_env.handler.mode = "hang"
    started = time.monotonic()
    fails(MaybeSent, SMTP.send(outbound(), relay_env.credentials()))
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 2
    assert len(relay_env.handler.accepted) == 1  # it did arrive: "maybe" is the honest answer
    relay_env.handler.release.set()


def test_smtp_refused_port_is_unavailable(relay_env: smtp.FakeSMTP) -> None:
    fails(Unavailable, SMTP.send(outbound(), relay_env.credentials(port=str(servers.free_port()))))


@pytest.mark.parametrize("over", [{"port": "99999"}, {"port": "smtp"}, {"security": "none"},
                                  {"ca_pem": "not a certificate"}, {"password": ""}])
def test_smtp_bad_settings_are_unavailable(relay_env: smtp.FakeSMTP, over: dict[str, str]) -> None:
    fails(Unavailable, SMTP.send(outbound(), relay_env.credentials(**over)))
    assert relay_env.handler.accepted == [] and relay_env.handler.logins == []


def test_smtp_server_without_starttls_fails_closed(wired: None) -> None:
    with smtp.smtp_server(starttls=False) as plain:
        exc = fails(Unavailable, SMTP.send(outbound(), plain.credentials()))
        assert "STARTTLS" in str(exc).upper() or "offer" in str(exc)
        assert plain.handler.logins == [] and plain.handler.accepted == []


def test_smtp_implicit_tls(wired: None) -> None:
    with smtp.smtp_server(implicit_tls=True) as tls:
        sent = run(SMTP.send(outbound(), tls.credentials(security="tls")))
        [got] = tls.handler.accepted
        assert got["tls"] and sent.provider_message_id == got["message"]["Message-ID"]
        # the same server spoken to with STARTTLS (plaintext first) does not work
        fails(Unavailable, SMTP.send(outbound(), tls.credentials(security="starttls")))
        assert len(tls.handler.accepted) == 1
