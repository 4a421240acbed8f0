from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-04T00:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "billing: plans, subscriptions and quota, invoices with gapless numbers, payments, refunds"

SQL = """
-- Who did it (created_by, recorded_by, requested_by) is a user id without a foreign key, as in
-- scheduling: the system principal (CLI, jobs) has no users row, and the audit log is the record.
-- Money is integer minor units (paise, cents) and an ISO 4217 code, everywhere. 10^12 minor
-- units is far above any consultation and far below bigint: absurd amounts are refused.

-- What a clinic sells: a price per interval and what it covers. `quotas` maps an appointment
-- type to the visits a period includes (null: unlimited); a type left out is not covered.
CREATE TABLE billing_plans (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    price bigint NOT NULL CHECK (price >= 0 AND price < 1000000000000),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    interval text NOT NULL CHECK (interval IN ('month', 'year')),
    trial_days integer NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 365),
    quotas jsonb NOT NULL DEFAULT '{}'::jsonb,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (clinic_id, name)
);
CREATE INDEX billing_plans_page ON billing_plans (clinic_id, created_at, id);

-- A patient's plan. One live subscription (trialing, active, past_due) per patient and plan.
CREATE TABLE billing_subscriptions (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    plan_id uuid NOT NULL REFERENCES billing_plans (id),
    patient_id uuid NOT NULL REFERENCES users (id),
    status text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled', 'expired')),
    current_period_start timestamptz NOT NULL,
    current_period_end timestamptz NOT NULL CHECK (current_period_end > current_period_start),
    -- Renewal attempts that failed in the current period (past_due retries, then expired).
    renewal_failures integer NOT NULL DEFAULT 0 CHECK (renewal_failures >= 0),
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    cancelled_at timestamptz,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX billing_subscriptions_live ON billing_subscriptions (plan_id, patient_id)
    WHERE status IN ('trialing', 'active', 'past_due');
CREATE INDEX billing_subscriptions_patient ON billing_subscriptions (clinic_id, patient_id);
CREATE INDEX billing_subscriptions_page ON billing_subscriptions (clinic_id, created_at, id);
CREATE INDEX billing_subscriptions_due ON billing_subscriptions (current_period_end)
    WHERE status IN ('trialing', 'active', 'past_due');

-- Quota used per subscription, appointment type and period. `used` only moves by guarded
-- UPDATEs (used < quota), under the row's lock: never above the quota, never below zero.
CREATE TABLE billing_quota_usage (
    subscription_id uuid NOT NULL REFERENCES billing_subscriptions (id) ON DELETE CASCADE,
    appointment_type text NOT NULL CHECK (appointment_type IN ('in_person', 'video')),
    period_start timestamptz NOT NULL,
    used integer NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (subscription_id, appointment_type, period_start)
);
-- Which appointment a unit of quota went to: given back (released) by a cancellation inside
-- the clinic's policy, once.
CREATE TABLE billing_quota_claims (
    appointment_id uuid PRIMARY KEY REFERENCES appointments (id) ON DELETE CASCADE,
    subscription_id uuid NOT NULL REFERENCES billing_subscriptions (id) ON DELETE CASCADE,
    appointment_type text NOT NULL,
    period_start timestamptz NOT NULL,
    released_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Invoice numbers: gapless per clinic and year, taken under this row's lock at finalisation
-- (a rolled-back finalisation gives its number back with the rollback).
CREATE TABLE billing_invoice_counters (
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    year integer NOT NULL CHECK (year BETWEEN 2000 AND 9999),
    last_number integer NOT NULL CHECK (last_number >= 0),
    PRIMARY KEY (clinic_id, year)
);

CREATE TABLE billing_invoices (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL REFERENCES users (id),
    appointment_id uuid REFERENCES appointments (id),
    subscription_id uuid REFERENCES billing_subscriptions (id),
    -- INV-2026-000042: set when the invoice is finalised (draft invoices have none).
    number text CHECK (number ~ '^INV-[0-9]{4}-[0-9]{6,}$'),
    status text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal bigint NOT NULL DEFAULT 0 CHECK (subtotal >= 0 AND subtotal < 1000000000000),
    discount bigint NOT NULL DEFAULT 0 CHECK (discount >= 0 AND discount <= subtotal),
    tax_rate_bp integer NOT NULL DEFAULT 0 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    tax_label text NOT NULL DEFAULT 'Tax',
    tax bigint NOT NULL DEFAULT 0 CHECK (tax >= 0),
    total bigint NOT NULL DEFAULT 0 CHECK (total = subtotal - discount + tax),
    amount_paid bigint NOT NULL DEFAULT 0 CHECK (amount_paid >= 0 AND amount_paid <= total),
    due_at timestamptz,
    finalized_at timestamptz,
    paid_at timestamptz,
    voided_at timestamptz,
    -- Where the PDF rendered at finalisation is stored (object key in billing storage).
    pdf_key text,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (clinic_id, number),
    CHECK ((status = 'draft') = (number IS NULL))
);
CREATE INDEX billing_invoices_page ON billing_invoices (clinic_id, created_at, id);
CREATE INDEX billing_invoices_patient ON billing_invoices (patient_id, created_at, id);
-- One live invoice per appointment (void ones stay as history).
CREATE UNIQUE INDEX billing_invoices_appointment ON billing_invoices (appointment_id)
    WHERE appointment_id IS NOT NULL AND status <> 'void';

CREATE TABLE billing_invoice_lines (
    invoice_id uuid NOT NULL REFERENCES billing_invoices (id) ON DELETE CASCADE,
    position integer NOT NULL CHECK (position BETWEEN 1 AND 100),
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 200),
    quantity integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_amount bigint NOT NULL CHECK (unit_amount >= 0 AND unit_amount < 1000000000000),
    amount bigint NOT NULL CHECK (amount = quantity * unit_amount),
    PRIMARY KEY (invoice_id, position)
);

-- A payment against an invoice: online through the clinic's provider (an order / intent the
-- patient's app completes), or recorded at the desk (cash, card terminal). `refunded` counts
-- pending and succeeded refunds and moves only by a guarded UPDATE: never above `amount`.
CREATE TABLE billing_payments (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    invoice_id uuid NOT NULL REFERENCES billing_invoices (id),
    patient_id uuid NOT NULL REFERENCES users (id),
    provider text NOT NULL CHECK (provider IN ('stripe', 'razorpay', 'phonepe', 'paypal', 'cash',
                                                'card_terminal')),
    provider_order_id text,
    provider_payment_id text,
    amount bigint NOT NULL CHECK (amount > 0 AND amount < 1000000000000),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    refunded bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    -- What the patient's app needs to pay (client secret, order id and key id, redirect URL).
    checkout jsonb NOT NULL DEFAULT '{}'::jsonb,
    failure_reason text,
    recorded_by uuid,
    succeeded_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_order_id)
);
CREATE INDEX billing_payments_page ON billing_payments (clinic_id, created_at, id);
CREATE INDEX billing_payments_patient ON billing_payments (patient_id, created_at, id);
CREATE INDEX billing_payments_invoice ON billing_payments (invoice_id);
CREATE INDEX billing_payments_pending ON billing_payments (created_at) WHERE status = 'pending';

CREATE TABLE billing_refunds (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    payment_id uuid NOT NULL REFERENCES billing_payments (id),
    amount bigint NOT NULL CHECK (amount > 0 AND amount < 1000000000000),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    automatic boolean NOT NULL DEFAULT false,
    provider_refund_id text,
    requested_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX billing_refunds_provider ON billing_refunds (payment_id, provider_refund_id)
    WHERE provider_refund_id IS NOT NULL;
CREATE INDEX billing_refunds_page ON billing_refunds (clinic_id, created_at, id);
CREATE INDEX billing_refunds_payment ON billing_refunds (payment_id, created_at, id);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="billing", description=DESCRIPTION, sql=SQL)
