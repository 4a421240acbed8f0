"""Queue tables; the SQL of record (uniqueness per day and per appointment) is in
piccolo_migrations/."""

from piccolo.columns import UUID, Boolean, Date, Integer, Text, Timestamptz
from piccolo.table import Table


class Queue(Table, tablename="queues"):
    id = UUID(primary_key=True)
    clinic_id = UUID()
    doctor_id = UUID()
    location_id = UUID(null=True)
    day = Date()
    letter = Text()
    paused = Boolean()
    last_ticket = Integer()
    created_at = Timestamptz()


class QueueEntry(Table, tablename="queue_entries"):
    id = UUID(primary_key=True)
    queue_id = UUID()
    clinic_id = UUID()
    appointment_id = UUID()
    patient_id = UUID()
    ticket_no = Integer()
    ticket = Text()
    priority = Text()
    status = Text()
    scheduled_at = Timestamptz()
    checked_in_at = Timestamptz()
    order_at = Timestamptz()
    skips = Integer()
    called_at = Timestamptz(null=True)
    started_at = Timestamptz(null=True)
    finished_at = Timestamptz(null=True)
    transferred_from = UUID(null=True)
    removed_reason = Text(null=True)
    told_position = Integer(null=True)
    told_eta = Integer(null=True)
    told_status = Text(null=True)
