"""Identity tables; the SQL of record (constraints, indexes) is in piccolo_migrations/."""

from piccolo.columns import UUID, Boolean, Bytea, ForeignKey, Text, Timestamptz
from piccolo.table import Table


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Text()
    password_hash = Text(null=True)
    name = Text()
    phone = Text(null=True)
    is_super_admin = Boolean(default=False)
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Session(Table, tablename="sessions"):
    id = UUID(primary_key=True)
    user_id = ForeignKey(User, db_column_name="user_id")
    created_at = Timestamptz()
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    revoked_reason = Text(null=True)
    ip = Text(null=True)
    user_agent = Text(null=True)


class RefreshToken(Table, tablename="refresh_tokens"):
    id = UUID(primary_key=True)
    session_id = ForeignKey(Session, db_column_name="session_id")
    token_hash = Bytea()
    issued_at = Timestamptz()
    expires_at = Timestamptz()
    spent_at = Timestamptz(null=True, default=None)
