"""Idempotency-Key: the same key and body returns the first answer; another body is a 409."""

from __future__ import annotations

import uuid

from tests.conftest import unique_email


def test_repeat_returns_the_first_answer(api, db, clinic_factory, member_factory):
    c = clinic_factory()
    admin = member_factory(c["id"], "CLINIC_ADMIN", tag="idem")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"email": unique_email(), "name": "Twice", "role": "PATIENT"}
    first = api.as_(admin["token"], "POST", f"/clinics/{c['id']}/members", json=body, headers=key)
    again = api.as_(admin["token"], "POST", f"/clinics/{c['id']}/members", json=body, headers=key)
    assert first.status_code == again.status_code == 202  # clinic staff invite
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    count = db.fetch("SELECT count(*) AS n FROM invitations WHERE email = $1", body["email"])
    assert count[0]["n"] == 1

    other = api.as_(admin["token"], "POST", f"/clinics/{c['id']}/members",
                    json={**body, "email": unique_email()}, headers=key)
    assert other.status_code == 409
    assert other.json()["code"] == "conflict"


def test_keys_are_per_caller(api, clinic_factory, member_factory):
    c = clinic_factory()
    one = member_factory(c["id"], "CLINIC_ADMIN", tag="one")
    two = member_factory(c["id"], "CLINIC_ADMIN", tag="two")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r1 = api.as_(one["token"], "POST", f"/clinics/{c['id']}/locations", json={"name": "A"},
                 headers=key)
    r2 = api.as_(two["token"], "POST", f"/clinics/{c['id']}/locations", json={"name": "A"},
                 headers=key)
    assert r1.status_code == r2.status_code == 201
    assert r1.json()["id"] != r2.json()["id"]


def test_refused_answers_are_replayed_too(api, clinic_factory, member_factory):
    """A 4xx is the answer to that request: replaying it is what a retrying client expects."""
    c = clinic_factory()
    nurse = member_factory(c["id"], "NURSE", tag="idem-nurse")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "Nope"}
    r1 = api.as_(nurse["token"], "POST", f"/clinics/{c['id']}/locations", json=body, headers=key)
    r2 = api.as_(nurse["token"], "POST", f"/clinics/{c['id']}/locations", json=body, headers=key)
    assert r1.status_code == r2.status_code == 403
    assert r2.headers.get("idempotent-replayed") == "true"
