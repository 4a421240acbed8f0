"""What tenancy queries and commands return."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from domain.access.roles import Role


class BillingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a clinic charges (domain/billing). Amounts are minor units of `currency`."""

    #: ISO 4217; plans and invoices of the clinic are in it (checked against CLDR's list).
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "INR"
    #: The online provider patients pay through (its credentials: PUT .../credentials/{provider}).
    provider: Literal["stripe", "razorpay", "phonepe", "paypal"] | None = None
    #: The consultation fee per appointment type; a type left out is free (no invoice).
    fees: dict[Literal["in_person", "video"], Annotated[int, msgspec.Meta(ge=0, lt=10**12)]] = {}
    #: Tax on invoices, in basis points (1800 = 18 %), and how invoices name it.
    tax_rate_bp: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 0
    tax_label: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] = "Tax"
    #: Printed on invoices.
    legal_name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    address: Annotated[str, msgspec.Meta(max_length=500)] = ""
    tax_id: Annotated[str, msgspec.Meta(max_length=60)] = ""
    #: A cancellation at least this long before the start refunds a paid visit automatically
    #: and gives a plan's quota back; a later one does not.
    refund_notice_minutes: Annotated[int, msgspec.Meta(ge=0, le=10080)] = 1440
    invoice_due_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 7


class VideoSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Video consultations (domain/video)."""

    #: Doctor and patient may join from this long before the start until this long after the
    #: slot's end; join tokens expire at the end of that window.
    join_opens_minutes: Annotated[int, msgspec.Meta(ge=0, le=240)] = 10
    join_closes_minutes: Annotated[int, msgspec.Meta(ge=0, le=720)] = 30
    #: Whether doctors may record consultations (always with the patient's recorded consent).
    recording_enabled: bool = False


class ClinicSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-clinic policy. Unknown keys are refused, so a typo never silently does nothing."""

    allow_self_registration: bool = False
    #: Booking is suspended clinic-wide (e.g. an emergency closure); staff may still override.
    booking_paused: bool = False
    #: How far ahead patients may book.
    booking_horizon_days: Annotated[int, msgspec.Meta(ge=1, le=730)] = 90
    #: Patients cannot cancel or reschedule closer to the start than this; staff may override.
    min_cancel_notice_minutes: Annotated[int, msgspec.Meta(ge=0, le=10080)] = 0
    min_reschedule_notice_minutes: Annotated[int, msgspec.Meta(ge=0, le=10080)] = 0
    max_reschedules: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    #: Appointment types booked as `pending_payment`, expiring after the payment window.
    payment_required_types: list[Literal["in_person", "video"]] = []
    payment_window_minutes: Annotated[int, msgspec.Meta(ge=1, le=10080)] = 15
    #: A patient may check themselves in (QR code or link) this long before / after the start.
    check_in_opens_minutes: Annotated[int, msgspec.Meta(ge=0, le=1440)] = 60
    check_in_closes_minutes: Annotated[int, msgspec.Meta(ge=0, le=1440)] = 30
    #: Arriving up to this long after the start still counts as on time for the queue order.
    queue_late_grace_minutes: Annotated[int, msgspec.Meta(ge=0, le=240)] = 10
    #: The skip that reaches this count takes the entry out of the queue (requeue brings it back).
    queue_max_skips: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    #: A patient may hold at most this many upcoming appointments in the clinic at once, and book
    #: series of at most this many occurrences, so one account cannot empty a calendar. Staff
    #: booking for a patient are not bound by either.
    patient_max_future_appointments: Annotated[int, msgspec.Meta(ge=1, le=500)] = 5
    patient_max_series_occurrences: Annotated[int, msgspec.Meta(ge=1, le=52)] = 12
    #: Days a sent message's subject and body stay in the delivery log before they are cleared
    #: (the log row itself stays).
    message_body_retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    #: Appointment reminders go this many seconds before the start (default: a day and an hour).
    reminder_offsets_seconds: Annotated[
        list[Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)]], msgspec.Meta(max_length=5)
    ] = msgspec.field(default_factory=lambda: [86400, 3600])
    #: The clinic's default channels per notification kind, for users who chose none for it
    #: (a kind left out keeps the built-in default; see domain/notifications/models.py).
    notification_channels: dict[str, list[Literal["push", "email", "whatsapp", "sms", "in_app"]]] = {}
    #: Fees, tax, the payment provider and the refund policy (replaced as a whole when given).
    billing: BillingSettings = msgspec.field(default_factory=BillingSettings)
    #: The video join window and recording (replaced as a whole when given).
    video: VideoSettings = msgspec.field(default_factory=VideoSettings)


class Clinic(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    timezone: str
    settings: ClinicSettings
    created_at: datetime


class Location(msgspec.Struct, frozen=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    address: str
    timezone: str | None
    created_at: datetime


class Member(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    clinic_id: uuid.UUID
    role: Role
    location_id: uuid.UUID | None
    email: str
    name: str
    created_at: datetime


class InvitationStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


class InvitationReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What the inviting clinic gets back: the same fields whether or not the address has an
    account or is already a member, so the answer tells nothing about the person."""

    invitation_id: uuid.UUID
    clinic_id: uuid.UUID
    email: str
    role: Role
    location_id: uuid.UUID | None
    status: InvitationStatus
    expires_at: datetime


class MyInvitation(msgspec.Struct, frozen=True, kw_only=True):
    """A pending invitation as its invitee sees it: which clinic asks, for which role."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    clinic_name: str
    role: Role
    location_id: uuid.UUID | None
    invited_at: datetime
    expires_at: datetime


class ClinicInvitation(msgspec.Struct, frozen=True, kw_only=True):
    """An invitation as the inviting clinic's staff see it: what they asked and how it stands.
    Never the account it is bound to, so the list tells no more than the receipt did (until
    the person answers, which is their choice)."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    email: str
    role: Role
    location_id: uuid.UUID | None
    status: InvitationStatus
    invited_by: uuid.UUID | None
    invited_at: datetime
    expires_at: datetime
    answered_at: datetime | None
