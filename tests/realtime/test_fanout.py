"""Broadcasts through the fan-out bypass (realtime/fastsend.py) keep the Socket.IO protocol:
real clients - python-socketio over websocket, over polling only, polling then upgrade, and
the official JS client - each get every event of a REST-triggered burst, in order, once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.realtime_client import Recorder

BURST = 200
LANES = 8  # REST writes in flight during a burst
JS_DIR = Path(__file__).parent / "js"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def clinic(clinic_factory, member_factory) -> dict[str, Any]:
    """A clinic of its own: during a test, only the test's writes give it events."""
    c = clinic_factory()
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="fanout")
    return c


def session_token(api, member: dict[str, Any]) -> str:
    """A login of its own: logging it out closes only the sockets opened with it."""
    return api.token(member["email"], member["password"])


async def head_seq(http: httpx.AsyncClient, token: str, clinic_id: str) -> int:
    r = await http.get(f"/clinics/{clinic_id}/events", params={"after": 0, "limit": 1},
                       headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return int(r.json()["last_seq"])


class Burst:
    """`n` clinic updates, LANES at a time, each committing one `clinic.updated` event.
    `started` is set once `early` of them are done, so sockets can connect mid-burst."""

    def __init__(self, http: httpx.AsyncClient, token: str, clinic_id: str, n: int = BURST,
                 early: int = 30) -> None:
        self.http, self.token, self.clinic_id, self.n, self.early = http, token, clinic_id, n, early
        self.done = 0
        self.started = asyncio.Event()

    async def run(self) -> None:
        todo = iter(range(self.n))

        async def lane() -> None:
            for i in todo:
                r = await self.http.patch(f"/clinics/{self.clinic_id}", json={"name": f"Burst {i}"},
                                          headers={"Authorization": f"Bearer {self.token}"})
                assert r.status_code == 200, r.text
                self.done += 1
                if self.done >= self.early:
                    self.started.set()

        await asyncio.gather(*(lane() for _ in range(LANES)))


def assert_tail_in_order(seqs: list[int], last: int, at_least: int, who: str) -> None:
    """Every event from the one after the socket's connect to the last, once, in order."""
    assert seqs, f"{who}: nothing received"
    assert seqs == list(range(seqs[0], last + 1)), f"{who}: {seqs}"
    assert len(seqs) >= at_least, f"{who}: only {len(seqs)} events: it connected too late"


async def metric(base_url: str, name: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(base_url + "/metrics")).text
    lines = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(lines[0].split()[1]) if lines else 0.0


def clinic_seqs(envelopes: list[Any], clinic_id: str) -> list[int]:
    return [e["seq"] for e in envelopes if isinstance(e, dict) and e.get("clinic_id") == clinic_id]


def test_python_clients_on_every_transport_get_a_burst_in_order(server, api, clinic):
    admin = clinic["admin"]
    tokens = {mode: session_token(api, admin) for mode in ("websocket", "polling", "upgrade")}
    transports = {"websocket": ["websocket"], "polling": ["polling"],
                  "upgrade": ["polling", "websocket"]}

    async def scenario() -> None:
        recs = {mode: Recorder(server.base_url) for mode in transports}
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=30) as http:
            try:
                direct_before = await metric(server.base_url, "carewire_socket_direct_sends_total")
                head = await head_seq(http, admin["token"], clinic["id"])
                writes = Burst(http, admin["token"], clinic["id"])
                burst = asyncio.ensure_future(writes.run())
                await asyncio.wait_for(writes.started.wait(), 20)
                # Connect (and upgrade) while events keep coming.
                for mode, rec in recs.items():
                    await rec.connect(tokens[mode], transports=transports[mode])
                await asyncio.wait_for(burst, 60)
                last = head + BURST
                for rec in recs.values():
                    await rec.wait_for(
                        lambda r=rec: bool(clinic_seqs(r.named("clinic.updated"), clinic["id"]))
                        and clinic_seqs(r.named("clinic.updated"), clinic["id"])[-1] >= last, 20)
                assert recs["websocket"].sio.transport() == "websocket"
                assert recs["polling"].sio.transport() == "polling"
                assert recs["upgrade"].sio.transport() == "websocket"
                # Logging out closes each socket from the server side; what it was sent before
                # `session.revoked` is all it will ever get, so duplicates would show now.
                for mode, rec in recs.items():
                    r = await http.post("/auth/logout",
                                        headers={"Authorization": f"Bearer {tokens[mode]}"})
                    assert r.status_code == 204, r.text
                    await asyncio.wait_for(rec.disconnected.wait(), 10)
                for mode, rec in recs.items():
                    seqs = clinic_seqs(rec.named("clinic.updated"), clinic["id"])
                    assert_tail_in_order(seqs, last, BURST // 4, mode)
                    assert [e for e, _ in rec.events][-1] == "session.revoked", mode
                direct_after = await metric(server.base_url, "carewire_socket_direct_sends_total")
                assert direct_after > direct_before, "the bypass never engaged"
            finally:
                for rec in recs.values():
                    with contextlib.suppress(Exception):
                        await rec.close()

    run(scenario())


# the official JS client --------------------------------------------------------------------


@pytest.fixture(scope="session")
def js_client() -> list[str]:
    """`node tests/realtime/js/client.mjs`, with socket.io-client installed by `npm ci` (once per run)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are required: tests/realtime/test_fanout.py drives the official "
                    "socket.io-client (tests/realtime/js). Install Node.js >= 18 with npm and run again.")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"npm ci in {JS_DIR} failed:\n{done.stdout}\n{done.stderr}"
    return [node, str(JS_DIR / "client.mjs")]


class NodeClient:
    """One `client.mjs` process: the JSON lines it prints, read as they come."""

    def __init__(self, cmd: list[str], *args: str) -> None:
        self.cmd = [*cmd, *args]
        self.lines: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20
                    ) -> dict[str, Any]:
        """Read lines until one satisfies the predicate; each read bounded by the deadline."""
        assert self.proc is not None and self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(),
                                          max(0.01, deadline - loop.time()))
            if not line:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"the JS client ended early: {self.lines[-3:]} "
                                     f"{err.decode()[-2000:]}")
            msg = json.loads(line)
            self.lines.append(msg)
            if predicate(msg):
                return msg

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.lines if m["kind"] == "event" and m["event"] == name]

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.mark.node
@pytest.mark.slow
def test_the_official_js_client_connects_and_gets_a_burst_in_order(server, api, clinic, js_client):
    admin = clinic["admin"]
    modes = ("default", "websocket")  # default: polling, then the upgrade to websocket
    tokens = {mode: session_token(api, admin) for mode in modes}

    async def scenario() -> None:
        clients = {mode: NodeClient(js_client, server.base_url, tokens[mode], mode)
                   for mode in modes}
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=30) as http:
            try:
                head = await head_seq(http, admin["token"], clinic["id"])
                writes = Burst(http, admin["token"], clinic["id"])
                burst = asyncio.ensure_future(writes.run())
                await asyncio.wait_for(writes.started.wait(), 20)
                # Connect (and upgrade) while events keep coming.
                for c in clients.values():
                    await c.start()
                for mode, c in clients.items():
                    first = await c.until(lambda m: m["kind"] in ("connect", "connect_error"))
                    assert first["kind"] == "connect", (mode, first)
                await asyncio.wait_for(burst, 60)
                last = head + BURST
                for c in clients.values():
                    await c.until(lambda m: m["kind"] == "event" and isinstance(m["data"], dict)
                                  and m["data"].get("seq", 0) >= last)
                for mode in modes:
                    r = await http.post("/auth/logout",
                                        headers={"Authorization": f"Bearer {tokens[mode]}"})
                    assert r.status_code == 204, r.text
                    await clients[mode].until(lambda m: m["kind"] == "disconnect", 10)
                for mode, c in clients.items():
                    got = [m["data"] for m in c.events("clinic.updated")]
                    assert_tail_in_order(clinic_seqs(got, clinic["id"]), last, BURST // 4, mode)
                    assert set(got[0]) == {"id", "seq", "clinic_id", "type", "category",
                                           "priority", "occurred_at", "data"}
                    uuid.UUID(got[0]["id"])
                    kinds = [m["kind"] for m in c.lines]
                    assert kinds[-1] == "disconnect" and c.events("session.revoked"), mode
                    assert c.events("clinic.updated")[-1]["transport"] == "websocket", mode
                assert any(m["kind"] == "upgrade" for m in clients["default"].lines)
            finally:
                for c in clients.values():
                    await c.stop()

    run(scenario())
