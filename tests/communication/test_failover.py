"""Providers failing under real workers: the fallback delivers, breakers shared by two workers
open, half-open and close (announced once each), a worker killed mid-send loses nothing, and
no credential shows in any log line, error or event.

The chain here is the global default (CAREWIRE_COMMUNICATION_DEFAULTS): ZeptoMail, then SMTP,
each a local server speaking its protocol. Every test uses a clinic of its own, so breakers
and rate limits (per clinic and provider) start fresh.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests import servers
from tests.communication.fakes.smtp import FakeSMTP, smtp_server
from tests.communication.fakes.zeptomail import FakeZeptoMail, zeptomail_server
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # real workers, killed ones too

ZEPTO_TOKEN = "zepto-token-CANARY-4f1c9e"
THRESHOLD = 3
OPEN_SECONDS = 2


class Rig:
    def __init__(self, stack: Stack, zepto: FakeZeptoMail, relay: FakeSMTP, log: Path) -> None:
        self.stack, self.zepto, self.relay, self.log = stack, zepto, relay, log

    def env(self, *, retry_unknown: bool = False, zepto_url: str | None = None,
            rate: int | None = None) -> dict[str, str]:
        email: dict[str, Any] = {"providers": ["zeptomail", "smtp"], "retry_unknown": retry_unknown,
                                 "sender": {"from_address": "clinic@example.test", "from_name": "Sunrise"}}
        if rate:
            email["rate_per_second"] = rate
        defaults = {"email": email, "credentials": {"zeptomail": {"api_key": ZEPTO_TOKEN},
                                                     "smtp": self.relay.credentials()}}
        return {**self.stack.env, "CAREWIRE_ZEPTOMAIL_URL": zepto_url or self.zepto.url,
                "CAREWIRE_COMMUNICATION_DEFAULTS": json.dumps(defaults)}

    def by_zepto(self, to: str) -> int:
        return sum(1 for m in self.zepto.accepted if m["body"]["to"][0]["email_address"]["address"] == to)

    def by_relay(self, to: str) -> int:
        return sum(1 for m in self.relay.handler.accepted if to in m["rcpt_tos"])


@pytest.fixture(scope="module")
def rig(env, tmp_path_factory) -> Iterator[Rig]:
    with pipeline_stack(env, provider_timeout_seconds="1", breaker_threshold=str(THRESHOLD),
                        breaker_open_seconds=str(OPEN_SECONDS), message_lease_seconds="3",
                        log_level="INFO") as stack, \
            zeptomail_server(ZEPTO_TOKEN) as zepto, smtp_server() as relay:
        yield Rig(stack, zepto, relay, tmp_path_factory.mktemp("failover") / "workers.log")


@pytest.fixture(autouse=True)
def fresh(rig: Rig) -> None:
    rig.zepto.reset()


def address() -> str:
    return f"patient-{uuid.uuid4().hex[:8]}@example.test"


@pytest.mark.parametrize("fault", ["500", "refused"])
def test_the_fallback_delivers_when_the_primary_fails(rig: Rig, fault: str) -> None:
    clinic, to = rig.stack.clinic(), address()
    env = rig.env(zepto_url=f"http://127.0.0.1:{servers.free_port()}" if fault == "refused" else None)
    rig.zepto.mode = "500" if fault == "500" else "ok"
    ids = rig.stack.enqueue(clinic, to=to, env=env)
    with workers(env, 1, output=rig.log):
        row = eventually(lambda: rig.stack.settled(ids))[0]
    assert (row["status"], row["provider"]) == ("sent", "smtp")
    assert [(a["provider"], a["outcome"]) for a in rig.stack.attempts(ids)] == [
        ("zeptomail", "unavailable"), ("smtp", "sent")]
    assert rig.by_relay(to) == 1 and rig.by_zepto(to) == 0


@pytest.mark.parametrize("retry_unknown", [False, True])
def test_a_send_that_may_have_gone_out_is_not_repeated_unless_the_channel_says_so(
        rig: Rig, retry_unknown: bool) -> None:
    clinic, to = rig.stack.clinic(), address()
    env = rig.env(retry_unknown=retry_unknown)
    rig.zepto.mode = "hang"  # the request arrives, the answer never comes
    ids = rig.stack.enqueue(clinic, to=to, env=env)
    with workers(env, 1, output=rig.log):
        row = eventually(lambda: rig.stack.settled(ids))[0]
    outcomes = [(a["provider"], a["outcome"]) for a in rig.stack.attempts(ids)]
    if retry_unknown:
        assert (row["status"], row["provider"]) == ("sent", "smtp")
        assert outcomes == [("zeptomail", "unknown"), ("smtp", "sent")] and rig.by_relay(to) == 1
    else:
        assert (row["status"], row["provider"]) == ("unknown", "zeptomail")
        assert outcomes == [("zeptomail", "unknown")] and rig.by_relay(to) == 0


def _breaker(stack: Stack, clinic: uuid.UUID) -> dict[str, Any] | None:
    r = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        raw = r.get(f"cbr::{stack.env['CAREWIRE_REDIS_PREFIX']}breaker:{clinic}:zeptomail")
        return json.loads(raw) if raw else None
    finally:
        r.close()


def _events(stack: Stack, clinic: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = stack.db.fetch("SELECT type, data FROM events WHERE clinic_id = $1 ORDER BY seq", clinic)
    return [(r["type"], json.loads(r["data"]) if isinstance(r["data"], str) else r["data"])
            for r in rows]


def test_the_breaker_is_shared_by_two_workers_and_opens_half_opens_and_closes(rig: Rig) -> None:
    clinic = rig.stack.clinic()
    env = rig.env()
    rig.zepto.mode = "500"
    tos = [address() for _ in range(30)]
    ids = [i for to in tos for i in rig.stack.enqueue(clinic, to=to, env=env)]
    # two sends at a time per worker: the breaker can only stop what is not yet in flight
    with workers(env, 2, "--delivery-concurrency", "2", output=rig.log):
        eventually(lambda: rig.stack.settled(ids))
        # every message went out once, through the fallback
        assert {r["status"] for r in rig.stack.messages(ids)} == {"sent"}
        assert [rig.by_relay(to) for to in tos] == [1] * 30
        attempts = rig.stack.attempts(ids)
        failed = [a for a in attempts if a["provider"] == "zeptomail" and a["outcome"] == "unavailable"]
        skipped = [a for a in attempts if a["provider"] == "zeptomail" and a["outcome"] == "skipped"]
        # the breaker opened after THRESHOLD failures counted across both workers. Calls already
        # in flight may fail too: each worker's breaker reads the shared count when its call
        # starts, so with 4 calls at a time up to two rounds of them can overshoot (purgatory's
        # counting is per call, not a distributed lock). The rest never reached ZeptoMail.
        assert THRESHOLD <= len(failed) <= THRESHOLD + 8 and len(failed) + len(skipped) == 30
        assert all(a["error"] == "circuit breaker open" for a in skipped)
        assert len(rig.zepto.requests) == len(failed)
        state = _breaker(rig.stack, clinic)
        assert state is not None and state["state"] == "opened"
        assert [t for t, _ in _events(rig.stack, clinic)] == ["communication.provider_down"]

        # once open_seconds have passed, the next message is the trial; ZeptoMail is back
        rig.zepto.mode = "ok"
        eventually(lambda: time.time() > state["opened_at"] + OPEN_SECONDS, timeout=OPEN_SECONDS + 5)
        to = address()
        trial = rig.stack.enqueue(clinic, to=to, env=env)
        row = eventually(lambda: rig.stack.settled(trial))[0]
        assert (row["status"], row["provider"]) == ("sent", "zeptomail") and rig.by_zepto(to) == 1
        assert eventually(lambda: (_breaker(rig.stack, clinic) or {}).get("state") == "closed")
        events = _events(rig.stack, clinic)
        assert [t for t, _ in events] == ["communication.provider_down", "communication.provider_up"]
        assert all(d["provider"] == "zeptomail" for _, d in events)


def test_workers_killed_mid_send_lose_no_message(rig: Rig) -> None:
    """kill -9 a sending worker 20 times: every message is sent; a message whose worker died
    after its provider took it is sent once more at most (counted and reported)."""
    clinic = rig.stack.clinic()
    env = rig.env(rate=40)  # a steady flow, so a kill always lands among sends in flight
    ids = rig.stack.enqueue(clinic, to=address(), count=400, env=env)
    rng = random.Random(7)
    kills = 0
    while kills < 20:
        proc = subprocess.Popen([*servers.CAREWIRE, "worker"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            before = len(rig.zepto.accepted)
            eventually(lambda b=before: len(rig.zepto.accepted) > b, timeout=20)  # it is sending
            time.sleep(rng.uniform(0, 0.3))  # a random point in the flow, not a synchronisation
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
    with workers(env, 1, output=rig.log):
        eventually(lambda: rig.stack.settled(ids), timeout=90)
    rows = rig.stack.messages(ids)
    assert kills == 20 and {r["status"] for r in rows} == {"sent"}, Counter(r["status"] for r in rows)
    per_message = Counter(m["body"]["client_reference"] for m in rig.zepto.accepted)
    assert set(per_message) == {str(i) for i in ids}  # none lost
    duplicates = sum(n - 1 for n in per_message.values())
    assert max(per_message.values()) <= 2  # once more at most
    print(f"\n{kills} kills, {len(ids)} messages, {duplicates} sent twice")


def test_no_credential_in_logs_errors_or_events(rig: Rig) -> None:
    """Runs last: every worker of this module wrote to the log searched here."""
    for canary in (ZEPTO_TOKEN, rig.relay.credentials()["password"]):
        assert canary not in rig.log.read_text(errors="replace")
        for sql in ("SELECT error FROM communication_messages WHERE error LIKE '%' || $1 || '%'",
                    "SELECT error FROM communication_attempts WHERE error LIKE '%' || $1 || '%'",
                    "SELECT data::text FROM events WHERE data::text LIKE '%' || $1 || '%'"):
            assert rig.stack.db.fetch(sql, canary) == []
    assert rig.log.stat().st_size > 0  # the workers did log (INFO)
