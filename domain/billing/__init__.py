"""Billing: plans and subscriptions with quotas, invoices with gapless numbers and PDFs,
payments through four providers (and at the desk), refunds that never exceed what was paid.

Money is integer minor units plus an ISO 4217 code (domain/money.py); every amount check
happens in SQL or under a row lock. Provider webhooks go through the one inbox
(domain/inbox); provider secrets through tenancy's credentials store."""

from domain.billing.commands import charges as _charges  # noqa: F401 - on_booking; keep after plans coverage
