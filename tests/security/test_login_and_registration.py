"""Login and registration cannot be used to lock people out or to learn who has an account:
wrong guesses back off the guessing address and only slow the account down, and registering
an email answers the same whether it is new or not, changing nothing for an existing one."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests import servers
from tests.conftest import unique_email

ACCEPTED = {"status": "accepted"}


@contextmanager
def own_server(env: dict[str, str], **overrides: str) -> Iterator[httpx.Client]:
    """A carewire process on the shared database with its own Redis prefix and limits, behind
    a 'proxy' at 127.0.0.1 so each test can speak from several addresses."""
    srv = servers.Server({**env, "CAREWIRE_REDIS_PREFIX": f"cwtest-{secrets.token_hex(4)}:",
                          "CAREWIRE_TRUSTED_PROXIES": "127.0.0.1", **overrides})
    srv.start()
    try:
        with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client:
            yield client
    finally:
        srv.stop()


def login(client: httpx.Client, ip: str, email: str, password: str) -> httpx.Response:
    return client.post("/auth/login", json={"email": email, "password": password},
                       headers={"X-Forwarded-For": ip})


@pytest.mark.slow
def test_a_stranger_guessing_does_not_lock_the_owner_out(env, db, clinic_factory, member_factory):
    c = clinic_factory()
    owner = member_factory(c["id"], "DOCTOR", tag="owner")
    attacker, elsewhere, home = "203.0.113.9", "203.0.113.77", "198.51.100.4"
    with own_server(env, CAREWIRE_LOGIN_FAILURES_PER_ACCOUNT="3",
                    CAREWIRE_LOGIN_SLOWDOWN_AFTER="3",
                    CAREWIRE_LOGIN_SLOWDOWN_MAX_SECONDS="1") as client:
        for i in range(3):
            assert login(client, attacker, owner["email"], f"guess-{i}-wrong").status_code == 401
        # The guessing address is backed off, even if it now guessed right...
        refused = login(client, attacker, owner["email"], owner["password"])
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        # ...while the owner, from their own address, gets in: a bounded delay, not a lock.
        started = time.monotonic()
        ok = login(client, home, owner["email"], owner["password"])
        assert ok.status_code == 200, ok.text
        assert time.monotonic() - started >= 0.25  # 3 failures on the account: slowed down
        rows = db.fetch("SELECT ip FROM audit_log WHERE request_id = $1",
                        ok.headers["x-request-id"])
        assert [str(r["ip"]) for r in rows] == [home]

        # A spread-out attack from more addresses slows the account further, up to the cap.
        for i in range(2):
            assert login(client, elsewhere, owner["email"], f"more-{i}-wrong").status_code == 401
        started = time.monotonic()
        assert login(client, home, owner["email"], owner["password"]).status_code == 200
        took = time.monotonic() - started
        assert 1.0 <= took < 6, took


def register(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/auth/register", json=body)


def test_registering_answers_alike_and_enrols_no_stranger(api, db, clinic_factory, member_factory):
    home = clinic_factory()
    stranger = member_factory(home["id"], "DOCTOR", tag="stranger")
    open_clinic = clinic_factory(allow_self_registration=True)
    email = unique_email("new-patient")
    body = {"clinic_id": open_clinic["id"], "email": email, "password": "patient-password-1",
            "name": "New Patient"}

    new = register(api.http, **body)
    existing = register(api.http, **{**body, "email": stranger["email"].upper(),
                                "password": "attacker-chosen-pass-1", "name": "Renamed"})
    repeat = register(api.http, **{**body, "password": "another-guess-pass-9"})
    for r in (new, existing, repeat):
        assert r.status_code == 202, r.text
        assert r.headers["content-type"].startswith("application/json")
    assert new.json() == existing.json() == repeat.json()
    assert ACCEPTED.items() <= new.json().items()
    assert "log in" in new.json()["message"]

    # The new person can log in at once, as a patient of the clinic.
    me = api.as_(api.token(email, "patient-password-1"), "GET", "/users/me").json()
    assert [(m["clinic_id"], m["role"]) for m in me["memberships"]] == [
        (open_clinic["id"], "PATIENT")]
    # The stranger was not enrolled, and nothing about their account changed.
    rows = db.fetch("""SELECT m.clinic_id, u.name FROM memberships m JOIN users u ON u.id = m.user_id
                       WHERE u.id = $1""", uuid.UUID(stranger["user_id"]))
    assert [(str(r["clinic_id"]), r["name"]) for r in rows] == [(home["id"], "Doctor stranger")]
    assert api.login(stranger["email"], stranger["password"])["access_token"]
    assert api.http.post("/auth/login", json={"email": stranger["email"],
                                              "password": "attacker-chosen-pass-1"}).status_code \
        == 401
    # And the repeat did not change the new person's password either.
    assert api.login(email, "patient-password-1")["access_token"]


def test_registration_is_rate_limited_per_address(env, db, clinic_factory):
    open_clinic = clinic_factory(allow_self_registration=True)
    with own_server(env, CAREWIRE_REGISTER_ATTEMPTS_PER_IP="2") as client:
        def attempt(ip: str) -> httpx.Response:
            return client.post("/auth/register", headers={"X-Forwarded-For": ip}, json={
                "clinic_id": open_clinic["id"], "email": unique_email("flood"),
                "password": "flood-password-1", "name": "Flood"})

        allowed = [attempt("203.0.113.50") for _ in range(2)]
        assert all(r.is_success for r in allowed), [r.text for r in allowed]
        refused = attempt("203.0.113.50")
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        assert attempt("203.0.113.51").is_success  # another address is not affected
