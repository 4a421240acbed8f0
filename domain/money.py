"""Money: integer minor units (paise, cents) and an ISO 4217 code, never floats. Which codes
exist and how many minor digits each has come from CLDR (babel), not from a list of ours."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

from domain.errors import invalid_field

#: Anything at or above this is absurd for a clinic (and safely inside bigint).
MAX_MINOR = 10**12


@lru_cache(maxsize=1)
def _codes() -> frozenset[str]:
    return frozenset(c for c in list_currencies() if len(c) == 3 and c.isalpha() and c.isupper())


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in _codes()


def check_currency(code: object, field: str = "currency") -> str:
    """The code itself, or a 422 naming `field`."""
    if not is_currency(code):
        raise invalid_field(field, "an ISO 4217 currency code such as INR, USD or EUR")
    assert isinstance(code, str)
    return code


def check_amount(amount: object, field: str = "amount", *, allow_zero: bool = False) -> int:
    """A whole number of minor units, positive (or zero when allowed) and below MAX_MINOR."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise invalid_field(field, "a whole number of minor units (paise, cents)")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise invalid_field(field, "must be positive" if not allow_zero else "must not be negative")
    if amount >= MAX_MINOR:
        raise invalid_field(field, f"must be below {MAX_MINOR} minor units")
    return amount


def exponent(currency: str) -> int:
    """Minor digits of the currency: 2 for INR and USD, 0 for JPY, 3 for KWD."""
    return int(get_currency_precision(currency))


def to_major(amount: int, currency: str) -> Decimal:
    """100050 INR minor units -> Decimal('1000.50'): for providers that take decimal strings
    (PayPal) and for display; exact, no float in between."""
    return Decimal(amount).scaleb(-exponent(currency))


def from_major(value: str, currency: str) -> int:
    """'1000.50' -> 100050, refusing more digits than the currency has."""
    d = Decimal(value)
    minor = d.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{value} has more decimals than {currency} allows")
    return int(minor)


def display(amount: int, currency: str, locale: str = "en") -> str:
    """`₹1,000.50`, in the locale's format (invoices, receipts)."""
    return str(format_currency(to_major(amount, currency), currency, locale=locale))
