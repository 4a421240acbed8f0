"""Reminders through the whole path, on a stack of its own: appointments booked over REST, their
events read by the notifications consumer (which plans the reminder jobs), the job scheduler,
Taskiq, the reminder job, dispatch, the delivery loop and a local server speaking ZeptoMail's
API, which stamps the time each mail reaches it. Two workers share all of it.

The clinic setting's floor is 60 s (a reminder closer than a minute is no use), so the
reminders here fall due at most a minute or so after booking; "a worker stopped for 10 minutes"
is a worker stopped past a reminder's due time and past another appointment's start, which with
a 60-second offset takes about a minute of real time."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests import servers
from tests.communication.fakes.zeptomail import FakeZeptoMail, zeptomail_server
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.conftest import Api
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # a stack, a server and two workers of its own; real minutes

TOKEN = "zepto-reminders-token-7c1e"
KIND = "appointment.reminder"


class Stamped(list[dict[str, Any]]):
    """The fake's list of accepted mails, each stamped with the wall-clock time it arrived."""

    def append(self, item: dict[str, Any]) -> None:
        item["received_at"] = time.time()
        super().append(item)


class World:
    def __init__(self, api: Api, sa: str, stack: Stack, zepto: FakeZeptoMail) -> None:
        self.api, self.sa, self.stack, self.zepto = api, sa, stack, zepto
        self.db = stack.db

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.api.as_(self.sa, method, path, **kw)

    def clinic(self, offsets: list[int]) -> str:
        r = self.call("POST", "/clinics", json={
            "name": f"Reminders {uuid.uuid4().hex[:6]}", "timezone": "UTC",
            "settings": {"reminder_offsets_seconds": offsets, "booking_horizon_days": 30}})
        assert r.status_code == 201, r.text
        clinic = str(r.json()["id"])
        r = self.call("PUT", f"/clinics/{clinic}/communication/config", json={
            "channels": {"email": {"providers": ["zeptomail"],
                                   "sender": {"from_address": "desk@reminders.test"},
                                   "rate_per_second": 10000}},
            "credentials": {"zeptomail": {"api_key": TOKEN}}})
        assert r.status_code == 200, r.text
        return clinic

    def members(self, clinic: str, role: str, n: int) -> list[str]:
        def one(i: int) -> str:
            r = self.call("POST", f"/clinics/{clinic}/members", json={
                "email": f"{role.lower()}{i}-{uuid.uuid4().hex[:8]}@reminders.test",
                "name": f"{role.title()} {i}", "role": role})
            assert r.status_code == 201, r.text
            return str(r.json()["user_id"])
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, range(n)))

    def book(self, clinic: str, doctor: str, patient: str, start: datetime) -> str:
        r = self.call("POST", "/appointments", json={
            "clinic_id": clinic, "doctor_id": doctor, "patient_id": patient, "type": "video",
            "start": start.isoformat(), "duration_minutes": 5,
            "override_reason": "reminder test (outside hours)"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def reminder_jobs(self, appointment_ids: list[str]) -> dict[str, datetime]:
        """Pending or handed-over reminder jobs of these appointments: job key -> due time."""
        rows = self.db.fetch(
            "SELECT job_key, run_at FROM scheduled_jobs WHERE task = 'notifications.reminder' "
            "AND split_part(job_key, ':', 2) = ANY($1::text[])", appointment_ids)
        return {r["job_key"]: r["run_at"] for r in rows}

    def receipts(self) -> dict[str, list[float]]:
        """Reminder mails the provider received: the job key each came from -> arrival times."""
        with self.zepto.lock:
            got = [(m["body"]["client_reference"], m["received_at"]) for m in self.zepto.accepted]
        rows = self.db.fetch("SELECT id::text AS id, dedupe_key FROM communication_messages "
                             "WHERE kind = $1 AND id = ANY($2::uuid[])", KIND, [g[0] for g in got])
        key_of = {r["id"]: r["dedupe_key"].rsplit(":", 2)[0] for r in rows}
        found: dict[str, list[float]] = {}
        for message_id, at in got:
            if message_id in key_of:
                found.setdefault(key_of[message_id], []).append(at)
        return found


@pytest.fixture(scope="module")
def world(env) -> Iterator[World]:
    with zeptomail_server(TOKEN) as zepto, \
            pipeline_stack(env, zeptomail_url=zepto.url, reminder_late_seconds="1") as stack:
        zepto.accepted = Stamped()
        srv = servers.Server(stack.env)
        srv.start()
        try:
            with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=60) as client:
                api = Api(client)
                sa = api.token("root@isolated.test", "root-password-1")
                yield World(api, sa, stack, zepto)
        finally:
            srv.stop()


def _assert_on_time(world: World, jobs: dict[str, datetime]) -> list[float]:
    got = world.receipts()
    twice = {k: v for k, v in got.items() if k in jobs and len(v) != 1}
    assert not twice, f"reminders received more than once: {twice}"
    drift = [got[k][0] - due.timestamp() for k, due in jobs.items()]
    assert min(drift) >= 0, "a reminder left before its time"
    assert max(drift) <= 1.0, f"drift p50 {sorted(drift)[len(drift) // 2]:.3f} s, max {max(drift):.3f} s"
    return drift


def test_500_reminders_each_once_within_a_second_with_two_workers(world: World) -> None:
    """100 doctors with 5 visits each, 5 minutes apart; the clinic's 5 offsets are set so that
    each visit has exactly one reminder falling due in the same 20-second window a minute from
    now (its other offsets fall due later, or had passed at booking and are skipped)."""
    offsets = [600, 900, 1200, 1500, 1800]
    clinic = world.clinic(offsets)
    doctors = world.members(clinic, "DOCTOR", 100)
    patients = world.members(clinic, "PATIENT", 10)
    window = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=75)
    plan = [(d, j, window + timedelta(seconds=20 * (d * 5 + j) / 500) + timedelta(seconds=o))
            for d in range(100) for j, o in enumerate(offsets)]
    with workers(world.stack.env, 2):
        lock = threading.Lock()
        ids: list[str] = []

        def book(item: tuple[int, int, datetime]) -> None:
            d, j, start = item
            booked = world.book(clinic, doctors[d], patients[(d + j) % 10], start)
            with lock:
                ids.append(booked)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(book, plan))
        # every visit's reminder in the window is planned (the consumer read every booking)
        due = eventually(lambda: (lambda jobs: jobs if len(jobs) == 500 else None)(
            {k: v for k, v in world.reminder_jobs(ids).items()
             if window <= v < window + timedelta(seconds=21)}), timeout=60)
        assert datetime.now(UTC) < window, "booking took too long for this run to mean anything"
        eventually(lambda: len(set(world.receipts()) & set(due)) == 500, timeout=120)
    drift = _assert_on_time(world, due)
    assert len(drift) == 500


def test_a_reschedule_moves_the_reminder_and_a_cancellation_removes_it(world: World) -> None:
    clinic = world.clinic([60])
    doctors = world.members(clinic, "DOCTOR", 2)
    (patient,) = world.members(clinic, "PATIENT", 1)
    now = datetime.now(UTC).replace(microsecond=0)
    with workers(world.stack.env, 2):
        moved = world.book(clinic, doctors[0], patient, now + timedelta(seconds=60 + 15))
        cancelled = world.book(clinic, doctors[1], patient, now + timedelta(seconds=60 + 15))
        eventually(lambda: len(world.reminder_jobs([moved, cancelled])) == 2)
        (old_key,) = world.reminder_jobs([moved])
        r = world.call("POST", f"/appointments/{moved}/reschedule", json={
            "start": (now + timedelta(seconds=60 + 25)).isoformat(),
            "override_reason": "reminder test"})
        assert r.status_code == 200, r.text
        r = world.call("POST", f"/appointments/{cancelled}/cancel", json={"reason": "test"})
        assert r.status_code == 200, r.text
        new = eventually(lambda: (lambda j: j if old_key not in j and j else None)(
            world.reminder_jobs([moved])))
        eventually(lambda: world.reminder_jobs([cancelled]) == {})  # its event comes next
        assert datetime.now(UTC) < now + timedelta(seconds=15), "too slow to mean anything"
        (new_key,) = new
        eventually(lambda: new_key in world.receipts())
    got = world.receipts()
    # the old due time (10 s before the new one) passed with nothing sent, for either visit
    assert old_key not in got and not any(k.startswith(f"reminder:{cancelled}:") for k in got)
    _assert_on_time(world, new)


def test_after_downtime_a_useful_reminder_goes_late_and_a_useless_one_is_dropped(
        world: World) -> None:
    """Workers stop right after booking; `soon` starts 72 s from now (reminder due at 12 s),
    `later` 135 s from now (due at 75 s). The workers come back at 77 s: `soon` has started,
    so its reminder is dropped (recorded, nothing sent); `later` is still ahead, so its reminder
    goes, marked late (more than `reminder_late_seconds`, 1 s here, after its due time)."""
    clinic = world.clinic([60])
    doctors = world.members(clinic, "DOCTOR", 2)
    (patient,) = world.members(clinic, "PATIENT", 1)
    now = datetime.now(UTC).replace(microsecond=0)
    soon_start, later_start = now + timedelta(seconds=72), now + timedelta(seconds=135)
    with workers(world.stack.env, 2):
        soon = world.book(clinic, doctors[0], patient, soon_start)
        later = world.book(clinic, doctors[1], patient, later_start)
        eventually(lambda: len(world.reminder_jobs([soon, later])) == 2)
    assert datetime.now(UTC) < soon_start - timedelta(seconds=60), "too slow to mean anything"
    eventually(lambda: datetime.now(UTC) > later_start - timedelta(seconds=58), timeout=120)
    with workers(world.stack.env, 2):
        rows = eventually(lambda: (lambda r: r if len(r) == 2 else None)(world.db.fetch(
            "SELECT appointment_id::text AS a, status, late, channels FROM notifications "
            "WHERE kind = $1 AND appointment_id = ANY($2::uuid[])", KIND, [soon, later])))
        by = {r["a"]: r for r in rows}
        assert (by[soon]["status"], by[soon]["channels"]) == ("dropped", [])
        assert (by[later]["status"], by[later]["late"]) == ("sent", True)
        assert "email" in by[later]["channels"]
        eventually(lambda: any(k.startswith(f"reminder:{later}:") for k in world.receipts()))
    got = world.receipts()
    assert not any(k.startswith(f"reminder:{soon}:") for k in got)
    messages = world.db.fetch("SELECT status, dedupe_key FROM communication_messages "
                              "WHERE kind = $1 AND dedupe_key LIKE $2", KIND, f"reminder:{later}:%")
    assert [m["status"] for m in messages] == ["sent"]
