"""Floods cost the attacker, not the clinic: unauthenticated refusals (REST 401s, refused socket
connects) are counted in /metrics by transport and reason and only sampled into the audit log
(one row per address, transport and reason per window, carrying how many it stands for), and a
user's sockets are capped: the newest connect closes the oldest, across gateway processes."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import httpx
import pytest
import socketio

from tests import servers
from tests.realtime_client import Recorder

pytestmark = [pytest.mark.slow]  # floods and servers of its own

FLOOD = 300
WINDOW = 2  # seconds: the sampling window of the flood server (60 by default)
_METRIC = re.compile(r'^carewire_auth_refusals_total\{([^}]*)\} (\S+)$')


def refusals(base_url: str) -> dict[tuple[str, str], float]:
    """carewire_auth_refusals_total by (transport, reason)."""
    out: dict[tuple[str, str], float] = {}
    for line in httpx.get(base_url + "/metrics").text.splitlines():
        if m := _METRIC.match(line):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[(labels["transport"], labels["reason"])] = float(m.group(2))
    return out


@pytest.fixture(scope="module")
def flood_server(env):
    """A server of its own: its own Redis prefix (fresh sampling windows), a short window, and
    no relay (it must not publish the session server's events on its own channel)."""
    srv = servers.Server({**env, "CAREWIRE_REDIS_PREFIX": f"flood-{secrets.token_hex(4)}:",
                          "CAREWIRE_REFUSAL_AUDIT_WINDOW_SECONDS": str(WINDOW),
                          "CAREWIRE_RELAY_IN_PROCESS": "false"})
    srv.start()
    yield srv
    srv.stop()


def sampled_rows(db, transport: str, after_id: int) -> list[dict[str, Any]]:
    return db.fetch("""SELECT id, outcome, ip, detail::text AS detail FROM audit_log
                       WHERE action = 'auth:refused' AND detail->>'transport' = $1 AND id > $2
                       ORDER BY id""", transport, after_id)


def counted(rows: list[dict[str, Any]]) -> int:
    import json

    return sum(json.loads(r["detail"])["count"] for r in rows)


def last_audit_id(db) -> int:
    return int(db.fetch("SELECT coalesce(max(id), 0) AS id FROM audit_log")[0]["id"])


def settle(db, transport: str, after_id: int, sent: int, probe: Any) -> tuple[int, list[Any]]:
    """Refuse once more until a window closes and a row accounts for everything sent: the rows'
    counts then add up to the refusals made, exactly. Returns (refusals made, rows)."""
    deadline = time.monotonic() + 5 * WINDOW + 10
    while time.monotonic() < deadline:
        rows = sampled_rows(db, transport, after_id)
        if counted(rows) == sent:
            return sent, rows
        probe()
        sent += 1
    raise AssertionError(f"rows never accounted for {sent} refusals: {counted(rows)}")


def test_refused_rest_calls_are_counted_and_sampled(flood_server, db):
    base = flood_server.base_url
    before, first_id, started = refusals(base), last_audit_id(db), time.monotonic()
    with httpx.Client(base_url=base + "/api/v1") as client:
        def refused() -> None:
            r = client.get("/users/me", headers={"Authorization": "Bearer not-a-token"})
            assert r.status_code == 401 and r.json()["code"] == "unauthenticated", r.text

        for _ in range(FLOOD):
            refused()
        after = refusals(base)
        assert after.get(("rest", "invalid_token"), 0) - before.get(("rest", "invalid_token"), 0) == FLOOD
        flood_rows = sampled_rows(db, "rest", first_id)
        sent, rows = settle(db, "rest", first_id, FLOOD, refused)
    elapsed = time.monotonic() - started
    assert 1 <= len(flood_rows) <= (elapsed / WINDOW) + 2, flood_rows
    assert len(rows) <= (elapsed / WINDOW) + 3 and counted(rows) == sent
    assert {(r["outcome"], r["ip"]) for r in rows} == {("denied", "127.0.0.1")}


def test_refused_socket_connects_are_counted_and_sampled(flood_server, db):
    base = flood_server.base_url
    before, first_id, started = refusals(base), last_audit_id(db), time.monotonic()

    async def refused() -> None:
        rec = Recorder(base)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await rec.connect("not-a-token")
        assert rec.connect_error["data"]["code"] == "unauthenticated"

    async def flood() -> None:
        gate = asyncio.Semaphore(20)

        async def one() -> None:
            async with gate:
                await refused()

        await asyncio.gather(*(one() for _ in range(FLOOD)))

    asyncio.run(flood())
    after = refusals(base)
    assert after.get(("socket", "invalid_token"), 0) - before.get(("socket", "invalid_token"), 0) == FLOOD
    sent, rows = settle(db, "socket", first_id, FLOOD, lambda: asyncio.run(refused()))
    elapsed = time.monotonic() - started
    assert 1 <= len(rows) <= (elapsed / WINDOW) + 3 and counted(rows) == sent


def test_a_users_sockets_are_capped_across_processes(env, api, clinic_factory, member_factory):
    """Cap 3 on two processes: the fourth socket closes the oldest (on the other process) with a
    `session.revoked` {reason: too_many_sockets} event, then a disconnect; the rest stay."""
    capped = {**env, "CAREWIRE_SOCKETS_PER_USER": "3"}
    one, two = servers.Server(capped), servers.Server(capped)
    one.start()
    two.start()
    clinic = clinic_factory()
    admin = member_factory(clinic["id"], "CLINIC_ADMIN", tag="many-tabs")
    try:
        async def scenario() -> None:
            socks = [Recorder(one.base_url), Recorder(one.base_url), Recorder(two.base_url)]
            for rec in socks:
                await rec.connect(admin["token"])
            newest = Recorder(two.base_url)
            await newest.connect(admin["token"])
            await asyncio.wait_for(socks[0].disconnected.wait(), 10)
            assert socks[0].named("session.revoked") == [{"reason": "too_many_sockets"}]
            r = await asyncio.to_thread(api.as_, admin["token"], "PATCH",
                                        f"/clinics/{clinic['id']}", json={"name": "tabs"})
            assert r.status_code == 200
            for rec in (*socks[1:], newest):
                await rec.wait_for(lambda rec=rec: bool(rec.named("clinic.updated")))
                assert rec.sio.connected and rec.named("session.revoked") == []
            # A closed socket frees its place: one more connect closes nobody.
            await socks[1].close()
            extra = Recorder(one.base_url)
            await extra.connect(admin["token"])
            r = await asyncio.to_thread(api.as_, admin["token"], "PATCH",
                                        f"/clinics/{clinic['id']}", json={"name": "tabs 2"})
            assert r.status_code == 200
            for rec in (socks[2], newest, extra):
                await rec.wait_for(lambda rec=rec: len(rec.named("clinic.updated")) == (
                    1 if rec is extra else 2))
            assert all(rec.sio.connected for rec in (socks[2], newest, extra))
            assert [rec.named("session.revoked") for rec in (socks[2], newest)] == [[], []]
            for rec in (socks[2], newest, extra):
                await rec.close()

        asyncio.run(scenario())
    finally:
        one.stop()
        two.stop()
