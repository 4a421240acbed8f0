"""Identity against the real server: login, lockouts, refresh rotation and reuse, logout,
token validation, self-registration, disabled users and password storage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from joserfc import jwt
from joserfc.jwk import OctKey

from tests import servers
from tests.conftest import unique_email

PROBLEM = "application/problem+json"
BAD_LOGIN = "wrong email or password"


# -- helpers -------------------------------------------------------------------------------------

def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: only to learn the session id the server put there."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def session_id(token: str) -> str:
    return str(claims_of(token)["sid"])


def audit(db: Any, request_id: str) -> list[dict[str, Any]]:
    """The audit rows one request wrote, with `detail` decoded."""
    rows = db.fetch("SELECT * FROM audit_log WHERE request_id = $1 ORDER BY id", request_id)
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return dict(body)


def login_raw(api: Any, email: str, password: str, **kw: Any) -> httpx.Response:
    return api.http.post("/auth/login", json={"email": email, "password": password}, **kw)


def refresh_raw(api: Any, refresh_token: str) -> httpx.Response:
    return api.http.post("/auth/refresh", json={"refresh_token": refresh_token})


def forge(secret: str, **claims: Any) -> str:
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret.encode()),
                      algorithms=["HS256"])


@contextmanager
def extra_server(env: dict[str, str], **overrides: str) -> Iterator[servers.Server]:
    """Another carewire process on the same database, with its own Redis key prefix."""
    srv = servers.Server({**env, "CAREWIRE_REDIS_PREFIX": f"cwtest-{secrets.token_hex(4)}:",
                          **overrides})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def failures_limit(env: dict[str, str]) -> int:
    return int(env.get("CAREWIRE_LOGIN_FAILURES_PER_ACCOUNT", "5"))


# -- login ---------------------------------------------------------------------------------------

def test_login_returns_a_token_pair_and_me_lists_memberships(
    api, db, sa_token, clinic_factory, member_factory
):
    a, b = clinic_factory(), clinic_factory()
    loc = a["locations"][0]["id"]
    doctor = member_factory(a["id"], "DOCTOR", location_id=loc, tag="login")
    # The same person joins a second clinic (no password: the account already exists).
    r = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                json={"email": doctor["email"], "name": "Dr Two", "role": "RECEPTIONIST"})
    assert r.status_code == 201, r.text

    r = login_raw(api, doctor["email"].upper(), doctor["password"])  # email is case-insensitive
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "Bearer"
    assert isinstance(pair["expires_in"], int) and pair["expires_in"] > 0
    assert pair["access_token"].count(".") == 2
    assert pair["refresh_token"] and pair["refresh_token"] != pair["access_token"]
    c = claims_of(pair["access_token"])
    assert c["sub"] == doctor["user_id"]
    assert c["exp"] - c["iat"] == pair["expires_in"]

    me = api.as_(pair["access_token"], "GET", "/users/me")
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["id"] == doctor["user_id"]
    assert body["email"] == doctor["email"]
    assert body["is_super_admin"] is False
    assert {"name", "phone"} <= body.keys()
    got = {(m["clinic_id"], m["role"], m.get("location_id")) for m in body["memberships"]}
    assert got == {(a["id"], "DOCTOR", loc), (b["id"], "RECEPTIONIST", None)}

    rows = audit(db, r.headers["x-request-id"])
    assert [(x["action"], x["outcome"], str(x["actor_id"]), x["resource_id"]) for x in rows] == [
        ("auth:login", "allowed", doctor["user_id"], session_id(pair["access_token"]))]
    assert rows[0]["ip"] == "127.0.0.1"


def test_wrong_password_and_unknown_email_look_the_same_and_are_audited(
    api, db, clinic_factory, member_factory
):
    c = clinic_factory()
    nurse = member_factory(c["id"], "NURSE", tag="wrongpw")
    wrong = login_raw(api, nurse["email"], "not-the-password-1")
    unknown = login_raw(api, unique_email("nobody"), nurse["password"])
    bodies = [assert_problem(x, 401, "unauthenticated") for x in (wrong, unknown)]
    assert bodies[0]["detail"] == bodies[1]["detail"] == BAD_LOGIN
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")

    w = audit(db, wrong.headers["x-request-id"])
    u = audit(db, unknown.headers["x-request-id"])
    assert [(x["action"], x["outcome"], str(x["actor_id"])) for x in w] == [
        ("auth:login", "failed", nurse["user_id"])]
    assert [(x["action"], x["outcome"], x["actor_id"]) for x in u] == [
        ("auth:login", "failed", None)]
    assert w[0]["detail"] == u[0]["detail"]  # the log does not tell them apart either
    # Neither attempt opened a session.
    assert db.fetch("SELECT count(*) AS n FROM sessions WHERE user_id = $1",
                    uuid.UUID(nurse["user_id"]))[0]["n"] == 1  # the factory's own login


def test_a_guessing_address_is_refused_after_n_failures_even_for_the_right_password(
    api, db, env, clinic_factory, member_factory
):
    """The refusal is per account *and* address (the owner elsewhere still gets in: see
    tests/security/test_login_and_registration.py)."""
    n = failures_limit(env)
    c = clinic_factory()
    victim = member_factory(c["id"], "DOCTOR", tag="victim")
    bystander = member_factory(c["id"], "DOCTOR", tag="bystander")
    for i in range(n):
        # Case and spaces do not give an attacker a fresh counter.
        email = victim["email"].upper() if i % 2 else f"  {victim['email']} "
        assert_problem(login_raw(api, email, f"guess-number-{i}"), 401, "unauthenticated")

    locked = login_raw(api, victim["email"], victim["password"])
    body = assert_problem(locked, 429, "rate_limited")
    retry = int(locked.headers["retry-after"])
    assert 0 < retry <= int(env.get("CAREWIRE_LOGIN_WINDOW_SECONDS", "900"))
    assert "retry" in body["detail"]
    rows = audit(db, locked.headers["x-request-id"])
    assert [(x["action"], x["outcome"], x["detail"]) for x in rows] == [
        ("auth:login", "denied", {"reason": "rate_limited"})]
    # the right password is refused in the same words as a wrong one (the seconds left may tick)
    wrong = login_raw(api, victim["email"], "x" * 10).json()["detail"]
    assert re.sub(r"\d+", "N", locked.json()["detail"]) == re.sub(r"\d+", "N", wrong)

    # The refusal is per account: someone else, from the same address, still gets in.
    assert api.as_(api.token(bystander["email"], bystander["password"]), "GET",
                   "/users/me").status_code == 200
    # And the victim's existing session is untouched.
    assert api.as_(victim["token"], "GET", "/users/me").status_code == 200


def test_concurrent_guesses_cannot_exceed_the_account_limit(
    api, db, env, server, clinic_factory, member_factory
):
    """The limit counts attempts before checking the password, so a burst of parallel guesses
    gets no more than N password checks."""
    n = failures_limit(env)
    c = clinic_factory()
    victim = member_factory(c["id"], "DOCTOR", tag="burst")
    burst = n + 10

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=60) as client:
            return list(await asyncio.gather(*(
                client.post("/auth/login", json={"email": victim["email"],
                                                 "password": f"parallel-guess-{i}"})
                for i in range(burst))))

    statuses = sorted(r.status_code for r in servers.run(go()))
    assert statuses == [401] * n + [429] * (burst - n), str(statuses)
    failed = db.fetch(
        """SELECT count(*) AS n FROM audit_log
           WHERE action = 'auth:login' AND outcome = 'failed' AND actor_id = $1""",
        uuid.UUID(victim["user_id"]))
    assert failed[0]["n"] == n
    assert login_raw(api, victim["email"], victim["password"]).status_code == 429


def test_per_ip_attempt_limit(env, db, clinic_factory, member_factory):
    c = clinic_factory()
    user = member_factory(c["id"], "NURSE", tag="ipuser")
    limit = 3
    with extra_server(env, CAREWIRE_LOGIN_ATTEMPTS_PER_IP=str(limit),
                      CAREWIRE_TRUSTED_PROXIES="127.0.0.1") as srv, \
            httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client:
        def attempt(ip: str, email: str, password: str) -> httpx.Response:
            return client.post("/auth/login", json={"email": email, "password": password},
                               headers={"X-Forwarded-For": ip})

        attacker, other = "203.0.113.7", "198.51.100.20"
        # Every attempt counts, successful or not, whatever the account.
        assert attempt(attacker, user["email"], user["password"]).status_code == 200
        for _ in range(limit - 1):
            assert attempt(attacker, unique_email("spray"), "spray-password-1").status_code == 401
        refused = attempt(attacker, user["email"], user["password"])
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        rows = audit(db, refused.headers["x-request-id"])
        assert [(x["outcome"], x["ip"], x["detail"]) for x in rows] == [
            ("denied", attacker, {"reason": "rate_limited"})]
        # Another address is not affected, and neither is the account itself.
        ok = attempt(other, user["email"], user["password"])
        assert ok.status_code == 200, ok.text
        assert audit(db, ok.headers["x-request-id"])[0]["ip"] == other


# -- refresh -------------------------------------------------------------------------------------

def test_refresh_rotates_and_spends_the_old_token(api, db, clinic_factory, member_factory):
    c = clinic_factory()
    user = member_factory(c["id"], "DOCTOR", tag="rotate")
    first = api.login(user["email"], user["password"])
    r = refresh_raw(api, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["token_type"] == "Bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert session_id(second["access_token"]) == session_id(first["access_token"])
    assert api.as_(second["access_token"], "GET", "/users/me").json()["id"] == user["user_id"]

    def spent_at(token: str) -> Any:
        digest = hashlib.sha256(token.encode()).digest()
        rows = db.fetch("SELECT spent_at FROM refresh_tokens WHERE token_hash = $1", digest)
        assert len(rows) == 1
        return rows[0]["spent_at"]

    assert spent_at(first["refresh_token"]) is not None
    assert spent_at(second["refresh_token"]) is None
    third = refresh_raw(api, second["refresh_token"])  # the new one rotates in turn
    assert third.status_code == 200, third.text
    assert spent_at(second["refresh_token"]) is not None

    unknown = refresh_raw(api, secrets.token_urlsafe(32))
    assert_problem(unknown, 401, "unauthenticated")
    assert [x["outcome"] for x in audit(db, unknown.headers["x-request-id"])] == ["failed"]


def test_reusing_a_spent_refresh_token_revokes_the_family(api, db, clinic_factory, member_factory):
    c = clinic_factory()
    user = member_factory(c["id"], "DOCTOR", tag="reuse")
    first = api.login(user["email"], user["password"])
    second = refresh_raw(api, first["refresh_token"]).json()
    third = refresh_raw(api, second["refresh_token"]).json()
    sid = session_id(third["access_token"])
    assert api.as_(third["access_token"], "GET", "/users/me").status_code == 200

    replay = refresh_raw(api, first["refresh_token"])  # a thief's copy of a spent token
    assert_problem(replay, 401, "unauthenticated")
    rows = audit(db, replay.headers["x-request-id"])
    assert [(x["action"], x["outcome"], x["resource_id"], str(x["actor_id"]), x["detail"])
            for x in rows] == [("auth:refresh", "denied", sid, user["user_id"],
                                {"reason": "refresh_token_reuse"})]
    session = db.fetch("SELECT revoked_at, revoked_reason FROM sessions WHERE id = $1",
                       uuid.UUID(sid))[0]
    assert session["revoked_at"] is not None
    assert session["revoked_reason"] == "refresh_token_reuse"

    # The whole family is dead: the newest refresh token and every access token of the session.
    assert_problem(refresh_raw(api, third["refresh_token"]), 401, "unauthenticated")
    for pair in (first, second, third):
        assert_problem(api.as_(pair["access_token"], "GET", "/users/me"), 401, "unauthenticated")
    # Only that family: the user's other session lives on.
    assert api.as_(user["token"], "GET", "/users/me").status_code == 200


# -- logout --------------------------------------------------------------------------------------

def test_logout_revokes_the_session_at_once(api, db, clinic_factory, member_factory):
    c = clinic_factory()
    user = member_factory(c["id"], "NURSE", tag="logout")
    pair = api.login(user["email"], user["password"])
    assert api.as_(pair["access_token"], "GET", "/users/me").status_code == 200
    out = api.as_(pair["access_token"], "POST", "/auth/logout")
    assert out.status_code == 204, out.text
    assert out.content == b""
    rows = audit(db, out.headers["x-request-id"])
    assert [(x["action"], x["outcome"], x["resource_id"]) for x in rows] == [
        ("auth:logout", "allowed", session_id(pair["access_token"]))]

    after = api.as_(pair["access_token"], "GET", "/users/me")
    assert_problem(after, 401, "unauthenticated")
    assert after.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert_problem(refresh_raw(api, pair["refresh_token"]), 401, "unauthenticated")
    assert_problem(api.as_(pair["access_token"], "POST", "/auth/logout"), 401, "unauthenticated")
    # Logging out one session leaves the user's others alone.
    assert api.as_(user["token"], "GET", "/users/me").status_code == 200


# -- access tokens -------------------------------------------------------------------------------

def test_forged_and_expired_access_tokens_are_refused(api, env, clinic_factory, member_factory):
    c = clinic_factory()
    user = member_factory(c["id"], "DOCTOR", tag="forge")
    real = claims_of(user["token"])
    now = int(time.time())
    base = {"sub": real["sub"], "sid": real["sid"], "typ": "access", "jti": "t", "iat": now}
    secret = env["CAREWIRE_JWT_SECRET"]

    # Control: a token we sign with the server's secret for a live session is accepted, so the
    # refusals below are down to the one thing each changes.
    control = forge(secret, **base, exp=now + 300)
    assert api.as_(control, "GET", "/users/me").json()["id"] == user["user_id"]

    refused = {
        "expired": forge(secret, **{**base, "iat": now - 120}, exp=now - 60),
        "other secret": forge(secrets.token_urlsafe(48), **base, exp=now + 300),
        "no exp": forge(secret, **base),
        "not an access token": forge(secret, **{**base, "typ": "refresh"}, exp=now + 300),
        "unknown session": forge(secret, **{**base, "sid": str(uuid.uuid4())}, exp=now + 300),
        "someone else's session": forge(secret, **{**base, "sub": str(uuid.uuid4())},
                                        exp=now + 300),
        "garbage": "not.a.jwt",
    }
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({**base, "exp": now + 300}).encode())
    refused["alg none"] = f"{header}.{body.rstrip(b'=').decode()}."
    for why, token in refused.items():
        r = api.as_(token, "GET", "/users/me")
        assert r.status_code == 401, (why, r.text)
        assert r.json()["code"] == "unauthenticated", why
    assert_problem(api.as_(None, "GET", "/users/me"), 401, "unauthenticated")
    assert api.as_(user["token"], "GET", "/users/me").status_code == 200


@pytest.mark.slow
def test_access_token_expires_with_its_ttl(env, clinic_factory, member_factory):
    c = clinic_factory()
    user = member_factory(c["id"], "NURSE", tag="ttl")
    with extra_server(env, CAREWIRE_ACCESS_TOKEN_TTL_SECONDS="2") as srv, \
            httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client:
        r = client.post("/auth/login", json={"email": user["email"], "password": user["password"]})
        assert r.status_code == 200, r.text
        pair = r.json()
        assert pair["expires_in"] == 2
        auth = {"Authorization": f"Bearer {pair['access_token']}"}
        assert client.get("/users/me", headers=auth).status_code == 200

        deadline = time.monotonic() + 15
        status = 200
        while time.monotonic() < deadline:
            status = client.get("/users/me", headers=auth).status_code
            if status != 200:
                break
            time.sleep(0.1)  # polling a condition, bounded by the deadline
        assert status == 401
        assert time.time() >= claims_of(pair["access_token"])["exp"]
        # The session itself is fine: the refresh token gets a fresh access token.
        fresh = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert fresh.status_code == 200, fresh.text
        new_auth = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        assert client.get("/users/me", headers=new_auth).status_code == 200


# -- self-registration ---------------------------------------------------------------------------

def register(api: Any, **body: Any) -> httpx.Response:
    return api.http.post("/auth/register", json=body)


def user_count(db: Any, email: str) -> int:
    return int(db.fetch("SELECT count(*) AS n FROM users WHERE lower(email) = lower($1)",
                        email)[0]["n"])


def test_self_registration(api, db, clinic_factory):
    open_clinic = clinic_factory(allow_self_registration=True)
    closed = clinic_factory(allow_self_registration=False)
    email, password = unique_email("self"), "patient-password-1"
    body = {"clinic_id": open_clinic["id"], "email": email, "password": password,
            "name": "Pat Self", "phone": "+919812345678"}

    r = register(api, **body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    users = db.fetch("SELECT id FROM users WHERE email = $1", email)
    member = {"user_id": str(users[0]["id"])}
    rows = db.fetch("SELECT role, clinic_id, location_id FROM memberships WHERE user_id = $1",
                    users[0]["id"])
    assert [(x["role"], str(x["clinic_id"]), x["location_id"]) for x in rows] == [
        ("PATIENT", open_clinic["id"], None)]
    assert [(x["action"], x["outcome"], str(x["actor_id"]))
            for x in audit(db, r.headers["x-request-id"])] == [
        ("auth:register", "allowed", member["user_id"])]

    token = api.token(email, password)
    me = api.as_(token, "GET", "/users/me").json()
    assert me["id"] == member["user_id"]
    assert me["is_super_admin"] is False
    assert me["phone"] == "+919812345678"
    assert [(m["clinic_id"], m["role"]) for m in me["memberships"]] == [
        (open_clinic["id"], "PATIENT")]

    # Refusals, none of which creates anyone.
    other = unique_email("refused")
    assert_problem(register(api, **{**body, "email": other, "clinic_id": closed["id"]}),
                   403, "forbidden")
    assert_problem(register(api, **{**body, "email": other, "clinic_id": str(uuid.uuid4())}),
                   404, "not_found")
    for sneaky in ({"role": "CLINIC_ADMIN"}, {"is_super_admin": True}):
        bad = assert_problem(register(api, **{**body, "email": other, **sneaky}), 400, "invalid")
        field = next(iter(sneaky))
        assert field in bad["detail"]
        assert [e["field"] for e in bad.get("errors", [])] == [field], bad
    short = assert_problem(register(api, **{**body, "email": other, "password": "short"}),
                           400, "invalid")
    assert [e["field"] for e in short["errors"]] == ["password"]
    assert user_count(db, other) == 0

    # The same email again, in any case, gets the same answer and changes nothing
    # (tests/security/test_login_and_registration.py: no enumeration, no enrolment).
    for again in (email, email.upper()):
        dup = register(api, **{**body, "email": again, "password": "another-password-1"})
        assert dup.status_code == 202 and dup.json() == r.json()
    assert user_count(db, email) == 1
    assert api.as_(api.token(email, password), "GET", "/users/me").status_code == 200


# -- disabled users and stored passwords ---------------------------------------------------------

def test_disabled_user_cannot_log_in_and_loses_their_sessions(
    api, db, clinic_factory, member_factory
):
    c = clinic_factory()
    user = member_factory(c["id"], "DOCTOR", tag="disabled")
    pair = api.login(user["email"], user["password"])
    assert api.as_(pair["access_token"], "GET", "/users/me").status_code == 200
    db.fetch("UPDATE users SET is_active = false WHERE id = $1", uuid.UUID(user["user_id"]))

    for token in (user["token"], pair["access_token"]):
        assert_problem(api.as_(token, "GET", "/users/me"), 401, "unauthenticated")
    assert_problem(refresh_raw(api, pair["refresh_token"]), 401, "unauthenticated")
    r = login_raw(api, user["email"], user["password"])
    assert assert_problem(r, 401, "unauthenticated")["detail"] == BAD_LOGIN
    assert [(x["outcome"], x["detail"]) for x in audit(db, r.headers["x-request-id"])] == [
        ("failed", {"reason": "disabled"})]

    db.fetch("UPDATE users SET is_active = true WHERE id = $1", uuid.UUID(user["user_id"]))
    assert api.as_(api.token(user["email"], user["password"]), "GET", "/users/me").status_code \
        == 200


def test_passwords_are_stored_as_argon2_hashes(api, db, clinic_factory, member_factory):
    c = clinic_factory(allow_self_registration=True)
    member = member_factory(c["id"], "NURSE", tag="hash")
    email, password = unique_email("hashreg"), "registered-password-1"
    assert register(api, clinic_id=c["id"], email=email, password=password,
                    name="Hash Check").status_code == 202
    hasher = PasswordHasher()
    stored = {}
    for address, plain in ((member["email"], member["password"]), (email, password)):
        row = db.fetch("SELECT password_hash FROM users WHERE email = $1", address)[0]
        h = row["password_hash"]
        assert h.startswith("$argon2id$"), h
        assert plain not in h
        assert hasher.verify(h, plain)
        stored[address] = h
    # Salted: two users with the same password do not share a hash.
    twin = member_factory(c["id"], "NURSE", tag="hash2")
    twin_hash = db.fetch("SELECT password_hash FROM users WHERE email = $1",
                         twin["email"])[0]["password_hash"]
    assert twin_hash != stored[member["email"]]
    # No column anywhere in users holds the plain password.
    row = db.fetch("SELECT to_jsonb(u)::text AS j FROM users u WHERE email = $1", email)[0]
    assert password not in row["j"]
