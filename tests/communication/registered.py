"""Two adapters registered for the configuration tests, with credential fields of the shapes
real providers have (the real adapters arrive in their own modules and register the same way).
They send nothing: the configuration routes validate against the registry and never send.

`python -m tests.communication.registered serve ...` is `carewire serve ...` with them
registered, so a server process knows them too."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import ClassVar

from domain.communication.models import Channel, Outbound
from domain.communication.providers import PROVIDERS
from domain.communication.providers.base import Sent, Unavailable


class ConfigMail:
    name: ClassVar[str] = "configmail"
    channels: ClassVar[frozenset[Channel]] = frozenset({"email"})
    required_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    optional_fields: ClassVar[tuple[str, ...]] = ("region",)
    default_rate_per_second: ClassVar[int] = 10

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        raise Unavailable("configmail sends nothing")


class ConfigText:
    name: ClassVar[str] = "configtext"
    channels: ClassVar[frozenset[Channel]] = frozenset({"sms", "whatsapp"})
    required_fields: ClassVar[tuple[str, ...]] = ("account", "token")
    optional_fields: ClassVar[tuple[str, ...]] = ()
    default_rate_per_second: ClassVar[int] = 10

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        raise Unavailable("configtext sends nothing")


def install() -> None:
    for provider in (ConfigMail(), ConfigText()):
        PROVIDERS.setdefault(provider.name, provider)


if __name__ == "__main__":
    install()
    from gateway.cli import main

    sys.exit(main(sys.argv[1:]))
