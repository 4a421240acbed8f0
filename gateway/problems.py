"""RFC 9457 problem+json for every error, with the codes of domain/errors.py. Denied and failed domain
actions are audited here (`audit_failure`), after the failed transaction has rolled back."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import Scope

from domain.addresses import client_address
from domain.audit import refusals
from domain.audit.commands import Outcome, record
from domain.errors import DomainError
from domain.principal import Principal, RequestMeta
from domain.validation import msgspec_field_error
from gateway.routes import NO_NUL
from realtime import metrics

log = logging.getLogger("carewire.errors")

STATUS = {
    "invalid": 400,
    "unauthenticated": 401,
    "payment_required": 402,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
    "unavailable": 503,
}
_CODE_FOR_STATUS = {v: k for k, v in STATUS.items()} | {405: "invalid", 413: "invalid",
                                                       415: "invalid", 422: "invalid"}
TITLES = {
    "invalid": "Invalid request",
    "unauthenticated": "Authentication required",
    "payment_required": "Payment required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "conflict": "Conflict",
    "rate_limited": "Too many requests",
    "unavailable": "Service unavailable",
    "internal": "Internal error",
}
MEDIA_TYPE = "application/problem+json"


class FieldProblem(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None
    request_id: str | None = None


def problem_body(code: str, detail: str, *, status: int | None = None,
                 errors: list[FieldProblem] | None = None, request_id: str | None = None,
                 extra: dict[str, Any] | None = None) -> bytes:
    """`extra` adds members (RFC 9457 allows them), e.g. a refused booking's alternatives."""
    status = status or STATUS.get(code, 500)
    body = Problem(
        type=f"https://carewire.dev/problems/{code}", title=TITLES.get(code, "Error"),
        status=status, detail=detail, code=code, errors=errors or None, request_id=request_id,
    )
    if extra:
        return msgspec.json.encode({**msgspec.to_builtins(body), **extra})
    return msgspec.json.encode(body)


def problem(code: str, detail: str, *, status: int | None = None,
            errors: list[FieldProblem] | None = None, request: Request[Any, Any, Any] | None = None,
            headers: dict[str, str] | None = None,
            extra: dict[str, Any] | None = None) -> Response[bytes]:
    rid = request.scope.get("state", {}).get("request_id") if request else None
    return Response(
        content=problem_body(code, detail, status=status, errors=errors, request_id=rid,
                             extra=extra),
        status_code=status or STATUS.get(code, 500),
        media_type=MEDIA_TYPE,
        headers=headers,
    )


async def audit_failure(exc: Exception, scope: Scope) -> None:
    """Litestar `after_exception` hook: runs before the error response is sent."""
    if not isinstance(exc, DomainError) or scope["type"] != ScopeType.HTTP:
        return
    handler = scope.get("route_handler")
    permission = handler.opt.get("permission", "") if handler else ""
    if exc.code == "unauthenticated":
        await _refused(exc, scope, self_audited=bool(handler and handler.opt.get("self_audited")))
        return
    if handler and handler.opt.get("self_audited"):
        return  # login and refresh audit every attempt themselves
    state = scope.get("state", {})
    principal: Principal | None = state.get("principal")
    clinic = scope.get("path_params", {}).get("clinic_id")
    try:
        clinic_id = uuid.UUID(str(clinic)) if clinic else None
    except ValueError:
        clinic_id = None
    try:
        await record(
            principal,
            action=permission or f"{scope['method']} {scope['path']}",
            resource_type=exc.resource_type or "request",
            resource_id=exc.resource_id,
            clinic_id=clinic_id,
            outcome=Outcome.DENIED if exc.denied else Outcome.FAILED,
            detail={"code": exc.code, "reason": exc.message[:200]},
            meta=RequestMeta(request_id=state.get("request_id", ""),
                             ip=client_address(scope)),
        )
    except Exception:  # an audit outage must not turn a 4xx into a 500
        log.exception("could not audit a refused request")


async def _refused(exc: DomainError, scope: Scope, *, self_audited: bool) -> None:
    """A 401: counted in metrics, and sampled into the audit log (a flood of bad tokens must
    not write a row each; see domain/audit/refusals.py). Login and refresh audit themselves."""
    reason = refusals.reason_of(exc.message)
    metrics.AUTH_REFUSALS.labels("rest", reason).inc()
    if self_audited:
        return
    client = scope.get("client")
    meta = RequestMeta(request_id=scope.get("state", {}).get("request_id", ""),
                       ip=client[0] if client else None)
    try:
        await refusals.record_refusal(transport="rest", reason=reason, message=exc.message,
                                      meta=meta, detail={"path": scope["path"][:200]})
    except Exception:  # an audit outage must not turn a 401 into a 500
        log.exception("could not audit a refused request")


def on_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    retry_after = getattr(exc, "retry_after", None)  # rate limits, a payment provider away
    headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None
    if exc.code == "unauthenticated":
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(exc.code, exc.message, request=request, headers=headers,
                   errors=[FieldProblem(e.field, e.message) for e in exc.errors],
                   extra=getattr(exc, "extra", None))


def _wording(message: str) -> str:
    """msgspec's messages, where they would show a client our regular expressions."""
    if message == f"Expected `str` matching regex {NO_NUL!r}":
        return "must not contain NUL characters"
    return message


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter as the client names it: `from`, not the handler's argument `from_`."""
    handler = request.scope.get("route_handler")
    field = handler.parsed_fn_signature.parameters.get(key) if handler else None
    return getattr(getattr(field, "kwarg_definition", None), "name", None) or key


_MISSING = re.compile(r"Missing required \w+ parameter '([^']+)'")


def on_validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[bytes]:
    errors: list[FieldProblem] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        key, message = str(item.get("key", "")), str(item.get("message", "invalid"))
        if key == "data" and message == "'data'":  # Litestar's KeyError: there was no body
            key, message = "body", "required: send a JSON object"
        elif key == "data":
            key, message = msgspec_field_error(message)
        elif item.get("source") == "body":  # nested: "rules[0]" + "unknown field `x`" -> rules.0.x
            # msgspec names a dict's value `[...]`: name the dict itself
            key, message = msgspec_field_error(
                message, key.split("[...]")[0].replace("[", ".").replace("]", ""))
        elif item.get("source") in ("query", "header", "cookie"):
            key = _wire_name(request, key)
        errors.append(FieldProblem(key or "body", _wording(message)))
    if not errors and (missing := _MISSING.match(str(exc.detail))):
        errors.append(FieldProblem(missing.group(1), "required"))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or str(exc.detail)
    return problem("invalid", detail, errors=errors, request=request)


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    code = _CODE_FOR_STATUS.get(exc.status_code, "invalid" if exc.status_code < 500 else "internal")
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route for {request.method} {request.scope['path']}"
    if exc.status_code == 413:
        detail = "request body too large"
    errors = None
    if isinstance(exc.__cause__, SerializationException):  # the body is not JSON
        errors = [FieldProblem("body", detail)]
    headers = dict(exc.headers or {})
    return problem(code, detail, status=exc.status_code, request=request, headers=headers or None,
                   errors=errors)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", exc_info=exc)
    return problem("internal", "an unexpected error occurred; it has been logged", status=500,
                   request=request)


HANDLERS: dict[Any, Any] = {
    DomainError: on_domain_error,
    ValidationException: on_validation_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
