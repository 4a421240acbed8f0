"""Provider webhooks through the one inbox, against the session's server: verified on the raw
body (refusals store nothing and are audited), stored once however often and however
concurrently they arrive, processed once (here in process through the domain layer: the
session runs no worker; test_webhook_worker.py runs a real one), and what processing does to
the delivery log and the suppression list."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.inbox.commands import process
from tests import servers
from tests.communication.fakes import webhooks as fake
from tests.communication.fakes.webhooks import keypair

SES = "/webhooks/communication/ses"
ZEPTO = "/webhooks/communication/zeptomail"
WHATSAPP = "/webhooks/communication/whatsapp"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def clinic(clinic_factory) -> uuid.UUID:
    return uuid.UUID(clinic_factory()["id"])


def sent(db, clinic_id: uuid.UUID, provider: str, *, address: str | None = None,
         channel: str = "email", status: str = "sent") -> tuple[uuid.UUID, str, str]:
    """A message the pipeline sent through `provider`: (id, provider's id for it, address)."""
    address = address or f"p-{uuid.uuid4().hex[:10]}@example.test"
    if channel == "whatsapp":
        address = f"+9198{uuid.uuid4().int % 10**8:08d}"
    pid = (f"wamid.{uuid.uuid4().hex}" if provider == "whatsapp"
           else f"{provider}-{uuid.uuid4().hex}")
    rows = db.fetch(
        """INSERT INTO communication_messages (id, clinic_id, channel, kind, address, status,
               provider, provider_message_id, body, sent_at)
           VALUES (gen_random_uuid(), $1, $2, 'test', $3, $4, $5, $6, 'hello', now())
           RETURNING id""", clinic_id, channel, address, status, provider, pid)
    return rows[0]["id"], pid, address


def status_of(db, message_id: uuid.UUID) -> dict[str, Any]:
    return db.fetch("SELECT status, error FROM communication_messages WHERE id = $1",
                    message_id)[0]


def suppression(db, clinic_id: uuid.UUID, address: str) -> dict[str, Any] | None:
    rows = db.fetch("""SELECT reason, source_event_id FROM communication_suppressions
                       WHERE clinic_id = $1 AND channel = 'email' AND address = $2""",
                    clinic_id, address)
    return rows[0] if rows else None


def inbox(db, provider: str, event_id: str) -> list[dict[str, Any]]:
    return db.fetch("SELECT * FROM webhook_inbox WHERE provider = $1 AND event_id = $2",
                    provider, event_id)


def jobs(db, provider: str, event_id: str) -> int:
    return db.fetch("SELECT count(*) AS n FROM scheduled_jobs WHERE job_key = $1",
                    f"webhook:{provider}:{event_id}")[0]["n"]


def post_sns(http: httpx.Client, message: dict[str, Any], raw: bytes | None = None) -> httpx.Response:
    return http.post(SES, content=raw if raw is not None else json.dumps(message).encode(),
                     headers={"content-type": "text/plain; charset=UTF-8",
                              "x-amz-sns-message-type": message["Type"],
                              "x-amz-sns-message-id": message["MessageId"]})


def refused(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["status"] == status


def audited(db, reason: str) -> bool:
    return bool(db.fetch("""SELECT 1 FROM audit_log WHERE action = 'auth:refused'
                            AND detail->>'transport' = 'webhook' AND detail->>'reason' = $1""",
                         reason))


# --- SES through SNS --------------------------------------------------------------------------

@pytest.mark.parametrize("version", [2, 1])
def test_a_hard_bounce_is_stored_once_processed_once_and_suppresses(
        http, db, domain_layer, sns_host, clinic, version) -> None:
    mid, ses_id, address = sent(db, clinic, "ses")
    note = sns_host.notification(fake.ses_event("Bounce", ses_id, address), version=version)
    r = post_sns(http, note)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1
    [row] = inbox(db, "ses", note["MessageId"])
    assert row["verified"] and row["processed_at"] is None
    assert json.loads(bytes(row["body"])) == note  # the raw body, as it came
    assert jobs(db, "ses", note["MessageId"]) == 1
    handled = domain_layer.run(process("ses", note["MessageId"]))
    assert handled is not None and handled.result == "bounced"
    assert str(handled.clinic_id) == str(clinic)
    assert domain_layer.run(process("ses", note["MessageId"])) is None  # once
    assert status_of(db, mid)["status"] == "bounced"
    assert suppression(db, clinic, address) == {"reason": "hard_bounce",
                                                "source_event_id": f"ses:{note['MessageId']}"}
    [row] = inbox(db, "ses", note["MessageId"])
    assert row["processed_at"] is not None and row["result"] == "bounced"
    assert str(row["clinic_id"]) == str(clinic)


def test_a_complaint_suppresses_and_not_spam_does_not(http, db, domain_layer, sns_host,
                                                      clinic) -> None:
    mid, ses_id, address = sent(db, clinic, "ses", status="delivered")
    note = sns_host.notification(fake.ses_event("Complaint", ses_id, address,
                                                feedback="abuse"))
    assert post_sns(http, note).status_code == 200
    assert domain_layer.run(process("ses", note["MessageId"])).result == "complained"
    assert status_of(db, mid)["status"] == "complained"
    assert suppression(db, clinic, address)["reason"] == "complaint"

    mid2, ses_id2, address2 = sent(db, clinic, "ses", status="delivered")
    note = sns_host.notification(fake.ses_event("Complaint", ses_id2, address2,
                                                feedback="not-spam"))
    assert post_sns(http, note).status_code == 200
    assert domain_layer.run(process("ses", note["MessageId"])).result == "not_spam"
    assert status_of(db, mid2)["status"] == "delivered"
    assert suppression(db, clinic, address2) is None


def test_a_delivery_moves_forward_only(http, db, domain_layer, sns_host, clinic) -> None:
    mid, ses_id, address = sent(db, clinic, "ses")
    first = sns_host.notification(fake.ses_event("Delivery", ses_id, address))
    assert post_sns(http, first).status_code == 200
    assert domain_layer.run(process("ses", first["MessageId"])).result == "delivered"
    assert status_of(db, mid)["status"] == "delivered"
    bounce = sns_host.notification(fake.ses_event("Bounce", ses_id, address))
    late = sns_host.notification(fake.ses_event("Delivery", ses_id, address))
    for note in (bounce, late):
        assert post_sns(http, note).status_code == 200
        domain_layer.run(process("ses", note["MessageId"]))
    assert status_of(db, mid)["status"] == "bounced"  # the late delivery did not undo it


def test_soft_bounces_suppress_at_three_within_seven_days(http, db, domain_layer, sns_host,
                                                          clinic) -> None:
    def soft(address: str, ses_id: str) -> str:
        note = sns_host.notification(fake.ses_event("Bounce", ses_id, address,
                                                    bounce_type="Transient"))
        assert post_sns(http, note).status_code == 200
        return domain_layer.run(process("ses", note["MessageId"])).result

    _, ses_id, three = sent(db, clinic, "ses")
    assert [soft(three, ses_id) for _ in range(3)] == [
        "soft_bounce_1", "soft_bounce_2", "soft_bounce_3_suppressed"]
    assert suppression(db, clinic, three)["reason"] == "soft_bounce"

    _, ses_id, two = sent(db, clinic, "ses")
    assert [soft(two, ses_id) for _ in range(2)] == ["soft_bounce_1", "soft_bounce_2"]
    assert suppression(db, clinic, two) is None

    _, ses_id, old = sent(db, clinic, "ses")  # two 8 days ago do not count
    db.fetch("""INSERT INTO communication_soft_bounces (clinic_id, channel, address,
                    source_event_id, at)
                SELECT $1, 'email', $2, 'old-' || g, now() - interval '8 days'
                FROM generate_series(1, 2) g""", clinic, old)
    assert soft(old, ses_id) == "soft_bounce_1"
    assert suppression(db, clinic, old) is None


def test_a_content_bounce_is_not_counted(http, db, domain_layer, sns_host, clinic) -> None:
    """ContentRejected is about the message, not the mailbox: three of them suppress nothing."""
    _, ses_id, address = sent(db, clinic, "ses")
    for _ in range(3):
        note = sns_host.notification(fake.ses_event("Bounce", ses_id, address,
                                                    bounce_type="Transient",
                                                    subtype="ContentRejected"))
        assert post_sns(http, note).status_code == 200
        assert domain_layer.run(process("ses", note["MessageId"])).result == \
            "soft_bounce_of_content"
    assert suppression(db, clinic, address) is None


def test_an_event_about_no_message_of_ours_changes_nothing(http, db, domain_layer, sns_host,
                                                           clinic) -> None:
    address = f"nobody-{uuid.uuid4().hex[:8]}@example.test"
    note = sns_host.notification(fake.ses_event("Bounce", "not-ours-" + uuid.uuid4().hex, address))
    assert post_sns(http, note).status_code == 200
    assert domain_layer.run(process("ses", note["MessageId"])).result == "unknown_message"
    assert not db.fetch("SELECT 1 FROM communication_suppressions WHERE address = $1", address)


def _forged(host: Any, note: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    other_key, _ = keypair("forger")
    unsigned = {k: v for k, v in note.items()
                if k not in ("Signature", "SignatureVersion", "SigningCertURL")}
    return host.sign(unsigned, key=other_key), None


def _tampered(host: Any, note: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    event = json.loads(note["Message"])
    event["mail"]["messageId"] = "someone-elses"
    return {**note, "Message": json.dumps(event)}, None


def _reserialized(host: Any, note: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """The SES event inside re-serialized (key order and spacing): another signed value."""
    event = json.loads(note["Message"])
    inner = json.dumps(dict(reversed(list(event.items()))), separators=(",", ":"))
    return {**note, "Message": inner}, None


def _stale(host: Any, note: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    event = json.loads(note["Message"])
    return host.notification(event, timestamp=datetime.now(UTC) - timedelta(hours=2)), None


def _unknown_topic(host: Any, note: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    event = json.loads(note["Message"])
    return host.notification(event, topic="arn:aws:sns:ap-south-1:999999999999:theirs"), None


def _bad_json(host: Any, note: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    return note, json.dumps(note).encode()[:-3]


SNS_REFUSALS = {
    "forged": (_forged, 401, "bad_signature"),
    "tampered": (_tampered, 401, "bad_signature"),
    "reserialized_message": (_reserialized, 401, "bad_signature"),
    "stale": (_stale, 400, "stale"),
    "unknown_topic": (_unknown_topic, 401, "unknown_topic"),
    "malformed": (_bad_json, 400, "malformed"),
}


@pytest.mark.parametrize("case", list(SNS_REFUSALS))
def test_a_bad_sns_message_is_refused_stores_nothing_and_is_audited(
        http, db, domain_layer, sns_host, clinic, case) -> None:
    make, status, reason = SNS_REFUSALS[case]
    mid, ses_id, address = sent(db, clinic, "ses")
    note, raw = make(sns_host, sns_host.notification(fake.ses_event("Bounce", ses_id, address)))
    refused(post_sns(http, note, raw), status)
    assert inbox(db, "ses", note["MessageId"]) == []
    assert jobs(db, "ses", note["MessageId"]) == 0
    assert status_of(db, mid)["status"] == "sent" and suppression(db, clinic, address) is None
    assert audited(db, reason)


def test_a_certificate_url_off_the_pattern_is_never_fetched(http, db, sns_host, clinic) -> None:
    """The same host, a path the pattern does not allow: refused with no request made (the host
    records every request it gets)."""
    _, ses_id, address = sent(db, clinic, "ses")
    before = list(sns_host.requests)
    for url in (f"{sns_host.base}/elsewhere/cert.pem", f"{sns_host.base}/certs/cert.pem?x=1",
                "https://sns.ap-south-1.amazonaws.com.evil.test/cert.pem"):
        note = sns_host.notification(fake.ses_event("Bounce", ses_id, address), cert_url=url)
        refused(post_sns(http, note), 401)
        assert inbox(db, "ses", note["MessageId"]) == []
    assert sns_host.requests == before
    assert audited(db, "cert_url")


def test_the_envelope_reserialized_with_the_same_values_is_the_same_message(
        http, db, sns_host, clinic) -> None:
    """SNS signs field values, not bytes: key order and spacing of the envelope change nothing
    signed, so it verifies, and it is the same event (one row)."""
    _, ses_id, address = sent(db, clinic, "ses")
    note = sns_host.notification(fake.ses_event("Delivery", ses_id, address))
    assert post_sns(http, note).json()["stored"] == 1
    again = json.dumps(dict(reversed(list(note.items()))), indent=2).encode()
    r = post_sns(http, note, again)
    assert r.status_code == 200 and (r.json()["stored"], r.json()["duplicates"]) == (0, 1)
    assert len(inbox(db, "ses", note["MessageId"])) == 1


def test_the_same_notification_10_times_then_20_at_once_is_one_event(
        http, server, db, domain_layer, sns_host, clinic) -> None:
    mid, ses_id, address = sent(db, clinic, "ses")
    note = sns_host.notification(fake.ses_event("Bounce", ses_id, address))
    answers = [post_sns(http, note) for _ in range(10)]
    assert [a.status_code for a in answers] == [200] * 10
    assert [a.json()["stored"] for a in answers] == [1] + [0] * 9

    other = sns_host.notification(fake.ses_event("Complaint", ses_id, address, feedback="abuse"))

    def once(_: int) -> int:
        with httpx.Client(base_url=server.base_url + "/api/v1", timeout=30) as client:
            return post_sns(client, other).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(once, range(20)))
    assert codes == [200] * 20
    for event in (note, other):
        assert len(inbox(db, "ses", event["MessageId"])) == 1
        assert jobs(db, "ses", event["MessageId"]) == 1

    async def five_jobs(event_id: str) -> list[Any]:
        return await asyncio.gather(*(process("ses", event_id) for _ in range(5)))

    for event in (note, other):
        results = domain_layer.run(five_jobs(event["MessageId"]))
        assert sum(r is not None for r in results) == 1  # processed once
    assert status_of(db, mid)["status"] == "bounced"  # the complaint came after: final stays
    assert suppression(db, clinic, address)["reason"] == "hard_bounce"


def test_a_subscription_is_confirmed_only_when_verified(http, db, sns_host) -> None:
    good = sns_host.confirmation()
    r = post_sns(http, good)
    assert r.status_code == 200, r.text
    assert any(p.startswith("/subscribe?") and good["Token"] in p for p in sns_host.requests)
    other_key, _ = keypair("forger")
    forged = sns_host.confirmation()
    unsigned = {k: v for k, v in forged.items()
                if k not in ("Signature", "SignatureVersion", "SigningCertURL")}
    refused(post_sns(http, sns_host.sign(unsigned, key=other_key)), 401)
    assert not any(forged["Token"] in p for p in sns_host.requests)


# --- ZeptoMail --------------------------------------------------------------------------------

def post_zepto(http: httpx.Client, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["producer-signature"] = signature
    return http.post(ZEPTO, content=body, headers=headers)


def test_a_zeptomail_hard_bounce_suppresses_once(http, db, domain_layer, clinic) -> None:
    mid, request_id, address = sent(db, clinic, "zeptomail")
    hook = uuid.uuid4().hex
    body = fake.zeptomail_body("hardbounce", request_id, address, webhook_request_id=hook)
    for _ in range(3):
        r = post_zepto(http, body, fake.zeptomail_signature(body))
        assert r.status_code == 200, r.text
    assert len(inbox(db, "zeptomail", hook)) == 1 and jobs(db, "zeptomail", hook) == 1
    assert domain_layer.run(process("zeptomail", hook)).result == "bounced"
    assert status_of(db, mid)["status"] == "bounced"
    assert suppression(db, clinic, address) == {"reason": "hard_bounce",
                                                "source_event_id": f"zeptomail:{hook}"}


def test_zeptomail_soft_bounces_suppress_at_three(http, db, domain_layer, clinic) -> None:
    _, request_id, address = sent(db, clinic, "zeptomail")
    results = []
    for _ in range(3):
        hook = uuid.uuid4().hex
        body = fake.zeptomail_body("softbounce", request_id, address, webhook_request_id=hook)
        assert post_zepto(http, body, fake.zeptomail_signature(body)).status_code == 200
        results.append(domain_layer.run(process("zeptomail", hook)).result)
        if len(results) == 2:
            assert suppression(db, clinic, address) is None
    assert results[-1] == "soft_bounce_3_suppressed"
    assert suppression(db, clinic, address)["reason"] == "soft_bounce"


def _z_reserialized(body: bytes) -> tuple[bytes, str]:
    signature = fake.zeptomail_signature(body)
    doc = json.loads(body)
    return json.dumps(dict(reversed(list(doc.items()))), indent=1).encode(), signature


ZEPTO_REFUSALS = {
    "unsigned": (lambda b: (b, None), 401),
    "wrong_key": (lambda b: (b, fake.zeptomail_signature(b, key="not-the-key")), 401),
    "tampered": (lambda b: (b.replace(b"hardbounce", b"softbounce"),
                            fake.zeptomail_signature(b)), 401),
    "reserialized": (_z_reserialized, 401),
    "stale": (lambda b: (b, fake.zeptomail_signature(
        b, ts_ms=int((time.time() - 600) * 1000))), 400),
    "garbage_header": (lambda b: (b, "ts=abc;s=%%%;s-algorithm=HmacSHA256"), 401),
}


@pytest.mark.parametrize("case", list(ZEPTO_REFUSALS))
def test_a_bad_zeptomail_webhook_is_refused_and_stores_nothing(http, db, clinic, case) -> None:
    make, status = ZEPTO_REFUSALS[case]
    mid, request_id, address = sent(db, clinic, "zeptomail")
    hook = uuid.uuid4().hex
    body, signature = make(fake.zeptomail_body("hardbounce", request_id, address,
                                               webhook_request_id=hook))
    refused(post_zepto(http, body, signature), status)
    assert inbox(db, "zeptomail", hook) == [] and jobs(db, "zeptomail", hook) == 0
    assert status_of(db, mid)["status"] == "sent"


# --- WhatsApp ---------------------------------------------------------------------------------

def post_whatsapp(http: httpx.Client, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return http.post(WHATSAPP, content=body, headers=headers)


def test_the_whatsapp_handshake_echoes_only_for_the_right_token(http) -> None:
    ok = http.get(WHATSAPP, params={"hub.mode": "subscribe", "hub.verify_token": fake.WHATSAPP_VERIFY,
                                    "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    for params in ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                   {"hub.mode": "unsubscribe", "hub.verify_token": fake.WHATSAPP_VERIFY,
                    "hub.challenge": "1"},
                   {"hub.mode": "subscribe", "hub.verify_token": fake.WHATSAPP_VERIFY,
                    "hub.challenge": "<script>"},
                   {}):
        refused(http.get(WHATSAPP, params=params), 403)


def test_whatsapp_statuses_never_move_a_message_backwards(http, db, domain_layer, clinic) -> None:
    """`read` arrives before `delivered` (one POST, that order), then `sent` late: the message
    stays `read`. A failure after is final; a delivery after it changes nothing."""
    mid, wamid, _ = sent(db, clinic, "whatsapp", channel="whatsapp")
    body = fake.whatsapp_body((wamid, "read"), (wamid, "delivered"), (wamid, "sent"))
    r = post_whatsapp(http, body, fake.whatsapp_signature(body))
    assert r.status_code == 200 and r.json()["stored"] == 3, r.text
    results = [domain_layer.run(process("whatsapp", f"{wamid}:{s}")).result
               for s in ("read", "delivered", "sent")]
    assert results == ["read", "delivered_was_read", "noted_sent"]
    assert status_of(db, mid)["status"] == "read"

    mid, wamid, _ = sent(db, clinic, "whatsapp", channel="whatsapp")
    body = fake.whatsapp_body((wamid, "failed"), (wamid, "delivered"), errors=[
        {"code": 131026, "title": "Message undeliverable"}])
    assert post_whatsapp(http, body, fake.whatsapp_signature(body)).status_code == 200
    again = post_whatsapp(http, body, fake.whatsapp_signature(body)).json()
    assert (again["stored"], again["duplicates"]) == (0, 2)
    for s in ("failed", "delivered"):
        domain_layer.run(process("whatsapp", f"{wamid}:{s}"))
    row = status_of(db, mid)
    assert row["status"] == "failed" and "131026" in row["error"] and "undeliverable" in row["error"]


WHATSAPP_REFUSALS = {
    "unsigned": lambda b: (b, None),
    "wrong_secret": lambda b: (b, fake.whatsapp_signature(b, "not-the-secret")),
    "tampered": lambda b: (b.replace(b'"delivered"', b'"read"'), fake.whatsapp_signature(b)),
    "reserialized": lambda b: (json.dumps(json.loads(b), indent=2).encode(),
                               fake.whatsapp_signature(b)),
    "sha1_scheme": lambda b: (b, "sha1=" + fake.whatsapp_signature(b)[7:]),
}


@pytest.mark.parametrize("case", list(WHATSAPP_REFUSALS))
def test_a_bad_whatsapp_webhook_is_refused_and_stores_nothing(http, db, clinic, case) -> None:
    mid, wamid, _ = sent(db, clinic, "whatsapp", channel="whatsapp")
    body, signature = WHATSAPP_REFUSALS[case](fake.whatsapp_body((wamid, "delivered")))
    refused(post_whatsapp(http, body, signature), 401)
    assert db.fetch("SELECT 1 FROM webhook_inbox WHERE event_id LIKE $1", wamid + "%") == []
    assert status_of(db, mid)["status"] == "sent"


def test_without_secrets_every_webhook_is_refused(env, db, sns_host, clinic) -> None:
    """A gateway whose webhook settings are empty refuses even correctly signed webhooks (and
    answers no handshake): nothing is accepted that nothing could verify."""
    bare = servers.Server({**env, "CAREWIRE_SNS_TOPIC_ARNS": "", "CAREWIRE_ZEPTOMAIL_WEBHOOK_KEY": "",
                           "CAREWIRE_WHATSAPP_APP_SECRET": "", "CAREWIRE_WHATSAPP_VERIFY_TOKEN": ""})
    bare.start()
    try:
        with httpx.Client(base_url=bare.base_url + "/api/v1", timeout=30) as client:
            _, ses_id, address = sent(db, clinic, "ses")
            note = sns_host.notification(fake.ses_event("Bounce", ses_id, address))
            refused(post_sns(client, note), 401)
            hook = uuid.uuid4().hex
            body = fake.zeptomail_body("hardbounce", "r", address, webhook_request_id=hook)
            refused(post_zepto(client, body, fake.zeptomail_signature(body)), 401)
            wamid = "wamid." + uuid.uuid4().hex
            body = fake.whatsapp_body((wamid, "delivered"))
            refused(post_whatsapp(client, body, fake.whatsapp_signature(body)), 401)
            refused(client.get(WHATSAPP, params={"hub.mode": "subscribe", "hub.challenge": "1",
                                                 "hub.verify_token": ""}), 403)
    finally:
        bare.stop()
    assert inbox(db, "ses", note["MessageId"]) == [] and inbox(db, "zeptomail", hook) == []
    assert audited(db, "not_configured") and audited(db, "unknown_topic")
