"""Changes to clinics, locations, memberships and invitations. Each runs in one transaction with
its audit; one module per kind of change."""

from domain.tenancy.commands.clinics import create_clinic, create_location, update_clinic
from domain.tenancy.commands.invitations import (
    INVITATION_TTL,
    accept_invitation,
    decline_invitation,
    invite,
    revoke_invitation,
)
from domain.tenancy.commands.members import add_member, remove_member, update_member
from domain.tenancy.commands.registration import RegistrationAccepted, register_patient

__all__ = [
    "INVITATION_TTL", "RegistrationAccepted", "accept_invitation", "add_member", "create_clinic",
    "create_location", "decline_invitation", "invite", "register_patient", "remove_member",
    "revoke_invitation", "update_clinic", "update_member",
]
