"""What a booking costs: a visit booked `pending_payment` whose type has a fee in the clinic's
billing settings gets an open invoice for it, in the booking's transaction (scheduling's
`on_booking`). Registered after plans' coverage (imported first, below), so a visit a plan
covered is already `scheduled` and is not charged. The patient then pays it online
(POST /billing/payments {invoice_id}) or at the desk; expiry voids it (invoices)."""

from __future__ import annotations

# coverage registers its on_booking handler on import: it must run before `charge`
from domain.billing.commands import coverage as _coverage  # noqa: F401
from domain.billing.commands.invoices import open_invoice
from domain.billing.models import LineInput
from domain.principal import Principal
from domain.scheduling.commands.transitions import on_booking
from domain.scheduling.models import Appointment, Status
from domain.tenancy.models import Clinic

#: How an invoice line names the visit (no reason, no clinical content).
DESCRIPTIONS = {"in_person": "Consultation (in person)", "video": "Consultation (video)"}


@on_booking
async def charge(actor: Principal, clinic: Clinic,
                 appointments: list[Appointment]) -> list[Appointment]:
    fees = clinic.settings.billing.fees
    for a in appointments:
        fee = fees.get(a.type.value, 0)
        if a.status is Status.PENDING_PAYMENT and fee > 0:
            await open_invoice(actor, clinic, patient_id=a.patient_id, appointment_id=a.id,
                               lines=[LineInput(description=DESCRIPTIONS[a.type.value],
                                                quantity=1, unit_amount=fee)])
    return appointments
