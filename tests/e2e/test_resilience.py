"""Failures of the parts around the hub: Redis restarts, a relay killed mid-flight."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest

from tests import servers
from tests.realtime_client import Recorder

pytestmark = [pytest.mark.slow]  # restarts Redis, kills relays


def login(base: str, email: str, password: str) -> str:
    r = httpx.post(base + "/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def patch_name(base: str, token: str, clinic_id: str, name: str) -> None:
    r = httpx.patch(f"{base}/api/v1/clinics/{clinic_id}", json={"name": name},
                    headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text


def setup_clinic(base: str) -> tuple[str, str]:
    root = login(base, "root@isolated.test", "root-password-1")
    auth = {"Authorization": f"Bearer {root}"}
    clinic = httpx.post(base + "/api/v1/clinics", json={"name": "Iso", "timezone": "UTC"},
                        headers=auth).json()
    r = httpx.post(f"{base}/api/v1/clinics/{clinic['id']}/members", headers=auth,
                   json={"email": "iso.admin@example.test", "name": "Iso Admin",
                         "role": "CLINIC_ADMIN", "password": "iso-password-1"})
    assert r.status_code == 201, r.text
    return clinic["id"], login(base, "iso.admin@example.test", "iso-password-1")


def test_a_redis_restart_loses_nothing(env) -> None:
    with servers.isolated_stack(env) as (own_env, redis):
        srv = servers.Server(own_env)
        srv.start()
        try:
            clinic_id, token = setup_clinic(srv.base_url)

            async def scenario() -> None:
                rec = Recorder(srv.base_url)
                await rec.connect(token)
                await asyncio.to_thread(patch_name, srv.base_url, token, clinic_id, "before")
                await rec.wait_for(lambda: len(rec.named("clinic.updated")) == 1)
                redis.stop()
                down = await asyncio.to_thread(httpx.get, srv.base_url + "/health/ready")
                assert down.status_code == 503
                for i in range(5):  # committed while Redis is down
                    await asyncio.to_thread(patch_name, srv.base_url, token, clinic_id, f"d{i}")
                redis.start()
                await rec.wait_for(lambda: len(rec.named("clinic.updated")) == 6, timeout=20)
                seqs = [d["seq"] for d in rec.named("clinic.updated")]
                assert seqs == list(range(seqs[0], seqs[0] + 6))
                await asyncio.to_thread(patch_name, srv.base_url, token, clinic_id, "after")
                await rec.wait_for(lambda: len(rec.named("clinic.updated")) == 7)
                assert rec.sio.connected
                ready = await asyncio.to_thread(httpx.get, srv.base_url + "/health/ready")
                assert ready.status_code == 200
                await rec.close()

            asyncio.run(scenario())
        finally:
            srv.stop()


def test_killing_the_active_relay_mid_burst_loses_and_repeats_nothing(
    env, clinic_factory, member_factory
) -> None:
    c = clinic_factory()
    admin = member_factory(c["id"], "CLINIC_ADMIN", tag="relay")
    first, second = servers.Server(env), servers.Server(env)
    first.start()
    second.start()
    try:
        async def scenario() -> None:
            rec = Recorder(second.base_url)
            await rec.connect(admin["token"])
            token = admin["token"]

            async def burst(n: int) -> None:
                for i in range(n):
                    await asyncio.to_thread(patch_name, second.base_url, token, c["id"], f"b{i}")

            writer = asyncio.create_task(burst(60))
            await rec.wait_for(lambda: len(rec.named("clinic.updated")) >= 5)
            assert first.proc is not None
            os.kill(first.proc.pid, signal.SIGKILL)  # whichever relay was active, one dies
            await writer
            await rec.wait_for(lambda: len(rec.named("clinic.updated")) >= 60, timeout=30)
            seqs = [d["seq"] for d in rec.named("clinic.updated")]
            assert seqs == list(range(seqs[0], seqs[0] + 60))
            await rec.close()

        asyncio.run(scenario())
    finally:
        first.stop()
        second.stop()


def test_events_committed_with_no_relay_running_are_delivered_later(
    env, db, clinic_factory, member_factory
) -> None:
    c = clinic_factory()
    admin = member_factory(c["id"], "CLINIC_ADMIN", tag="norelay")
    quiet = servers.Server({**env, "CAREWIRE_RELAY_IN_PROCESS": "false"})
    quiet.start()
    try:
        async def scenario() -> Any:
            rec = Recorder(quiet.base_url)
            await rec.connect(admin["token"])
            await asyncio.to_thread(patch_name, quiet.base_url, admin["token"], c["id"], "x")
            return rec

        # The session server's relay publishes what the quiet one committed.
        async def both() -> None:
            rec = await scenario()
            await rec.wait_for(lambda: len(rec.named("clinic.updated")) == 1, timeout=20)
            await rec.close()

        asyncio.run(both())
        rows = db.fetch("SELECT count(*) AS n FROM events WHERE published_at IS NULL")
        assert rows[0]["n"] == 0
    finally:
        quiet.stop()


def test_a_disabled_user_loses_their_sockets(server, api, db, clinic_factory, member_factory):
    import uuid

    c = clinic_factory()
    nurse = member_factory(c["id"], "NURSE", tag="disabled")

    async def scenario() -> None:
        rec = Recorder(server.base_url)
        await rec.connect(nurse["token"])
        await asyncio.to_thread(db.fetch, "UPDATE users SET is_active = false WHERE id = $1",
                                uuid.UUID(nurse["user_id"]))
        await asyncio.wait_for(rec.disconnected.wait(), 5)
        assert rec.named("session.revoked") == [{"reason": "user_disabled"}]

    asyncio.run(scenario())


def test_litestar_lifespan_runs_under_the_socketio_wrapper(env) -> None:
    """Startup (pool, hub, relay) and shutdown both run although Socket.IO wraps the app."""
    srv = servers.Server({**env, "CAREWIRE_LOG_LEVEL": "INFO"})
    srv.start()  # ready means startup ran: the hub is listening
    assert httpx.get(srv.base_url + "/health/ready").json()["checks"]["hub"] == "ok"
    srv.stop()
    log = srv.log.read_text()
    assert "carewire started" in log and "carewire stopped" in log
