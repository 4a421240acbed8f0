"""The twelve roles. SUPER_ADMIN is global (a user flag); the others are held per clinic."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SUPER_ADMIN = "SUPER_ADMIN"
    CLINIC_ADMIN = "CLINIC_ADMIN"
    LOCATION_HEAD = "LOCATION_HEAD"
    DOCTOR = "DOCTOR"
    NURSE = "NURSE"
    RECEPTIONIST = "RECEPTIONIST"
    PHARMACIST = "PHARMACIST"
    LAB_TECHNICIAN = "LAB_TECHNICIAN"
    PATIENT = "PATIENT"
    ACCOUNTANT = "ACCOUNTANT"
    INVENTORY_MANAGER = "INVENTORY_MANAGER"
    SYSTEM_AUDITOR = "SYSTEM_AUDITOR"


#: Roles a clinic membership may carry (SUPER_ADMIN is not granted per clinic).
CLINIC_ROLES: tuple[Role, ...] = tuple(r for r in Role if r is not Role.SUPER_ADMIN)

#: Which roles each granting role may hand out or take away. Nobody grants above themselves,
#: and a location head manages only the people who work or are seen at their location.
GRANTABLE: dict[Role, frozenset[Role]] = {
    Role.SUPER_ADMIN: frozenset(CLINIC_ROLES),
    Role.CLINIC_ADMIN: frozenset(CLINIC_ROLES),
    Role.LOCATION_HEAD: frozenset(
        {
            Role.DOCTOR,
            Role.NURSE,
            Role.RECEPTIONIST,
            Role.PHARMACIST,
            Role.LAB_TECHNICIAN,
            Role.PATIENT,
            Role.INVENTORY_MANAGER,
        }
    ),
    Role.RECEPTIONIST: frozenset({Role.PATIENT}),
}
