from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:02:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "notifications: a cursor per clinic over the event log, preferences, the inbox"

SQL = """
-- How far the notifications consumer has read each clinic's event log. Advanced in the
-- transaction that enqueues the messages of the events read, so a restart neither skips nor
-- repeats; the row lock (FOR UPDATE SKIP LOCKED) lets several workers share the clinics.
CREATE TABLE notification_cursors (
    clinic_id uuid PRIMARY KEY REFERENCES clinics (id) ON DELETE CASCADE,
    last_seq bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Clinics that exist now start at their head: past events are not notified again.
INSERT INTO notification_cursors (clinic_id, last_seq)
    SELECT clinic_id, last_seq FROM clinic_sequences;

-- A user's choices, for every clinic they deal with: channels per kind (a kind left out follows
-- the clinic's default), quiet hours in their own time zone, the locale of their messages.
CREATE TABLE notification_preferences (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    channels jsonb NOT NULL DEFAULT '{}'::jsonb,
    quiet_start time,
    quiet_end time,
    timezone text,
    locale text CHECK (length(locale) BETWEEN 2 AND 35),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- One row per notification to one user: the in-app inbox (in_app) and the record of what an
-- event or reminder became for its recipient (the channels its messages went to; `no_channel`
-- when the recipient had none usable; `dropped` for a reminder whose appointment had started).
-- `dedupe_key` (event id or reminder job and the recipient) makes it once, whoever retries.
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 80),
    appointment_id uuid,
    dedupe_key text NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    status text NOT NULL CHECK (status IN ('sent', 'no_channel', 'dropped')),
    late boolean NOT NULL DEFAULT false,
    channels text[] NOT NULL DEFAULT '{}',
    in_app boolean NOT NULL DEFAULT false,
    -- The in-app text (the push template's title and body), cleared with message bodies.
    title text,
    body text,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (clinic_id, dedupe_key)
);
CREATE INDEX notifications_inbox ON notifications (user_id, created_at DESC, id DESC) WHERE in_app;
CREATE INDEX notifications_unread ON notifications (user_id) WHERE in_app AND read_at IS NULL;
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="notifications", description=DESCRIPTION,
                         sql=SQL)
