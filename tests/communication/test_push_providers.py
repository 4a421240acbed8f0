"""The push, SMS and WhatsApp adapters, each against a local server speaking its provider's
protocol (FCM + Google's token endpoint, Meta's Cloud API, moto for SNS). Settings point the
adapters at those servers through the environment, as every in-process test does; nothing of
ours is patched. Each test asserts what the server received or refused, and the failure class
the pipeline will act on."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import boto3
import pytest

from domain import settings
from domain.communication.models import Outbound, Sender, WhatsAppTemplate
from domain.communication.providers import PROVIDERS
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from domain.communication.providers.fcm import FCM
from domain.communication.providers.sns import SNS
from domain.communication.providers.whatsapp import WhatsApp
from tests import servers
from tests.communication.adapter_loop import run
from tests.communication.fakes import aws
from tests.communication.fakes.fcm import FcmFake, fcm_server, service_account
from tests.communication.fakes.sns_faults import sns_faults
from tests.communication.fakes.whatsapp import WhatsAppFake, whatsapp_server

#: Generous, so that no answer from a loopback server is ever late on a loaded CI box...
TIMEOUT = "2.0"
#: ...and short where a test waits for a server that never answers.
HANG_TIMEOUT = "0.5"


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Sets CAREWIRE_<NAME> settings for the in-process adapters (as tests/domain_layer.py does
    for the domain layer: the environment, then a fresh `settings.get()`)."""
    # adapters need no database or Redis, but settings refuse to load without them
    for key, value in (("DATABASE_URL", "postgresql://nobody@/none"), ("REDIS_URL", "redis://127.0.0.1:1"),
                       ("CAREWIRE_JWT_SECRET", "x" * 40)):
        if not os.environ.get(key):
            monkeypatch.setitem(os.environ, key, value)

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setitem(os.environ, f"CAREWIRE_{name.upper()}", value)
        settings.get.cache_clear()

    apply(provider_timeout_seconds=TIMEOUT)
    yield apply
    settings.get.cache_clear()


def attempt(coro: Awaitable[Sent]) -> Sent | Exception:
    async def go() -> Sent | Exception:
        try:
            return await coro
        except (Rejected, Unavailable, MaybeSent) as exc:
            return exc

    return run(go())


def outbound(channel: Any, to: str, **kw: Any) -> Outbound:
    kw.setdefault("text", "Your appointment is tomorrow at 10:30")
    return Outbound(message_id=uuid.uuid4(), clinic_id=uuid.uuid4(), channel=channel, to=to,
                    idempotency_key=f"msg-{uuid.uuid4()}", **kw)


def test_the_adapters_are_registered_for_their_channels() -> None:
    assert isinstance(PROVIDERS["fcm"], FCM) and PROVIDERS["fcm"].channels == {"push"}
    assert isinstance(PROVIDERS["sns"], SNS) and PROVIDERS["sns"].channels == {"push", "sms"}
    assert isinstance(PROVIDERS["whatsapp"], WhatsApp) and PROVIDERS["whatsapp"].channels == {"whatsapp"}


# --- FCM ------------------------------------------------------------------------------------


@pytest.fixture
def fcm(configure: Callable[..., None]) -> Iterator[tuple[FcmFake, dict[str, str]]]:
    """The fake, pointed at, with a fresh service account (so no token cached by another test)."""
    with fcm_server() as fake:
        sa, public = service_account()
        fake.add_account(sa, public)
        configure(fcm_url=fake.url, google_token_url=fake.token_url)
        yield fake, {"service_account_json": sa}


def push(**kw: Any) -> Outbound:
    kw.setdefault("token_kind", "fcm")
    return outbound("push", "fcm-token-" + uuid.uuid4().hex, **kw)


def test_fcm_sends_a_v1_message_with_a_granted_token(fcm) -> None:
    fake, creds = fcm
    message = push(subject="Reminder", data={"appointment_id": "a-1", "kind": "reminder"})
    sent = run(FCM().send(message, creds))
    assert isinstance(sent, Sent) and sent.status_code == 200
    assert fake.grants == 1 and fake.refused_grants == []
    [got] = fake.accepted
    assert sent.provider_message_id == got["name"]
    assert got["name"].startswith("projects/carewire-test/messages/")
    m = got["message"]
    assert m["token"] == message.to
    assert m["notification"] == {"title": "Reminder", "body": message.text}
    assert m["data"] == {"appointment_id": "a-1", "kind": "reminder"}
    assert m["android"]["priority"] == "high"
    assert m["apns"]["headers"]["apns-collapse-id"] == message.idempotency_key


def test_fcm_grant_is_made_once_for_a_burst_of_sends(fcm) -> None:
    fake, creds = fcm

    async def burst() -> list[Sent]:
        return await asyncio.gather(*(FCM().send(push(), creds) for _ in range(12)))

    sent = run(burst())
    assert len({s.provider_message_id for s in sent}) == 12
    assert len(fake.accepted) == 12
    assert fake.grants == 1  # cached and shared, one grant in flight for the whole burst
    assert run(FCM().send(push(), creds)).status_code == 200  # a later loop reuses it too
    assert fake.grants == 1


def test_fcm_a_burst_shares_one_failed_grant(fcm) -> None:
    fake, creds = fcm
    fake.token_mode = "500"

    async def burst() -> list[Any]:
        return await asyncio.gather(*(FCM().send(push(), creds) for _ in range(6)),
                                    return_exceptions=True)

    failures = run(burst())
    assert all(isinstance(f, Unavailable) and f.code == "token_grant" for f in failures)
    assert fake.token_requests == 1 and fake.sends == 0
    fake.token_mode = "ok"  # a later send tries again
    assert run(FCM().send(push(), creds)).status_code == 200 and fake.token_requests == 2


def test_fcm_cached_token_is_not_handed_to_another_key_with_the_same_ids(fcm) -> None:
    fake, creds = fcm
    run(FCM().send(push(), creds))
    impostor = json.loads(creds["service_account_json"])
    other_key = json.loads(service_account(key=1)[0])["private_key"]
    impostor["private_key"] = other_key  # same client_email and private_key_id, not the key
    exc = attempt(FCM().send(push(), {"service_account_json": json.dumps(impostor)}))
    assert isinstance(exc, Unavailable) and exc.code == "token_grant"
    assert fake.refused_grants == ["Invalid JWT Signature."]
    assert len(fake.accepted) == 1 and fake.sends == 1


def test_fcm_token_near_its_expiry_is_not_reused(fcm) -> None:
    fake, creds = fcm
    fake.expires_in = 120  # inside the adapter's safety margin: already too close to expiry
    for _ in range(3):
        run(FCM().send(push(), creds))
    assert fake.grants == 3 and len(fake.accepted) == 3


def test_fcm_refreshes_a_refused_token_once_and_sends_once(fcm) -> None:
    fake, creds = fcm
    run(FCM().send(push(), creds))
    fake.revoke_tokens()  # the cached token now gets 401
    sent = run(FCM().send(push(), creds))
    assert sent.status_code == 200
    assert fake.grants == 2 and fake.sends == 3 and len(fake.accepted) == 2

    fake.mode = "401-once"
    assert run(FCM().send(push(), creds)).status_code == 200
    assert fake.grants == 3 and len(fake.accepted) == 3


def test_fcm_gives_up_after_one_refresh(fcm) -> None:
    fake, creds = fcm
    fake.mode = "401"
    exc = attempt(FCM().send(push(), creds))
    assert isinstance(exc, Unavailable) and exc.status_code == 401
    assert fake.grants == 2 and fake.sends == 2 and fake.accepted == []


@pytest.mark.parametrize(("mode", "kind", "retire", "status"), [
    ("UNREGISTERED", Rejected, True, 404),
    ("SENDER_ID_MISMATCH", Rejected, True, 403),
    ("INVALID_ARGUMENT", Rejected, True, 400),  # "not a valid FCM registration token"
    ("INVALID_FIELD", Rejected, False, 400),  # a bad field of ours: the token is fine
    ("QUOTA_EXCEEDED", Unavailable, None, 429),
    ("500", Unavailable, None, 500),
])
def test_fcm_failures_by_error_code(fcm, mode: str, kind: type, retire: bool | None, status: int) -> None:
    fake, creds = fcm
    fake.mode = mode
    exc = attempt(FCM().send(push(), creds))
    assert type(exc) is kind and exc.status_code == status  # type: ignore[union-attr]
    if retire is not None:
        assert exc.retire_token is retire  # type: ignore[union-attr]
    if mode == "QUOTA_EXCEEDED":
        assert exc.retry_after == 120  # type: ignore[union-attr]
    if mode == "INVALID_FIELD":  # the field is named; FCM's message (it can quote data) is not
        assert "message.android.ttl" in str(exc) and "Invalid value" not in str(exc)
    assert fake.accepted == []


def test_fcm_too_big_a_payload_is_rejected_without_retiring_the_token(fcm) -> None:
    fake, creds = fcm
    exc = attempt(FCM().send(push(text="x" * 5000), creds))
    assert isinstance(exc, Rejected) and exc.status_code == 400 and exc.retire_token is False
    assert fake.accepted == []


def test_fcm_no_answer_is_maybe_sent(fcm, configure) -> None:
    fake, creds = fcm
    run(FCM().send(push(), creds))  # the token is granted (and cached) at the generous timeout
    configure(provider_timeout_seconds=HANG_TIMEOUT)
    fake.mode = "hang"
    assert isinstance(attempt(FCM().send(push(), creds)), MaybeSent)
    assert fake.sends == 2 and len(fake.accepted) == 1


def test_fcm_token_endpoint_failures_are_unavailable_and_send_nothing(fcm, configure) -> None:
    fake, creds = fcm
    fake.token_mode = "500"
    exc = attempt(FCM().send(push(), creds))
    assert isinstance(exc, Unavailable) and exc.code == "token_grant"
    fake.token_mode = "invalid_grant"
    assert isinstance(attempt(FCM().send(push(), creds)), Unavailable)
    configure(google_token_url=f"http://127.0.0.1:{servers.free_port()}/token")  # refused
    assert isinstance(attempt(FCM().send(push(), creds)), Unavailable)
    assert fake.sends == 0 and fake.grants == 0


def test_fcm_assertion_signed_by_another_key_is_refused_by_the_grant(configure) -> None:
    with fcm_server() as fake:
        sa, _ = service_account()
        _, other_public = service_account(key=1)
        fake.add_account(sa, other_public)  # same kid and email, different key
        configure(fcm_url=fake.url, google_token_url=fake.token_url)
        exc = attempt(FCM().send(push(), {"service_account_json": sa}))
        assert isinstance(exc, Unavailable)
        assert fake.refused_grants == ["Invalid JWT Signature."] and fake.sends == 0


def test_fcm_unreachable_is_unavailable(fcm, configure) -> None:
    fake, creds = fcm
    configure(fcm_url=f"http://127.0.0.1:{servers.free_port()}")  # nothing listens there
    exc = attempt(FCM().send(push(), creds))
    assert isinstance(exc, Unavailable) and "cannot connect" in str(exc)
    assert fake.grants == 1 and fake.sends == 0


def test_fcm_refuses_what_it_cannot_send_without_a_request(fcm) -> None:
    fake, creds = fcm
    exc = attempt(FCM().send(push(token_kind="apns"), creds))
    assert isinstance(exc, Rejected) and exc.retire_token is False
    broken = json.loads(creds["service_account_json"])
    secret_line = broken["private_key"].splitlines()[1]
    broken["private_key"] = broken["private_key"].replace(secret_line, "A" * len(secret_line))
    exc = attempt(FCM().send(push(), {"service_account_json": json.dumps(broken)}))
    assert isinstance(exc, Unavailable) and secret_line not in str(exc) and "A" * 20 not in str(exc)
    exc = attempt(FCM().send(push(), {"service_account_json": "{not json"}))
    assert isinstance(exc, Unavailable) and exc.code == "bad_credentials"
    assert fake.sends == 0 and fake.grants == 0


# --- WhatsApp -------------------------------------------------------------------------------


@pytest.fixture
def meta(configure: Callable[..., None]) -> Iterator[WhatsAppFake]:
    with whatsapp_server() as fake:
        configure(whatsapp_url=fake.url, whatsapp_api_version=fake.version)
        yield fake


NUMBER_ID = "106540352242922"


def wa(**kw: Any) -> Outbound:
    kw.setdefault("sender", Sender(whatsapp_number_id=NUMBER_ID))
    return outbound("whatsapp", "+919812345678", **kw)


def test_whatsapp_text_message(meta) -> None:
    message = wa()
    sent = run(WhatsApp().send(message, {"access_token": meta.access_token}))
    [got] = meta.accepted
    assert sent.provider_message_id == got["id"] and got["id"].startswith("wamid.")
    assert got["phone_number_id"] == NUMBER_ID
    assert got["body"]["messaging_product"] == "whatsapp"
    assert got["body"]["to"] == "919812345678"
    assert got["body"]["type"] == "text" and got["body"]["text"]["body"] == message.text
    assert got["body"]["biz_opaque_callback_data"] == message.idempotency_key


def test_whatsapp_template_message_and_number_id_from_credentials(meta) -> None:
    message = wa(sender=Sender(), template=WhatsAppTemplate(
        name="appointment_reminder", language="en_US", parameters=["Asha", "10:30"]))
    run(WhatsApp().send(message, {"access_token": meta.access_token, "phone_number_id": NUMBER_ID}))
    [got] = meta.accepted
    assert got["phone_number_id"] == NUMBER_ID
    assert got["body"]["type"] == "template" and "text" not in got["body"]
    assert got["body"]["template"] == {
        "name": "appointment_reminder", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"},
                                                       {"type": "text", "text": "10:30"}]}]}


@pytest.mark.parametrize(("mode", "kind", "code"), [
    ("undeliverable", Rejected, "131026"),
    ("outside_window", Rejected, "131047"),
    ("bad_parameter", Rejected, "131009"),
    ("rate_limited", Unavailable, "130429"),
    ("pair_rate_limited", Unavailable, "131056"),
    ("expired_token", Unavailable, "190"),
    ("500", Unavailable, "131000"),
])
def test_whatsapp_failures_by_error_code(meta, mode: str, kind: type, code: str) -> None:
    meta.mode = mode
    exc = attempt(WhatsApp().send(wa(), {"access_token": meta.access_token}))
    assert type(exc) is kind and exc.code == code  # type: ignore[union-attr]
    if mode.endswith("rate_limited"):
        assert exc.retry_after  # type: ignore[union-attr]
    assert meta.accepted == []


def test_whatsapp_wrong_token_unknown_number_and_no_answer(meta, configure) -> None:
    exc = attempt(WhatsApp().send(wa(), {"access_token": "EAAG-wrong"}))
    assert isinstance(exc, Unavailable) and exc.status_code == 401 and exc.code == "190"
    exc = attempt(WhatsApp().send(wa(sender=Sender(whatsapp_number_id="999")),
                                  {"access_token": meta.access_token}))
    assert isinstance(exc, Unavailable) and exc.code == "100"  # configuration, not the recipient
    exc = attempt(WhatsApp().send(wa(sender=Sender()), {"access_token": meta.access_token}))
    assert isinstance(exc, Unavailable) and exc.code == "bad_config"
    meta.mode = "hang"
    configure(provider_timeout_seconds=HANG_TIMEOUT)
    assert isinstance(attempt(WhatsApp().send(wa(), {"access_token": meta.access_token})), MaybeSent)
    assert meta.accepted == [] and meta.requests == 3  # the missing number id sent nothing


# --- SNS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[aws.Moto]:
    with aws.moto_server() as server:
        yield server


@pytest.fixture
def sns(moto: aws.Moto, configure: Callable[..., None]) -> Iterator[tuple[aws.Moto, Any, dict[str, str]]]:
    moto.reset()
    configure(aws_endpoint_url=moto.url)
    client = boto3.client("sns", region_name=aws.REGION, endpoint_url=moto.url,
                          aws_access_key_id=aws.ACCESS_KEY_ID, aws_secret_access_key=aws.SECRET_ACCESS_KEY)
    fcm_app = client.create_platform_application(Name="carewire-android", Platform="GCM",
                                                 Attributes={"PlatformCredential": "{}"})
    apns_app = client.create_platform_application(Name="carewire-ios", Platform="APNS",
                                                  Attributes={"PlatformCredential": "x"})
    creds = {"access_key_id": aws.ACCESS_KEY_ID, "secret_access_key": aws.SECRET_ACCESS_KEY,
             "region": aws.REGION, "fcm_application_arn": fcm_app["PlatformApplicationArn"],
             "apns_application_arn": apns_app["PlatformApplicationArn"]}
    yield moto, client, creds


def _moto_sns(moto: aws.Moto) -> dict[str, Any]:
    """What moto's SNS recorded: `SMS` [{message, message_id, phone_number}], `PlatformEndpoint`
    [{arn, token, enabled, messages {id: published Message}}]."""
    return moto.data()["sns"]  # type: ignore[no-any-return]


def test_sns_sms_is_published_to_the_number(sns) -> None:
    moto, _, creds = sns
    message = outbound("sms", "+919812345678", sender=Sender(sms_sender_id="CAREWIRE"))
    sent = run(SNS().send(message, creds))
    assert _moto_sns(moto)["SMS"] == [{"message": message.text, "message_id": sent.provider_message_id,
                                       "phone_number": "+919812345678"}]


def test_sns_sms_to_an_opted_out_or_malformed_number_is_rejected(sns) -> None:
    moto, _, creds = sns
    exc = attempt(SNS().send(outbound("sms", "+919812345699"), creds))  # moto: *99 opted out
    assert isinstance(exc, Rejected) and exc.code == "OptedOut"
    exc = attempt(SNS().send(outbound("sms", "98123 45678"), creds))
    assert isinstance(exc, Rejected)
    assert _moto_sns(moto)["SMS"] == []


def test_sns_push_creates_one_endpoint_per_token_and_publishes(sns) -> None:
    moto, client, creds = sns
    message = push(subject="Reminder", data={"appointment_id": "a-1"})
    first = run(SNS().send(message, creds))
    second = run(SNS().send(message, creds))
    assert first.provider_message_id and second.provider_message_id != first.provider_message_id
    endpoints = client.list_endpoints_by_platform_application(
        PlatformApplicationArn=creds["fcm_application_arn"])["Endpoints"]
    assert [e["Attributes"]["Token"] for e in endpoints] == [message.to]
    [endpoint] = _moto_sns(moto)["PlatformEndpoint"]
    assert set(endpoint["messages"]) == {first.provider_message_id, second.provider_message_id}
    published = json.loads(endpoint["messages"][first.provider_message_id])
    assert published["default"] == message.text
    fcm_v1 = json.loads(published["GCM"])["fcmV1Message"]["message"]
    assert fcm_v1["notification"] == {"title": "Reminder", "body": message.text}
    assert fcm_v1["data"] == {"appointment_id": "a-1"} and fcm_v1["android"]["priority"] == "high"

    ios_message = push(token_kind="apns")
    ios = run(SNS().send(ios_message, creds))
    [ios_endpoint] = [e for e in _moto_sns(moto)["PlatformEndpoint"] if e["token"] == ios_message.to]
    assert "/APNS/" in ios_endpoint["arn"]
    aps = json.loads(json.loads(ios_endpoint["messages"][ios.provider_message_id])["APNS"])["aps"]
    assert aps["alert"] == {"body": ios_message.text}


def test_sns_disabled_endpoint_retires_the_token(sns) -> None:
    _, client, creds = sns
    message = push()
    run(SNS().send(message, creds))
    [endpoint] = client.list_endpoints_by_platform_application(
        PlatformApplicationArn=creds["fcm_application_arn"])["Endpoints"]
    client.set_endpoint_attributes(EndpointArn=endpoint["EndpointArn"], Attributes={"Enabled": "false"})
    exc = attempt(SNS().send(message, creds))
    assert isinstance(exc, Rejected) and exc.retire_token is True and exc.code == "EndpointDisabled"


def test_sns_push_without_an_application_for_the_token_kind(sns) -> None:
    _, _, creds = sns
    no_apns = {k: v for k, v in creds.items() if k != "apns_application_arn"}
    exc = attempt(SNS().send(push(token_kind="apns"), no_apns))
    assert isinstance(exc, Rejected) and exc.retire_token is False
    missing = {**creds, "fcm_application_arn": creds["fcm_application_arn"] + "-gone"}
    exc = attempt(SNS().send(push(), missing))
    assert isinstance(exc, Unavailable) and exc.code == "NotFound"


def test_sns_unreachable_is_unavailable(sns, configure) -> None:
    _, _, creds = sns
    configure(aws_endpoint_url=f"http://127.0.0.1:{servers.free_port()}")
    assert isinstance(attempt(SNS().send(outbound("sms", "+919812345678"), creds)), Unavailable)
    assert isinstance(attempt(SNS().send(push(), creds)), Unavailable)


@pytest.mark.parametrize(("mode", "kind", "code"), [
    ("500", Unavailable, "InternalError"),
    ("throttled", Unavailable, "Throttling"),
    ("auth", Unavailable, "InvalidClientTokenId"),
    ("bad_number", Rejected, "InvalidParameter"),
    ("hang", MaybeSent, None),
])
def test_sns_failures_moto_cannot_produce_and_no_botocore_retry(configure, mode: str, kind: type,
                                                                code: str | None) -> None:
    creds = {"access_key_id": aws.ACCESS_KEY_ID, "secret_access_key": aws.SECRET_ACCESS_KEY,
             "region": aws.REGION}
    with sns_faults(mode=mode) as fake:
        configure(aws_endpoint_url=fake.url)
        if mode == "hang":
            configure(provider_timeout_seconds=HANG_TIMEOUT)
        exc = attempt(SNS().send(outbound("sms", "+919812345678"), creds))
        assert type(exc) is kind
        if code is not None:
            assert exc.code == code  # type: ignore[union-attr]
        # signed with the clinic's key; the opt-out check, then exactly one publish: no retry
        assert fake.requests == [("CheckIfPhoneNumberIsOptedOut", aws.ACCESS_KEY_ID),
                                 ("Publish", aws.ACCESS_KEY_ID)]


def test_sns_sms_attributes_on_the_wire(configure) -> None:
    creds = {"access_key_id": aws.ACCESS_KEY_ID, "secret_access_key": aws.SECRET_ACCESS_KEY,
             "region": aws.REGION}
    with sns_faults(mode="ok") as fake:
        configure(aws_endpoint_url=fake.url)
        run(SNS().send(outbound("sms", "+919812345678", sender=Sender(sms_sender_id="CAREWIRE")), creds))
        run(SNS().send(outbound("sms", "+919812345678", sender=Sender(sms_sender_id="not valid!")), creds))
    first, second = fake.published
    attributes = {first[f"MessageAttributes.entry.{n}.Name"]:
                  first[f"MessageAttributes.entry.{n}.Value.StringValue"] for n in (1, 2)}
    assert attributes == {"AWS.SNS.SMS.SMSType": "Transactional", "AWS.SNS.SMS.SenderID": "CAREWIRE"}
    assert first["PhoneNumber"] == "+919812345678"
    # a sender id SNS would refuse is left out (the message still goes, from the default sender)
    assert "MessageAttributes.entry.2.Name" not in second
    assert second["MessageAttributes.entry.1.Value.StringValue"] == "Transactional"
