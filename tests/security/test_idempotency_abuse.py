"""An Idempotency-Key never outlives the request that died holding it by more than seconds,
never makes Redis keep a token, and never hands a stored answer to anyone but the live
session that earned it: after logout, or with another person's token, the request is
authorized afresh."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tests import servers

pytestmark = [pytest.mark.slow]  # kills and restarts a server


def idem(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def redis_values(url: str, prefix: str) -> Iterator[tuple[bytes, bytes]]:
    """Every key under our prefix with everything it holds, whatever its type."""
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            kind = client.type(key)
            if kind == b"string":
                parts = [client.get(key) or b""]
            elif kind == b"hash":
                parts = [b"%s=%s" % kv for kv in client.hgetall(key).items()]
            elif kind == b"list":
                parts = list(client.lrange(key, 0, -1))
            elif kind == b"set":
                parts = list(client.smembers(key))
            elif kind == b"zset":
                parts = list(client.zrange(key, 0, -1))
            elif kind == b"stream":
                parts = [b"%s=%s" % kv for _, fields in client.xrange(key)
                         for kv in fields.items()]
            else:
                parts = []
            yield key, b"\n".join(parts)
    finally:
        client.close()


@contextmanager
def table_locked(dsn: str, table: str) -> Iterator[threading.Event]:
    """Hold an exclusive lock on `table` until the yielded event is set (or the block ends),
    so a request that writes to it waits inside its transaction."""
    locked, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await asyncio.to_thread(release.wait, 120)
        finally:
            await conn.close()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # surfaced below
            failure.append(exc)
            locked.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert locked.wait(30) and not failure, failure
    try:
        yield release
    finally:
        release.set()
        thread.join(30)


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    raise AssertionError(f"not within {timeout}s: {what}")


def test_a_key_whose_process_died_is_free_again_within_seconds(
    env, db, clinic_factory, member_factory
):
    c = clinic_factory()
    admin = member_factory(c["id"], "CLINIC_ADMIN", tag="crash")
    prefix = f"cwtest-{secrets.token_hex(4)}:"
    own = {**env, "CAREWIRE_REDIS_PREFIX": prefix, "CAREWIRE_IDEMPOTENCY_IN_FLIGHT_SECONDS": "2"}
    key = uuid.uuid4().hex
    body = {"name": f"Crash wing {key[:6]}"}
    path = f"/api/v1/clinics/{c['id']}/locations"
    headers = {**idem(key), "Authorization": f"Bearer {admin['token']}"}
    digest = hashlib.sha256(key.encode()).hexdigest().encode()

    first = servers.Server(own)
    first.start()
    try:
        with table_locked(env["DATABASE_URL"], "locations"):
            # The request claims the key, then waits on the lock inside its transaction...
            sender = threading.Thread(target=lambda: _post_ignoring_errors(
                first.base_url + path, body, headers), daemon=True)
            sender.start()
            wait_until(lambda: any(digest in k for k, _ in redis_values(env["REDIS_URL"], prefix)),
                       20, "the request's in-flight marker in Redis")
            # ...when its process is killed outright.
            assert first.proc is not None
            first.proc.kill()
            first.proc.wait(10)
        sender.join(30)
    finally:
        first.stop()

    second = servers.Server(own)
    second.start()
    try:
        def retry() -> list[httpx.Response]:
            r = httpx.post(second.base_url + path, json=body, headers=headers, timeout=30)
            return [] if r.status_code == 409 else [r]

        started = time.monotonic()
        [answer] = wait_until(retry, 30, "the retry ran instead of a 409")
        assert answer.status_code == 201, answer.text
        assert time.monotonic() - started < 15
        again = httpx.post(second.base_url + path, json=body, headers=headers, timeout=30)
        assert again.status_code == 201
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json() == answer.json()
    finally:
        second.stop()
    rows = db.fetch("SELECT count(*) AS n FROM locations WHERE clinic_id = $1 AND name = $2",
                    uuid.UUID(c["id"]), body["name"])
    assert rows[0]["n"] == 1  # the killed request's transaction never committed


def _post_ignoring_errors(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    try:
        httpx.post(url, json=body, headers=headers, timeout=60)
    except httpx.TransportError:
        pass  # the server was killed under it: that is the point


def test_login_and_refresh_are_never_replayed_and_redis_holds_no_token(
    api, env, clinic_factory, member_factory
):
    c = clinic_factory()
    user = member_factory(c["id"], "DOCTOR", tag="idem-login")
    key = idem(uuid.uuid4().hex)
    creds = {"email": user["email"], "password": user["password"]}
    one = api.http.post("/auth/login", json=creds, headers=key)
    two = api.http.post("/auth/login", json=creds, headers=key)
    assert one.status_code == two.status_code == 200, two.text
    assert "idempotent-replayed" not in two.headers
    assert one.json()["access_token"] != two.json()["access_token"]
    assert one.json()["refresh_token"] != two.json()["refresh_token"]

    rkey = idem(uuid.uuid4().hex)
    refreshed = api.http.post("/auth/refresh", json={"refresh_token": two.json()["refresh_token"]},
                              headers=rkey)
    assert refreshed.status_code == 200, refreshed.text
    replayed = api.http.post("/auth/refresh", json={"refresh_token": two.json()["refresh_token"]},
                             headers=rkey)
    # Run again, the spent refresh token is refused: the stored tokens are never handed out.
    assert replayed.status_code == 401, replayed.text
    assert "access_token" not in replayed.text

    secrets_seen = [one.json()[f] for f in ("access_token", "refresh_token")] + \
        [two.json()[f] for f in ("access_token", "refresh_token")] + \
        [refreshed.json()[f] for f in ("access_token", "refresh_token")]
    leaks = [k for k, value in redis_values(env["REDIS_URL"], env["CAREWIRE_REDIS_PREFIX"])
             for s in secrets_seen if s.encode() in value]
    assert leaks == []


def test_a_replay_is_authorized_afresh(api, db, clinic_factory, member_factory):
    c = clinic_factory()
    admin = member_factory(c["id"], "CLINIC_ADMIN", tag="replay")
    other = member_factory(c["id"], "CLINIC_ADMIN", tag="replay-other")
    session = api.login(admin["email"], admin["password"])["access_token"]
    key = idem(uuid.uuid4().hex)
    path = f"/clinics/{c['id']}/locations"
    body = {"name": f"Replay wing {uuid.uuid4().hex[:6]}"}
    first = api.as_(session, "POST", path, json=body, headers=key)
    assert first.status_code == 201, first.text
    again = api.as_(session, "POST", path, json=body, headers=key)
    assert again.headers.get("idempotent-replayed") == "true"  # the store works for its owner

    # Another person with the same key: their own request, never the stored answer.
    theirs = api.as_(other["token"], "POST", path, json=body, headers=key)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    # A token that is not a token gets a 401, not the stored answer.
    forged = api.as_("not-a-token", "POST", path, json=body, headers=key)
    assert forged.status_code == 401 and "idempotent-replayed" not in forged.headers

    assert api.as_(session, "POST", "/auth/logout").status_code == 204
    dead = api.as_(session, "POST", path, json=body, headers=key)
    assert dead.status_code == 401, dead.text
    assert "idempotent-replayed" not in dead.headers
    assert first.json()["id"] not in dead.text
    rows = db.fetch("SELECT count(*) AS n FROM locations WHERE clinic_id = $1 AND name = $2",
                    uuid.UUID(c["id"]), body["name"])
    assert rows[0]["n"] == 2  # the admin's once, the other admin's once
