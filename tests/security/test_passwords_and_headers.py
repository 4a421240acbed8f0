"""No common or self-describing password is ever set, no clinic runs on the server's own clock
instead of a real time zone, no API answer with PHI may be cached, and the client address is
the TCP peer unless the peer is a proxy we were told to trust."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import httpx
import pytest
import socketio

from domain.settings import SettingsError, from_env
from tests import servers
from tests.conftest import unique_email

WEAK = [
    ("password1", "common"),
    ("iloveyou", "common"),
    ("Qwertyuiop", "common"),
    ("aaaaaaaaaaaa", "guess"),
    ("carewire-2024", "name"),
]


@pytest.mark.parametrize(("password", "why"), WEAK)
def test_common_passwords_are_refused_wherever_one_is_set(
    api, db, sa_token, clinic_factory, password, why
):
    c = clinic_factory(allow_self_registration=True)
    email = unique_email("weak")
    routes = [
        ("/auth/register", {"clinic_id": c["id"], "email": email, "password": password,
                            "name": "Weak Pat"}),
        (f"/clinics/{c['id']}/members", {"email": email, "name": "Weak Nurse", "role": "NURSE",
                                          "password": password}),
    ]
    for path, body in routes:
        r = api.as_(sa_token, "POST", path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["password"], r.text
    assert db.fetch("SELECT count(*) AS n FROM users WHERE email = $1", email)[0]["n"] == 0


def test_a_password_built_from_ones_own_email_or_name_is_refused(api, db, clinic_factory):
    c = clinic_factory(allow_self_registration=True)
    email = f"marguerite.{uuid.uuid4().hex[:6]}@example.test"
    local = email.split("@")[0]
    for password in (f"{local}!", f"{local.upper()}-77", "Marguerite#Okafor-1"):
        r = api.http.post("/auth/register", json={
            "clinic_id": c["id"], "email": email, "password": password,
            "name": "Marguerite Okafor"})
        assert r.status_code == 400, (password, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["password"]
    assert db.fetch("SELECT count(*) AS n FROM users WHERE email = $1", email)[0]["n"] == 0
    # A long password that merely mentions the name is fine: the name does not count.
    r = api.http.post("/auth/register", json={
        "clinic_id": c["id"], "email": email, "password": "marguerite-tends-quiet-herons",
        "name": "Marguerite Okafor"})
    assert r.status_code == 202, r.text


def test_the_cli_refuses_a_common_admin_password(env):
    done = servers.cli(env, "create-admin", "--email", unique_email("admin"),
                       "--password", "password123")
    assert done.returncode != 0
    assert "password" in (done.stdout + done.stderr)


@pytest.mark.parametrize("zone", ["localtime", "Factory"])
def test_only_iana_zones_are_accepted(api, sa_token, clinic_factory, zone):
    r = api.as_(sa_token, "POST", "/clinics", json={"name": "Clockless", "timezone": zone})
    assert r.status_code == 400, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["timezone"]
    c = clinic_factory()
    for method, path, body in (
        ("PATCH", f"/clinics/{c['id']}", {"timezone": zone}),
        ("POST", f"/clinics/{c['id']}/locations", {"name": "Annex", "timezone": zone}),
    ):
        r = api.as_(sa_token, method, path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["timezone"]
    assert api.as_(sa_token, "GET", f"/clinics/{c['id']}").json()["timezone"] == "Asia/Kolkata"


def test_api_answers_are_never_cached(api, sa_token, server, clinic_factory):
    c = clinic_factory()
    answers = [
        api.as_(sa_token, "GET", "/users/me"),
        api.as_(sa_token, "GET", f"/clinics/{c['id']}"),
        api.as_(sa_token, "GET", f"/clinics/{uuid.uuid4()}"),  # a problem answer
        api.as_(None, "GET", "/users/me"),  # a 401
        api.http.post("/auth/login", json={"email": unique_email(), "password": "whatever-1"}),
    ]
    for r in answers:
        assert r.headers.get("cache-control") == "no-store", (r.request.url, r.headers)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    for _ in range(2):  # the replay too
        r = api.as_(sa_token, "POST", f"/clinics/{c['id']}/locations", json={"name": "Kept"},
                    headers=key)
        assert r.headers.get("cache-control") == "no-store"
    assert r.headers.get("idempotent-replayed") == "true"
    # Not PHI, and cacheable as before: the API schema.
    schema = httpx.get(server.base_url + "/schema/openapi.json", timeout=30)
    assert schema.status_code == 200
    assert schema.headers.get("cache-control") != "no-store"


def _login_ip(db, client: httpx.Client, xff: str) -> str:
    r = client.post("/auth/login", json={"email": unique_email("xff"), "password": "nobody-1-x"},
                    headers={"X-Forwarded-For": xff})
    assert r.status_code == 401, r.text
    rows = db.fetch("SELECT ip FROM audit_log WHERE request_id = $1", r.headers["x-request-id"])
    return str(rows[0]["ip"])


@pytest.mark.slow
def test_forwarded_for_is_believed_only_from_trusted_proxies(env, db, http):
    # By default no proxy is trusted: the header is the client's word and changes nothing.
    assert _login_ip(db, http, "203.0.113.66") == "127.0.0.1"

    srv = servers.Server({**env, "CAREWIRE_REDIS_PREFIX": f"cwtest-{secrets.token_hex(4)}:",
                          "CAREWIRE_LOGIN_ATTEMPTS_PER_IP": "3"})
    srv.start()
    try:
        with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client:
            # Rotating the header does not escape the per-address limit.
            statuses = [client.post("/auth/login", headers={"X-Forwarded-For": f"203.0.113.{i}"},
                                    json={"email": unique_email(), "password": "nobody-1-x"}
                                    ).status_code for i in range(4)]
            assert statuses == [401, 401, 401, 429]
    finally:
        srv.stop()

    srv = servers.Server({**env, "CAREWIRE_REDIS_PREFIX": f"cwtest-{secrets.token_hex(4)}:",
                          "CAREWIRE_TRUSTED_PROXIES": "10.9.9.9,127.0.0.0/8"})
    srv.start()
    try:
        with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client:
            # Behind a trusted proxy: the nearest address our proxies did not add is the client;
            # what the client itself put further left proves nothing.
            assert _login_ip(db, client, "198.51.100.1, 203.0.113.66") == "203.0.113.66"
            assert _login_ip(db, client, "198.51.100.1, 203.0.113.66, 10.9.9.9") \
                == "203.0.113.66"
        # Sockets take the address the same way (python-engineio's environ says 127.0.0.1
        # for every ASGI connection): a refused connect is sampled under the client's address.
        refused = asyncio.run(_refused_socket(srv.base_url, "198.51.100.77"))
        assert refused
        rows = db.fetch("""SELECT ip FROM audit_log WHERE action = 'auth:refused'
                           AND detail->>'transport' = 'socket' AND ip = '198.51.100.77'""")
        assert len(rows) == 1, rows
    finally:
        srv.stop()


async def _refused_socket(base_url: str, xff: str) -> str:
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(base_url, auth={"token": "not-a-token"}, transports=["websocket"],
                             headers={"X-Forwarded-For": xff}, wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        return str(exc)
    finally:
        await client.disconnect()
    raise AssertionError("a socket with a bad token was let in")


def test_a_bad_trusted_proxy_setting_is_refused_by_name(env):
    base = {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CAREWIRE_JWT_SECRET")}
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        from_env({**base, "CAREWIRE_TRUSTED_PROXIES": "10.0.0.0/33"})
    assert from_env({**base, "CAREWIRE_TRUSTED_PROXIES": ""}).trusted_proxies == ()
    assert from_env({**base, "CAREWIRE_TRUSTED_PROXIES": " 10.0.0.1 , fd00::/8"}
                    ).trusted_proxies == ("10.0.0.1", "fd00::/8")
