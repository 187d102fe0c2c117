"""`broker.pdp.http11.Http11Pool` against small scripted HTTP servers: which connections it
keeps, which it drops, what it refuses. (Against the real Cerbos: tests/integration.)"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable

import pytest

from broker.pdp import http11
from broker.pdp.http11 import Http11Pool, HttpProtocolError

Reply = Callable[[int], bytes]  # request number on the connection -> raw response bytes


def ok(body: bytes = b"{}", extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


@contextlib.asynccontextmanager
async def server(reply: Reply) -> AsyncIterator[tuple[str, list[int]]]:
    """Answers each request with `reply(n)`; `connections` counts requests per connection."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(connections)
        connections.append(0)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                connections[index] += 1
                writer.write(reply(connections[index]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        listener.close()


async def test_one_connection_is_reused() -> None:
    async with server(lambda n: ok(b'{"n": %d}' % n)) as (url, connections):
        pool = Http11Pool(url)
        answers = [await pool.request("POST", "/x", b"{}") for _ in range(5)]
        await pool.aclose()
    assert answers[-1] == (200, b'{"n": 5}')
    assert connections == [5]


async def test_connections_are_bounded() -> None:
    async with server(lambda n: ok()) as (url, connections):
        pool = Http11Pool(url, max_connections=3)
        await asyncio.gather(*(pool.request("GET", "/") for _ in range(30)))
        await pool.aclose()
    assert len(connections) <= 3 and sum(connections) == 30


@pytest.mark.parametrize("reply", [
    lambda n: ok(extra="Connection: close\r\n"),
    lambda n: b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}",
    lambda n: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
])
async def test_close_or_another_status_drops_the_connection(reply: Reply) -> None:
    async with server(reply) as (url, connections):
        pool = Http11Pool(url)
        for _ in range(3):
            await pool.request("GET", "/")
        assert pool.idle == 0
        await pool.aclose()
    assert connections == [1, 1, 1]


@pytest.mark.parametrize("raw", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then the server hangs up
])
async def test_a_broken_response_is_an_error_and_the_connection_dropped(raw: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    pool = Http11Pool(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    try:
        with pytest.raises(HttpProtocolError):
            await pool.request("GET", "/")
        assert pool.idle == 0
    finally:
        await pool.aclose()
        listener.close()


async def test_too_large_a_response_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http11, "MAX_RESPONSE_BYTES", 1000)
    async with server(lambda n: ok(b"x" * 1001)) as (url, _):
        pool = Http11Pool(url)
        with pytest.raises(HttpProtocolError, match="too large"):
            await pool.request("GET", "/")
        await pool.aclose()


async def test_a_cancelled_request_never_returns_its_connection() -> None:
    answered = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")  # then hangs
        await writer.drain()
        answered.set()
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    pool = Http11Pool(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    try:
        task = asyncio.create_task(pool.request("GET", "/"))
        await answered.wait()
        await asyncio.sleep(0.05)
        task.cancel()  # as the caller's deadline does
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.idle == 0 and pool.opened == 1
    finally:
        await pool.aclose()
        listener.close()


async def test_https_speaks_tls_and_verifies_the_server() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(ok())  # plain HTTP where a TLS handshake is expected
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(plain, "127.0.0.1", 0)
    url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    pool = Http11Pool(url)
    try:
        context = pool._ssl
        assert context is not None
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        with pytest.raises(ssl.SSLError):  # an OSError: the policy point fails closed on it
            await asyncio.wait_for(pool.request("GET", "/"), 5)
    finally:
        await pool.aclose()
        listener.close()
    assert Http11Pool(url.replace("https://", "http://"))._ssl is None


async def test_a_closed_pool_refuses_requests() -> None:
    pool = Http11Pool("http://127.0.0.1:9")
    await pool.aclose()
    with pytest.raises(RuntimeError):
        await pool.request("GET", "/")
