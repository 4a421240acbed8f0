"""The SQL round trips of every write command of scheduling, queueing and tenancy, pinned.

A command that gains a round trip (a read that could ride an earlier query, a row read straight
back after its INSERT, a second transaction) fails here: change the number only together with
the reason. Commands run in process against the real database (tests/domain_layer.py says what
counts); each is run once beforehand with the same shape, so the counts are of a warm pool."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import pytest

from domain.access.roles import Role
from domain.errors import Conflict
from domain.queueing import commands as queueing
from domain.queueing.models import Priority
from domain.scheduling import commands as scheduling
from domain.scheduling.models import AppointmentType, ScheduleRule
from domain.tenancy import commands as tenancy
from tests.conftest import unique_email
from tests.queue_fixtures import TZ, fresh_day, make_clinic

Command = Callable[[], Coroutine[Any, Any, Any]]


@pytest.fixture(scope="module")
def house(api, sa_token, clinic_factory, member_factory, domain_layer) -> dict[str, Any]:
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=2, patients=4,
                    patient_max_future_appointments=500)
    c["desk_p"] = domain_layer.principal(c["desk"]["token"])
    c["sa_p"] = domain_layer.principal(sa_token)
    c["loc"] = uuid.UUID(c["locations"][0]["id"])
    c["cid"] = uuid.UUID(c["id"])
    return c


def _at(day: Any, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def _book(c: dict[str, Any], start: datetime, *, doctor: int = 0, patient: int = 0,
          count: int = 1) -> Command:
    return lambda: scheduling.book(
        c["desk_p"], clinic_id=c["cid"], doctor_id=uuid.UUID(c["doctors"][doctor]["user_id"]),
        patient_id=uuid.UUID(c["patients"][patient]["user_id"]),
        appointment_type=AppointmentType.IN_PERSON, start=start, duration_minutes=15,
        location_id=c["loc"], repeat_every_days=7 if count > 1 else None, repeat_count=count)


def measure(layer: Any, warm: Command, command: Command) -> tuple[Any, int, list[str]]:
    """Run `warm` (same shape as `command`), then count `command`."""
    layer.count(warm())  # a refusal is as warm as a success
    result, statements = layer.count(command())
    if isinstance(result, BaseException) and not isinstance(result, Conflict):
        raise result
    return result, len(statements), statements


class Pins:
    """Every count of a test compared at its end, so one run shows all that changed."""

    def __init__(self) -> None:
        self.wrong: list[str] = []

    def __call__(self, name: str, n: int, statements: list[str]) -> None:
        expected = globals()[name]
        if n != expected:
            self.wrong.append(f"{name}: {n} statements, pinned {expected}:\n  "
                              + "\n  ".join(statements))

    def verify(self) -> None:
        assert not self.wrong, "\n".join(self.wrong)


@pytest.fixture
def pinned() -> Pins:
    return Pins()


# scheduling ----------------------------------------------------------------------------------

def test_book_one(domain_layer, house, pinned) -> None:
    day = fresh_day()
    result, n, sent = measure(domain_layer, _book(house, _at(day, 8)), _book(house, _at(day, 9)))
    assert len(result) == 1
    pinned("BOOK_ONE", n, sent)
    pinned.verify()


def test_book_series_of_four(domain_layer, house, pinned) -> None:
    day = fresh_day()
    # weekly, at hours no other test here books, so the later weeks stay free for them
    result, n, sent = measure(domain_layer, _book(house, _at(day, 12), count=4),
                              _book(house, _at(day, 13), count=4))
    assert len(result) == 4
    pinned("BOOK_SERIES_4", n, sent)
    pinned.verify()


def test_book_conflict(domain_layer, house, pinned) -> None:
    day = fresh_day()
    domain_layer.run(_book(house, _at(day, 8))())
    domain_layer.run(_book(house, _at(day, 9))())
    result, n, sent = measure(domain_layer, _book(house, _at(day, 8), patient=1),
                              _book(house, _at(day, 9), patient=1))
    assert isinstance(result, scheduling.BookingConflict)
    pinned("BOOK_CONFLICT", n, sent)


def test_book_as_patient(domain_layer, house, pinned) -> None:
    """A patient's booking also takes the patient's turn and counts their upcoming ones."""
    day = fresh_day()
    me = domain_layer.principal(house["patients"][2]["token"])

    def mine(start: datetime) -> Command:
        return lambda: scheduling.book(
            me, clinic_id=house["cid"], doctor_id=uuid.UUID(house["doctors"][1]["user_id"]),
            patient_id=me.user_id, appointment_type=AppointmentType.IN_PERSON, start=start,
            location_id=house["loc"])

    result, n, sent = measure(domain_layer, mine(_at(day, 8)), mine(_at(day, 9)))
    assert len(result) == 1
    pinned("BOOK_PATIENT", n, sent)
    pinned.verify()


def test_follow_up(domain_layer, house, pinned) -> None:
    day = fresh_day()
    a, b = (domain_layer.run(_book(house, _at(day, h))())[0] for h in (8, 9))
    for parent in (a, b):
        domain_layer.run(queueing.check_in(house["desk_p"], parent.id))

    def follow(parent: Any, hour: int) -> Command:
        return lambda: scheduling.follow_up(house["desk_p"], parent.id,
                                            start=_at(day, hour) + timedelta(days=7),
                                            after_days=None)

    # evenings, a week on: no other test here books the doctor then
    result, n, sent = measure(domain_layer, follow(a, 19), follow(b, 20))
    assert result.parent_id == b.id
    pinned("FOLLOW_UP", n, sent)
    pinned.verify()


def _transition(c: dict[str, Any], appointment: Any, action: str) -> Command:
    return lambda: scheduling.transition(c["desk_p"], appointment.id, action)
    pinned.verify()


def test_confirm_and_cancel(domain_layer, house, pinned) -> None:
    day = fresh_day()
    a, b = (domain_layer.run(_book(house, _at(day, h))())[0] for h in (8, 9))
    result, n, sent = measure(domain_layer, _transition(house, a, "confirm"),
                              _transition(house, b, "confirm"))
    assert result.status == "confirmed"
    pinned("CONFIRM", n, sent)
    result, n, sent = measure(domain_layer, _transition(house, a, "cancel"),
                              _transition(house, b, "cancel"))
    assert result.status == "cancelled"
    pinned("CANCEL", n, sent)
    pinned.verify()


def test_reschedule(domain_layer, house, pinned) -> None:
    day = fresh_day()
    a, b = (domain_layer.run(_book(house, _at(day, h))())[0] for h in (8, 9))
    result, n, sent = measure(
        domain_layer,
        lambda: scheduling.reschedule(house["desk_p"], a.id, start=_at(day, 10)),
        lambda: scheduling.reschedule(house["desk_p"], b.id, start=_at(day, 11)))
    assert result.start == _at(day, 11)
    pinned("RESCHEDULE", n, sent)
    pinned.verify()


def test_schedule_and_time_off(domain_layer, house, pinned) -> None:
    doctor = uuid.UUID(house["doctors"][1]["user_id"])
    rules = [ScheduleRule(weekday=d, start="06:00", end="22:00", location_id=house["loc"],
                          appointment_types=list(AppointmentType)) for d in range(7)]
    put = lambda: scheduling.put_schedule(house["sa_p"], house["cid"], doctor,  # noqa: E731
                                          rules=rules, slot_minutes=15)
    _, n, sent = measure(domain_layer, put, put)
    pinned("PUT_SCHEDULE", n, sent)
    far = _at(fresh_day(), 3) + timedelta(days=600)
    off = lambda: scheduling.add_time_off(house["sa_p"], house["cid"], doctor, start=far,  # noqa: E731
                                          end=far + timedelta(hours=1), reason="training")
    _, n, sent = measure(domain_layer, off, off)
    pinned("TIME_OFF", n, sent)
    pinned.verify()


# queueing ------------------------------------------------------------------------------------

def test_queue_commands(domain_layer, house, pinned) -> None:
    """Check-in, call-next, skip, requeue, priority, transfer, consultation, pause."""
    day = fresh_day()
    booked = [domain_layer.run(_book(house, _at(day, 8, 15 * i), patient=i)())[0]
              for i in range(4)]
    desk = house["desk_p"]
    checkin = lambda a: (lambda: queueing.check_in(desk, a.id))  # noqa: E731
    _, n, sent = measure(domain_layer, checkin(booked[0]), checkin(booked[1]))
    pinned("CHECK_IN", n, sent)
    domain_layer.run(checkin(booked[2])())
    domain_layer.run(checkin(booked[3])())
    rows = domain_layer.run(_entries(booked))
    queue_id = rows[0]["queue_id"]
    call = lambda: queueing.call_next(desk, queue_id)  # noqa: E731
    _, n, sent = measure(domain_layer, call, call)
    pinned("CALL_NEXT", n, sent)
    entry = {r["appointment_id"]: r["id"] for r in rows}
    ids = [entry[a.id] for a in booked]
    _, n, sent = measure(domain_layer, lambda: queueing.skip(desk, ids[0]),
                         lambda: queueing.skip(desk, ids[1]))
    pinned("SKIP", n, sent)
    _, n, sent = measure(domain_layer, lambda: queueing.set_priority(
        desk, ids[0], priority=Priority.URGENT, reason="pain"), lambda: queueing.set_priority(
        desk, ids[1], priority=Priority.URGENT, reason="pain"))
    pinned("PRIORITY", n, sent)
    domain_layer.run(queueing.call_next(desk, queue_id))
    domain_layer.run(queueing.call_next(desk, queue_id))
    called = domain_layer.run(_entries(booked))
    called_ids = [r["id"] for r in called if r["status"] == "called"]
    _, n, sent = measure(domain_layer, lambda: queueing.requeue(desk, called_ids[0]),
                         lambda: queueing.requeue(desk, called_ids[1]))
    pinned("REQUEUE", n, sent)
    _, n, sent = measure(domain_layer, lambda: queueing.consult(desk, ids[0], "start"),
                         lambda: queueing.consult(desk, ids[1], "start"))
    pinned("CONSULT_START", n, sent)
    _, n, sent = measure(domain_layer, lambda: queueing.consult(desk, ids[0], "complete"),
                         lambda: queueing.consult(desk, ids[1], "complete"))
    pinned("CONSULT_COMPLETE", n, sent)
    other = uuid.UUID(house["doctors"][1]["user_id"])
    _, n, sent = measure(domain_layer, lambda: queueing.transfer(desk, ids[2], doctor_id=other),
                         lambda: queueing.transfer(desk, ids[3], doctor_id=other))
    pinned("TRANSFER", n, sent)
    # a transition whose handler moves the queue entry (queueing's `_follow_appointment`)
    result, n, sent = measure(domain_layer, _transition(house, booked[2], "cancel"),
                              _transition(house, booked[3], "cancel"))
    assert result.status == "cancelled"
    assert domain_layer.run(_entries(booked[3:]))[0]["status"] == "removed"
    pinned("CANCEL_QUEUED", n, sent)
    board = lambda: queueing.issue_board_token(desk, queue_id)  # noqa: E731
    _, n, sent = measure(domain_layer, board, board)
    pinned("BOARD_TOKEN", n, sent)
    _, n, sent = measure(domain_layer, lambda: queueing.set_paused(desk, queue_id, True),
                         lambda: queueing.set_paused(desk, queue_id, False))
    pinned("PAUSE", n, sent)
    pinned.verify()


async def _entries(booked: list[Any]) -> list[dict[str, Any]]:
    from domain import db

    return await db.fetch("SELECT id, queue_id, appointment_id, status FROM queue_entries "
                          "WHERE appointment_id = ANY($1::uuid[])", [a.id for a in booked])


# tenancy -------------------------------------------------------------------------------------

def test_tenancy_commands(domain_layer, house, pinned) -> None:
    sa, cid = house["sa_p"], house["cid"]
    add = lambda: tenancy.add_member(sa, cid, email=unique_email("cnt"), name="Counted",  # noqa: E731
                                     role=Role.PATIENT, password="member-password-1")
    _, n, sent = measure(domain_layer, add, add)
    pinned("ADD_MEMBER", n, sent)
    inv = lambda: tenancy.invite(house["desk_p"], cid, email=unique_email("inv"),  # noqa: E731
                                 name="Invited", role=Role.PATIENT, location_id=None,
                                 password=None, phone=None)
    _, n, sent = measure(domain_layer, inv, inv)
    pinned("INVITE", n, sent)
    loc = lambda: tenancy.create_location(sa, cid, name=f"Wing {uuid.uuid4().hex[:4]}")  # noqa: E731
    _, n, sent = measure(domain_layer, loc, loc)
    pinned("CREATE_LOCATION", n, sent)
    pinned.verify()


# the pinned counts ---------------------------------------------------------------------------

BOOK_ONE = 13  # before: 29
BOOK_SERIES_4 = 13  # before: 56
BOOK_PATIENT = 15  # staff's 13, plus the patient's turn and their upcoming count
FOLLOW_UP = 15  # the parent (read outside, with its reset), then a booking's 13
BOARD_TOKEN = 10  # queue and clinic read outside a transaction; the audit row in its own
BOOK_CONFLICT = 9  # before: 27
CONFIRM = 11  # before: 16
CANCEL = 12  # before: 17
RESCHEDULE = 14  # before: 18
PUT_SCHEDULE = 16
TIME_OFF = 14
CHECK_IN = 20  # before: 22
CALL_NEXT = 18
SKIP = 21
PRIORITY = 19
REQUEUE = 20
CONSULT_START = 24  # before: 25
CONSULT_COMPLETE = 22  # before: 24
TRANSFER = 26
CANCEL_QUEUED = 17  # new: the queue handler path
PAUSE = 13
ADD_MEMBER = 14
INVITE = 13
CREATE_LOCATION = 11
