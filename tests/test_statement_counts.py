"""The SQL round trips of every write command in domain/, pinned (identity, tenancy,
scheduling, queueing, jobs; `test_every_write_command_is_pinned` finds them, so a new command
without a pin fails).

A command that gains a round trip (a read that could ride an earlier query, a row read straight
back after its INSERT, a second transaction) fails here: change the number only together with
the reason. Commands run in process against the real database (tests/domain_layer.py says what
counts); each is run once beforehand with the same shape, so the counts are of a warm pool."""

from __future__ import annotations

import ast
import importlib
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

from domain.access.roles import Role
from domain.communication.commands import (
    delivery_status,
    devices,
    messages,
    retention,
    suppressions,
    templates,
)
from domain.communication.models import Sender
from domain.errors import Conflict, Unauthenticated
from domain.identity import commands as identity
from domain.inbox import commands as inbox
from domain.jobs import commands as jobs
from domain.notifications.commands import inbox as notification_inbox
from domain.notifications.commands import preferences as notification_preferences
from domain.notifications.models import QuietHours
from domain.principal import RequestMeta
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
          count: int = 1, kind: AppointmentType = AppointmentType.IN_PERSON) -> Command:
    return lambda: scheduling.book(
        c["desk_p"], clinic_id=c["cid"], doctor_id=uuid.UUID(c["doctors"][doctor]["user_id"]),
        patient_id=uuid.UUID(c["patients"][patient]["user_id"]),
        appointment_type=kind, start=start, duration_minutes=15,
        location_id=c["loc"], repeat_every_days=7 if count > 1 else None, repeat_count=count)


def measure(layer: Any, warm: Command, command: Command, *,
            refused: type[BaseException] = Conflict) -> tuple[Any, int, list[str]]:
    """Run `warm` (same shape as `command`), then count `command`; a `refused` error is a
    result, any other is raised. Which write commands the counted run entered is noted for
    `Pins` (a pin must count the command the table below says it counts)."""
    layer.count(warm())  # a refusal is as warm as a success
    with _entering() as entered:
        result, statements = layer.count(command())
    _ENTERED[:] = [entered]
    if isinstance(result, BaseException) and not isinstance(result, refused):
        raise result
    return result, len(statements), statements


_ENTERED: list[set[str]] = [set()]


@contextmanager
def _entering() -> Iterator[set[str]]:
    """The write commands (keys of COMMANDS) whose code ran inside the block (a profile hook on
    this thread, where the domain layer's event loop runs)."""
    codes = _command_codes()
    seen: set[str] = set()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            seen.add(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def _command_codes() -> dict[CodeType, str]:
    found: dict[CodeType, str] = {}
    for key in COMMANDS:
        module, name = key.split(":")
        found[getattr(importlib.import_module(f"domain.{module}"), name).__code__] = key
    return found


class Pins:
    """Every count of a test compared at its end, so one run shows all that changed."""

    def __init__(self) -> None:
        self.wrong: list[str] = []

    def __call__(self, name: str, n: int, statements: list[str]) -> None:
        expected = globals()[name]
        owner = next(key for key, pins in COMMANDS.items() if name in pins)
        if owner not in _ENTERED[0]:
            self.wrong.append(f"{name} is the pin of {owner}, which the counted run never ran")
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
    pinned.verify()


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


def test_holiday(domain_layer, house, pinned) -> None:
    """Time off with no doctor closes the whole clinic."""
    far = _at(fresh_day(), 3) + timedelta(days=601)
    off = lambda: scheduling.add_time_off(house["sa_p"], house["cid"], None, start=far,  # noqa: E731
                                          end=far + timedelta(hours=1), reason="holiday")
    _, n, sent = measure(domain_layer, off, off)
    pinned("HOLIDAY", n, sent)
    pinned.verify()


def test_consultation_transitions(domain_layer, house, pinned) -> None:
    """start, complete and no-show on checked-in appointments (their queue entries follow)."""
    day = fresh_day()
    booked = [domain_layer.run(_book(house, _at(day, 10, 15 * i), patient=i)())[0]
              for i in range(4)]
    for a in booked:
        domain_layer.run(queueing.check_in(house["desk_p"], a.id))
    a, b, c, d = booked
    result, n, sent = measure(domain_layer, _transition(house, a, "start"),
                              _transition(house, b, "start"))
    assert result.status == "in_progress"
    pinned("START", n, sent)
    result, n, sent = measure(domain_layer, _transition(house, a, "complete"),
                              _transition(house, b, "complete"))
    assert result.status == "completed"
    pinned("COMPLETE", n, sent)
    result, n, sent = measure(domain_layer, _transition(house, c, "no-show"),
                              _transition(house, d, "no-show"))
    assert result.status == "no_show"
    assert {r["status"] for r in domain_layer.run(_entries(booked))} == {"done", "removed"}
    pinned("NO_SHOW", n, sent)
    pinned.verify()


@pytest.fixture(scope="module")
def paying(api, sa_token, clinic_factory, member_factory, domain_layer) -> dict[str, Any]:
    """A clinic whose video appointments wait for payment."""
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=4,
                    payment_required_types=["video"])
    c["desk_p"] = domain_layer.principal(c["desk"]["token"])
    c["loc"] = uuid.UUID(c["locations"][0]["id"])
    c["cid"] = uuid.UUID(c["id"])
    return c


def test_payment_moves(domain_layer, paying, pinned) -> None:
    """The billing seam (mark_paid) and the expiry job (expire_unpaid, with two rows due)."""
    from domain import db

    day = fresh_day()
    booked = [domain_layer.run(_book(paying, _at(day, 9, 15 * i), patient=i,
                                     kind=AppointmentType.VIDEO)())[0] for i in range(4)]
    assert {a.status for a in booked} == {"pending_payment"}
    result, n, sent = measure(domain_layer, lambda: scheduling.mark_paid(booked[0].id),
                              lambda: scheduling.mark_paid(booked[1].id))
    assert result.status == "scheduled"
    pinned("MARK_PAID", n, sent)

    def due(*appointments: Any) -> None:
        domain_layer.run(db.fetch(
            "UPDATE appointments SET payment_due_at = now() - interval '1 second' "
            "WHERE id = ANY($1::uuid[])", [a.id for a in appointments]))

    # warm with nothing of ours due (it also expires any other test's stragglers), then two
    domain_layer.run(scheduling.expire_unpaid())
    due(*booked[2:])
    result, n, sent = measure(domain_layer, _noop, scheduling.expire_unpaid)
    assert result == 2
    pinned("EXPIRE_UNPAID", n, sent)
    pinned.verify()


async def _noop() -> None:
    return None


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
    pinned("RESUME", n, sent)  # warmed by the pause
    _, n, sent = measure(domain_layer, lambda: queueing.set_paused(desk, queue_id, False),
                         lambda: queueing.set_paused(desk, queue_id, True))
    pinned("PAUSE", n, sent)  # warmed by a resume of a running queue (a no-op)
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


def test_tenancy_clinics_and_registration(domain_layer, house, pinned) -> None:
    sa = house["sa_p"]
    make = lambda: tenancy.create_clinic(  # noqa: E731
        sa, name=f"Counted {uuid.uuid4().hex[:6]}", timezone="Asia/Kolkata",
        settings={"allow_self_registration": True})
    clinic, n, sent = measure(domain_layer, make, make)
    pinned("CREATE_CLINIC", n, sent)
    rename = lambda name: (lambda: tenancy.update_clinic(sa, clinic.id, name=name))  # noqa: E731
    result, n, sent = measure(domain_layer, rename("Counted A"), rename("Counted B"))
    assert result.name == "Counted B"
    pinned("UPDATE_CLINIC", n, sent)
    register = lambda: tenancy.register_patient(  # noqa: E731
        clinic_id=clinic.id, email=unique_email("reg"), password=PASSWORD, name="Registered",
        phone=None, meta=_meta())
    result, n, sent = measure(domain_layer, register, register)
    assert result.status == "accepted"
    pinned("REGISTER_PATIENT", n, sent)
    pinned.verify()


def test_tenancy_invitations_and_members(domain_layer, house, pinned) -> None:
    sa, cid = house["sa_p"], house["cid"]

    def invite(email: str) -> Any:
        return domain_layer.run(tenancy.invite(sa, cid, email=email, name="Invited",
                                               role=Role.PATIENT, location_id=None,
                                               password=None, phone=None))

    open_ones = [invite(unique_email("rev")) for _ in range(2)]
    revoke = lambda r: (lambda: tenancy.revoke_invitation(sa, cid, r.invitation_id))  # noqa: E731
    _, n, sent = measure(domain_layer, revoke(open_ones[0]), revoke(open_ones[1]))
    pinned("REVOKE_INVITATION", n, sent)
    people = [_person(domain_layer, "inv") for _ in range(4)]
    asked = [invite(email) for email, _ in people]
    answer = lambda how, i: (lambda: how(people[i][1], asked[i].invitation_id))  # noqa: E731
    result, n, sent = measure(domain_layer, answer(tenancy.accept_invitation, 0),
                              answer(tenancy.accept_invitation, 1))
    assert result.role is Role.PATIENT
    pinned("ACCEPT_INVITATION", n, sent)
    _, n, sent = measure(domain_layer, answer(tenancy.decline_invitation, 2),
                         answer(tenancy.decline_invitation, 3))
    pinned("DECLINE_INVITATION", n, sent)
    members = [domain_layer.run(tenancy.add_member(
        sa, cid, email=unique_email("mem"), name="Member", role=Role.PATIENT,
        password=PASSWORD)) for _ in range(4)]
    move = lambda m: (lambda: tenancy.update_member(sa, cid, m.user_id,  # noqa: E731
                                                    location_id=house["loc"]))
    result, n, sent = measure(domain_layer, move(members[0]), move(members[1]))
    assert result.location_id == house["loc"]
    pinned("UPDATE_MEMBER", n, sent)
    drop = lambda m: (lambda: tenancy.remove_member(sa, cid, m.user_id))  # noqa: E731
    _, n, sent = measure(domain_layer, drop(members[2]), drop(members[3]))
    pinned("REMOVE_MEMBER", n, sent)
    pinned.verify()


# communication -------------------------------------------------------------------------------

def test_communication_config_commands(domain_layer, house, env, pinned) -> None:
    from domain.communication.commands import config as communication
    from tests.tenancy.test_credentials import keys_in_process

    sa, cid = house["sa_p"], house["cid"]

    def put(n: int) -> Command:
        return lambda: communication.put_config(
            sa, cid, channels={"email": communication.ChannelSettings(
                providers=["zeptomail", "local"], sender=Sender(from_address="desk@count.test"),
                rate_per_second=n), "sms": None},
            credentials={"zeptomail": {"api_key": f"counted-key-{n:04d}"}})

    with keys_in_process(env["CAREWIRE_CREDENTIALS_KEY"]):
        result, n, sent = measure(domain_layer, put(1), put(2))
        assert result.channels["email"].rate_per_second == 2
        pinned("PUT_COMMUNICATION_CONFIG", n, sent)
        send = lambda: communication.send_test(sa, cid, "email")  # noqa: E731
        result, n, sent = measure(domain_layer, send, send)
        assert len(result) == 1
        pinned("SEND_TEST_MESSAGE", n, sent)
    pinned.verify()


# identity ------------------------------------------------------------------------------------

PASSWORD = "counted-password-1"


def _meta() -> RequestMeta:
    """A source address of its own, so the per-address limits never refuse a counted call."""
    b = uuid.uuid4().bytes
    return RequestMeta(request_id="counted", ip=f"10.{b[0]}.{b[1]}.{b[2]}")


def _person(layer: Any, tag: str) -> tuple[str, Any]:
    """A new account's email and its logged-in principal."""
    email = unique_email(tag)
    layer.run(identity.create_user(email=email, name="Counted", password=PASSWORD))
    pair = layer.run(identity.login(email=email, password=PASSWORD, meta=_meta(),
                                    user_agent="counted"))
    return email, layer.principal(pair.access_token)


def test_identity_commands(domain_layer, pinned) -> None:
    emails = [unique_email("idc") for _ in range(4)]
    create = lambda e: (lambda: identity.create_user(  # noqa: E731
        email=e, name="Counted", password=PASSWORD))
    _, n, sent = measure(domain_layer, create(emails[0]), create(emails[1]))
    pinned("CREATE_USER", n, sent)
    for email in emails[2:]:
        domain_layer.run(create(email)())
    login = lambda e, pw=PASSWORD: (lambda: identity.login(  # noqa: E731
        email=e, password=pw, meta=_meta(), user_agent="counted"))
    pair, n, sent = measure(domain_layer, login(emails[0]), login(emails[1]))
    assert pair.refresh_token
    pinned("LOGIN", n, sent)
    wrong = "not-the-password-9"
    result, n, sent = measure(domain_layer, login(emails[2], wrong), login(emails[3], wrong),
                              refused=Unauthenticated)
    assert isinstance(result, Unauthenticated)
    pinned("LOGIN_WRONG_PASSWORD", n, sent)
    pairs = [domain_layer.run(login(emails[i % 4])()) for i in range(8)]
    turn = lambda p: (lambda: identity.refresh(refresh_token=p.refresh_token,  # noqa: E731
                                               meta=_meta()))
    result, n, sent = measure(domain_layer, turn(pairs[0]), turn(pairs[1]))
    assert result.refresh_token != pairs[1].refresh_token
    pinned("REFRESH", n, sent)
    # the spent tokens again: their sessions are revoked
    result, n, sent = measure(domain_layer, turn(pairs[0]), turn(pairs[1]),
                              refused=Unauthenticated)
    assert isinstance(result, Unauthenticated)
    pinned("REFRESH_REUSED", n, sent)
    principals = [domain_layer.principal(p.access_token) for p in pairs[2:6]]
    out = lambda p: (lambda: identity.logout(p))  # noqa: E731
    _, n, sent = measure(domain_layer, out(principals[0]), out(principals[1]))
    pinned("LOGOUT", n, sent)
    revoke = lambda p: (lambda: identity.revoke_session(p.session_id,  # noqa: E731
                                                        reason="counted"))
    result, n, sent = measure(domain_layer, revoke(principals[2]), revoke(principals[3]))
    assert result is True
    pinned("REVOKE_SESSION", n, sent)
    admin = lambda: identity.ensure_super_admin(email=unique_email("adm"),  # noqa: E731
                                                password=PASSWORD)
    _, n, sent = measure(domain_layer, admin, admin)
    pinned("ENSURE_SUPER_ADMIN", n, sent)
    pinned.verify()


# jobs ----------------------------------------------------------------------------------------

def test_jobs_commands(domain_layer, pinned) -> None:
    key = lambda: f"counted-{uuid.uuid4().hex[:12]}"  # noqa: E731
    later = datetime.now(TZ) + timedelta(days=3650)  # never due: no scheduler will run it
    plan = lambda: jobs.schedule(task="counted.noop", job_key=key(), run_at=later)  # noqa: E731
    result, n, sent = measure(domain_layer, plan, plan)
    assert result is True
    pinned("SCHEDULE_JOB", n, sent)
    # LIMIT 0: the same statement, without taking the session's real due jobs from anyone
    claim = lambda: jobs.claim_due(limit=0)  # noqa: E731
    result, n, sent = measure(domain_layer, claim, claim)
    assert result.due == [] and result.next_in is not None  # the job planned above
    pinned("CLAIM_DUE", n, sent)
    once = lambda: jobs.claim_once(job_key=key(), task="counted.noop")  # noqa: E731
    result, n, sent = measure(domain_layer, once, once)
    assert result is True
    pinned("CLAIM_ONCE", n, sent)
    bury = lambda: jobs.bury(task="counted.noop", job_key=key(), payload={}, attempts=1,  # noqa: E731
                             error="counted")
    _, n, sent = measure(domain_layer, bury, bury)
    pinned("BURY", n, sent)
    many = lambda: jobs.schedule_many(  # noqa: E731
        [jobs.Planned(task="counted.noop", job_key=key(), run_at=later) for _ in range(3)])
    result, n, sent = measure(domain_layer, many, many)
    assert result == 3
    pinned("SCHEDULE_MANY", n, sent)
    gone = key()
    domain_layer.run(jobs.schedule(task="counted.noop", job_key=f"{gone}:a", run_at=later))
    drop = lambda: jobs.unschedule(prefix=f"{gone}:")  # noqa: E731
    result, n, sent = measure(domain_layer, drop, drop)
    assert result == 0  # the warm run took it
    pinned("UNSCHEDULE", n, sent)
    pinned.verify()


def test_communication_message_commands(domain_layer, house, pinned) -> None:
    content = messages.Content(subject="Reminder", text="See you tomorrow")
    send = lambda: messages.enqueue(  # noqa: E731
        clinic_id=house["cid"], channel="email", kind="counted", content=content,
        address=unique_email("counted"))
    result, n, sent = measure(domain_layer, send, send)
    assert isinstance(result, list) and len(result) == 1
    pinned("ENQUEUE_MESSAGE", n, sent)
    patient = uuid.UUID(house["patients"][0]["user_id"])
    many = lambda: messages.enqueue_many([  # noqa: E731
        messages.Outgoing(clinic_id=house["cid"], channel=channel, kind="counted", content=content,
                          address=None if channel == "push" else unique_email("many"),
                          user_id=patient, dedupe_key=f"many-{uuid.uuid4()}-{channel}")
        for channel in ("email", "email", "sms", "push")])
    result, n, sent = measure(domain_layer, many, many)
    assert [len(ids) for ids in result[:3]] == [1, 1, 1]
    pinned("ENQUEUE_MANY", n, sent)
    # LIMIT 0: the same statement, without taking the session's queued messages from anyone
    claim = lambda: messages.claim_due(0, lease=timedelta(seconds=60))  # noqa: E731
    result, n, sent = measure(domain_layer, claim, claim)
    assert result == []
    pinned("CLAIM_MESSAGES", n, sent)
    # a claim that is not held (another worker's, or long gone): the same one statement
    lost = messages.Claimed(id=result_id(domain_layer, house), claim_id=uuid.uuid4(),
                            clinic_id=house["cid"], user_id=None, channel="email", kind="counted",
                            address="x@example.test", tries=1, content=content, suppressed=False)
    done = lambda: messages.finish([messages.finished(  # noqa: E731
        lost, "sent", [messages.AttemptRow(provider="local", outcome="sent", latency_ms=0.1)],
        provider="local")])
    result, n, sent = measure(domain_layer, done, done)
    assert result == set()
    pinned("FINISH_MESSAGE", n, sent)
    pinned.verify()


def result_id(layer: Any, house: dict[str, Any]) -> uuid.UUID:
    ids = layer.run(messages.enqueue(clinic_id=house["cid"], channel="email", kind="counted",
                                     content=messages.Content(text="x"), address="x@example.test"))
    return uuid.UUID(str(ids[0]))
# communication -------------------------------------------------------------------------------

def _token() -> str:
    return "cnt" + uuid.uuid4().hex * 2


def test_device_commands(domain_layer, house, member_factory, pinned) -> None:
    me = domain_layer.principal(member_factory(house["id"], "PATIENT", tag="cnt-dev")["token"])
    new = lambda: devices.register_device(me, kind="fcm", token=_token(),  # noqa: E731
                                          platform="android")
    (device, fresh), n, sent = measure(domain_layer, new, new)
    assert device.kind == "fcm" and device.token_last4
    assert fresh is True
    pinned("REGISTER_DEVICE", n, sent)
    token = _token()
    domain_layer.run(devices.register_device(me, kind="fcm", token=token, platform="ios"))
    again = lambda: devices.register_device(me, kind="fcm", token=token,  # noqa: E731
                                            platform="ios", app_version="2.0")
    (_, fresh), n, sent = measure(domain_layer, again, again)
    assert fresh is False
    pinned("REGISTER_DEVICE_AGAIN", n, sent)
    ids = [domain_layer.run(new())[0].id for _ in range(4)]
    remove = lambda i: (lambda: devices.remove_device(me, ids[i]))  # noqa: E731
    _, n, sent = measure(domain_layer, remove(0), remove(1))
    pinned("REMOVE_DEVICE", n, sent)
    retire = lambda i: (lambda: devices.retire(ids[i], "unregistered"))  # noqa: E731
    result, n, sent = measure(domain_layer, retire(2), retire(3))
    assert result is True
    pinned("RETIRE_DEVICE", n, sent)
    pinned.verify()


def test_suppression_commands(domain_layer, house, member_factory, pinned) -> None:
    admin = domain_layer.principal(
        member_factory(house["id"], "CLINIC_ADMIN", tag="cnt-sup")["token"])
    cid = house["cid"]
    address = lambda: unique_email("sup")  # noqa: E731
    add = lambda: suppressions.add_suppression(admin, cid, channel="email",  # noqa: E731
                                               address=address())
    (_, added), n, sent = measure(domain_layer, add, add)
    assert added is True
    pinned("ADD_SUPPRESSION", n, sent)
    there = address()
    domain_layer.run(suppressions.add_suppression(admin, cid, channel="email", address=there))
    again = lambda: suppressions.add_suppression(admin, cid, channel="email",  # noqa: E731
                                                 address=there)
    (_, added), n, sent = measure(domain_layer, again, again)
    assert added is False
    pinned("ADD_SUPPRESSION_EXISTING", n, sent)
    gone = [address() for _ in range(2)]
    for a in gone:
        domain_layer.run(suppressions.add_suppression(admin, cid, channel="email", address=a))
    remove = lambda a: (lambda: suppressions.remove_suppression(  # noqa: E731
        admin, cid, channel="email", address=a))
    _, n, sent = measure(domain_layer, remove(gone[0]), remove(gone[1]))
    pinned("REMOVE_SUPPRESSION", n, sent)
    hook = lambda: suppressions.suppress(cid, "email", address(), "hard_bounce",  # noqa: E731
                                         "evt-counted")
    result, n, sent = measure(domain_layer, hook, hook)
    assert result is True
    pinned("SUPPRESS", n, sent)
    pinned.verify()


def test_template_commands(domain_layer, house, member_factory, pinned) -> None:
    from domain.communication import unsubscribe
    from domain.communication.templates import sample_context

    admin = domain_layer.principal(
        member_factory(house["id"], "CLINIC_ADMIN", tag="cnt-tpl")["token"])
    cid = house["cid"]
    sms = "{{ clinic_name }}: {{ starts_at | datetime }}"
    put = lambda locale: (lambda: templates.put_template(  # noqa: E731
        admin, cid, kind="appointment.booked", channel="sms", locale=locale, source=sms))
    result, n, sent = measure(domain_layer, put("en"), put("hi"))
    assert result.origin == "clinic"
    pinned("PUT_TEMPLATE", n, sent)
    domain_layer.run(put("hi-in")())
    render = lambda: templates.render_for_send(  # noqa: E731
        clinic_id=cid, kind="appointment.booked", channels=["sms", "push", "email"],
        locale="hi-IN", context=sample_context("hi-IN"))
    result, n, sent = measure(domain_layer, render, render)
    assert result["sms"].text.startswith("Sunrise Clinic: 4")
    pinned("RENDER_FOR_SEND", n, sent)
    delete = lambda locale: (lambda: templates.delete_template(  # noqa: E731
        admin, cid, kind="appointment.booked", channel="sms", locale=locale))
    _, n, sent = measure(domain_layer, delete("hi"), delete("hi-in"))
    pinned("DELETE_TEMPLATE", n, sent)
    click = lambda: unsubscribe.unsubscribe(unsubscribe.token(  # noqa: E731
        clinic_id=cid, kind="appointment.reminder", address=unique_email("unsub")))
    result, n, sent = measure(domain_layer, click, click)
    assert result.unsubscribed is True
    pinned("UNSUBSCRIBE", n, sent)
    pinned.verify()


def test_notifications_consume(domain_layer, house, pinned) -> None:
    """The consumer reading one booking: the patient's confirmation (email; push finds no
    device; in-app) and the doctor's notice, each in a savepoint, and the cursor moved."""
    from domain.notifications.commands import consume

    c, day = house, fresh_day()

    def booked_then_read(hour: int) -> Command:
        def command() -> Any:
            domain_layer.run(consume.pending())  # the clinic's cursor exists
            while domain_layer.run(consume.process_clinic(c["cid"])):
                pass  # caught up, outside the count
            domain_layer.run(_book(c, _at(day, hour), patient=3)())
            return consume.process_clinic(c["cid"])
        return command

    result, n, sent = measure(domain_layer, booked_then_read(9), booked_then_read(10))
    assert result >= 1
    pinned("CONSUME_BOOKING", n, sent)
    pinned.verify()


def test_prune_bodies(domain_layer, pinned) -> None:
    """With fewer due messages than a batch: one UPDATE (and its reset)."""
    _, n, sent = measure(domain_layer, retention.prune_bodies, retention.prune_bodies)
    pinned("PRUNE_BODIES", n, sent)
    from domain.notifications.commands import retention as inbox_retention
    _, n, sent = measure(domain_layer, inbox_retention.prune_texts, inbox_retention.prune_texts)
    pinned("PRUNE_NOTIFICATION_TEXTS", n, sent)
    pinned.verify()


# notifications -------------------------------------------------------------------------------

def test_notification_preference_and_inbox_commands(domain_layer, house, member_factory, db,
                                                    pinned) -> None:
    from tests.notifications.inbox_rows import insert_notification

    who = member_factory(house["id"], "PATIENT", tag="cnt-notify")
    me = domain_layer.principal(who["token"])
    put = lambda: notification_preferences.put_preferences(  # noqa: E731
        me, channels={"appointment.booked": ["push", "in_app"]},
        quiet_hours=QuietHours(start="22:00", end="07:00"), timezone="Asia/Kolkata",
        locale="hi")
    result, n, sent = measure(domain_layer, put, put)
    assert result.channels == {"appointment.booked": ["push", "in_app"]}
    pinned("PUT_PREFERENCES", n, sent)
    ids = [uuid.UUID(insert_notification(db, house["id"], who["user_id"])) for _ in range(4)]
    read = lambda i: (lambda: notification_inbox.mark_read(me, ids[i]))  # noqa: E731
    result, n, sent = measure(domain_layer, read(0), read(1))
    assert result.read_at is not None
    pinned("MARK_READ", n, sent)
    result, n, sent = measure(domain_layer, read(1), read(1))
    assert result.read_at is not None
    pinned("MARK_READ_AGAIN", n, sent)
    every = lambda: notification_inbox.mark_all_read(me)  # noqa: E731
    result, n, sent = measure(domain_layer, every, every)
    assert result == 0  # the warm run marked the other two
    pinned("MARK_ALL_READ", n, sent)
    pinned.verify()


# webhooks ------------------------------------------------------------------------------------

def _sent_by_ses(db: Any, clinic_id: uuid.UUID) -> tuple[str, str]:
    """A message SES took: (SES's id for it, its address)."""
    ses_id, address = f"ses-{uuid.uuid4().hex}", unique_email("hook")
    db.fetch("""INSERT INTO communication_messages (id, clinic_id, channel, kind, address, status,
                    provider, provider_message_id, body)
                VALUES (gen_random_uuid(), $1, 'email', 'counted', $2, 'sent', 'ses', $3, 'x')""",
             clinic_id, address, ses_id)
    return ses_id, address


def _ses_body(kind: str, ses_id: str, address: str) -> bytes:
    event: dict[str, Any] = {"notificationType": kind, "mail": {"messageId": ses_id}}
    if kind == "Bounce":
        event["bounce"] = {"bounceType": "Permanent",
                           "bouncedRecipients": [{"emailAddress": address}]}
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()),
                       "Message": json.dumps(event)}).encode()


def test_webhook_inbox_commands(domain_layer, house, db, pinned) -> None:
    def store(body: bytes) -> Command:
        return lambda: inbox.receive(provider="ses", event_ids=[json.loads(body)["MessageId"]],
                                     body=body, headers={"x-amz-sns-message-type": "Notification"})

    bodies = [_ses_body("Bounce", *_sent_by_ses(db, house["cid"])) for _ in range(4)]
    receipt, n, sent = measure(domain_layer, store(bodies[0]), store(bodies[1]))
    assert receipt.stored == 1
    pinned("RECEIVE_WEBHOOK", n, sent)
    receipt, n, sent = measure(domain_layer, store(bodies[0]), store(bodies[1]))
    assert (receipt.stored, receipt.duplicates) == (0, 1)
    pinned("RECEIVE_WEBHOOK_DUPLICATE", n, sent)
    for body in bodies[2:]:
        domain_layer.run(store(body)())
    run = lambda b: (lambda: inbox.process("ses", json.loads(b)["MessageId"]))  # noqa: E731
    handled, n, sent = measure(domain_layer, run(bodies[0]), run(bodies[1]))
    assert handled is not None and handled.result == "bounced"
    pinned("PROCESS_WEBHOOK_HARD_BOUNCE", n, sent)
    handled, n, sent = measure(domain_layer, run(bodies[2]), run(bodies[2]))
    assert handled is None  # processed before: nothing again
    pinned("PROCESS_WEBHOOK_DONE", n, sent)
    pinned.verify()


def test_delivery_status_commands(domain_layer, house, db, pinned) -> None:
    cid = house["cid"]
    ids = [_sent_by_ses(db, cid) for _ in range(2)]
    move = lambda i: (lambda: delivery_status.report_status(  # noqa: E731
        "ses", ids[i][0], "delivered"))
    reported, n, sent = measure(domain_layer, move(0), move(1))
    assert reported is not None and reported.moved
    pinned("REPORT_STATUS", n, sent)
    address = unique_email("soft")
    soft = lambda: delivery_status.record_soft_bounce(  # noqa: E731
        cid, "email", address, f"counted-{uuid.uuid4().hex}")
    count, n, sent = measure(domain_layer, soft, soft)
    assert count == 2
    pinned("SOFT_BOUNCE", n, sent)
    pinned.verify()


# --- billing: invoices ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def invoicing(api, sa_token, clinic_factory, member_factory, domain_layer) -> dict[str, Any]:
    from domain.tenancy.queries import load_clinic

    c = clinic_factory(billing={"currency": "INR", "tax_rate_bp": 1800, "invoice_due_days": 7})
    c["cid"] = uuid.UUID(c["id"])
    c["clinic"] = domain_layer.run(load_clinic(c["cid"]))
    c["acct_p"] = domain_layer.principal(member_factory(c["id"], "ACCOUNTANT", tag="pin")["token"])
    c["patient"] = uuid.UUID(member_factory(c["id"], "PATIENT", password=None, tag="pinp")["user_id"])
    return c


def test_invoice_commands(domain_layer, invoicing, pinned) -> None:
    from domain import db
    from domain.billing.commands import invoices
    from domain.billing.models import LineInput

    c = invoicing
    lines = [LineInput("Consultation", 1, 50000), LineInput("Dressing", 2, 1500)]

    def opened() -> Command:
        async def go() -> Any:
            async with db.transaction():
                return await invoices.open_invoice(None, c["clinic"], patient_id=c["patient"],
                                                   lines=lines, discount=100)
        return go

    first, n, sent = measure(domain_layer, opened(), opened())
    assert first.status == "open" and first.number
    pinned("OPEN_INVOICE", n, sent)

    def pay(invoice_id: uuid.UUID, amount: int) -> Command:
        async def go() -> Any:
            async with db.transaction():
                return await invoices.record_payment(invoice_id, amount, "INR")
        return go

    a, b = (domain_layer.run(opened()()) for _ in range(2))
    paid, n, sent = measure(domain_layer, pay(a.id, a.total), pay(b.id, b.total))
    assert paid.status == "paid"
    pinned("RECORD_PAYMENT", n, sent)
    refused, n, sent = measure(domain_layer, pay(a.id, 1), pay(b.id, 1), refused=Conflict)
    assert isinstance(refused, Conflict)
    pinned("RECORD_PAYMENT_REFUSED", n, sent)

    draft = lambda: invoices.create_draft(c["acct_p"], clinic_id=c["cid"],  # noqa: E731
                                          patient_id=c["patient"], lines=lines)
    made, n, sent = measure(domain_layer, draft, draft)
    assert made.status == "draft"
    pinned("CREATE_DRAFT", n, sent)
    d1, d2 = (domain_layer.run(draft()) for _ in range(2))
    done, n, sent = measure(domain_layer, lambda: invoices.finalize(c["acct_p"], d1.id),
                            lambda: invoices.finalize(c["acct_p"], d2.id))
    assert done.status == "open"
    pinned("FINALIZE_INVOICE", n, sent)
    v1, v2 = (domain_layer.run(opened()()) for _ in range(2))
    voided, n, sent = measure(
        domain_layer, lambda: invoices.void_invoice(c["acct_p"], v1.id, reason="twice"),
        lambda: invoices.void_invoice(c["acct_p"], v2.id, reason="twice"))
    assert voided.status == "void"
    pinned("VOID_INVOICE", n, sent)
    pinned.verify()


# --- billing: payments -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def billed(env, api, sa_token, clinic_factory, member_factory, domain_layer) -> Iterator[Any]:
    """A clinic charging for video visits through a local Stripe; the in-process settings reach
    that Stripe and hold the run's credentials key."""
    from tests.billing.fakes.stripe import FakeStripe
    from tests.communication.test_email_providers import settings_env

    fake = FakeStripe().start()
    with settings_env(CAREWIRE_STRIPE_URL=fake.url,
                      CAREWIRE_CREDENTIALS_KEY=env["CAREWIRE_CREDENTIALS_KEY"]):
        c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=4,
                        payment_required_types=["video"],
                        billing={"provider": "stripe", "fees": {"video": 50_000}})
        admin = member_factory(c["id"], "CLINIC_ADMIN", tag="badmin")
        c["admin_p"] = domain_layer.principal(admin["token"])
        c["desk_p"] = domain_layer.principal(c["desk"]["token"])
        c["patient_p"] = [domain_layer.principal(p["token"]) for p in c["patients"]]
        c["loc"] = uuid.UUID(c["locations"][0]["id"])
        c["cid"] = uuid.UUID(c["id"])
        c["fake"] = fake
        yield c
    fake.stop()


def _invoice_of(layer: Any, appointment_id: uuid.UUID) -> uuid.UUID:
    from domain import db

    rows = layer.run(db.fetch("SELECT id FROM billing_invoices WHERE appointment_id = $1",
                              appointment_id))
    return uuid.UUID(str(rows[0]["id"]))


def test_billing_payments(domain_layer, billed, pinned) -> None:
    """Credentials, the booking's charge, a desk payment, a checkout, the provider's word
    (settle) and a reconciliation pass with nothing due."""
    from domain.billing.commands import credentials, payments, reconcile
    from domain.billing.queries.payments import load_payment

    c = billed
    creds = c["fake"].credentials()
    result, n, sent = measure(
        domain_layer,
        lambda: credentials.put_provider_credentials(c["admin_p"], c["cid"], "stripe", creds),
        lambda: credentials.put_provider_credentials(c["admin_p"], c["cid"], "stripe", creds))
    pinned("PUT_PROVIDER_CREDENTIALS", n, sent)
    day = fresh_day()
    booked = [domain_layer.run(_book(c, _at(day, 9, 15 * i), patient=i,
                                     kind=AppointmentType.VIDEO)()) for i in range(2)]
    result, n, sent = measure(
        domain_layer, _book(c, _at(day, 11), patient=2, kind=AppointmentType.VIDEO),
        _book(c, _at(day, 12), patient=3, kind=AppointmentType.VIDEO))
    pinned("BOOK_CHARGED", n, sent)
    invoices = [_invoice_of(domain_layer, a[0].id) for a in booked]
    result, n, sent = measure(
        domain_layer,
        lambda: payments.record_desk_payment(c["desk_p"], invoice_id=invoices[0],
                                             method="cash", amount=100),
        lambda: payments.record_desk_payment(c["desk_p"], invoice_id=invoices[0],
                                             method="cash", amount=49_900))
    assert result.status == "succeeded"
    pinned("DESK_PAYMENT", n, sent)
    warm_invoice = _invoice_of(domain_layer, booked[1][0].id)
    later = [domain_layer.run(_book(c, _at(day, 14, 15 * i), patient=i,
                                    kind=AppointmentType.VIDEO)())[0] for i in range(2)]
    result, n, sent = measure(
        domain_layer, lambda: payments.open_checkout(c["patient_p"][1], invoice_id=warm_invoice),
        lambda: payments.open_checkout(c["patient_p"][0],
                                       invoice_id=_invoice_of(domain_layer, later[0].id)))
    payment, created = result
    assert created and payment.provider_order_id
    pinned("OPEN_CHECKOUT", n, sent)
    warm_payment, _ = domain_layer.run(payments.open_checkout(
        c["patient_p"][1], invoice_id=_invoice_of(domain_layer, later[1].id)))

    async def settled(payment_id: uuid.UUID) -> str:
        from domain import db

        async with db.transaction():
            return await payments.settle(await load_payment(payment_id), "succeeded",
                                         provider_payment_id="ch_counted")

    result, n, sent = measure(domain_layer, lambda: settled(warm_payment.id),
                              lambda: settled(payment.id))
    assert result == "succeeded"
    pinned("SETTLE_SUCCEEDED", n, sent)
    result, n, sent = measure(domain_layer, lambda: settled(payment.id),
                              lambda: settled(payment.id))
    assert result == "already_succeeded"
    pinned("SETTLE_AGAIN", n, sent)
    while domain_layer.run(reconcile.reconcile()):  # what other tests left due, asked once
        pass
    result, n, sent = measure(domain_layer, _noop, reconcile.reconcile)
    pinned("RECONCILE_NOTHING_DUE", n, sent)
    pinned.verify()


PUT_PROVIDER_CREDENTIALS = 7  # tenancy's put_credentials (the upsert and its audit row)
BOOK_CHARGED = 16  # the booking and its open invoice; +2: open_invoice plans the PDF job (row, NOTIFY)
#: the invoice read, the appointment locked (expiry's lock order), the guarded invoice UPDATE,
#: the payment row, the visit scheduled once paid in full; audit and events at COMMIT
DESK_PAYMENT = 14
#: two transactions around the provider call: invoice, clinic, credentials and the pending row
#: (ON CONFLICT: one per invoice); then the order stored with its event and audit row
OPEN_CHECKOUT = 17
#: (the test's own read of the payment) the invoice, the appointment locked, the guarded
#: payment UPDATE, record_payment's guarded UPDATE, the visit scheduled; audit and events
SETTLE_SUCCEEDED = 15
SETTLE_AGAIN = 4  # the payment as read is succeeded: nothing else
RECONCILE_NOTHING_DUE = 2  # one claim statement (and the pool's reset); what another test left
#                            due was asked about by the drain just before, so waits its interval


# every write command has a pin ---------------------------------------------------------------

#: Each public write command of domain/ (found by `_public_commands`) and the pins counting it;
#: `Pins` checks that the counted run of each pin entered its command.
COMMANDS: dict[str, tuple[str, ...]] = {
    "identity.commands:login": ("LOGIN", "LOGIN_WRONG_PASSWORD"),
    "identity.commands:refresh": ("REFRESH", "REFRESH_REUSED"),
    "identity.commands:revoke_session": ("REVOKE_SESSION",),
    "identity.commands:logout": ("LOGOUT",),
    "identity.commands:create_user": ("CREATE_USER",),
    "identity.commands:ensure_super_admin": ("ENSURE_SUPER_ADMIN",),
    "tenancy.commands.clinics:create_clinic": ("CREATE_CLINIC",),
    "tenancy.commands.clinics:update_clinic": ("UPDATE_CLINIC",),
    "tenancy.commands.clinics:create_location": ("CREATE_LOCATION",),
    "tenancy.commands.members:add_member": ("ADD_MEMBER",),
    "tenancy.commands.invitations:invite": ("INVITE",),
    "tenancy.commands.invitations:revoke_invitation": ("REVOKE_INVITATION",),
    "tenancy.commands.invitations:accept_invitation": ("ACCEPT_INVITATION",),
    "tenancy.commands.invitations:decline_invitation": ("DECLINE_INVITATION",),
    "tenancy.commands.members:update_member": ("UPDATE_MEMBER",),
    "tenancy.commands.members:remove_member": ("REMOVE_MEMBER",),
    "tenancy.commands.registration:register_patient": ("REGISTER_PATIENT",),
    "scheduling.commands.schedules:put_schedule": ("PUT_SCHEDULE",),
    "scheduling.commands.schedules:add_time_off": ("TIME_OFF", "HOLIDAY"),
    "scheduling.commands.booking:book": ("BOOK_ONE", "BOOK_SERIES_4", "BOOK_CONFLICT",
                                         "BOOK_PATIENT"),
    "scheduling.commands.booking:reschedule": ("RESCHEDULE",),
    "scheduling.commands.booking:follow_up": ("FOLLOW_UP",),
    "scheduling.commands.transitions:transition": ("CONFIRM", "CANCEL", "CANCEL_QUEUED", "START",
                                                   "COMPLETE", "NO_SHOW"),
    "scheduling.commands.transitions:expire_unpaid": ("EXPIRE_UNPAID",),
    "scheduling.commands.transitions:mark_paid": ("MARK_PAID",),
    "queueing.commands:check_in": ("CHECK_IN",),
    "queueing.commands:call_next": ("CALL_NEXT",),
    "queueing.commands:skip": ("SKIP",),
    "queueing.commands:requeue": ("REQUEUE",),
    "queueing.commands:set_priority": ("PRIORITY",),
    "queueing.commands:transfer": ("TRANSFER",),
    "queueing.commands:consult": ("CONSULT_START", "CONSULT_COMPLETE"),
    "queueing.commands:set_paused": ("PAUSE", "RESUME"),
    "queueing.commands:issue_board_token": ("BOARD_TOKEN",),
    "jobs.commands:schedule": ("SCHEDULE_JOB",),
    "jobs.commands:claim_due": ("CLAIM_DUE",),
    "jobs.commands:claim_once": ("CLAIM_ONCE",),
    "jobs.commands:bury": ("BURY",),
    "jobs.commands:schedule_many": ("SCHEDULE_MANY",),
    "jobs.commands:unschedule": ("UNSCHEDULE",),
    "communication.commands.messages:enqueue": ("ENQUEUE_MESSAGE",),
    "communication.commands.messages:enqueue_many": ("ENQUEUE_MANY",),
    "communication.commands.messages:claim_due": ("CLAIM_MESSAGES",),
    "communication.commands.messages:finish": ("FINISH_MESSAGE",),
    "communication.commands.devices:register_device": ("REGISTER_DEVICE",
                                                       "REGISTER_DEVICE_AGAIN"),
    "communication.commands.devices:remove_device": ("REMOVE_DEVICE",),
    "communication.commands.devices:retire": ("RETIRE_DEVICE",),
    "communication.commands.suppressions:add_suppression": ("ADD_SUPPRESSION",
                                                            "ADD_SUPPRESSION_EXISTING"),
    "communication.commands.suppressions:remove_suppression": ("REMOVE_SUPPRESSION",),
    "communication.commands.suppressions:suppress": ("SUPPRESS", "UNSUBSCRIBE"),
    "communication.commands.templates:put_template": ("PUT_TEMPLATE",),
    "communication.commands.templates:delete_template": ("DELETE_TEMPLATE",),
    "communication.commands.templates:render_for_send": ("RENDER_FOR_SEND",),
    "communication.commands.retention:prune_bodies": ("PRUNE_BODIES",),
    "notifications.commands.retention:prune_texts": ("PRUNE_NOTIFICATION_TEXTS",),
    "notifications.commands.consume:process_clinic": ("CONSUME_BOOKING",),
    "communication.commands.config:put_config": ("PUT_COMMUNICATION_CONFIG",),
    "communication.commands.config:send_test": ("SEND_TEST_MESSAGE",),
    "communication.commands.delivery_status:report_status": ("REPORT_STATUS",),
    "communication.commands.delivery_status:record_soft_bounce": ("SOFT_BOUNCE",),
    "inbox.commands:receive": ("RECEIVE_WEBHOOK", "RECEIVE_WEBHOOK_DUPLICATE"),
    "inbox.commands:process": ("PROCESS_WEBHOOK_HARD_BOUNCE", "PROCESS_WEBHOOK_DONE"),
    "notifications.commands.preferences:put_preferences": ("PUT_PREFERENCES",),
    "notifications.commands.inbox:mark_read": ("MARK_READ", "MARK_READ_AGAIN"),
    "notifications.commands.inbox:mark_all_read": ("MARK_ALL_READ",),
    # --- billing: invoices ---
    "billing.commands.invoices:open_invoice": ("OPEN_INVOICE",),
    "billing.commands.invoices:record_payment": ("RECORD_PAYMENT", "RECORD_PAYMENT_REFUSED"),
    "billing.commands.invoices:create_draft": ("CREATE_DRAFT",),
    "billing.commands.invoices:finalize": ("FINALIZE_INVOICE",),
    "billing.commands.invoices:void_invoice": ("VOID_INVOICE",),
    # --- billing: payments ---
    "billing.commands.credentials:put_provider_credentials": ("PUT_PROVIDER_CREDENTIALS",),
    "billing.commands.charges:charge": ("BOOK_CHARGED",),
    "billing.commands.payments:record_desk_payment": ("DESK_PAYMENT",),
    "billing.commands.payments:open_checkout": ("OPEN_CHECKOUT",),
    "billing.commands.payments:settle": ("SETTLE_SUCCEEDED", "SETTLE_AGAIN"),
    "billing.commands.reconcile:reconcile": ("RECONCILE_NOTHING_DUE",),
}

#: Public async functions of the commands modules that are not commands of their own, and why.
NOT_COMMANDS: dict[str, str] = {
    # parts of every command, run inside its transaction and counted in its pin
    "audit.commands:record": "the command's audit row (appended by the journal at COMMIT)",
    "events.commands:record": "notes an event in the transaction's journal; no SQL of its own",
    "events.commands:record_many": "as record, for several events",
    "queueing.commands:record_queue_events": "the queue's events, in every queue command",
    "queueing.commands:open_queue": "finds or creates the queue inside check_in and transfer",
    "scheduling.commands.booking:lock_doctor": "the doctor's lock inside book and reschedule",
    "scheduling.commands.transitions:apply_transition":
        "the move inside transition, check_in, consult and mark_paid",
    # helpers
    "identity.commands:check_password": "validates a password; no SQL",
    # reads: they write nothing
    "queueing.commands:location_code": "read: a location's check-in code",
    "queueing.commands:appointment_code": "read: an appointment's check-in code",
    "communication.commands.templates:load_templates": "read: a batch's clinic templates",
    "notifications.commands.consume:pending": "read: the clinics whose log is ahead of its cursor",
    # --- billing: invoices ---
    "billing.commands.invoices:void_expired": "expire_unpaid's handler, counted in EXPIRE_UNPAID",
    # --- billing: payments ---
    "billing.commands.payments:events_record": "notes a payment event in the journal; no SQL",
    "billing.commands.credentials:provider_credentials": "read: the masked credentials",
}


def _public_commands() -> set[str]:
    """Every public async function at the top of domain/*/commands.py and
    domain/*/commands/*.py, as `context.module:function`."""
    root = Path(__file__).resolve().parent.parent
    paths = [*root.glob("domain/*/commands.py"), *root.glob("domain/*/commands/*.py")]
    found: set[str] = set()
    for path in paths:
        module = ".".join(path.relative_to(root / "domain").with_suffix("").parts)
        found.update(f"{module}:{node.name}" for node in ast.parse(path.read_text()).body
                     if isinstance(node, ast.AsyncFunctionDef) and not node.name.startswith("_"))
    return found


def _pins_used() -> set[str]:
    """The names passed to `pinned(...)` in this file's tests."""
    tree = ast.parse(Path(__file__).read_text())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "pinned" and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)}


def test_every_write_command_is_pinned() -> None:
    """A new command without a pin (or a pin without its test) fails here."""
    found = _public_commands()
    assert "scheduling.commands.booking:book" in found  # the walk sees the commands package
    unpinned = sorted(found - COMMANDS.keys() - NOT_COMMANDS.keys())
    assert not unpinned, f"write commands with no pinned statement count: {unpinned}"
    gone = sorted((COMMANDS.keys() | NOT_COMMANDS.keys()) - found)
    assert not gone, f"listed here but no longer in domain/: {gone}"
    assert not COMMANDS.keys() & NOT_COMMANDS.keys()
    named = [pin for pins in COMMANDS.values() for pin in pins]
    assert len(named) == len(set(named)), "a pin belongs to one command"
    untested = sorted(set(named) - _pins_used())
    assert not untested, f"pins no test counts: {untested}"
    unnumbered = sorted(p for p in named if not isinstance(globals().get(p), int))
    assert not unnumbered, f"pins without a pinned number: {unnumbered}"
    strays = sorted(_pins_used() - set(named))
    assert not strays, f"pins not listed under their command in COMMANDS: {strays}"


# the pinned counts ---------------------------------------------------------------------------

BOOK_ONE = 14  # before: 29; +1: billing reads the patient's live plans (coverage.cover)
BOOK_SERIES_4 = 14  # before: 56; +1: as BOOK_ONE
BOOK_PATIENT = 16  # staff's 14, plus the patient's turn and their upcoming count
FOLLOW_UP = 16  # the parent (read outside, with its reset), then a booking's 14
BOARD_TOKEN = 10  # queue and clinic read outside a transaction; the audit row in its own
BOOK_CONFLICT = 9  # before: 27
CONFIRM = 11  # before: 16
CANCEL = 14  # before: 17; +1 coverage.give_back's claim lookup, +1 refunds' paid lookup
START = 17  # a queued appointment's: the handler moves its entry and tells the queue
COMPLETE = 16
NO_SHOW = 16
MARK_PAID = 8
EXPIRE_UNPAID = 9  # before: 11 with two rows due, 2 more per row (each read back, its
#                   transition row apart); now one statement moves and notes them all;
#                   + 1: billing voids their unpaid invoices (one UPDATE however many);
#                   + 1: video ends their calls (one UPDATE however many video visits)
RESCHEDULE = 14  # before: 18
PUT_SCHEDULE = 16
TIME_OFF = 14
HOLIDAY = 9  # the clinic read outside the transaction (+ its reset); no event
CHECK_IN = 20  # before: 22
CALL_NEXT = 18
SKIP = 21
PRIORITY = 19
REQUEUE = 20
CONSULT_START = 24  # before: 25
CONSULT_COMPLETE = 22  # before: 24
TRANSFER = 26
CANCEL_QUEUED = 19  # the queue handler path; +2 as CANCEL
PAUSE = 13
RESUME = 13  # was pinned as PAUSE (it counted the resume)
ADD_MEMBER = 13  # before: 14 (the membership read back after its INSERT)
INVITE = 13
CREATE_LOCATION = 11
CREATE_CLINIC = 10
UPDATE_CLINIC = 11
REGISTER_PATIENT = 12
REVOKE_INVITATION = 11
ACCEPT_INVITATION = 12  # before: 13 (the membership read back after its INSERT)
DECLINE_INVITATION = 8  # no event
UPDATE_MEMBER = 13  # before: 14 (the member read again after its UPDATE)
REMOVE_MEMBER = 12
CREATE_USER = 2  # joins the caller's transaction; alone: the INSERT and the reset
ENQUEUE_MANY = 4  # one statement for those to an address, one for push, whatever their number;
#   each with its pool reset (outside a transaction)
CONSUME_BOOKING = 22  # cursor, events, clinic; in a savepoint: the appointments, people,
#   preferences, places and templates of the whole batch once, its reminders planned (2), the
#   messages (one statement per address or push), the inbox rows (one); the cursor moved
PRUNE_NOTIFICATION_TEXTS = 2  # as PRUNE_BODIES: one UPDATE and its reset
LOGIN = 10  # the user read outside the transaction (the password check must not hold one)
LOGIN_WRONG_PASSWORD = 8  # the failure's audit row in a transaction of its own
REFRESH = 8
REFRESH_REUSED = 13  # three connections: the refused rotation, the spent token's lookup,
#                      the revocation
LOGOUT = 7
REVOKE_SESSION = 2
ENSURE_SUPER_ADMIN = 7
SCHEDULE_JOB = 2  # a job not yet due (one due now also sends the NOTIFY)
CLAIM_DUE = 2  # the due jobs and when the next one is, in one statement
CLAIM_ONCE = 2
BURY = 2
SCHEDULE_MANY = 2  # one INSERT for them all (its NOTIFY rides it when one is due soon)
UNSCHEDULE = 2  # one DELETE, by the pending-key index
ENQUEUE_MESSAGE = 2  # one statement (insert and NOTIFY) and the pool's reset; in a caller's
#                     transaction, the statement alone
CLAIM_MESSAGES = 2  # a batch and all a send needs in one statement, and the reset
FINISH_MESSAGE = 2  # a batch of rounds, each status and every attempt, in one statement, and
#                    the reset
REGISTER_DEVICE = 9  # the user's turn, the cap's count, the upsert, the audit row (3), ...
REGISTER_DEVICE_AGAIN = 9  # the same statements: the upsert finds the row
REMOVE_DEVICE = 7  # the UPDATE (owner in its WHERE) and the audit row
RETIRE_DEVICE = 2  # the pipeline's: one UPDATE, no transaction, no audit
ADD_SUPPRESSION = 7  # a clinic admin: the insert (the clinic is theirs) and the audit row
ADD_SUPPRESSION_EXISTING = 5  # the insert finds it, one read of the entry, nothing audited
REMOVE_SUPPRESSION = 7  # the DELETE and the audit row
SUPPRESS = 2  # webhooks and the pipeline: one INSERT ... ON CONFLICT DO NOTHING
UNSUBSCRIBE = 2  # a one-click unsubscribe: the token is checked in memory, then SUPPRESS's one
PUT_TEMPLATE = 7  # a clinic admin: the upsert (the clinic is theirs) and the audit row
DELETE_TEMPLATE = 7  # the DELETE and the audit row
RENDER_FOR_SEND = 2  # the clinic's templates of every channel and locale candidate in one
#                     SELECT, and the reset; in notifications' transaction, the SELECT alone
PRUNE_BODIES = 2  # one batch (fewer due than BATCH)
PUT_COMMUNICATION_CONFIG = 12  # one channel and one provider's credentials: the clinic, the
#   clinic's turn, what is stored (masks, chains), the chains' one upsert, the credentials' upsert,
#   the audit rows; the answer is built from those, not read again (+1 per provider given)
SEND_TEST_MESSAGE = 11  # every read in the enqueue's transaction (one connection, one reset)
RECEIVE_WEBHOOK = 6  # the row, its job (and the job's NOTIFY), in one transaction
RECEIVE_WEBHOOK_DUPLICATE = 4  # the INSERT finds the row: no job
PROCESS_WEBHOOK_HARD_BOUNCE = 7  # the guarded mark, the status, the suppression, the result
PROCESS_WEBHOOK_DONE = 4  # the guarded mark finds it processed: nothing else
REPORT_STATUS = 2  # one statement (the forward-only rule in its WHERE) and the reset
SOFT_BOUNCE = 2  # the insert and the count in one statement, and the reset
PUT_PREFERENCES = 7  # the upsert and the audit row (3), in one transaction
MARK_READ = 2  # one UPDATE (the owner in its WHERE), no transaction, no audit, and the reset
MARK_READ_AGAIN = 2  # the same UPDATE finds it read and keeps its time
MARK_ALL_READ = 2  # one UPDATE counted in the same statement, and the reset


# --- billing: plans ---------------------------------------------------------------------------

COMMANDS.update({
    "billing.commands.plans:create_plan": ("CREATE_PLAN",),
    "billing.commands.plans:update_plan": ("UPDATE_PLAN",),
    "billing.commands.subscriptions:subscribe": ("SUBSCRIBE", "SUBSCRIBE_TRIAL"),
    "billing.commands.subscriptions:cancel": ("CANCEL_SUBSCRIPTION",),
    "billing.commands.subscriptions:renew_due": ("RENEW_DUE",),
    "billing.commands.coverage:cover": ("BOOK_COVERED",),
    "billing.commands.coverage:give_back": ("CANCEL_COVERED",),
})
NOT_COMMANDS.update({
    "billing.commands.coverage:covered": "read: whether a plan covers an appointment",
})

# each with BEGIN, COMMIT and the pool's reset; an audit row is 3 (lock, chain head, INSERT),
# events 3 (NOTIFY, the clinic's sequence, the INSERT)
CREATE_PLAN = 8  # the clinic (its currency), the INSERT, the audit row
UPDATE_PLAN = 8  # the plan locked, the UPDATE (the name check in its WHERE), the audit row
SUBSCRIBE = 16  # clinic, plan, patient, the INSERT, the period's invoice (open_invoice: one
#   statement and its PDF job), its id on the subscription, events, audit
SUBSCRIBE_TRIAL = 13  # no invoice
CANCEL_SUBSCRIPTION = 8  # at period end: the subscription locked with its usage, the UPDATE,
#   the audit row (no status change, no event)
RENEW_DUE = 19  # one due: locked with its plan, its invoice's status, the clinic, the new
#   invoice (and its PDF job), the new period, events, audit; then the empty look for the next, in its own
#   transaction (3)
BOOK_COVERED = 18  # BOOK_PATIENT + the claim + the move to scheduled (pending_payment)
CANCEL_COVERED = 16  # CANCEL + the clinic's refund policy + the release; +1 refunds' paid lookup


@pytest.fixture(scope="module")
def planned(api, sa_token, clinic_factory, member_factory, domain_layer) -> dict[str, Any]:
    """A clinic whose in-person visits wait for payment, with plans its patients hold."""
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=6,
                    patient_max_future_appointments=500, payment_required_types=["in_person"])
    c["sa_p"] = domain_layer.principal(sa_token)
    c["desk_p"] = domain_layer.principal(c["desk"]["token"])
    c["loc"] = uuid.UUID(c["locations"][0]["id"])
    c["cid"] = uuid.UUID(c["id"])
    return c


def _plan(c: dict[str, Any], name: str, **kw: Any) -> Command:
    from domain.billing.commands import plans
    from domain.billing.models import Interval

    return lambda: plans.create_plan(c["sa_p"], clinic_id=c["cid"], name=name, price=10000,
                                     interval=Interval.MONTH, quotas={"in_person": 5}, **kw)


def _subscribe(c: dict[str, Any], plan: Any, patient: int) -> Command:
    from domain.billing.commands import subscriptions

    return lambda: subscriptions.subscribe(
        c["desk_p"], clinic_id=c["cid"], plan_id=plan.id,
        patient_id=uuid.UUID(c["patients"][patient]["user_id"]))


def test_plans_and_subscriptions(domain_layer, planned, pinned) -> None:
    from domain import db
    from domain.billing.commands import plans, subscriptions

    c = planned
    result, n, sent = measure(domain_layer, _plan(c, "warm"), _plan(c, "counted"))
    pinned("CREATE_PLAN", n, sent)
    paid = result
    result, n, sent = measure(
        domain_layer, lambda: plans.update_plan(c["sa_p"], paid.id, price=20000),
        lambda: plans.update_plan(c["sa_p"], paid.id, price=30000, name="renamed"))
    assert result.price == 30000
    pinned("UPDATE_PLAN", n, sent)
    result, n, sent = measure(domain_layer, _subscribe(c, paid, 0), _subscribe(c, paid, 1))
    assert result.status == "active"
    pinned("SUBSCRIBE", n, sent)
    trial = domain_layer.run(_plan(c, "trial", trial_days=5)())
    result, n, sent = measure(domain_layer, _subscribe(c, trial, 0), _subscribe(c, trial, 1))
    assert result.status == "trialing"
    pinned("SUBSCRIBE_TRIAL", n, sent)
    a = domain_layer.run(_subscribe(c, trial, 2)())
    b = domain_layer.run(_subscribe(c, trial, 3)())
    result, n, sent = measure(
        domain_layer, lambda: subscriptions.cancel(c["desk_p"], a.id, at_period_end=True),
        lambda: subscriptions.cancel(c["desk_p"], b.id, at_period_end=True))
    assert result.cancel_at_period_end
    pinned("CANCEL_SUBSCRIPTION", n, sent)

    def ended(sub: Any) -> None:
        domain_layer.run(db.fetch(
            "UPDATE billing_subscriptions SET current_period_start = now() - interval '2 days',"
            " current_period_end = now() - interval '1 second' WHERE id = $1", sub.id))

    while domain_layer.run(subscriptions.renew_due()):  # nothing else of the run left due
        pass
    d = domain_layer.run(_subscribe(c, paid, 4)())
    e = domain_layer.run(_subscribe(c, paid, 5)())
    # paid periods renew (an unpaid one fails with fewer statements: no new invoice)
    domain_layer.run(db.fetch("UPDATE billing_invoices SET status = 'paid', amount_paid = total,"
                              " paid_at = now() WHERE subscription_id = ANY($1::uuid[])",
                              [d.id, e.id]))
    ended(d)
    assert domain_layer.run(subscriptions.renew_due()) == 1  # the warm run
    ended(e)
    result, n, sent = measure(domain_layer, _noop, subscriptions.renew_due)
    assert result == 1
    pinned("RENEW_DUE", n, sent)
    pinned.verify()


def test_covered_booking_and_release(domain_layer, planned, pinned) -> None:
    c = planned
    plan = domain_layer.run(_plan(c, "cover", trial_days=30)())
    me = domain_layer.principal(c["patients"][5]["token"])
    domain_layer.run(_subscribe(c, plan, 5)())
    day = fresh_day()

    def mine(start: datetime) -> Command:
        return lambda: scheduling.book(
            me, clinic_id=c["cid"], doctor_id=uuid.UUID(c["doctors"][0]["user_id"]),
            patient_id=me.user_id, appointment_type=AppointmentType.IN_PERSON, start=start,
            location_id=c["loc"])

    result, n, sent = measure(domain_layer, mine(_at(day, 8)), mine(_at(day, 9)))
    assert [a.status for a in result] == ["scheduled"]
    pinned("BOOK_COVERED", n, sent)
    a, b = (domain_layer.run(mine(_at(day, h))())[0] for h in (10, 11))
    result, n, sent = measure(domain_layer, _transition(c, a, "cancel"),
                              _transition(c, b, "cancel"))
    assert result.status == "cancelled"
    pinned("CANCEL_COVERED", n, sent)
    pinned.verify()


# --- billing: invoices ---
OPEN_INVOICE = 11  # inside the caller's transaction (BEGIN/COMMIT/reset here are the test's):
#                  number, invoice and lines in one statement; the PDF job; event + audit at COMMIT
RECORD_PAYMENT = 10  # one guarded UPDATE (lines read in its RETURNING); invoice.paid + audit
RECORD_PAYMENT_REFUSED = 5  # the UPDATE matches nothing; one read says which rule refused
CREATE_DRAFT = 9  # clinic (currency, tax), the patient's membership, the insert; audit, no event
FINALIZE_INVOICE = 13  # the draft locked, the clinic (time zone, due days), number + update in
#                      one statement, the PDF job; event + audit at COMMIT
VOID_INVOICE = 11  # the invoice locked (tenancy and the refusals), the guarded UPDATE
# --- billing: refunds --------------------------------------------------------------------------
# Payments come from rows (tests/billing/payment_rows.py): this clinic takes no payments.

def _in_tx(command: Command) -> Command:
    async def run() -> Any:
        from domain import db as domain_db

        async with domain_db.transaction():
            return await command()
    return run


def test_refund_commands(domain_layer, house, db, env, pinned) -> None:
    from domain.billing.commands import refunds
    from domain.errors import Unavailable
    from tests.billing.payment_rows import paid
    from tests.tenancy.test_credentials import keys_in_process

    sa, cid = house["sa_p"], house["id"]
    patient = house["patients"][0]["user_id"]

    def pay(provider: str = "cash") -> uuid.UUID:
        return uuid.UUID(paid(db, cid, patient, 10_000, provider=provider))

    def give(payment: uuid.UUID, amount: int | None = 100) -> Command:
        return lambda: refunds.refund(sa, payment, amount=amount, reason="counted")

    result, n, sent = measure(domain_layer, give(pay()), give(pay()))
    assert result.status == "succeeded"
    pinned("REFUND_DESK", n, sent)
    with keys_in_process(env["CAREWIRE_CREDENTIALS_KEY"]):
        online = [pay("stripe") for _ in range(2)]
        result, n, sent = measure(domain_layer, give(online[0]), give(online[1]))
        assert result.status == "pending"  # no credentials stored: the provider is not reached
        pinned("REFUND_UNREACHABLE", n, sent)
        send = lambda r: (lambda: refunds.send_refund(r.id))  # noqa: E731
        pending = [domain_layer.run(give(p)()) for p in online]
        _, n, sent = measure(domain_layer, send(pending[0]), send(pending[1]),
                             refused=Unavailable)
        pinned("SEND_REFUND_UNREACHABLE", n, sent)

    def fact(payment: uuid.UUID, rid: str) -> Command:
        return _in_tx(lambda: refunds.apply_refund_fact(payment, rid, "succeeded", 100))

    result, n, sent = measure(domain_layer, fact(online[0], "re_a"), fact(online[1], "re_b"))
    assert result is not None and result.status == "succeeded"
    pinned("REFUND_FACT", n, sent)
    result, n, sent = measure(domain_layer, fact(online[0], "re_a"), fact(online[1], "re_b"))
    assert result is None
    pinned("REFUND_FACT_AGAIN", n, sent)

    plan = lambda p: _in_tx(lambda: refunds.schedule_automatic_refund(p, reason="counted"))  # noqa: E731
    result, n, sent = measure(domain_layer, plan(pay()), plan(pay()))
    assert result is True
    pinned("SCHEDULE_AUTOMATIC_REFUND", n, sent)
    auto = lambda p: (lambda: refunds.refund_automatically(p, "counted"))  # noqa: E731
    result, n, sent = measure(domain_layer, auto(pay()), auto(pay()))
    assert result is not None and result.automatic and result.amount == 10_000
    pinned("REFUND_AUTOMATICALLY", n, sent)
    pinned.verify()


def test_cancel_of_a_paid_visit_inside_the_policy(domain_layer, house, db, pinned) -> None:
    """The transition's billing handler: the paid lookup, the clinic's policy, the job."""
    from tests.billing.payment_rows import paid

    day = fresh_day()
    a, b = (domain_layer.run(_book(house, _at(day, h, 30))())[0] for h in (10, 11))
    for appointment in (a, b):
        paid(db, house["id"], str(appointment.patient_id), 500, appointment_id=str(appointment.id))
    result, n, sent = measure(domain_layer, _transition(house, a, "cancel"),
                              _transition(house, b, "cancel"))
    assert result.status == "cancelled"
    assert db.fetch("SELECT 1 FROM scheduled_jobs WHERE task = 'billing.refunds.automatic' "
                    "AND payload->>'payment_id' IN (SELECT p.id::text FROM billing_payments p "
                    "JOIN billing_invoices i ON i.id = p.invoice_id "
                    "WHERE i.appointment_id = $1)", b.id)
    pinned("CANCEL_PAID", n, sent)
    pinned.verify()


COMMANDS["scheduling.commands.transitions:transition"] += ("CANCEL_PAID",)
COMMANDS.update({
    "billing.commands.refunds:refund": ("REFUND_DESK", "REFUND_UNREACHABLE"),
    "billing.commands.refunds:send_refund": ("SEND_REFUND_UNREACHABLE",),
    "billing.commands.refunds:apply_refund_fact": ("REFUND_FACT", "REFUND_FACT_AGAIN"),
    "billing.commands.refunds:schedule_automatic_refund": ("SCHEDULE_AUTOMATIC_REFUND",),
    "billing.commands.refunds:refund_automatically": ("REFUND_AUTOMATICALLY",),
})

REFUND_DESK = 11  # the payment locked, the reservation and the refund row in one statement,
#                  the audit row (3), the event (2 with its NOTIFY)
REFUND_UNREACHABLE = 14  # the desk's 11 and the send job planned; after COMMIT, the
#                         credentials read (and its reset): none stored, the refund stays pending
SEND_REFUND_UNREACHABLE = 4  # the refund with its payment, the credentials (each with a reset)
REFUND_FACT = 12  # the payment locked, the refund found, settled in one statement, audit, event
REFUND_FACT_AGAIN = 5  # the same fact: found settled, nothing else
SCHEDULE_AUTOMATIC_REFUND = 5  # the job (due now: its NOTIFY), in the caller's transaction
REFUND_AUTOMATICALLY = 11  # REFUND_DESK's, as the system
CANCEL_PAID = 17  # CANCEL's, the policy, the automatic refund job (+NOTIFY); +1 coverage's claim


# --- video: sessions ----------------------------------------------------------------------------
# The shared server's settings (Jitsi only: no OpenVidu) hold in process too, so sessions start on
# Jitsi here and no provider is called; `test_video_session_commands_on_openvidu` points the
# in-process settings at an OpenVidu fake of its own for the create and join that call it.

@pytest.fixture(scope="module")
def video_house(env, api, sa_token, clinic_factory, member_factory,
                domain_layer) -> Iterator[dict[str, Any]]:
    """A clinic whose join window opens 4 hours ahead: "now" bookings one after the other; the
    in-process settings hold the run's credentials key and the shared server's Jitsi."""
    from tests.communication.test_email_providers import settings_env

    with settings_env(**{k: v for k, v in env.items()
                         if k == "CAREWIRE_CREDENTIALS_KEY" or k.startswith("CAREWIRE_JITSI_")}):
        yield _video_clinic(api, sa_token, clinic_factory, member_factory, domain_layer)


def _video_clinic(api, sa_token, clinic_factory, member_factory, domain_layer) -> dict[str, Any]:
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=2,
                    patient_max_future_appointments=500,
                    video={"join_opens_minutes": 240, "join_closes_minutes": 30})
    c["desk_p"] = domain_layer.principal(c["desk"]["token"])
    c["doctor_p"] = domain_layer.principal(c["doctors"][0]["token"])
    c["patient_p"] = domain_layer.principal(c["patients"][0]["token"])
    c["cid"], c["loc"] = uuid.UUID(c["id"]), uuid.UUID(c["locations"][0]["id"])
    c["next"] = iter(range(1, 40))
    return c


def _video_now(layer: Any, c: dict[str, Any]) -> Any:
    """A video appointment starting within minutes (the desk overrides the doctor's hours)."""
    start = datetime.now(TZ).replace(second=0, microsecond=0) + timedelta(minutes=5 * next(c["next"]))
    return layer.run(scheduling.book(
        c["desk_p"], clinic_id=c["cid"], doctor_id=uuid.UUID(c["doctors"][0]["user_id"]),
        patient_id=uuid.UUID(c["patients"][0]["user_id"]), appointment_type=AppointmentType.VIDEO,
        start=start, duration_minutes=5, location_id=c["loc"], override_reason="counted"))[0]


def test_video_session_commands(domain_layer, video_house, db, pinned) -> None:
    from domain.video.commands import consultation, joins, sessions

    c, layer = video_house, domain_layer
    a, b = _video_now(layer, c), _video_now(layer, c)
    create = lambda x: (lambda: sessions.create_session(c["doctor_p"], x.id))  # noqa: E731
    result, n, sent = measure(layer, create(a), create(b))
    assert result.provider == "jitsi" and result.room_ready_at is not None
    pinned("CREATE_SESSION", n, sent)
    result, n, sent = measure(layer, create(a), create(b))
    pinned("CREATE_SESSION_EXISTING", n, sent)
    sa, sb = (layer.run(sessions.create_session(c["doctor_p"], x.id)) for x in (a, b))
    ready = lambda s: (lambda: sessions.ready_room(c["doctor_p"], s))  # noqa: E731
    result, n, sent = measure(layer, ready(sa), ready(sb))
    pinned("READY_ROOM_JITSI", n, sent)

    token = lambda who, s: (lambda: joins.session_token(c[who], s.id))  # noqa: E731
    result, n, sent = measure(layer, token("doctor_p", sa), token("doctor_p", sb))
    assert result.role == "doctor" and result.provider == "jitsi"
    pinned("SESSION_TOKEN", n, sent)
    result, n, sent = measure(layer, token("patient_p", sa), token("patient_p", sb))
    assert result.role == "patient" and result.admitted is False
    pinned("SESSION_TOKEN_PATIENT_WAITS", n, sent)

    admit = lambda s: (lambda: consultation.admit(c["doctor_p"], s.id))  # noqa: E731
    result, n, sent = measure(layer, admit(sa), admit(sb))
    assert result.status == "live"
    pinned("ADMIT", n, sent)
    end = lambda s: (lambda: consultation.end_session(c["doctor_p"], s.id))  # noqa: E731
    result, n, sent = measure(layer, end(sa), end(sb))
    assert result.status == "ended" and result.duration_seconds is not None
    pinned("END_SESSION", n, sent)
    result, n, sent = measure(layer, end(sa), end(sb))
    assert isinstance(result, Conflict)
    pinned("END_SESSION_AGAIN", n, sent)
    pinned.verify()


def test_video_session_commands_on_openvidu(domain_layer, video_house, pinned) -> None:
    from domain.video.commands import joins, sessions
    from tests.communication.test_email_providers import settings_env
    from tests.video.fakes.livekit import LiveKitFake

    c, layer = video_house, domain_layer
    fake = LiveKitFake().start()
    try:
        with settings_env(**fake.env()):
            a, b = _video_now(layer, c), _video_now(layer, c)
            create = lambda x: (lambda: sessions.create_session(c["doctor_p"], x.id))  # noqa: E731
            result, n, sent = measure(layer, create(a), create(b))
            assert result.provider == "openvidu" and result.room_ready_at is not None
            assert result.room in fake.rooms
            pinned("CREATE_SESSION_OPENVIDU", n, sent)
            sa, sb = (layer.run(sessions.create_session(c["doctor_p"], x.id)) for x in (a, b))
            token = lambda s: (lambda: joins.session_token(c["doctor_p"], s.id))  # noqa: E731
            result, n, sent = measure(layer, token(sa), token(sb))
            assert result.provider == "openvidu" and result.server_url == fake.url
            pinned("SESSION_TOKEN_OPENVIDU", n, sent)
    finally:
        fake.stop()
    pinned.verify()


def test_video_switch_and_cancel(domain_layer, video_house, db, pinned) -> None:
    from domain.video.commands import sessions
    from domain.video.queries import load_session

    c, layer = video_house, domain_layer
    made = [layer.run(sessions.create_session(c["doctor_p"], _video_now(layer, c).id))
            for _ in range(4)]
    for s in made:  # as if OpenVidu had been the first choice and its room not opened yet
        db.fetch("UPDATE video_sessions SET provider = 'openvidu', room_ready_at = NULL "
                 "WHERE id = $1", s.id)
    switch = lambda s: (lambda: sessions.switch_to_jitsi(None, s, "counted"))  # noqa: E731
    reread = [layer.run(load_session(s.id)) for s in made]
    result, n, sent = measure(layer, switch(reread[0]), switch(reread[1]))
    assert (result.provider, result.switched_from) == ("jitsi", "openvidu")
    pinned("SWITCH_TO_JITSI", n, sent)
    result, n, sent = measure(layer, switch(reread[0]), switch(reread[1]))  # once only
    pinned("SWITCH_TO_JITSI_AGAIN", n, sent)
    cancel = lambda s: (lambda: scheduling.transition(c["desk_p"], s.appointment_id, "cancel"))  # noqa: E731
    result, n, sent = measure(layer, cancel(made[2]), cancel(made[3]))
    assert result.status == "cancelled"
    assert layer.run(load_session(made[3].id)).status == "ended"
    pinned("CANCEL_VIDEO", n, sent)
    pinned.verify()


COMMANDS["scheduling.commands.transitions:transition"] += ("CANCEL_VIDEO",)
COMMANDS.update({
    "video.commands.sessions:create_session": ("CREATE_SESSION", "CREATE_SESSION_OPENVIDU"),
    "video.commands.sessions:ensure_session": ("CREATE_SESSION_EXISTING",),
    "video.commands.sessions:ready_room": ("READY_ROOM_JITSI",),
    "video.commands.sessions:switch_to_jitsi": ("SWITCH_TO_JITSI", "SWITCH_TO_JITSI_AGAIN"),
    "video.commands.joins:session_token": ("SESSION_TOKEN", "SESSION_TOKEN_PATIENT_WAITS",
                                           "SESSION_TOKEN_OPENVIDU"),
    "video.commands.consultation:admit": ("ADMIT",),
    "video.commands.consultation:end_session": ("END_SESSION", "END_SESSION_AGAIN"),
})
NOT_COMMANDS.update({
    "video.commands.sessions:tell": "notes a video event in the journal; no SQL",
})

CREATE_SESSION = 13  # the appointment locked, the provider choice (failover.first_choice: two
#   credentials reads), the INSERT ... ON CONFLICT, audit (3), event (3); Jitsi: no provider call
CREATE_SESSION_OPENVIDU = 16  # CREATE_SESSION's with one credentials read (OpenVidu is the
#   first choice), then after COMMIT the room opened: its credentials (+ reset), no SQL for the
#   breaker (Redis), the room_ready_at UPDATE (+ reset)
SESSION_TOKEN_OPENVIDU = 16  # the reads in one transaction, the room opened between (its
#   credentials), the ticket's credentials and the audit row in a second transaction
CREATE_SESSION_EXISTING = 8  # the INSERT finds the live one: one read of it, nothing written
READY_ROOM_JITSI = 0  # a Jitsi room exists on first join: nothing to do
SESSION_TOKEN = 11  # one transaction: the session, its appointment, the clinic (join window),
#   the caller's name, the provider's credentials, the audit row (3)
SESSION_TOKEN_PATIENT_WAITS = 15  # SESSION_TOKEN's and the guarded wait UPDATE, the event (3)
ADMIT = 30  # the session and its appointment (locked), queueing's check-in (its 13 statements:
#   the appointment again, the clinic, the queue, the entry, the queue's events), the move to
#   in_progress (queueing's handler stamps the entry, 7), the guarded UPDATE, audit, event
END_SESSION = 22  # the session, its appointment (locked), the guarded UPDATE with the duration,
#   completed (queueing's handler finishes the entry, 5), audit, event; after COMMIT the
#   room's close (Jitsi: the credentials read, no call) and, before it, its running recordings
#   looked up to stop (+2; none here)
END_SESSION_AGAIN = 6  # the guarded UPDATE finds it ended: 409
SWITCH_TO_JITSI = 10  # one guarded UPDATE, audit (3), event (3)
SWITCH_TO_JITSI_AGAIN = 5  # the guard finds it switched: the session read back
CANCEL_VIDEO = 15  # CANCEL's 14 and one UPDATE ending the appointment's live session (+ event)


# --- video: providers ---

def test_video_provider_credentials(env, clinic_factory, member_factory, domain_layer,
                                    pinned) -> None:
    """A clinic's own OpenVidu stored (validated before any SQL, then tenancy's upsert)."""
    from domain.video.commands import credentials
    from tests.communication.test_email_providers import settings_env

    clinic = clinic_factory()
    admin = domain_layer.principal(member_factory(clinic["id"], "CLINIC_ADMIN", tag="vcred")["token"])
    cid = uuid.UUID(clinic["id"])
    fields = {"url": "https://openvidu.example.org", "api_key": "counted-key",
              "api_secret": "counted-secret-" + "s" * 20}
    with settings_env(CAREWIRE_CREDENTIALS_KEY=env["CAREWIRE_CREDENTIALS_KEY"]):
        result, n, sent = measure(
            domain_layer,
            lambda: credentials.put_provider_credentials(admin, cid, "openvidu", fields),
            lambda: credentials.put_provider_credentials(admin, cid, "openvidu", fields))
    assert result["api_secret"] == "****" + fields["api_secret"][-4:]
    pinned("PUT_VIDEO_CREDENTIALS", n, sent)
    pinned.verify()


PUT_VIDEO_CREDENTIALS = 7  # tenancy's put_credentials (the upsert and its audit row), as billing's
COMMANDS["video.commands.credentials:put_provider_credentials"] = ("PUT_VIDEO_CREDENTIALS",)
NOT_COMMANDS["video.commands.credentials:provider_credentials"] = "read: the masked credentials"


# --- video: webhooks and recording --------------------------------------------------------------
# A clinic that records, with its own OpenVidu (a local LiveKit fake: rooms and egress answer, the
# egress writes nowhere) and, in process, a recording bucket and AWS credentials (presigning is
# local). Numbers first ran here; each is BEGIN/COMMIT and the pool's reset per transaction.

@pytest.fixture(scope="module")
def recording_house(env, api, sa_token, clinic_factory, member_factory,
                    domain_layer) -> Iterator[tuple[dict[str, Any], Any]]:
    from domain.video.commands.credentials import put_provider_credentials
    from tests.communication.test_email_providers import settings_env
    from tests.video.fakes.livekit import LiveKitFake

    fake = LiveKitFake().start()
    keep = {k: v for k, v in env.items()
            if k == "CAREWIRE_CREDENTIALS_KEY" or k.startswith("CAREWIRE_JITSI_")}
    try:
        with settings_env(**keep, CAREWIRE_RECORDING_BUCKET="counted-recordings",
                          CAREWIRE_VIDEO_URL_PATTERN=r"^http://127\.0\.0\.1:\d+$",
                          AWS_ACCESS_KEY_ID="AKIACOUNTED", AWS_SECRET_ACCESS_KEY="counted",
                          AWS_DEFAULT_REGION="us-east-1"):
            c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1,
                            patient_max_future_appointments=500,
                            video={"join_opens_minutes": 240, "join_closes_minutes": 30,
                                   "recording_enabled": True})
            c["desk_p"] = domain_layer.principal(c["desk"]["token"])
            c["doctor_p"] = domain_layer.principal(c["doctors"][0]["token"])
            c["patient_p"] = domain_layer.principal(c["patients"][0]["token"])
            c["cid"], c["loc"] = uuid.UUID(c["id"]), uuid.UUID(c["locations"][0]["id"])
            c["next"] = iter(range(1, 40))
            domain_layer.run(put_provider_credentials(domain_layer.principal(sa_token), c["cid"],
                                                      "openvidu", fake.credentials()))
            yield c, fake
    finally:
        fake.stop()


def test_recording_commands(domain_layer, recording_house, db, pinned) -> None:
    from domain.video.commands import recordings, sessions
    from domain.video.models import RecordingStatus
    from tests.video.rows import recording_row

    (c, fake), layer = recording_house, domain_layer
    made = [layer.run(sessions.create_session(c["doctor_p"], _video_now(layer, c).id))
            for _ in range(4)]
    assert {s.provider for s in made} == {"openvidu"} and all(s.room in fake.rooms for s in made)
    consent = lambda s: (lambda: recordings.record_consent(c["patient_p"], s.id))  # noqa: E731
    result, n, sent = measure(layer, consent(made[0]), consent(made[1]))
    assert result.recording_consent_at is not None
    pinned("RECORD_CONSENT", n, sent)
    result, n, sent = measure(layer, consent(made[0]), consent(made[1]))
    pinned("RECORD_CONSENT_AGAIN", n, sent)
    for s in made[2:]:
        layer.run(recordings.record_consent(c["patient_p"], s.id))

    start = lambda s: (lambda: recordings.start_recording(c["doctor_p"], s.id))  # noqa: E731
    result, n, sent = measure(layer, start(made[0]), start(made[1]))
    assert result.status is RecordingStatus.STARTING
    pinned("START_RECORDING", n, sent)
    result, n, sent = measure(layer, start(made[0]), start(made[1]))  # one runs: refused
    assert isinstance(result, Conflict)
    pinned("START_RECORDING_RUNNING", n, sent)

    running = {r["session_id"]: r for r in db.fetch(
        "SELECT * FROM video_recordings WHERE session_id = ANY($1::uuid[])",
        [s.id for s in made[:2]])}
    first, second = (running[s.id] for s in made[:2])
    egress = lambda r, status: _in_tx(lambda: recordings.advance(  # noqa: E731
        r, status, egress_id=r["egress_id"], size_bytes=10))
    result, n, sent = measure(layer, egress(first, RecordingStatus.ACTIVE),
                              egress(second, RecordingStatus.ACTIVE))
    assert result.status is RecordingStatus.ACTIVE
    pinned("ADVANCE_RECORDING", n, sent)
    stop = lambda r: (lambda: recordings.stop_recording(c["doctor_p"], r["id"]))  # noqa: E731
    result, n, sent = measure(layer, stop(first), stop(second))
    assert result.status is RecordingStatus.ENDING
    pinned("STOP_RECORDING", n, sent)
    layer.run(recordings.start_recording(c["doctor_p"], made[2].id))
    layer.run(recordings.start_recording(c["doctor_p"], made[3].id))
    stop_all = lambda s: (lambda: recordings.stop_running(s.id))  # noqa: E731
    result, n, sent = measure(layer, stop_all(made[2]), stop_all(made[3]))
    assert fake.egress and db.fetch("SELECT status FROM video_recordings WHERE session_id = $1",
                                    made[3].id)[0]["status"] == "ending"
    pinned("STOP_RUNNING", n, sent)

    listing = lambda s: (lambda: recordings.list_recordings(  # noqa: E731
        c["doctor_p"], s.appointment_id))
    result, n, sent = measure(layer, listing(made[0]), listing(made[1]))
    assert [r.status for r in result] == [RecordingStatus.ENDING]
    pinned("LIST_RECORDINGS", n, sent)
    done = [recording_row(db, str(s.id), status="complete") for s in made[:2]]
    link = lambda r: (lambda: recordings.recording_link(c["doctor_p"], uuid.UUID(r)))  # noqa: E731
    result, n, sent = measure(layer, link(done[0]), link(done[1]))
    assert "counted-recordings" in result.url
    pinned("RECORDING_LINK", n, sent)
    pinned.verify()


COMMANDS.update({
    "video.commands.recordings:record_consent": ("RECORD_CONSENT", "RECORD_CONSENT_AGAIN"),
    "video.commands.recordings:start_recording": ("START_RECORDING", "START_RECORDING_RUNNING"),
    "video.commands.recordings:advance": ("ADVANCE_RECORDING",),
    "video.commands.recordings:stop_recording": ("STOP_RECORDING",),
    "video.commands.recordings:stop_running": ("STOP_RUNNING",),
    "video.commands.recordings:list_recordings": ("LIST_RECORDINGS",),
    "video.commands.recordings:recording_link": ("RECORDING_LINK",),
})

RECORD_CONSENT = 14  # the session and its appointment read outside (each with a reset); the
#   guarded UPDATE, audit (3), event (3)
RECORD_CONSENT_AGAIN = 4  # the two reads: consent already there, nothing written
START_RECORDING = 20  # session, appointment, clinic (its switch) outside; the INSERT with its
#   audit row; after COMMIT the provider's credentials, the egress call (no SQL), the row locked
#   and moved in a second transaction (no event: still starting)
START_RECORDING_RUNNING = 10  # the three reads, the INSERT refused by the running index
ADVANCE_RECORDING = 8  # the UPDATE, the session (for the event), the event (3), in the caller's
#   transaction
STOP_RECORDING = 18  # the recording, session, appointment outside; the credentials; the stop
#   call; the row locked, stopped_by, the audit row (3), the guarded UPDATE
STOP_RUNNING = 10  # the running rows, the credentials, the stop call, the row locked and moved
LIST_RECORDINGS = 10  # the appointment, the rows (each with a reset), the audit row alone (its
#   own transaction: 5 with BEGIN/COMMIT/reset)
RECORDING_LINK = 10  # the recording, its appointment, the link signed locally, the audit row
