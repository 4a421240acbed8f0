"""Logging in and out, rotating refresh tokens, creating accounts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import msgspec

from domain import clock, db, ratelimit, settings, validation
from domain.audit.commands import Outcome, record
from domain.errors import Conflict, RateLimited, Unauthenticated, invalid_field
from domain.identity import passwords, tokens
from domain.principal import Principal, RequestMeta


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


async def check_password(password: str, *, email: str, name: str | None,
                         field: str = "password") -> None:
    """Every place a password is set calls this (NIST SP 800-63B: length, not common, not the
    person's own details), so no route can store a weaker one. The guessability estimate
    costs up to tens of milliseconds of CPU for a long password: it runs off the event loop."""
    if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
        raise invalid_field(
            field, f"must be {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters"
        )
    problem = await asyncio.to_thread(passwords.weakness, password, email=email, name=name)
    if problem:
        raise invalid_field(field, problem)


async def _new_refresh_token(session_id: uuid.UUID) -> str:
    token = tokens.new_refresh_token()
    ttl = timedelta(seconds=settings.get().refresh_token_ttl_seconds)
    await db.fetch(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        uuid.uuid4(), session_id, tokens.hash_refresh_token(token), clock.now() + ttl,
    )
    return token


def slowdown_seconds(failures: int) -> float:
    """The delay before answering for an account that has seen `failures` wrong passwords in
    the window: none up to `login_slowdown_after`, then 0.25 s doubling per failure, capped."""
    cfg = settings.get()
    over = failures - cfg.login_slowdown_after
    if over < 0:
        return 0.0
    return float(min(cfg.login_slowdown_max_seconds, 0.25 * 2 ** min(over, 16)))


async def login(*, email: str, password: str, meta: RequestMeta, user_agent: str | None) -> TokenPair:
    """Every attempt is audited. Limits (issue 9: a stranger must not lock the owner out):

    - per source address, all attempts (`login_attempts_per_ip`);
    - per account *and* source address, wrong passwords (`login_failures_per_account`): the
      guessing source is refused, the owner elsewhere is not;
    - per account from anywhere, wrong passwords slow every answer for it down (a bounded,
      growing delay), which blunts a spread-out attack without ever locking the owner out.
    """
    cfg = settings.get()
    address = email.strip().lower()
    ip = meta.ip or "unknown"
    try:
        await ratelimit.consume("login-ip", ip, limit=cfg.login_attempts_per_ip,
                                window_seconds=cfg.login_window_seconds)
        # Count the attempt *before* checking the password (an atomic INCR), so a burst of
        # parallel guesses cannot all pass a read-only check; a success clears the count.
        await ratelimit.consume("login-account-source", f"{address}|{ip}",
                                limit=cfg.login_failures_per_account,
                                window_seconds=cfg.login_window_seconds)
    except RateLimited:
        await record(None, action="auth:login", resource_type="session", outcome=Outcome.DENIED,
                     detail={"reason": "rate_limited"}, meta=meta)
        raise
    delay = slowdown_seconds(await ratelimit.count("login-account", address))
    if delay:
        await asyncio.sleep(delay)
    rows = await db.fetch(
        "SELECT id, password_hash, is_active FROM users WHERE email = $1", address
    )
    user = rows[0] if rows else None
    ok = await passwords.verify_password(user["password_hash"] if user else None, password)
    if not ok or user is None or not user["is_active"]:
        reason = "disabled" if ok and user is not None else "bad_credentials"
        await record(None, action="auth:login", resource_type="session", outcome=Outcome.FAILED,
                     resource_id=None, actor_id=user["id"] if user else None,
                     detail={"reason": reason}, meta=meta)
        if not ok:
            await ratelimit.hit("login-account", address, window_seconds=cfg.login_window_seconds)
        raise Unauthenticated("wrong email or password")
    await ratelimit.reset("login-account-source", f"{address}|{ip}")
    session_id = uuid.uuid4()
    async with db.transaction():
        await db.fetch(
            """INSERT INTO sessions (id, user_id, expires_at, ip, user_agent)
               VALUES ($1, $2, $3, $4, $5)""",
            session_id, user["id"],
            clock.now() + timedelta(seconds=cfg.refresh_token_ttl_seconds),
            meta.ip, (user_agent or "")[:300],
        )
        refresh = await _new_refresh_token(session_id)
        await record(None, action="auth:login", resource_type="session", resource_id=session_id,
                     actor_id=user["id"], meta=meta)
    access, ttl = tokens.issue_access_token(user["id"], session_id)
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=ttl)


async def revoke_session(session_id: uuid.UUID, *, reason: str) -> bool:
    rows = await db.fetch(
        """UPDATE sessions SET revoked_at = now(), revoked_reason = $2
           WHERE id = $1 AND revoked_at IS NULL RETURNING id""",
        session_id, reason,
    )
    return bool(rows)


async def refresh(*, refresh_token: str, meta: RequestMeta) -> TokenPair:
    """Rotate: the presented token is spent. A spent token presented again means it was stolen
    (or replayed), so the whole family (the session) is revoked."""
    digest = tokens.hash_refresh_token(refresh_token)
    async with db.transaction():
        spent = await db.fetch(
            """UPDATE refresh_tokens t SET spent_at = now()
               FROM sessions s JOIN users u ON u.id = s.user_id
               WHERE t.token_hash = $1 AND t.spent_at IS NULL AND t.expires_at > now()
                 AND s.id = t.session_id AND s.revoked_at IS NULL AND u.is_active
               RETURNING s.id AS session_id, s.user_id""",
            digest,
        )
        if spent:
            session_id, user_id = spent[0]["session_id"], spent[0]["user_id"]
            new_refresh = await _new_refresh_token(session_id)
            await record(None, action="auth:refresh", resource_type="session",
                         resource_id=session_id, actor_id=user_id, meta=meta)
    if spent:
        access, ttl = tokens.issue_access_token(user_id, session_id)
        return TokenPair(access_token=access, refresh_token=new_refresh, expires_in=ttl)
    known = await db.fetch(
        """SELECT t.session_id, t.spent_at, s.user_id FROM refresh_tokens t
           JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1""",
        digest,
    )
    if known and known[0]["spent_at"] is not None:
        async with db.transaction():
            await revoke_session(known[0]["session_id"], reason="refresh_token_reuse")
            await record(None, action="auth:refresh", resource_type="session",
                         resource_id=known[0]["session_id"], actor_id=known[0]["user_id"],
                         outcome=Outcome.DENIED, detail={"reason": "refresh_token_reuse"},
                         meta=meta)
    else:
        await record(None, action="auth:refresh", resource_type="session", outcome=Outcome.FAILED,
                     detail={"reason": "unknown_or_expired"}, meta=meta)
    raise Unauthenticated("invalid refresh token")


async def logout(principal: Principal) -> None:
    if principal.session_id is None:
        return
    async with db.transaction():
        await revoke_session(principal.session_id, reason="logout")
        await record(principal, action="auth:logout", resource_type="session",
                     resource_id=principal.session_id)


async def create_user(
    *, email: str, name: str, password: str | None, phone: str | None = None,
    is_super_admin: bool = False,
) -> uuid.UUID:
    """Insert a user inside the caller's transaction; an existing email is a conflict."""
    address = validation.email(email)
    clean_name = validation.text(name, "name")
    clean_phone = validation.phone(phone)
    if password is not None:
        await check_password(password, email=address, name=clean_name)
    hashed = await passwords.hash_password(password) if password is not None else None
    user_id = uuid.uuid4()
    rows = await db.fetch(
        """INSERT INTO users (id, email, password_hash, name, phone, is_super_admin)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING RETURNING id""",
        user_id, address, hashed, clean_name, clean_phone, is_super_admin,
    )
    if not rows:
        raise Conflict("a user with this email already exists", resource_type="user")
    return user_id


async def ensure_super_admin(*, email: str, password: str, name: str = "Administrator") -> uuid.UUID:
    """Create, or reset the password of, a SUPER_ADMIN. Idempotent; for the CLI."""
    address = validation.email(email)
    await check_password(password, email=address, name=name)
    hashed = await passwords.hash_password(password)
    async with db.transaction():
        rows = await db.fetch(
            """INSERT INTO users (id, email, password_hash, name, is_super_admin)
               VALUES ($1, $2, $3, $4, true)
               ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                   is_super_admin = true, is_active = true, updated_at = now()
               RETURNING id""",
            uuid.uuid4(), address, hashed, name,
        )
        user_id: uuid.UUID = rows[0]["id"]
        await record(None, action="users:create_admin", resource_type="user", resource_id=user_id,
                     meta=RequestMeta(request_id="cli"))
    return user_id
