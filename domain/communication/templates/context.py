"""What a notification template may see: one msgspec Struct, and a fixed sample for previews and
validation. The PHI in it (names, times, place) is read at send time, never carried in events."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from domain import validation
from domain.errors import invalid_field


class TemplateContext(msgspec.Struct, frozen=True, kw_only=True):
    """The variables a template sees, by these names. Dates reach templates only through the
    `datetime`, `date` and `time` filters, formatted in `clinic_timezone` for the locale."""

    clinic_name: str
    #: IANA zone of the clinic: every date and time is shown in it.
    clinic_timezone: str
    #: The recipient's locale (BCP 47, e.g. "hi-IN"); `render` takes the locale to use as an
    #: argument and formats dates in it (see `render`).
    locale: str = "en"
    patient_first_name: str
    doctor_name: str | None = None
    #: Aware datetime; naive ones are refused.
    starts_at: datetime | None = None
    location_name: str | None = None
    #: The room's label as the clinic names it ("3", "OPD-2").
    room: str | None = None
    #: The waiting-room ticket ("A-014").
    ticket: str | None = None
    #: Billing receipts: the amount, already formatted for the locale (`₹500.00`).
    amount: str | None = None
    #: Email only: the one-click unsubscribe link (other channels do not see this variable).
    unsubscribe_url: str | None = None

    def __post_init__(self) -> None:
        validation.timezone(self.clinic_timezone, "clinic_timezone")
        if self.starts_at is not None and self.starts_at.utcoffset() is None:
            raise invalid_field("starts_at", "must carry a time zone (an aware datetime)")


def sample_context(locale: str = "en") -> TemplateContext:
    """A fixed sample appointment (4 Dec 2026, 09:30 in Asia/Kolkata) for previews and validation."""
    return TemplateContext(
        clinic_name="Sunrise Clinic",
        clinic_timezone="Asia/Kolkata",
        locale=locale,
        patient_first_name="Asha",
        doctor_name="Dr. Meera Rao",
        starts_at=datetime(2026, 12, 4, 4, 0, tzinfo=UTC),
        location_name="Sunrise Clinic, Indiranagar",
        room="3",
        ticket="A-014",
        amount="₹500.00",
        unsubscribe_url="https://carewire.example/u/sample-token",
    )


