"""The delivery pipeline end to end in real workers: the log, suppression, rounds, the rate
limit. (Providers failing over and breakers shared by workers: test_failover.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import servers
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # starts real workers on a stack of their own


@pytest.fixture(scope="module")
def stack(env) -> Iterator[Stack]:
    with pipeline_stack(env, message_max_rounds="2") as s:
        yield s


def test_every_message_reaches_the_local_sink_once_and_is_logged(stack: Stack) -> None:
    clinic = stack.clinic()
    ids = stack.enqueue(clinic, to="patient@example.test", count=20)
    with workers(stack.env, 2):
        rows = eventually(lambda: stack.settled(ids))
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["provider"] for r in rows} == {"local"}
    attempts = stack.attempts(ids)
    assert len(attempts) == 20 and {a["outcome"] for a in attempts} == {"sent"}
    assert all(r["body"].startswith("Your appointment") and r["sent_at"] for r in rows)


def test_a_suppressed_address_is_never_sent_to(stack: Stack) -> None:
    clinic = stack.clinic()
    stack.db.fetch("INSERT INTO communication_suppressions (clinic_id, channel, address, reason) "
                   "VALUES ($1, 'email', 'bounced@example.test', 'hard_bounce')", clinic)
    suppressed = stack.enqueue(clinic, to="bounced@example.test", count=3)
    fine = stack.enqueue(clinic, to="fine@example.test")
    other_clinic = stack.enqueue(stack.clinic(), to="bounced@example.test")  # its own list
    with workers(stack.env, 1):
        rows = eventually(lambda: stack.settled(suppressed + fine + other_clinic))
    status = {r["id"]: r["status"] for r in rows}
    assert [status[i] for i in suppressed] == ["suppressed"] * 3
    assert status[fine[0]] == "sent" and status[other_clinic[0]] == "sent"
    assert stack.attempts(suppressed) == []  # no provider was called


def test_a_message_no_provider_can_take_fails_after_its_rounds(stack: Stack) -> None:
    clinic = stack.clinic()
    stack.configure(clinic, "email", ["nosuchprovider"])
    ids = stack.enqueue(clinic, to="patient@example.test")
    with workers(stack.env, 1):
        rows = eventually(lambda: stack.settled(ids))
    assert rows[0]["status"] == "failed" and rows[0]["tries"] == 2
    attempts = stack.attempts(ids)
    assert [a["outcome"] for a in attempts] == ["skipped", "skipped"]  # one per round


def test_the_rate_limit_delays_and_drops_nothing(stack: Stack) -> None:
    """3N messages at N per second, shared by two workers: all sent, never more than N begun
    in any second. Slots are 1/N apart on Redis's clock; a worker wakes for its slot a
    millisecond or two late, so windows are 950 ms (that jitter could otherwise put slot k+N
    a microsecond inside slot k's second)."""
    n = 5
    clinic = stack.clinic()
    stack.configure(clinic, "email", ["local"], rate_per_second=n)
    ids = stack.enqueue(clinic, to="patient@example.test", count=3 * n)
    with workers(stack.env, 2):
        rows = eventually(lambda: stack.settled(ids), timeout=60)
    assert {r["status"] for r in rows} == {"sent"}
    times = sorted(a["at"].timestamp() for a in stack.attempts(ids))
    assert len(times) == 3 * n
    busiest = max(sum(1 for t in times if start <= t < start + 0.95) for start in times)
    assert busiest <= n, f"{busiest} sends within one second against a limit of {n}"
    assert times[-1] - times[0] >= (3 * n - 1) / n - 0.05


def test_the_worker_exposes_per_provider_counts_and_latency(stack: Stack) -> None:
    clinic = stack.clinic()
    ids = stack.enqueue(clinic, to="metrics@example.test", count=7)
    port = servers.free_port()
    with workers(stack.env, 1, "--metrics-port", str(port)):
        eventually(lambda: stack.settled(ids))
        text = eventually(lambda: _scrape(port))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("carewire_message_attempts_total",
                    (("channel", "email"), ("outcome", "sent"), ("provider", "local")))] == 7
    assert samples[("carewire_provider_latency_seconds_count", (("provider", "local"),))] == 7
    assert samples[("carewire_messages_total", (("channel", "email"), ("status", "sent")))] == 7


def _scrape(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
