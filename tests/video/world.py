"""A clinic for the video suites, its people, and helpers that book video appointments at times
relative to now (so the join window can be tested) and drive sessions over HTTP.

Setup goes through the shared server (`clinic_factory`, `member_factory`: the same database);
the video calls go to `vapi`, the server in front of the OpenVidu fake. Bookings never land in
the past, so an appointment that is already over is booked ahead and then moved back in the
database (`past=True`): the one state no API can make without waiting."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Api, Db
from tests.queue_fixtures import ALL_DAY

#: The world's join window: wide at the start, so every "now" booking of a doctor (one after
#: the other) is inside it; the default 30 minutes after the end.
OPENS, CLOSES = 240, 30
#: The length of every booking (the scheduling minimum: many fit in the window).
MINUTES = 5
FEES = {"video": 50_000, "in_person": 30_000}


class Clinic:
    """One clinic's people (each with `token`, `user_id`) and a booking clock per doctor."""

    def __init__(self, api: Api, vapi: Api, db: Db, data: dict[str, Any]) -> None:
        self.api, self.vapi, self.db, self.data = api, vapi, db, data
        self.id: str = data["id"]
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        # separate runs of time per doctor: near (inside the window), far (before it opens),
        # and the days ahead that `past=True` bookings are moved back from
        self._near = {d: now for d in ("doctor", "doctor2")}
        self._far = {d: now for d in ("doctor", "doctor2")}
        self._past = {d: itertools.count() for d in ("doctor", "doctor2")}
        self._now = now

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def token(self, who: str) -> str:
        return str(self.data[who]["token"])

    def user_id(self, who: str) -> str:
        return str(self.data[who]["user_id"])

    # --- booking ---------------------------------------------------------------------------

    def start_for(self, doctor: str, when: str) -> datetime:
        """A free start for the doctor: `now` (inside the join window), `early` (the window
        has not opened) or `past` (a start to be moved back two days: the window has closed)."""
        # `now` and `early` count from the clock at the booking (a session's world lives long
        # on a busy machine), each after the doctor's previous one, so none overlap
        current = datetime.now(UTC).replace(second=0, microsecond=0)
        if when == "now":
            start = max(self._near[doctor], current + timedelta(minutes=2))
            self._near[doctor] = start + timedelta(minutes=MINUTES)
            return start
        if when == "early":
            start = max(self._far[doctor], current + timedelta(minutes=OPENS + 60))
            self._far[doctor] = start + timedelta(minutes=MINUTES)
            return start
        assert when == "past"
        return self._now + timedelta(days=2, minutes=-OPENS + MINUTES * next(self._past[doctor]))

    def book(self, when: str = "now", *, patient: str = "patient", doctor: str = "doctor",
             kind: str = "video") -> dict[str, Any]:
        """A booking by reception (overriding hours, so any minute works)."""
        start = self.start_for(doctor, when)
        body: dict[str, Any] = {
            "clinic_id": self.id, "doctor_id": self.user_id(doctor),
            "patient_id": self.user_id(patient), "type": kind, "start": start.isoformat(),
            "duration_minutes": MINUTES, "override_reason": "video tests"}
        if kind == "in_person":
            body["location_id"] = self.data["locations"][0]["id"]
        r = self.api.as_(self.token(self.booker), "POST", "/appointments", json=body)
        assert r.status_code == 201, r.text
        appointment = dict(r.json())
        if when == "past":
            self.db.fetch("UPDATE appointments SET starts_at = starts_at - interval '2 days', "
                          "ends_at = ends_at - interval '2 days' WHERE id = $1",
                          uuid.UUID(appointment["id"]))
            appointment["start"] = (start - timedelta(days=2)).isoformat()
        return appointment

    @property
    def booker(self) -> str:
        return "desk" if "desk" in self.data else "sa"

    def move(self, appointment_id: str, *actions: str, who: str | None = None) -> None:
        """Lifecycle actions in order (`confirm`, `check-in`, `start`, `complete`, `no-show`,
        `cancel`), by reception."""
        for action in actions:
            r = self.api.as_(self.token(who or self.booker), "POST",
                             f"/appointments/{appointment_id}/{action}")
            assert r.status_code == 200, (action, r.text)

    def expire(self, appointment_id: str) -> None:
        """An unpaid booking's window ended: what `expire_unpaid` does, without waiting."""
        self.db.fetch("UPDATE appointments SET status = 'expired' WHERE id = $1 "
                      "AND status = 'pending_payment'", uuid.UUID(appointment_id))

    def pay_at_desk(self, appointment_id: str) -> None:
        """The patient pays the visit's invoice at the desk: the visit becomes scheduled."""
        [invoice] = self.db.fetch("SELECT id, total FROM billing_invoices WHERE appointment_id = $1",
                                  uuid.UUID(appointment_id))
        r = self.api.as_(self.token("desk"), "POST", "/billing/payments", json={
            "invoice_id": str(invoice["id"]), "method": "cash", "amount": invoice["total"]})
        assert r.status_code == 201, r.text

    def appointment_status(self, appointment_id: str) -> str:
        return str(self.db.fetch("SELECT status FROM appointments WHERE id = $1",
                                 uuid.UUID(appointment_id))[0]["status"])

    # --- video over HTTP -------------------------------------------------------------------

    def create(self, appointment_id: str, who: str = "doctor") -> httpx.Response:
        return self.vapi.as_(self.token(who), "POST", "/video/sessions",
                             json={"appointment_id": appointment_id})

    def session(self, appointment_id: str, who: str = "doctor") -> dict[str, Any]:
        r = self.create(appointment_id, who)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def join(self, session_id: str, who: str) -> httpx.Response:
        return self.vapi.as_(self.token(who), "POST", f"/video/sessions/{session_id}/token")

    def act(self, session_id: str, action: str, who: str = "doctor") -> httpx.Response:
        """`admit` or `end`."""
        return self.vapi.as_(self.token(who), "POST", f"/video/sessions/{session_id}/{action}")

    def get(self, session_id: str, who: str = "doctor") -> httpx.Response:
        return self.vapi.as_(self.token(who), "GET", f"/video/sessions/{session_id}")

    def row(self, session_id: str) -> dict[str, Any]:
        return self.db.fetch("SELECT * FROM video_sessions WHERE id = $1",
                             uuid.UUID(session_id))[0]


#: Everyone a clinic of the suites has (`people` picks some: each costs a password hash).
PEOPLE = {"doctor": "DOCTOR", "doctor2": "DOCTOR", "nurse": "NURSE", "desk": "RECEPTIONIST",
          "admin": "CLINIC_ADMIN", "patient": "PATIENT", "other_patient": "PATIENT"}


def make_clinic(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
                member_factory: Any, *, paid: bool = False,
                people: tuple[str, ...] = tuple(PEOPLE), **settings: Any) -> Clinic:
    """A clinic with two doctors, a nurse, reception, an admin and two patients (or only
    `people`; the super admin books when there is no reception); `paid`: video visits need
    prepayment (booked `pending_payment`, paid at the desk)."""
    extra: dict[str, Any] = {"booking_horizon_days": 730, "patient_max_future_appointments": 500,
                             "video": {"join_opens_minutes": OPENS, "join_closes_minutes": CLOSES},
                             **settings}
    if paid:
        extra.update(payment_required_types=["video"], payment_window_minutes=10080,
                     billing={"currency": "INR", "fees": FEES})
    c = clinic_factory(**extra)
    loc = c["locations"][0]["id"]
    c["sa"] = {"token": sa_token, "user_id": None}
    for who in people:
        at = loc if PEOPLE[who] in ("DOCTOR", "NURSE", "RECEPTIONIST") else None
        c[who] = member_factory(c["id"], PEOPLE[who], location_id=at, tag=f"v{who}")
    for doctor in ("doctor", "doctor2"):
        if doctor in c:
            r = api.as_(sa_token, "PUT",
                        f"/clinics/{c['id']}/doctors/{c[doctor]['user_id']}/schedule",
                        json={"rules": [{**rule, "location_id": loc} for rule in ALL_DAY],
                              "slot_minutes": MINUTES})
            assert r.status_code == 200, r.text
    return Clinic(api, vapi, db, c)
