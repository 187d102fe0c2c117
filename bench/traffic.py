"""Mixed agent traffic against several brokers and MCP servers, every request recorded.

Each simulated agent loops: a token exchange (research-agent, its own sales rep's ID token,
crm:read for the demo CRM) at the next broker, then `calls_per_token` MCP requests with that
token, each at the next MCP server: `search_contacts` calls and, every `list_every`-th, a
`tools/list`. So every broker's tokens reach every MCP server. When an exchange fails the
agent keeps its last token, so calls go on through a broker-side outage and show what the MCP
servers make of it. A broker that does not answer at all (refused, reset, timed out) is
skipped for the next one, as a client spreading requests over replicas would; both attempts
are recorded.

The clients are bench.load's raw keep-alive connections and bench.mcp_client's stateless
requests: an httpx request costs about as much client CPU as the server's work, and here the
agents share two cores with two brokers, three MCP servers, Redis and Cerbos.

Every request is an `Event` with its start and end on the monotonic clock, so a fault test
can judge each one by when it was made relative to the fault, and the bench can count them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt

from bench.load import Connection, build_request
from bench.mcp_client import McpError, modern_request, sse_message
from broker.exchange import GRANT_TYPE, ID_TOKEN_TYPE

OK = "ok"
UNAVAILABLE = "unavailable"
"""An exchange answered 503 temporarily_unavailable, no-store, with no token: failing closed."""
DENIED = "denied"
"""A tool call answered with a JSON-RPC or tool error, or a tools/list with no tool."""
REFUSED = "refused"
"""An MCP server answered 401: the token was not accepted."""
UNREACHABLE = "unreachable"
"""No HTTP answer at all: connection refused or reset, or no answer within the timeout."""
ERROR = "error"
"""Anything else (a 500, a 503 of another kind, a token with a 503...): never expected."""

EXCHANGE, CALL, LIST = "exchange", "call", "list"


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    """EXCHANGE, CALL or LIST."""
    target: int
    """The broker (exchanges) or MCP server (calls, lists) asked, by index."""
    started: float
    ended: float
    outcome: str
    minted_by: int = -1
    """The broker that minted the token used (calls, lists) or just minted (exchanges)."""
    sid: str = ""
    jti: str = ""
    subject: str = ""
    kid: str = ""
    detail: str = ""
    """Status and the start of the body, for outcomes nobody expected."""


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    minted_by: int
    kid: str


@dataclass(frozen=True, slots=True)
class _Endpoint:
    host: str
    port: int
    path: str

    @classmethod
    def of(cls, url: str) -> _Endpoint:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/")


class Traffic:
    """`async with traffic.running(): ...` drives one agent per ID token until the block ends;
    `events` holds every request made so far."""

    def __init__(self, brokers: Sequence[str], servers: Sequence[str], id_tokens: Sequence[str],
                 *, client_id: str, client_secret: str, resource: str, scope: str = "crm:read",
                 calls_per_token: int = 4, list_every: int = 5, timeout_s: float = 5.0,
                 pause_after_failure_s: float = 0.02) -> None:
        if not brokers or not servers or not id_tokens:
            raise ValueError("traffic needs brokers, MCP servers and at least one agent")
        self.brokers = [_Endpoint.of(url) for url in brokers]
        self.servers = [_Endpoint.of(url) for url in servers]
        self.id_tokens = list(id_tokens)
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._exchange_headers = [("Authorization", f"Basic {basic}"),
                                  ("Content-Type", "application/x-www-form-urlencoded")]
        self._resource, self._scope = resource, scope
        self.calls_per_token, self.list_every = calls_per_token, list_every
        self.timeout_s, self.pause_s = timeout_s, pause_after_failure_s
        self.events: list[Event] = []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Traffic]:
        stop = asyncio.Event()
        agents = [asyncio.create_task(self._agent(n, token, stop))
                  for n, token in enumerate(self.id_tokens)]
        try:
            yield self
        finally:
            stop.set()
            await asyncio.gather(*agents)

    def tally(self, since: float = float("-inf"), until: float = float("inf")
              ) -> Counter[tuple[str, str]]:
        """(kind, outcome) -> count, for requests started within [since, until)."""
        return Counter((e.kind, e.outcome) for e in self.events if since <= e.started < until)

    def unexpected(self, since: float = float("-inf"), until: float = float("inf")
                   ) -> list[Event]:
        """Requests that were neither served nor refused by design (ERROR), in the window."""
        return [e for e in self.events if since <= e.started < until and e.outcome == ERROR]

    async def serving(self, since: float, within: float) -> float:
        """Wait until every broker minted and every MCP server served a request started
        after `since`; return when the last of them did. Raises TimeoutError past `within`."""
        deadline = time.monotonic() + within
        while True:
            ok = [e for e in self.events if e.started >= since and e.outcome == OK]
            firsts: dict[tuple[bool, int], float] = {}
            for e in ok:
                key = (e.kind == EXCHANGE, e.target)
                firsts[key] = min(firsts.get(key, e.ended), e.ended)
            if len(firsts) == len(self.brokers) + len(self.servers):
                return max(firsts.values())
            if time.monotonic() > deadline:
                raise TimeoutError(f"not serving within {within} s: {self.tally(since)}")
            await asyncio.sleep(0.1)

    # -- one agent ------------------------------------------------------------------------

    async def _agent(self, n: int, id_token: str, stop: asyncio.Event) -> None:
        brokers = [Connection(b.host, b.port) for b in self.brokers]
        servers = [Connection(s.host, s.port) for s in self.servers]
        form = urlencode({"grant_type": GRANT_TYPE, "subject_token": id_token,
                          "subject_token_type": ID_TOKEN_TYPE, "resource": self._resource,
                          "scope": self._scope}).encode()
        exchanges = [build_request("POST", b.host, b.port, "/oauth2/token",
                                   headers=self._exchange_headers, body=form)
                     for b in self.brokers]
        token: _Token | None = None
        turn, sent = n, n
        try:
            while not stop.is_set():
                token = await self._exchange(brokers, exchanges, turn) or token
                turn += 1
                if token is None:
                    await asyncio.sleep(self.pause_s)
                    continue
                for _ in range(self.calls_per_token):
                    if stop.is_set():
                        break
                    index = sent % len(servers)
                    listing = sent % self.list_every == 0
                    sent += 1
                    event = await self._mcp(index, servers[index], token, listing, sent)
                    if event.outcome != OK:
                        await asyncio.sleep(self.pause_s)
        finally:
            for connection in (*brokers, *servers):
                await connection.aclose()

    async def _exchange(self, connections: list[Connection], requests: list[bytes],
                        turn: int) -> _Token | None:
        for attempt in range(len(connections)):
            index = (turn + attempt) % len(connections)
            event, value = await self._exchange_at(index, connections[index], requests[index])
            if event.outcome == OK:
                return _Token(value, index, event.kid)
            if event.outcome != UNREACHABLE:
                return None  # an answer, even a refusal: asking another replica changes nothing
        return None

    async def _exchange_at(self, index: int, connection: Connection, request: bytes
                           ) -> tuple[Event, str]:
        """The event and, when it is OK, the token."""
        started = time.monotonic()
        answer = await self._send(connection, request)
        if isinstance(answer, str):
            return self._record(EXCHANGE, index, started, UNREACHABLE, detail=answer), ""
        status, headers, body = answer
        if status == 200:
            try:
                token = json.loads(body)["access_token"]
                kid = jwt.get_unverified_header(token)["kid"]
                claims = jwt.decode(token, options={"verify_signature": False})
                facts = {"sid": claims["sid"], "jti": claims["jti"], "subject": claims["sub"]}
            except (ValueError, KeyError, TypeError, jwt.PyJWTError):
                return self._record(EXCHANGE, index, started, ERROR,
                                    detail=_head(status, body)), ""
            return self._record(EXCHANGE, index, started, OK, minted_by=index, kid=kid,
                                **facts), token
        outcome = UNAVAILABLE if status == 503 and _failed_closed(headers, body) else ERROR
        detail = "" if outcome == UNAVAILABLE else _head(status, body)
        return self._record(EXCHANGE, index, started, outcome, detail=detail), ""

    async def _mcp(self, index: int, connection: Connection, token: _Token, listing: bool,
                   request_id: int) -> Event:
        kind = LIST if listing else CALL
        method = "tools/list" if listing else "tools/call"
        params = None if listing else {"name": "search_contacts", "arguments": {"query": "a"}}
        message, extra = modern_request(request_id, method, params)
        server = self.servers[index]
        request = build_request(
            "POST", server.host, server.port, server.path,
            headers=[("Accept", "application/json, text/event-stream"),
                     ("Content-Type", "application/json"),
                     ("Authorization", f"Bearer {token.value}"), *extra],
            body=json.dumps(message, separators=(",", ":")).encode())
        started = time.monotonic()
        answer = await self._send(connection, request)
        facts: dict[str, Any] = {"minted_by": token.minted_by, "kid": token.kid}
        if isinstance(answer, str):
            return self._record(kind, index, started, UNREACHABLE, detail=answer, **facts)
        status, _, body = answer
        if status == 401:
            return self._record(kind, index, started, REFUSED, **facts)
        if status != 200:
            return self._record(kind, index, started, ERROR, detail=_head(status, body), **facts)
        try:
            reply = sse_message(body)
        except (McpError, ValueError):
            return self._record(kind, index, started, ERROR, detail=_head(status, body), **facts)
        result = reply.get("result")
        if not isinstance(result, dict):
            outcome = DENIED if "error" in reply else ERROR
        elif listing:
            outcome = OK if result.get("tools") else DENIED
        else:
            outcome = DENIED if result.get("isError") else OK
        detail = "" if outcome == OK else _head(status, body)
        return self._record(kind, index, started, outcome, detail=detail, **facts)

    async def _send(self, connection: Connection, request: bytes
                    ) -> tuple[int, dict[str, str], bytes] | str:
        """The answer, or why there was none (the connection is then closed)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await connection.send(request)
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            await connection.aclose()
            return type(exc).__name__

    def _record(self, kind: str, target: int, started: float, outcome: str, **facts: Any
                ) -> Event:
        event = Event(kind, target, started, time.monotonic(), outcome, **facts)
        self.events.append(event)
        return event


def _failed_closed(headers: dict[str, str], body: bytes) -> bool:
    """A 503 as the broker must answer when a dependency is down: no token, not cacheable."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return (isinstance(document, dict) and document.get("error") == "temporarily_unavailable"
            and "access_token" not in document and headers.get("cache-control") == "no-store")


def _head(status: int, body: bytes) -> str:
    return f"{status} {body[:200]!r}"
