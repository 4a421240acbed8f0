"""Who is calling: the TCP peer, or the address our own reverse proxies say they forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from domain import settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _trusted(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _is_trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(scope: Mapping[str, Any]) -> str | None:
    """The caller's address: the TCP peer, unless the peer is a proxy named in
    CAREWIRE_TRUSTED_PROXIES; then X-Forwarded-For is read from the right, skipping our own
    proxies, and the first address they did not add is the client. Anything further left was
    written by the client and proves nothing. The one place the address is taken (login and
    registration limits, audit, anonymous idempotency keys, socket connects); it reads a plain
    ASGI scope, so the HTTP edge and the hub share it."""
    client = scope.get("client")
    peer: str | None = client[0] if client else None
    networks = _trusted(settings.get().trusted_proxies)
    if peer is None or not networks or not _is_trusted(peer, networks):
        return peer
    forwarded = [
        v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-forwarded-for"
    ]
    hops = [h.strip() for h in ",".join(forwarded).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a proxy we trust passed on garbage: fall back to the proxy
    return hops[0] if hops else peer
