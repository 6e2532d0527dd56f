"""systemd's service notifications: ready, stopping, and the watchdog's keep-alive.

Under the unit's `WatchdogSec=`, systemd kills and restarts an agent that stops sending
`WATCHDOG=1`; a restart puts every actuator in its safe state. The keep-alive is sent
only while the agent is responsive (its control loop ticks), so a hung agent - a blocked
event loop, a control tick stuck on the bus - does not keep a heater or pump in its last
state. The protocol is one datagram to `$NOTIFY_SOCKET` (sd_notify(3)); python-systemd
would need libsystemd's headers to build on the board for these few lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

_LOGGER = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; never raises (systemd's absence must not stop the agent)."""

    def __init__(self, address: str, watchdog_s: float | None) -> None:
        # A leading "@" names a socket in the abstract namespace (sd_notify(3)).
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier | None:
        """The notifier systemd asked for, or None outside a `Type=notify` unit."""
        address = environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        watchdog_s: float | None = None
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for (not a child of it).
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog_s = int(usec) / 1_000_000
        return cls(address, watchdog_s)

    def send(self, message: str) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as err:
            if not self._failing:
                _LOGGER.warning("cannot notify systemd (%s): %s", self.address, err)
            self._failing = True
        else:
            self._failing = False

    async def keep_alive(self, responsive: Callable[[], bool]) -> None:
        """Sends `WATCHDOG=1` twice per watchdog period while `responsive()` holds."""
        if self.watchdog_s is None:
            return
        withheld = False
        while True:
            if responsive():
                self.send("WATCHDOG=1")
                withheld = False
            elif not withheld:
                _LOGGER.error("agent unresponsive: withholding the watchdog keep-alive")
                withheld = True
            await asyncio.sleep(self.watchdog_s / 2)
