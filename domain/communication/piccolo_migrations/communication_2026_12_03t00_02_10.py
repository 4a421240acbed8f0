from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:02:10:000000"
VERSION = "1.38.0"
DESCRIPTION = "clinic templates; suppressions scoped to one notification kind (unsubscribe)"

SQL = """
-- A clinic's own template for one kind, channel and locale (lowercase BCP 47, `hi-in`); where
-- none is stored the shipped default applies (domain/communication/templates/).
CREATE TABLE communication_templates (
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 80),
    channel text NOT NULL CHECK (channel IN ('email', 'push', 'whatsapp', 'sms')),
    locale text NOT NULL CHECK (locale ~ '^[a-z]{2,3}(-[a-z0-9]{2,8})*$'),
    source text NOT NULL CHECK (length(source) BETWEEN 1 AND 20000),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by uuid REFERENCES users (id) ON DELETE SET NULL,
    PRIMARY KEY (clinic_id, kind, channel, locale)
);

-- A suppression may name one notification kind (a one-click unsubscribe stops that kind
-- only); NULL: every kind, as before. An address is suppressed once per kind (and once for
-- all kinds), so the key moves to a unique index over the kind; `id` becomes the primary key.
ALTER TABLE communication_suppressions
    ADD COLUMN kind text CHECK (length(kind) BETWEEN 1 AND 80);
ALTER TABLE communication_suppressions DROP CONSTRAINT communication_suppressions_pkey;
ALTER TABLE communication_suppressions ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX communication_suppressions_key
    ON communication_suppressions (clinic_id, channel, address, (coalesce(kind, '')));
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="communication", description=DESCRIPTION, sql=SQL)
