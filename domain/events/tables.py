"""Event tables; the SQL of record is in piccolo_migrations/."""

from piccolo.columns import JSONB, UUID, Array, BigInt, Text, Timestamptz
from piccolo.table import Table


class ClinicSequence(Table, tablename="clinic_sequences"):
    clinic_id = UUID(primary_key=True)
    last_seq = BigInt()


class Event(Table, tablename="events"):
    id = UUID(primary_key=True)
    clinic_id = UUID()
    seq = BigInt()
    type = Text()
    category = Text()
    priority = Text()
    occurred_at = Timestamptz()
    actor_id = UUID(null=True)
    data = JSONB()
    audience = Array(base_column=Text())
    published_at = Timestamptz(null=True, default=None)
