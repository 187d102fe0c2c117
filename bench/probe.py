"""A minimal HTTP/1.1 keep-alive prober for the revocation polls.

Why not httpx here: on the 2-core machine the bench is sized for, an httpx request costs about
2 ms of client CPU against 1.4 ms for the whole 401 round trip over a raw socket, and three
pollers share the bench's one core. The poll's round trip is the resolution of every
propagation sample, so the poller is a prebuilt request written to a socket and a response
read just far enough to know its status and where it ends (Content-Length or chunked; the MCP
`initialize` answers 200 as a chunked event stream, 401 with a length). Everything that is
not timed keeps using httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from tests.support.mcp import INITIALIZE

_BODY = json.dumps(INITIALIZE).encode()


class Prober:
    """One connection to one MCP server; `status(token)` sends an MCP initialize."""

    def __init__(self, host: str, port: int, path: str = "/mcp") -> None:
        self.host, self.port, self.path = host, port, path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._requests: dict[str, bytes] = {}

    def _request(self, token: str) -> bytes:
        request = self._requests.get(token)
        if request is None:
            head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    "Accept: application/json, text/event-stream\r\n"
                    "Content-Type: application/json\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Length: {len(_BODY)}\r\n\r\n")
            request = self._requests[token] = head.encode() + _BODY
        return request

    async def status(self, token: str) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(self._request(token))
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            await self._skip_chunks()
        else:
            await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return code

    async def _skip_chunks(self) -> None:
        assert self._reader is not None
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self._reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:  # the last chunk's CRLF ends an empty trailer section
                return

    async def aclose(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):  # the server may have closed its side already
                await writer.wait_closed()
