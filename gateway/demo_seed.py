"""A demo clinic for `carewire dev`: a few staff of different roles and some patients.
Idempotent: a second run finds the clinic and changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec

from domain import clock, db
from domain.access.roles import Role
from domain.billing.commands import invoices as invoicing
from domain.billing.commands import payments, plans
from domain.billing.commands.credentials import put_provider_credentials
from domain.billing.models import Interval, InvoiceStatus, LineInput
from domain.billing.queries.invoices import list_invoices
from domain.identity.commands import ensure_super_admin
from domain.principal import system_principal
from domain.queueing import commands as queueing
from domain.queueing.queries import clinic_today
from domain.scheduling import commands as scheduling
from domain.scheduling.errors import BookingConflict
from domain.scheduling.models import AppointmentType
from domain.tenancy import commands
from domain.tenancy.queries import load_clinic

# Not "carewire-demo": new passwords may not be built from the service name (NIST 800-63B).
DEMO_PASSWORD = "sunrise-open-demo"
ADMIN_EMAIL = "admin@carewire.local"
CLINIC_NAME = "Sunrise Family Clinic"

STAFF = [
    ("clinic.admin@sunrise.example", "Asha Menon", Role.CLINIC_ADMIN),
    ("location.head@sunrise.example", "Vikram Shah", Role.LOCATION_HEAD),
    ("dr.rao@sunrise.example", "Dr. Priya Rao", Role.DOCTOR),
    ("dr.khan@sunrise.example", "Dr. Imran Khan", Role.DOCTOR),
    ("nurse@sunrise.example", "Meera Iyer", Role.NURSE),
    ("reception@sunrise.example", "Rohan Das", Role.RECEPTIONIST),
    ("accounts@sunrise.example", "Neha Gupta", Role.ACCOUNTANT),
    ("auditor@sunrise.example", "Karan Bose", Role.SYSTEM_AUDITOR),
    ("patient.anita@example.com", "Anita Verma", Role.PATIENT),
    ("patient.john@example.com", "John Mathew", Role.PATIENT),
    ("patient.sara@example.com", "Sara Ali", Role.PATIENT),
]


class SeedResult(msgspec.Struct):
    clinic_id: str
    created: bool
    logins: list[tuple[str, str, str]]
    #: Today's demo waiting room and a board token for it (a path with the token in its fragment).
    board_path: str = ""
    #: A video visit waiting for its online payment (only with the dev payment provider): its
    #: invoice number and the provider's payment intent to pay.
    pay_invoice: str = ""
    pay_intent: str = ""
    #: Anita's video visit with Dr. Khan today, inside its join window (paid at the desk).
    video_appointment: str = ""


#: The doctor of the demo's video visit (the printed curls log in as them).
VIDEO_DOCTOR = "dr.khan@sunrise.example"
VIDEO_PATIENT = "patient.anita@example.com"


#: The demo clinic charges for visits (video ones are paid before they are scheduled).
BILLING = {
    "currency": "INR", "fees": {"in_person": 50_000, "video": 40_000}, "tax_rate_bp": 1800,
    "tax_label": "GST", "legal_name": "Sunrise Family Clinic Pvt. Ltd.",
    "address": "12 MG Road, Bengaluru 560001", "tax_id": "29ABCDE1234F1Z5",
}


async def seed_demo(stripe: dict[str, str] | None = None) -> SeedResult:
    """`stripe`: credentials of the dev payment provider (gateway/devpay.py) when it runs; the
    clinic then takes online payments through it, and a video visit waits to be paid."""
    await ensure_super_admin(email=ADMIN_EMAIL, password=DEMO_PASSWORD, name="Platform Admin")
    logins = [(ADMIN_EMAIL, DEMO_PASSWORD, Role.SUPER_ADMIN.value)]
    logins += [(email, DEMO_PASSWORD, role.value) for email, _, role in STAFF]
    existing = await db.fetch("SELECT id FROM clinics WHERE name = $1", CLINIC_NAME)
    if existing:
        board = await demo_waiting_room(existing[0]["id"])
        invoice, intent = await demo_payment(existing[0]["id"], stripe)
        video = await demo_video_visit(existing[0]["id"])
        return SeedResult(clinic_id=str(existing[0]["id"]), created=False, logins=logins,
                          board_path=board, pay_invoice=invoice, pay_intent=intent,
                          video_appointment=video)
    system = system_principal()
    clinic = await commands.create_clinic(
        system, name=CLINIC_NAME, timezone="Asia/Kolkata",
        settings={"allow_self_registration": True, "payment_required_types": ["video"],
                  "billing": BILLING},
    )
    main = await commands.create_location(system, clinic.id, name="MG Road",
                                          address="12 MG Road, Bengaluru")
    await commands.create_location(system, clinic.id, name="Indiranagar",
                                   address="100 Feet Road, Bengaluru")
    for email, name, role in STAFF:
        location = main.id if role in (Role.LOCATION_HEAD, Role.DOCTOR, Role.NURSE,
                                       Role.RECEPTIONIST) else None
        await commands.add_member(system, clinic.id, email=email, name=name, role=role,
                                  location_id=location, password=DEMO_PASSWORD)
    board = await demo_waiting_room(clinic.id)
    await demo_billing(clinic.id)
    invoice, intent = await demo_payment(clinic.id, stripe)
    video = await demo_video_visit(clinic.id)
    return SeedResult(clinic_id=str(clinic.id), created=True, logins=logins, board_path=board,
                      pay_invoice=invoice, pay_intent=intent, video_appointment=video)


async def _user(email: str) -> uuid.UUID:
    rows = await db.fetch("SELECT id FROM users WHERE email = $1", email)
    return uuid.UUID(str(rows[0]["id"]))


async def demo_billing(clinic_id: uuid.UUID) -> None:
    """A yearly plan with ten in-person visits, and an invoice John paid in cash."""
    system = system_principal()
    await plans.create_plan(system, clinic_id=clinic_id, name="Family care (10 visits a year)",
                            price=1_200_000, interval=Interval.YEAR,
                            quotas={"in_person": 10})
    clinic = await load_clinic(clinic_id)
    async with db.transaction():
        invoice = await invoicing.open_invoice(
            system, clinic, patient_id=await _user("patient.john@example.com"),
            lines=[LineInput(description="Consultation (in person)", quantity=1,
                             unit_amount=50_000),
                   LineInput(description="Blood glucose test", quantity=1, unit_amount=25_000)])
    await payments.record_desk_payment(system, invoice_id=invoice.id, method="cash",
                                       amount=invoice.total)


async def demo_payment(clinic_id: uuid.UUID, stripe: dict[str, str] | None) -> tuple[str, str]:
    """With the dev payment provider: the clinic pays through it (its credentials are new each
    run), and Sara books a video visit for tomorrow, which waits for its payment (the intent is
    opened now). Returns (invoice number, payment intent id); empty without the provider."""
    if stripe is None:
        return "", ""
    system = system_principal()
    clinic = await load_clinic(clinic_id)
    billing = {**msgspec.to_builtins(clinic.settings.billing), "provider": "stripe"}
    await commands.update_clinic(system, clinic_id, settings={"billing": billing})
    await put_provider_credentials(system, clinic_id, "stripe", stripe)
    doctor, patient = await _user("dr.khan@sunrise.example"), await _user("patient.sara@example.com")
    day = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for attempt in range(48):  # a free quarter hour tomorrow (earlier runs took some)
        try:
            booked = await scheduling.book(
                system, clinic_id=clinic_id, doctor_id=doctor, patient_id=patient,
                appointment_type=AppointmentType.VIDEO, start=day + timedelta(minutes=15 * attempt),
                duration_minutes=15, override_reason="demo paid video visit")
            break
        except BookingConflict:
            continue
    else:
        return "", ""
    page = await list_invoices(system, clinic_id=clinic_id, patient_id=patient,
                               status=InvoiceStatus.OPEN, limit=100)
    invoice = next(i for i in page.items if i.appointment_id == booked[0].id)
    payment, _ = await payments.open_checkout(system, invoice_id=invoice.id)
    return invoice.number or str(invoice.id), payment.provider_order_id or ""


async def demo_video_visit(clinic_id: uuid.UUID) -> str:
    """Anita's video visit with Dr. Khan starting in five minutes (inside the join window, which
    opens ten minutes before), paid at the desk; an earlier run's visit is reused while its
    window is still open. Its appointment id ("" when the doctor has no room for it)."""
    system = system_principal()
    doctor, patient = await _user(VIDEO_DOCTOR), await _user(VIDEO_PATIENT)
    video = (await load_clinic(clinic_id)).settings.video
    rows = await db.fetch(
        """SELECT id FROM appointments WHERE clinic_id = $1 AND doctor_id = $2
             AND patient_id = $3 AND type = 'video' AND status IN ('scheduled', 'confirmed')
             AND starts_at - make_interval(mins => $4) <= now()
             AND ends_at + make_interval(mins => $5) > now() + interval '10 minutes'
           ORDER BY starts_at LIMIT 1""",
        clinic_id, doctor, patient, video.join_opens_minutes, video.join_closes_minutes)
    if rows:
        return str(rows[0]["id"])
    start = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=5)
    try:
        booked = await scheduling.book(
            system, clinic_id=clinic_id, doctor_id=doctor, patient_id=patient,
            appointment_type=AppointmentType.VIDEO, start=start, duration_minutes=15,
            override_reason="demo video visit")
    except BookingConflict:
        return ""
    page = await list_invoices(system, clinic_id=clinic_id, patient_id=patient,
                               status=InvoiceStatus.OPEN, limit=100)
    for invoice in page.items:
        if invoice.appointment_id == booked[0].id:
            await payments.record_desk_payment(system, invoice_id=invoice.id, method="cash",
                                               amount=invoice.total)
    return str(booked[0].id)


async def demo_waiting_room(clinic_id: uuid.UUID) -> str:
    """Dr. Rao's queue for today, with three patients checked in (once a day), and a fresh
    board token for the waiting-room screen."""
    system = system_principal()
    doctor = (await db.fetch("SELECT id FROM users WHERE email = $1", "dr.rao@sunrise.example"))[0]["id"]
    location = (await db.fetch("SELECT location_id FROM memberships WHERE clinic_id = $1 AND "
                               "user_id = $2", clinic_id, doctor))[0]["location_id"]
    patients = await db.fetch("SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id"
                              " WHERE m.clinic_id = $1 AND m.role = 'PATIENT' ORDER BY u.email",
                              clinic_id)
    queue_id = await _todays_queue(clinic_id, doctor)
    if queue_id is None:
        first = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=5)
        for i, patient in enumerate(patients):
            booked = await scheduling.book(
                system, clinic_id=clinic_id, doctor_id=doctor, patient_id=patient["user_id"],
                appointment_type=AppointmentType.IN_PERSON, start=first + timedelta(minutes=15 * i),
                duration_minutes=15, location_id=location, override_reason="demo waiting room")
            await queueing.check_in(system, booked[0].id, reason="demo")
        queue_id = await _todays_queue(clinic_id, doctor)
    assert queue_id is not None
    board = await queueing.issue_board_token(system, queue_id)
    return board.url


async def _todays_queue(clinic_id: uuid.UUID, doctor_id: uuid.UUID) -> uuid.UUID | None:
    day = await clinic_today(clinic_id)
    rows = await db.fetch("SELECT id FROM queues WHERE clinic_id = $1 AND doctor_id = $2 AND "
                          "day >= $3 ORDER BY day LIMIT 1", clinic_id, doctor_id, day)
    return rows[0]["id"] if rows else None
