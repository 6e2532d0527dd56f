"""Zeroconf advertisement of the agent as `_bioreactor._tcp.local.`.

Home Assistant's zeroconf integration sees it and offers the agent for setup.
Advertising is a convenience: when multicast is unavailable it is logged once and
the agent carries on.
"""

from __future__ import annotations

import logging
import socket

from zeroconf import InterfaceChoice, IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

SERVICE_TYPE = "_bioreactor._tcp.local."
API_VERSION = "1"

_LOGGER = logging.getLogger(__name__)


def service_info(
    *, agent_id: str, name: str, port: int, tls: bool, addresses: list[str]
) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"bioreactor-{agent_id}.{SERVICE_TYPE}",
        port=port,
        properties={
            "agent_id": agent_id,
            "api_version": API_VERSION,
            "name": name,
            "tls": "1" if tls else "0",
        },
        server=f"bioreactor-{agent_id}.local.",
        parsed_addresses=addresses,
    )


def _local_addresses() -> list[str]:
    """The address this host reaches the network with (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            return [probe.getsockname()[0]]
        except OSError:
            return ["127.0.0.1"]


class Advertiser:
    """Registers the agent's service on start and withdraws it on close."""

    def __init__(
        self,
        *,
        agent_id: str,
        name: str,
        port: int,
        tls: bool,
        interfaces: list[str] | None = None,
        addresses: list[str] | None = None,
    ) -> None:
        self._info = service_info(
            agent_id=agent_id,
            name=name,
            port=port,
            tls=tls,
            addresses=addresses or _local_addresses(),
        )
        self._interfaces = interfaces
        self._zeroconf: AsyncZeroconf | None = None

    @property
    def info(self) -> ServiceInfo:
        return self._info

    async def start(self) -> bool:
        """True when advertised; False (logged once) when multicast is unavailable."""
        zeroconf: AsyncZeroconf | None = None
        try:
            zeroconf = AsyncZeroconf(
                interfaces=self._interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only
            )
            await zeroconf.async_register_service(self._info, allow_name_change=True)
        except (OSError, RuntimeError) as err:
            _LOGGER.warning("not advertising over zeroconf: %s", err)
            if zeroconf is not None:
                await zeroconf.async_close()
            return False
        self._zeroconf = zeroconf
        return True

    async def close(self) -> None:
        zeroconf, self._zeroconf = self._zeroconf, None
        if zeroconf is not None:
            await zeroconf.async_unregister_service(self._info)
            await zeroconf.async_close()
