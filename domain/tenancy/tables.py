"""Tenancy tables; the SQL of record (constraints, indexes) is in piccolo_migrations/."""

from piccolo.columns import JSONB, UUID, ForeignKey, Text, Timestamptz
from piccolo.table import Table

from domain.identity.tables import User


class Clinic(Table, tablename="clinics"):
    id = UUID(primary_key=True)
    name = Text()
    timezone = Text()
    settings = JSONB()
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Location(Table, tablename="locations"):
    id = UUID(primary_key=True)
    clinic_id = ForeignKey(Clinic, db_column_name="clinic_id")
    name = Text()
    address = Text()
    timezone = Text(null=True)
    created_at = Timestamptz()


class Membership(Table, tablename="memberships"):
    id = UUID(primary_key=True)
    user_id = ForeignKey(User, db_column_name="user_id")
    clinic_id = ForeignKey(Clinic, db_column_name="clinic_id")
    role = Text()
    location_id = UUID(null=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Invitation(Table, tablename="invitations"):
    id = UUID(primary_key=True)
    clinic_id = ForeignKey(Clinic, db_column_name="clinic_id")
    email = Text()
    user_id = UUID(null=True)
    role = Text()
    location_id = UUID(null=True)
    invited_by = UUID(null=True)
    status = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()
    expires_at = Timestamptz()
    answered_at = Timestamptz(null=True)
