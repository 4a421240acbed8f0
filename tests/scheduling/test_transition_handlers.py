"""Scheduling owns the appointment transition; other contexts react through handlers that run
in its transaction (in process, against the real database)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from domain import db
from domain.queueing import commands as queueing
from domain.scheduling import commands as scheduling
from domain.scheduling.commands import transitions
from domain.scheduling.models import Appointment, AppointmentType
from tests.queue_fixtures import TZ, fresh_day, make_clinic


class Refused(Exception):
    pass


def _booked(layer: Any, c: dict[str, Any], desk: Any, hour: int) -> Appointment:
    day = fresh_day()
    return layer.run(scheduling.book(
        desk, clinic_id=uuid.UUID(c["id"]), doctor_id=uuid.UUID(c["doctors"][0]["user_id"]),
        patient_id=uuid.UUID(c["patients"][0]["user_id"]),
        appointment_type=AppointmentType.IN_PERSON,
        start=datetime(day.year, day.month, day.day, hour, tzinfo=TZ), duration_minutes=15,
        location_id=uuid.UUID(c["locations"][0]["id"])))[0]


def test_queueing_reacts_through_its_registered_handler() -> None:
    assert queueing._follow_appointment in transitions._HANDLERS


def test_a_failing_handler_rolls_the_transition_back(api, sa_token, clinic_factory,
                                                      member_factory, domain_layer) -> None:
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1)
    desk = domain_layer.principal(c["desk"]["token"])
    appointment = _booked(domain_layer, c, desk, 10)
    seen: list[tuple[str, str]] = []

    async def refuse(actor: Any, before: Appointment, after: Appointment) -> None:
        seen.append((before.status.value, after.status.value))
        raise Refused

    transitions.on_transition(refuse)
    try:
        outcome, _ = domain_layer.count(scheduling.transition(desk, appointment.id, "confirm"))
    finally:
        transitions._HANDLERS.remove(refuse)
    assert isinstance(outcome, Refused)
    assert seen == [("scheduled", "confirmed")]  # it saw the change, inside the transaction
    rows = domain_layer.run(db.fetch(
        """SELECT a.status, (SELECT count(*) FROM appointment_transitions t
                             WHERE t.appointment_id = a.id) AS moves
           FROM appointments a WHERE a.id = $1""", appointment.id))
    assert rows == [{"status": "scheduled", "moves": 1}]  # nothing of the confirm committed
    confirmed = domain_layer.run(scheduling.transition(desk, appointment.id, "confirm"))
    assert confirmed.status == "confirmed"
