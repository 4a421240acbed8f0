"""Transport-neutral domain errors; REST and sockets map `code` to their own shapes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    code: str = "invalid"

    def __init__(
        self,
        message: str,
        *,
        errors: list[FieldError] | None = None,
        resource_type: str | None = None,
        resource_id: object | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.resource_type = resource_type
        self.resource_id = resource_id

    @property
    def denied(self) -> bool:
        """Whether the audit log should call this a denial rather than a failure."""
        return False


class Invalid(DomainError):
    code = "invalid"


class Unauthenticated(DomainError):
    code = "unauthenticated"

    @property
    def denied(self) -> bool:
        return True


class Forbidden(DomainError):
    code = "forbidden"

    @property
    def denied(self) -> bool:
        return True


class NotFound(DomainError):
    """Also what another clinic's object looks like: `hidden=True` marks that case for audit."""

    code = "not_found"

    def __init__(self, message: str, *, hidden: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.hidden = hidden

    @property
    def denied(self) -> bool:
        return self.hidden


class Conflict(DomainError):
    code = "conflict"


class PaymentRequired(DomainError):
    code = "payment_required"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Unavailable(DomainError):
    code = "unavailable"


def invalid_field(name: str, message: str) -> Invalid:
    return Invalid(f"{name}: {message}", errors=[FieldError(name, message)])


__all__ = [
    "Conflict",
    "DomainError",
    "FieldError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PaymentRequired",
    "RateLimited",
    "Unauthenticated",
    "Unavailable",
    "invalid_field",
]
