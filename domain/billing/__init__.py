"""Billing: plans and subscriptions with quotas, invoices with gapless numbers and PDFs,
payments through four providers (and at the desk), refunds that never exceed what was paid.

Money is integer minor units plus an ISO 4217 code (domain/money.py); every amount check
happens in SQL or under a row lock. Provider webhooks go through the one inbox
(domain/inbox); provider secrets through tenancy's credentials store."""

# Importing the package registers billing's handlers with scheduling, as
# domain/queueing/__init__.py does (charges imports coverage first: a covered visit is not charged).
from domain.billing.commands import charges as _charges  # noqa: F401
from domain.billing.commands import invoices as _invoices  # noqa: F401 - registers on_expiry
from domain.billing.commands import refunds as _refunds  # noqa: F401 - registers its handler
