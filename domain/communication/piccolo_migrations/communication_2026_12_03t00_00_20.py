from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:00:20:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbound delivery: channel config, devices, messages, attempts, suppressions"

SQL = """
-- Each clinic's provider chain per channel: `providers[1]` is the primary, the rest are
-- fallbacks in order. Credentials live in tenancy's clinic_credentials (one way to keep a
-- secret); this row names providers and the sender identity only.
CREATE TABLE communication_configs (
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    channel text NOT NULL CHECK (channel IN ('email', 'push', 'whatsapp', 'sms')),
    providers text[] NOT NULL CHECK (cardinality(providers) BETWEEN 1 AND 5),
    -- from_address, from_name, reply_to, whatsapp_number_id, sms_sender_id, ...
    sender jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Sends per second per provider for this clinic; NULL: the provider's default.
    rate_per_second integer CHECK (rate_per_second BETWEEN 1 AND 10000),
    -- After a send that may have gone out (timeout after the request left), try the next
    -- provider anyway (risking a duplicate) instead of stopping at `unknown`.
    retry_unknown boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clinic_id, channel)
);

-- A user's push tokens. A token belongs to one user at a time (a phone that changes hands
-- re-registers it); a retired token (provider said it is dead, or the user removed it) is
-- never used again unless registered anew.
CREATE TABLE devices (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('fcm', 'apns')),
    token text NOT NULL CHECK (length(token) BETWEEN 16 AND 4096),
    platform text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    app_version text CHECK (length(app_version) <= 40),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    retired_reason text,
    UNIQUE (kind, token)
);
CREATE INDEX devices_of_user ON devices (user_id) WHERE retired_at IS NULL;

-- The delivery log: one row per message to one address on one channel. The body columns are
-- cleared after the clinic's retention (`body_pruned_at`); the row stays.
CREATE TABLE communication_messages (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    channel text NOT NULL CHECK (channel IN ('email', 'push', 'whatsapp', 'sms')),
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 80),
    -- Email address (lowercase), E.164 phone number, or for push the device id.
    address text NOT NULL CHECK (length(address) BETWEEN 1 AND 320),
    device_id uuid REFERENCES devices (id) ON DELETE SET NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent',
        'delivered', 'bounced', 'complained', 'failed', 'suppressed', 'unknown')),
    -- While `sending`: the claim's deadline. A worker killed mid-send leaves the row to be
    -- claimed again after it (sent once more at most; the idempotency key lets the provider
    -- drop the duplicate where it can).
    lease_until timestamptz,
    -- Who holds the lease: a worker whose lease ran out cannot overwrite the next one's result.
    claim_id uuid,
    -- Sending rounds so far (each tries the whole chain); past the limit the message fails.
    tries integer NOT NULL DEFAULT 0,
    -- A queued message is not claimed before this (the next round after a backoff, or the
    -- rate limit's next free slot).
    next_at timestamptz NOT NULL DEFAULT now(),
    provider text,
    provider_message_id text,
    error text,
    subject text,
    body text,
    html text,
    data jsonb,
    body_pruned_at timestamptz,
    -- A caller's own key (e.g. `reminder:<appointment>:24h`) makes enqueueing idempotent.
    dedupe_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE UNIQUE INDEX communication_messages_dedupe ON communication_messages (clinic_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX communication_messages_by_clinic ON communication_messages (clinic_id, created_at DESC, id);
CREATE INDEX communication_messages_by_user ON communication_messages (user_id, created_at DESC, id);
CREATE INDEX communication_messages_by_provider_id ON communication_messages (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- This table is the delivery queue: workers claim due messages in batches (SKIP LOCKED),
-- and messages whose worker died mid-send once their lease has run out.
CREATE INDEX communication_messages_due ON communication_messages (next_at)
    WHERE status = 'queued';
CREATE INDEX communication_messages_leased ON communication_messages (lease_until)
    WHERE status = 'sending';
CREATE INDEX communication_messages_unpruned ON communication_messages (created_at)
    WHERE body_pruned_at IS NULL;

-- Every try of every provider for a message: what health (error rate, p95) is computed from.
CREATE TABLE communication_attempts (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES communication_messages (id) ON DELETE CASCADE,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    provider text NOT NULL,
    -- sent: accepted; rejected: the provider refused this message (4xx, not its fault);
    -- unavailable: 5xx / refused / timeout before sending (trips the breaker);
    -- unknown: may have been sent; skipped: breaker open or no credentials (no request made).
    outcome text NOT NULL CHECK (outcome IN ('sent', 'rejected', 'unavailable', 'unknown', 'skipped')),
    status_code integer,
    latency_ms double precision,
    error text,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX communication_attempts_of_message ON communication_attempts (message_id, id);
CREATE INDEX communication_attempts_recent ON communication_attempts (clinic_id, provider, at);

-- Addresses never sent to, per clinic and channel. `source_event_id` makes a provider
-- webhook's suppression idempotent.
CREATE TABLE communication_suppressions (
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    channel text NOT NULL CHECK (channel IN ('email', 'push', 'whatsapp', 'sms')),
    address text NOT NULL CHECK (length(address) BETWEEN 1 AND 320),
    reason text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
    note text CHECK (length(note) <= 500),
    source_event_id text,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clinic_id, channel, address)
);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="communication", description=DESCRIPTION, sql=SQL)
