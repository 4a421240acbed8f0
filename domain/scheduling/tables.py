"""Scheduling tables; the SQL of record (exclusion constraint, checks) is in piccolo_migrations/."""

from piccolo.columns import JSONB, UUID, BigSerial, Integer, Text, Timestamptz
from piccolo.table import Table


class DoctorSchedule(Table, tablename="doctor_schedules"):
    clinic_id = UUID(primary_key=True)
    doctor_id = UUID()
    slot_minutes = Integer()
    rules = JSONB()
    updated_at = Timestamptz()


class TimeOff(Table, tablename="time_off"):
    id = UUID(primary_key=True)
    clinic_id = UUID()
    doctor_id = UUID(null=True)
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    reason = Text()
    created_at = Timestamptz()


class Appointment(Table, tablename="appointments"):
    id = UUID(primary_key=True)
    clinic_id = UUID()
    doctor_id = UUID()
    patient_id = UUID()
    location_id = UUID(null=True)
    type = Text()
    status = Text()
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    reason = Text()
    parent_id = UUID(null=True)
    series_id = UUID(null=True)
    reschedule_count = Integer()
    payment_due_at = Timestamptz(null=True)
    created_by = UUID(null=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class AppointmentTransition(Table, tablename="appointment_transitions"):
    id = BigSerial(primary_key=True)
    appointment_id = UUID()
    from_status = Text(null=True)
    to_status = Text()
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    actor_id = UUID(null=True)
    reason = Text()
    at = Timestamptz()
