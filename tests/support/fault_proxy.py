"""A TCP fault proxy on loopback: sits between a client and a server and, per
connection, passes traffic, delays it, resets it, truncates the response, or
sends the response twice. Stdlib only, so both halves' tests can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field

FAULTS = ("pass", "delay", "reset_request", "reset_response", "truncate", "repeat")


@dataclass
class FaultProxy:
    """Forwards 127.0.0.1:<port> to target; `weights` choose each connection's fault."""

    target_host: str
    target_port: int
    seed: int = 0
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "pass": 6,
            "delay": 1,
            "reset_request": 1,
            "reset_response": 1,
            "truncate": 1,
            "repeat": 1,
        }
    )
    max_delay_s: float = 0.2
    port: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        self._rng = random.Random(self.seed)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _choose(self) -> str:
        names = list(self.weights)
        return self._rng.choices(names, weights=[self.weights[n] for n in names])[0]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One fault decision per request on the connection (HTTP/1.1 keep-alive).
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        try:
            while True:
                request = await _read_http_message(reader)
                if request is None:
                    return
                fault = self._choose()
                self.counts[fault] += 1
                if fault == "reset_request":
                    _reset(writer)
                    return
                if fault == "delay":
                    await asyncio.sleep(self._rng.uniform(0, self.max_delay_s))
                up_writer.write(request)
                await up_writer.drain()
                response = await _read_http_message(up_reader)
                if response is None:
                    return
                if fault == "reset_response":
                    _reset(writer)
                    return
                if fault == "truncate":
                    writer.write(response[: self._rng.randrange(1, max(2, len(response)))])
                    await writer.drain()
                    return
                writer.write(response * (2 if fault == "repeat" else 1))
                await writer.drain()
        finally:
            up_writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Closes with RST instead of FIN (SO_LINGER 0)."""
    import socket
    import struct

    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_http_message(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 message with a Content-Length or chunked body; None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:])
        if k
    }
    if "content-length" in headers:
        return head + await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                return head + body
    return head
