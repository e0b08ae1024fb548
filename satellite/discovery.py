"""Zeroconf: each server is advertised as ``_wyoming._tcp.local.`` so HA finds it.

HA builds its unique id from the service name, so names must be stable: by default the
host name plus the role ("kitchen-pi speech", "kitchen-pi satellite").
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

import ifaddr
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

_LOGGER = logging.getLogger(__name__)
SERVICE_TYPE = "_wyoming._tcp.local."


@dataclass(frozen=True)
class Advertisement:
    name: str  # instance name, e.g. "kitchen-pi satellite"
    uri: str  # the server's tcp://HOST:PORT


def _reason(exc: BaseException) -> str:
    """An exception's message, or its kind when it has none (zeroconf raises some bare)."""
    return str(exc) or type(exc).__name__


def routable_ipv4(bind_host: str) -> str | None:
    """The address HA should connect to: the bound one, or the first non-loopback IPv4."""
    if bind_host not in ("", "0.0.0.0"):
        return bind_host
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                return ip.ip
    return None


def _service_info(advert: Advertisement) -> ServiceInfo | None:
    parsed = urlparse(advert.uri)
    if parsed.scheme != "tcp" or parsed.port is None:
        return None  # a unix socket is not reachable over the network
    address = routable_ipv4(parsed.hostname or "")
    if address is None:
        _LOGGER.warning("zeroconf: no routable IPv4 address for %s; not advertised", advert.name)
        return None
    server = f"{socket.gethostname().split('.')[0]}.local."
    return ServiceInfo(
        SERVICE_TYPE,
        f"{advert.name}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(address)],
        port=parsed.port,
        server=server,
    )


class Discovery:
    """Registers the advertisements on start and withdraws them on close."""

    def __init__(self, adverts: list[Advertisement], interfaces: list[str] | None = None) -> None:
        self._adverts = adverts
        self._interfaces = interfaces
        self._zeroconf: AsyncZeroconf | None = None
        self._registered: list[ServiceInfo] = []

    async def start(self) -> None:
        infos = [info for advert in self._adverts if (info := _service_info(advert)) is not None]
        if not infos:
            return
        kwargs = {"interfaces": self._interfaces} if self._interfaces else {}
        try:
            self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only, **kwargs)
        except OSError as exc:
            _LOGGER.warning(
                "zeroconf: not available (%s); add the servers in HA by hand", _reason(exc)
            )
            return
        for info in infos:
            try:
                await self._zeroconf.async_register_service(info)
            except Exception as exc:  # a name taken by another device, no multicast route...
                _LOGGER.warning("zeroconf: cannot advertise %r: %s", info.name, _reason(exc))
                continue
            self._registered.append(info)
            address = socket.inet_ntoa(info.addresses[0])
            _LOGGER.info("zeroconf: advertising %r at %s:%s", info.name, address, info.port)

    async def close(self) -> None:
        if self._zeroconf is not None:
            for info in self._registered:
                await self._zeroconf.async_unregister_service(info)
            await self._zeroconf.async_close()
            self._zeroconf = None
