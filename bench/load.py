"""A closed-loop HTTP/1.1 load generator that is not the bottleneck: prebuilt requests written
to keep-alive sockets, responses read just far enough to know their status and end.

Why not httpx: an httpx request costs about as much client CPU as a broker exchange costs the
broker, and on the 2-core machine the bench is sized for the generator shares the cores with
the broker, Redis and Cerbos. A raw request costs a few tens of microseconds; `LoadResult`
reports the generator's own CPU per request, so a reader can check that it stayed small.

`run_in_process` drives `concurrency` connections from a separate Python process (`python -m
bench.load`, the spec as JSON on stdin, the result as JSON on stdout), so the generator never
shares an event loop, or a GIL, with the bench or the server. `Connection` is also used
in-process for sequential latency measurements (concurrency 1), where one socket round trip
at a time cannot load anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


def build_request(method: str, host: str, port: int, path: str, *,
                  headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             *(f"{name}: {value}" for name, value in headers)]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive connection; `send(request)` returns (status, headers, body)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        reused = self._writer is not None
        try:
            return await self._send(request)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
            await self.aclose()
            if not reused:
                raise
        # uvicorn closes a keep-alive connection idle for 5 s (while other servers took their
        # turn); it does so between requests, so nothing was processed: send it again
        return await self._send(request)

    async def _send(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunks()
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, headers, body

    async def _chunks(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append((await self._reader.readexactly(size + 2))[:size])
            if size == 0:  # the last chunk's CRLF ends an empty trailer section
                return b"".join(parts)

    async def aclose(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    requests: list[str]
    """Prebuilt requests (latin-1 text of the bytes), sent round robin across connections."""
    concurrency: int
    duration_s: float
    warmup_s: float = 1.0
    expect_status: int = 200


@dataclass
class LoadResult:
    completed: int = 0
    """Responses with the expected status within the measured window."""
    warmup_completed: int = 0
    """Responses during the warm-up (not timed; they count for CPU per request)."""
    unexpected: int = 0
    """Responses with another status (in the window): any at all makes the run suspect."""
    window_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    """The generator's own CPU time over warm-up and window: its share of the machine."""
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return self.completed / self.window_s if self.window_s else 0.0

    @property
    def requests(self) -> int:
        """Every response, warm-up included: what the server did work for."""
        return self.completed + self.warmup_completed + self.unexpected


async def _worker(spec: LoadSpec, requests: list[bytes], offset: int, start: float,
                  stop: float, result: LoadResult) -> None:
    connection = Connection(spec.host, spec.port)
    i = offset
    try:
        while (sent := time.perf_counter()) < stop:
            status, _, body = await connection.send(requests[i % len(requests)])
            i += spec.concurrency
            if sent < start:  # warm-up: connections opened, caches filled, nothing timed
                result.warmup_completed += 1
                continue
            if status == spec.expect_status:
                result.completed += 1
                result.latencies.append(time.perf_counter() - sent)
            else:
                result.unexpected += 1
                result.first_error = result.first_error or f"{status} {body[:200]!r}"
    finally:
        await connection.aclose()


async def run(spec: LoadSpec) -> LoadResult:
    requests = [r.encode("latin-1") for r in spec.requests]
    result = LoadResult()
    cpu = os.times()
    start = time.perf_counter() + spec.warmup_s
    stop = start + spec.duration_s
    await asyncio.gather(*(_worker(spec, requests, n, start, stop, result)
                           for n in range(spec.concurrency)))
    # the window ends when the last in-flight request returns, a little after `stop`
    result.window_s = time.perf_counter() - start
    after = os.times()
    result.client_cpu_s = (after.user - cpu.user) + (after.system - cpu.system)
    return result


def run_in_process(spec: LoadSpec, timeout_s: float | None = None) -> LoadResult:
    """Run `spec` in a fresh `python -m bench.load` process and return its result."""
    limit = timeout_s or spec.warmup_s + spec.duration_s + 60
    done = subprocess.run([sys.executable, "-m", "bench.load"], input=json.dumps(asdict(spec)),
                          capture_output=True, text=True, timeout=limit, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    return LoadResult(**json.loads(done.stdout))


def main() -> None:
    spec = LoadSpec(**json.load(sys.stdin))
    result = asyncio.run(run(spec))
    json.dump(asdict(result), sys.stdout)


if __name__ == "__main__":
    main()
