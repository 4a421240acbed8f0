"""Appointment reminders in the job schedule: `reminders.sync` keeps exactly the pending jobs an
appointment should have (one per offset still ahead; a reschedule replaces them, a cancellation
removes them) in two statements, and the reminder job sends once, ignores stale jobs and drops
the ones whose appointment has started. In process against the session's database (no worker
runs there, so the jobs stay put); the live path with workers and a provider is in
test_reminders_e2e.py."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from domain import db as database
from domain.notifications import reminders
from domain.scheduling import commands as scheduling
from domain.scheduling.models import AppointmentType, Status
from tests.queue_fixtures import TZ, fresh_day, make_clinic
from tests.servers import eventually

DAY = 86400


@pytest.fixture(scope="module")
def house(api, sa_token, clinic_factory, member_factory, domain_layer) -> dict[str, Any]:
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=2)
    c["desk_p"] = domain_layer.principal(c["desk"]["token"])
    c["sa_p"] = domain_layer.principal(sa_token)
    c["cid"] = uuid.UUID(c["id"])
    return c


def _book(layer: Any, c: dict[str, Any], start: datetime, *, override: bool = False) -> Any:
    (a,) = layer.run(scheduling.book(
        c["sa_p"] if override else c["desk_p"], clinic_id=c["cid"],
        doctor_id=uuid.UUID(c["doctors"][0]["user_id"]),
        patient_id=uuid.UUID(c["patients"][0]["user_id"]), appointment_type=AppointmentType.VIDEO,
        start=start, duration_minutes=15, override_reason="reminder test" if override else None))
    return a


def _sync(layer: Any, appointment: Any, offsets: list[int]) -> list[str]:
    """sync inside a transaction of its own (as the consumer's); the statements it sent."""
    async def go() -> None:
        async with database.transaction():
            await reminders.sync(appointment, offsets)
    _, statements = layer.count(go())
    return statements


def _pending(db: Any, appointment_id: uuid.UUID) -> dict[str, datetime]:
    rows = db.fetch("SELECT job_key, run_at FROM scheduled_jobs WHERE job_key LIKE $1 "
                    "AND enqueued_at IS NULL", f"reminder:{appointment_id}:%")
    return {r["job_key"]: r["run_at"] for r in rows}


#: BEGIN, the DELETE of pending ones not wanted, the INSERT of the missing ones, COMMIT, and the
#: pool's reset. With no reminder wanted (cancelled, unpaid, all past), the INSERT is skipped.
SYNC = 5
SYNC_NONE = 4


def test_one_job_per_offset_still_ahead_in_two_statements(domain_layer, house, db) -> None:
    day = fresh_day()
    a = _book(domain_layer, house, datetime(day.year, day.month, day.day, 10, 0, tzinfo=TZ))
    ahead = (a.start - datetime.now(UTC)).total_seconds()
    too_far = int(ahead) + DAY  # due before now: skipped, not sent at once
    _sync(domain_layer, a, [3600, DAY, too_far])  # warm
    db.fetch("DELETE FROM scheduled_jobs WHERE job_key LIKE $1", f"reminder:{a.id}:%")
    statements = _sync(domain_layer, a, [3600, DAY, too_far, 3600])
    assert len(statements) == SYNC, statements
    assert _pending(db, a.id) == {f"reminder:{a.id}:{DAY}:0": a.start - timedelta(days=1),
                                  f"reminder:{a.id}:3600:0": a.start - timedelta(hours=1)}
    # every event of the appointment calls it again: nothing changes
    _sync(domain_layer, a, [DAY, 3600])
    assert len(_pending(db, a.id)) == 2
    # no appointment time in the job key (the runner logs job keys)
    assert all(str(int(a.start.timestamp())) not in k for k in _pending(db, a.id))


def test_a_reschedule_moves_them_and_a_cancellation_removes_them(domain_layer, house, db) -> None:
    day = fresh_day()
    a = _book(domain_layer, house, datetime(day.year, day.month, day.day, 9, 0, tzinfo=TZ))
    _sync(domain_layer, a, [DAY, 3600])
    old = _pending(db, a.id)
    moved = domain_layer.run(scheduling.reschedule(
        house["desk_p"], a.id, start=datetime(day.year, day.month, day.day, 15, 0, tzinfo=TZ)))
    _sync(domain_layer, moved, [DAY, 3600])
    new = _pending(db, a.id)
    assert set(new) == {f"reminder:{a.id}:{DAY}:1", f"reminder:{a.id}:3600:1"}
    assert not set(new) & set(old)
    assert sorted(new.values()) == [moved.start - timedelta(days=1), moved.start - timedelta(hours=1)]
    # the clinic dropped its day-before reminder: the next event's sync follows
    _sync(domain_layer, moved, [3600])
    assert set(_pending(db, a.id)) == {f"reminder:{a.id}:3600:1"}

    cancelled = domain_layer.run(scheduling.transition(house["desk_p"], a.id, "cancel"))
    statements = _sync(domain_layer, cancelled, [DAY, 3600])
    assert len(statements) == SYNC_NONE, statements
    assert _pending(db, a.id) == {}


def test_an_unpaid_booking_has_no_reminders(domain_layer, house, db) -> None:
    day = fresh_day()
    a = _book(domain_layer, house, datetime(day.year, day.month, day.day, 11, 0, tzinfo=TZ))
    unpaid = msgspec.structs.replace(a, status=Status.PENDING_PAYMENT)
    _sync(domain_layer, unpaid, [DAY, 3600])
    assert _pending(db, a.id) == {}
    _sync(domain_layer, a, [DAY, 3600])  # paid: scheduled
    assert len(_pending(db, a.id)) == 2


def _job(db: Any, appointment_id: uuid.UUID, offset: int) -> tuple[str, dict[str, Any]]:
    (row,) = db.fetch("SELECT job_key, payload FROM scheduled_jobs WHERE job_key LIKE $1",
                      f"reminder:{appointment_id}:{offset}:%")
    payload = row["payload"]
    return row["job_key"], json.loads(payload) if isinstance(payload, str) else payload


def _notifications(db: Any, appointment_id: uuid.UUID) -> list[dict[str, Any]]:
    return db.fetch("SELECT status, late, channels, kind FROM notifications "
                    "WHERE appointment_id = $1", appointment_id)


def test_a_stale_job_does_nothing(domain_layer, house, db) -> None:
    """A job handed to a worker just before a reschedule: it ran once, and sent nothing."""
    day = fresh_day()
    a = _book(domain_layer, house, datetime(day.year, day.month, day.day, 12, 0, tzinfo=TZ))
    _sync(domain_layer, a, [3600])
    key, payload = _job(db, a.id, 3600)
    domain_layer.run(scheduling.reschedule(
        house["desk_p"], a.id, start=datetime(day.year, day.month, day.day, 13, 0, tzinfo=TZ)))
    domain_layer.run(reminders.send(job_key=key, payload=payload))
    assert _notifications(db, a.id) == []
    assert db.fetch("SELECT 1 FROM job_runs WHERE job_key = $1", key)


def test_a_reminder_whose_appointment_has_started_is_dropped_once(domain_layer, house, db) -> None:
    """The appointment starts two seconds from now; the job runs after that (as after
    downtime): a `dropped` row, nothing sent, and a second run of the job changes nothing."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    a = _book(domain_layer, house, start, override=True)
    _sync(domain_layer, a, [1])  # (a one-second offset: the clinic setting's floor is 60 s)
    key, payload = _job(db, a.id, 1)
    eventually(lambda: datetime.now(UTC) > a.start, timeout=10)
    domain_layer.run(reminders.send(job_key=key, payload=payload))
    domain_layer.run(reminders.send(job_key=key, payload=payload))
    assert _notifications(db, a.id) == [{"status": "dropped", "late": True, "channels": [],
                                         "kind": "appointment.reminder"}]
    assert db.fetch("SELECT count(*) AS n FROM communication_messages WHERE dedupe_key LIKE $1",
                    f"{key}:%")[0]["n"] == 0


def test_an_overdue_job_not_yet_run_survives_a_later_event(domain_layer, house, db) -> None:
    """After downtime the consumer's backlog (each event calls sync) and the scheduler race: a
    reminder whose time came while it waited must not be swept away; the job decides."""
    day = fresh_day()
    a = _book(domain_layer, house, datetime(day.year, day.month, day.day, 14, 0, tzinfo=TZ))
    passed = int((a.start - datetime.now(UTC)).total_seconds()) + 600  # due 10 minutes ago
    overdue = f"reminder:{a.id}:{passed}:0"
    db.fetch("INSERT INTO scheduled_jobs (id, task, job_key, schedule_key, run_at) VALUES "
             "(gen_random_uuid(), $1, $2, $2 || '#1', now() - interval '10 minutes')",
             reminders.TASK, overdue)  # planned in time; no worker ran since
    confirmed = domain_layer.run(scheduling.transition(house["desk_p"], a.id, "confirm"))
    _sync(domain_layer, confirmed, [passed, 3600])
    assert set(_pending(db, a.id)) == {overdue, f"reminder:{a.id}:3600:0"}
    _sync(domain_layer, confirmed, [3600])  # the clinic dropped that offset: it goes
    assert set(_pending(db, a.id)) == {f"reminder:{a.id}:3600:0"}


#: The reminder job, counted: BEGIN, claim_once, dispatch.load_facts (clinic, appointment, people,
#: preferences: read once, and handed to notify), the clinic's templates, notify's writes (the
#: messages, the inbox row), the journal's event, COMMIT, reset. Again: BEGIN, claim_once,
#: COMMIT, reset.
SEND = 15  # 16 when the job read the appointment itself as well
SEND_AGAIN = 4


def test_the_reminder_job_sends_once(domain_layer, house, db) -> None:
    day = fresh_day()
    warm, a = (_book(domain_layer, house, datetime(day.year, day.month, day.day, h, 0, tzinfo=TZ))
               for h in (16, 17))
    for appointment in (warm, a):
        _sync(domain_layer, appointment, [3600])
    warm_key, warm_payload = _job(db, warm.id, 3600)
    domain_layer.run(reminders.send(job_key=warm_key, payload=warm_payload))
    key, payload = _job(db, a.id, 3600)
    _, statements = domain_layer.count(reminders.send(job_key=key, payload=payload))
    assert len(statements) == SEND, "\n".join(statements)
    (row,) = _notifications(db, a.id)
    assert (row["status"], row["late"], row["kind"]) == ("sent", False, "appointment.reminder")
    assert "email" in row["channels"] and "in_app" in row["channels"]
    _, statements = domain_layer.count(reminders.send(job_key=key, payload=payload))
    assert len(statements) == SEND_AGAIN, "\n".join(statements)
    assert len(_notifications(db, a.id)) == 1
    messages = db.fetch("SELECT channel FROM communication_messages WHERE dedupe_key LIKE $1",
                        f"{key}:%")
    assert [m["channel"] for m in messages] == ["email"]
