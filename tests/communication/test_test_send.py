"""POST /clinics/{id}/communication/test/{channel}: a real test message to the caller, queued in
the delivery log, which is the workers' queue (no worker runs against this session's database
here; the pipeline's own tests follow messages to the provider)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest

from domain.communication.commands.config import TEST_SENDS_PER_MINUTE
from tests.conftest import unique_email


@pytest.fixture(scope="module")
def desk(api, clinic_factory, member_factory, sa_token) -> dict[str, Any]:
    clinic = clinic_factory()
    r = api.as_(sa_token, "POST", f"/clinics/{clinic['id']}/members", json={
        "email": unique_email("phoned"), "name": "Phoned Admin", "role": "CLINIC_ADMIN",
        "password": "member-password-1", "phone": "+919812345678"})
    assert r.status_code == 201, r.text
    phoned = {**r.json(), "token": api.token(r.json()["email"], "member-password-1")}
    return {"clinic": clinic["id"], "phoned": phoned,
            "admin": member_factory(clinic["id"], "CLINIC_ADMIN", tag="send-admin"),
            "doctor": member_factory(clinic["id"], "DOCTOR", tag="send-doc"),
            "other": member_factory(clinic_factory()["id"], "CLINIC_ADMIN", tag="send-other")}


def _send(capi, token: str | None, clinic_id: str, channel: str) -> Any:
    return capi.as_(token, "POST", f"/clinics/{clinic_id}/communication/test/{channel}")


def _messages(db, ids: list[str]) -> list[dict[str, Any]]:
    return db.fetch("SELECT id, clinic_id, user_id, channel, kind, address, status, subject "
                    "FROM communication_messages WHERE id = ANY($1::uuid[]) ORDER BY address",
                    [uuid.UUID(i) for i in ids])


def test_email_goes_to_the_callers_account_email(capi, db, desk):
    r = _send(capi, desk["admin"]["token"], desk["clinic"], "email")
    assert r.status_code == 202, r.text
    ids = r.json()["message_ids"]
    rows = _messages(db, ids)
    assert len(ids) == len(rows) == 1
    row = rows[0]
    assert (row["status"], row["kind"], row["channel"]) == ("queued", "test", "email")
    assert str(row["user_id"]) == desk["admin"]["user_id"]
    assert str(row["clinic_id"]) == desk["clinic"]
    assert row["address"] == desk["admin"]["email"]


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_sms_and_whatsapp_go_to_the_callers_phone(capi, db, desk, channel):
    r = _send(capi, desk["admin"]["token"], desk["clinic"], channel)
    assert r.status_code == 400, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["phone"]
    assert "add a phone number to your profile" in r.json()["detail"]
    r = _send(capi, desk["phoned"]["token"], desk["clinic"], channel)
    assert r.status_code == 202, r.text
    (row,) = _messages(db, r.json()["message_ids"])
    assert (row["address"], row["channel"], row["status"]) == ("+919812345678", channel, "queued")
    assert str(row["user_id"]) == desk["phoned"]["user_id"]


def test_push_goes_to_each_active_device_of_the_caller(capi, db, desk):
    r = _send(capi, desk["phoned"]["token"], desk["clinic"], "push")
    assert r.status_code == 400, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["devices"]
    me = uuid.UUID(desk["phoned"]["user_id"])
    live = [uuid.uuid4(), uuid.uuid4()]
    for device, retired in ((live[0], False), (live[1], False), (uuid.uuid4(), True)):
        db.fetch("""INSERT INTO devices (id, user_id, kind, token, platform, retired_at)
                    VALUES ($1, $2, 'fcm', $3, 'android', CASE WHEN $4 THEN now() END)""",
                 device, me, "tok-" + secrets.token_hex(16), retired)
    r = _send(capi, desk["phoned"]["token"], desk["clinic"], "push")
    assert r.status_code == 202, r.text
    rows = _messages(db, r.json()["message_ids"])
    assert sorted(row["address"] for row in rows) == sorted(str(d) for d in live)
    assert {(row["kind"], row["status"], str(row["user_id"])) for row in rows} == {
        ("test", "queued", str(me))}


def test_refusals(capi, desk):
    r = _send(capi, desk["admin"]["token"], desk["clinic"], "fax")
    assert r.status_code == 400 and [e["field"] for e in r.json()["errors"]] == ["channel"]
    assert _send(capi, desk["doctor"]["token"], desk["clinic"], "email").status_code == 403
    r = _send(capi, desk["other"]["token"], desk["clinic"], "email")
    assert r.status_code == 404 and desk["clinic"] not in r.text
    assert _send(capi, None, desk["clinic"], "email").status_code == 401
    r = _send(capi, desk["admin"]["token"], str(uuid.uuid4()), "email")
    assert r.status_code == 404


def test_test_sends_are_limited_per_clinic(capi, db, clinic_factory, sa_token):
    clinic = clinic_factory()["id"]
    for _ in range(TEST_SENDS_PER_MINUTE):
        assert _send(capi, sa_token, clinic, "email").status_code == 202
    r = _send(capi, sa_token, clinic, "email")
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    n = db.fetch("SELECT count(*) AS n FROM communication_messages WHERE clinic_id = $1",
                 uuid.UUID(clinic))[0]["n"]
    assert n == TEST_SENDS_PER_MINUTE
