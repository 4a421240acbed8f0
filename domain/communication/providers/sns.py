"""Amazon SNS: SMS (publish to a phone number) and mobile push (publish to a platform endpoint).

One provider name, "sns", serves both channels; a clinic stores one set of AWS credentials and,
for push, the ARNs of its platform applications (FCM and/or APNs).

SMS: opted-out numbers are checked first (`check_if_phone_number_is_opted_out`): SNS's publish
answers success for an opted-out number and then silently drops the message, so without the
check we would record `sent` for a message that never leaves AWS. An opted-out number is
`Rejected`. The check is one more call per SMS (AWS allows it 50/s per account).

Push: `create_platform_endpoint` is idempotent in SNS (same token, same attributes → the same
endpoint ARN), so every send calls it and then publishes to the endpoint. A disabled endpoint
(the platform told SNS the token is dead) is `Rejected(retire_token=True)`.

Idempotency: SNS standard publishes have none (deduplication ids are FIFO-topic only): a retry
after an unknown outcome can deliver twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import aioboto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from domain.communication.models import Channel, Outbound
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from domain.settings import get as app_settings

NAME = "sns"
#: An SMS SenderID: 1-11 letters and digits with at least one letter (where countries allow it).
SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{1,11}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
#: SNS's answer when an endpoint with this token exists with other attributes; it names the
#: existing endpoint, which AWS's own guidance then uses.
EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:[^\s]+) already exists")
#: Our credentials, the account or the platform application: not this message's fault.
ACCOUNT_ERRORS = frozenset({
    "AuthorizationError", "InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied",
    "AccessDeniedException", "UnrecognizedClientException", "ExpiredToken", "InvalidSecurity",
    "PlatformApplicationDisabled", "OptInRequired", "KMSDisabled", "KMSInvalidState",
    "KMSNotFound", "KMSOptInRequired", "KMSAccessDenied", "KMSThrottling",
})
THROTTLED = frozenset({"Throttling", "ThrottlingException", "Throttled", "TooManyRequestsException",
                       "RequestLimitExceeded"})

#: One session per process: botocore's service models load once, not per message.
_session = aioboto3.Session()


def _client(credentials: Mapping[str, str]) -> Any:
    for field in ("access_key_id", "secret_access_key", "region"):
        if not credentials.get(field):
            raise Unavailable(f"{NAME}: credential field {field} is missing", code="bad_credentials")
    settings = app_settings()
    timeout = settings.provider_timeout_seconds
    config = Config(
        connect_timeout=min(timeout, 5.0), read_timeout=timeout,
        # no retries inside botocore: the pipeline decides (`max_attempts` would mean retries
        # *after* the first try; `total_max_attempts` counts the first)
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return _session.client(
        "sns", region_name=credentials["region"],
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
        endpoint_url=settings.aws_endpoint_url or None, config=config,
    )


def _code(exc: ClientError) -> tuple[str, int | None]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code", "")), status if isinstance(status, int) else None


def _client_error(exc: ClientError, *, sent_by: str) -> Exception:
    """A ClientError as the pipeline's failure classes. `sent_by` names the call (the text never
    carries AWS's message: it can quote the phone number or the token)."""
    code, status = _code(exc)
    what = f"{NAME}: {sent_by}: {status or '?'} {code or 'error'}"
    if code == "EndpointDisabled":
        return Rejected(f"{what} (the device token is no longer valid)", retire_token=True,
                        status_code=status, code=code)
    if code in THROTTLED or status == 429:
        return Unavailable(what, status_code=status, code=code or "throttled", retry_after=1.0)
    if code in ACCOUNT_ERRORS or status in (401, 403) or (status or 500) >= 500:
        return Unavailable(what, status_code=status, code=code)
    return Rejected(what, status_code=status, code=code)


def _transport_error(exc: BotoCoreError) -> Exception:
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        return MaybeSent(f"{NAME}: no answer after the request was sent ({type(exc).__name__})")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return Unavailable(f"{NAME}: cannot connect ({type(exc).__name__})")
    return Unavailable(f"{NAME}: {type(exc).__name__}")


def push_message(message: Outbound) -> str:
    """The `MessageStructure=json` body: one payload per platform, each a JSON string."""
    notification: dict[str, str] = {"body": message.text}
    if message.subject:
        notification["title"] = message.subject
    fcm: dict[str, Any] = {"notification": notification,
                           "android": {"priority": "high",
                                       "notification": {"tag": message.idempotency_key}}}
    if message.data:
        fcm["data"] = dict(message.data)
    alert: dict[str, str] = {"body": message.text}
    if message.subject:
        alert["title"] = message.subject
    apns: dict[str, Any] = {"aps": {"alert": alert, "sound": "default"}, **message.data}
    apns_text = json.dumps(apns)
    return json.dumps({
        "default": message.text,
        "GCM": json.dumps({"fcmV1Message": {"message": fcm}}),
        "APNS": apns_text,
        "APNS_SANDBOX": apns_text,
    })


class SNS:
    """Amazon SNS for SMS and for push to FCM/APNs tokens through platform applications."""

    name: ClassVar[str] = NAME
    channels: ClassVar[frozenset[Channel]] = frozenset({"push", "sms"})
    token_kinds: ClassVar[frozenset[str]] = frozenset({"fcm", "apns"})
    required_fields: ClassVar[tuple[str, ...]] = ("access_key_id", "secret_access_key", "region")
    optional_fields: ClassVar[tuple[str, ...]] = ("fcm_application_arn", "apns_application_arn")
    #: SNS's default SMS rate is 20 messages/s per account.
    default_rate_per_second: ClassVar[int] = 20

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        if message.channel == "sms":
            return await self._sms(message, credentials)
        if message.channel == "push":
            return await self._push(message, credentials)
        raise Rejected(f"{NAME}: cannot send {message.channel}", code="channel")

    async def _sms(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        if not E164.match(message.to):
            raise Rejected(f"{NAME}: the phone number is not E.164", code="InvalidParameter")
        attributes: dict[str, Any] = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        sender_id = message.sender.sms_sender_id
        if sender_id and SENDER_ID.match(sender_id):
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
        step = "check opt-out"
        try:
            async with _client(credentials) as sns:
                opted = await sns.check_if_phone_number_is_opted_out(phoneNumber=message.to)
                if opted.get("isOptedOut"):
                    raise Rejected(f"{NAME}: the number has opted out of SMS", code="OptedOut")
                step = "publish"
                result = await sns.publish(PhoneNumber=message.to, Message=message.text,
                                           MessageAttributes=attributes)
        except ClientError as exc:
            raise _client_error(exc, sent_by=step) from None
        except BotoCoreError as exc:
            failure = _transport_error(exc)
            if step != "publish" and isinstance(failure, MaybeSent):
                failure = Unavailable(f"{NAME}: {step}: no answer")  # nothing was published
            raise failure from None
        return Sent(provider_message_id=result.get("MessageId"),
                    status_code=result.get("ResponseMetadata", {}).get("HTTPStatusCode"))

    async def _push(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        field = {"fcm": "fcm_application_arn", "apns": "apns_application_arn"}.get(
            message.token_kind or "")
        app_arn = credentials.get(field) if field else None
        if not app_arn:
            # this clinic's SNS has no platform application for this kind of token
            raise Rejected(f"{NAME}: no platform application for {message.token_kind or '?'} tokens",
                           code="token_kind")
        step = "create endpoint"
        try:
            async with _client(credentials) as sns:
                try:
                    created = await sns.create_platform_endpoint(PlatformApplicationArn=app_arn,
                                                                 Token=message.to)
                    endpoint = created["EndpointArn"]
                except ClientError as exc:
                    # the token has an endpoint with other attributes (e.g. disabled): use it
                    found = EXISTING_ENDPOINT.search(str(exc.response.get("Error", {}).get("Message")))
                    if _code(exc)[0] != "InvalidParameter" or found is None:
                        raise
                    endpoint = found.group(1)
                step = "publish"
                result = await sns.publish(TargetArn=endpoint, MessageStructure="json",
                                           Message=push_message(message))
        except ClientError as exc:
            failure = _client_error(exc, sent_by=step)
            if step != "publish" and _code(exc)[0] == "NotFound":
                # the platform application itself is missing: configuration, not this token
                failure = Unavailable(str(failure), code="NotFound")
            raise failure from None
        except BotoCoreError as exc:
            failure = _transport_error(exc)
            if step != "publish" and isinstance(failure, MaybeSent):
                failure = Unavailable(f"{NAME}: {step}: no answer")
            raise failure from None
        return Sent(provider_message_id=result.get("MessageId"),
                    status_code=result.get("ResponseMetadata", {}).get("HTTPStatusCode"))
