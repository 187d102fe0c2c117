"""A small pool of keep-alive HTTP/1.1 connections to one origin, for the Cerbos REST API.

Why not httpx or httpcore: per CheckResources they cost ~700-1,500 µs of CPU against
~140-200 µs here (and ~125-380 µs for the gRPC client), more than the REST transport could
ever save. h11 does the framing (a well-kept library, pure Python, no I/O); this module
only moves bytes between it and asyncio streams.

Rules, each for a reason:
- at most `max_connections` requests in flight, each on its own connection (no pipelining);
- a connection goes back to the pool only after a complete 200 response that keeps it open:
  any error, other status, `Connection: close`, or cancellation (a caller's timeout) drops it,
  because its state is then unknown;
- an idle connection the server has closed is discarded before use, and a request that fails
  on a reused connection before a response arrived is retried once on a fresh one (the
  keep-alive race: the server closed it as we sent; only for requests safe to repeat, as
  Cerbos checks are); a fresh connection is never retried;
- no timeouts here: the caller bounds the whole call (connect, queueing, I/O) with its own
  deadline, which cancels us.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

import h11

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_READ_SIZE = 65_536


class HttpProtocolError(Exception):
    """The server's bytes were not an acceptable HTTP/1.1 response."""


class _StaleConnection(Exception):
    """A reused connection closed before answering: safe to retry on a new one."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class Http11Pool:
    """Keep-alive connections to `base_url` (`http://host:port` or `https://host:port`)."""

    def __init__(self, base_url: str, *, max_connections: int = 16,
                 user_agent: str = "agent-broker") -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be http(s)://host[:port]")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        authority = f"[{self._host}]" if ":" in self._host else self._host
        self._headers = [("Host", f"{authority}:{self._port}"), ("User-Agent", user_agent)]
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False
        self.opened = 0
        """Connections opened so far (tests and diagnostics: reuse keeps it small)."""

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, body) of one request; raises OSError or HttpProtocolError."""
        headers = [*self._headers, ("Content-Length", str(len(body)))]
        if body:
            headers.append(("Content-Type", content_type))
        request = h11.Request(method=method, target=path, headers=headers)
        async with self._slots:
            conn, reused = await self._checkout()
            try:
                return await self._exchange(conn, request, body, reused)
            except _StaleConnection:
                conn, _ = await self._checkout(fresh=True)
                return await self._exchange(conn, request, body, reused=False)

    async def aclose(self) -> None:
        """Close idle connections now; ones in use are closed when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    async def _checkout(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        if self._closed:
            raise RuntimeError("pool is closed")
        while self._idle and not fresh:
            conn = self._idle.pop()  # the most recently used: least likely to have timed out
            if conn.usable():
                return conn, True
            conn.close()
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl,
            server_hostname=self._host if self._ssl else None,
        )
        self.opened += 1
        return _Connection(reader, writer), False

    async def _exchange(self, conn: _Connection, request: h11.Request, body: bytes,
                        reused: bool) -> tuple[int, bytes]:
        keep = False
        try:
            status, data = await self._send_and_read(conn, request, body, reused)
            keep = (status == 200 and not self._closed
                    and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE)
            if keep:
                conn.h11.start_next_cycle()
            return status, data
        except h11.ProtocolError as exc:
            raise HttpProtocolError(str(exc)) from None
        finally:  # also on cancellation: a half-used connection is never reused
            if keep:
                self._idle.append(conn)
            else:
                conn.close()

    async def _send_and_read(self, conn: _Connection, request: h11.Request, body: bytes,
                             reused: bool) -> tuple[int, bytes]:
        h = conn.h11
        out = h.send(request) or b""
        if body:
            out += h.send(h11.Data(data=body)) or b""
        out += h.send(h11.EndOfMessage()) or b""
        status = 0
        chunks: list[bytes] = []
        size = 0
        try:
            conn.writer.write(out)
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.reader.read(_READ_SIZE)
                    if not data and reused and status == 0:
                        raise _StaleConnection
                    h.receive_data(data)  # b"" is EOF: h11 then raises or ends the message
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_RESPONSE_BYTES:
                        raise HttpProtocolError("response too large")
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return status, b"".join(chunks)
                elif isinstance(event, h11.ConnectionClosed):
                    raise HttpProtocolError("connection closed before the response ended")
                # InformationalResponse (1xx): wait for the final one
        except ConnectionError:
            if reused and status == 0:
                raise _StaleConnection from None
            raise
