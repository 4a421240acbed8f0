"""A demo clinic for `carewire dev`: a few staff of different roles and some patients.
Idempotent: a second run finds the clinic and changes nothing."""

from __future__ import annotations

import msgspec

from domain import db
from domain.access.roles import Role
from domain.identity.commands import ensure_super_admin
from domain.principal import system_principal
from domain.tenancy import commands

DEMO_PASSWORD = "carewire-demo"
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


async def seed_demo() -> SeedResult:
    await ensure_super_admin(email=ADMIN_EMAIL, password=DEMO_PASSWORD, name="Platform Admin")
    logins = [(ADMIN_EMAIL, DEMO_PASSWORD, Role.SUPER_ADMIN.value)]
    logins += [(email, DEMO_PASSWORD, role.value) for email, _, role in STAFF]
    existing = await db.fetch("SELECT id FROM clinics WHERE name = $1", CLINIC_NAME)
    if existing:
        return SeedResult(clinic_id=str(existing[0]["id"]), created=False, logins=logins)
    system = system_principal()
    clinic = await commands.create_clinic(
        system, name=CLINIC_NAME, timezone="Asia/Kolkata",
        settings={"allow_self_registration": True},
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
    return SeedResult(clinic_id=str(clinic.id), created=True, logins=logins)
