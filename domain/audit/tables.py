"""Audit table; the SQL of record (append-only triggers) is in piccolo_migrations/."""

from piccolo.columns import JSONB, UUID, BigSerial, Bytea, Text, Timestamptz
from piccolo.table import Table


class AuditEntry(Table, tablename="audit_log"):
    id = BigSerial(primary_key=True)
    occurred_at = Timestamptz()
    actor_id = UUID(null=True)
    clinic_id = UUID(null=True)
    action = Text()
    resource_type = Text()
    resource_id = Text(null=True)
    outcome = Text()
    request_id = Text(null=True)
    ip = Text(null=True)
    detail = JSONB()
    prev_hash = Bytea()
    hash = Bytea()
