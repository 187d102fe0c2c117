"""Rate limiting of failed client authentication at /oauth2/token, /introspect and /revoke.

Why: a wrong secret costs the broker one scrypt (~50 ms of CPU, the same for an unknown
client), so unlimited guessing is both a brute-force attempt and a cheap CPU DoS. Each
failed authentication (`invalid_client`) is counted under two keys, the presented client id
and the source address (IPv6 by /64, what one host usually holds), and while either key is
over its budget the request is answered 429 `temporarily_unavailable` with `Retry-After`
(RFC 6585 §4) BEFORE any secret or assertion is looked at: not even a correct secret is
checked then, or a blocked guesser could still tell a right guess (200) from a wrong one.

Algorithm: GCRA, a token bucket kept as one number per key in Redis (the "theoretical
arrival time"): `limit` failures may come at once, then one per `window / limit`. Keys
expire by themselves, so memory follows the failure rate. Checking costs one MGET;
recording a failure, one Lua script over both keys (atomic).

The check is skipped for one kind of request only: credentials this process has already
verified (a client secret whose scrypt check passed before: `authenticate_proven`), whose
buckets an MGET found clear less than `CLEAR_MEMO_S` ago, with no failure on them here since.
That is a legitimate client's steady traffic, and it was a tenth of an exchange's CPU (one
Redis round trip). What brute force needs is unchanged: a guess is by definition not a proven
secret, so every guess is checked against Redis first, refused while blocked, and counted;
a guess that finds its buckets blocked, and any failure here, drops the memo. What it gives
up: a block recorded by *another* broker process may let a proven secret through here for at
most `CLEAR_MEMO_S`, and only until the first guess reaches this process. A blocked guesser
can gain from that only if its lucky guess is the first of its requests to reach this
process within that second: at most one untested-against-the-block guess per process per
memo, the same order as the in-flight race below.

Every client id, known or not, gets its own bucket (hashed, so key length is bounded): a
shared bucket for unknown ids would tell an attacker which ids exist. Success does not reset
a bucket: otherwise the legitimate client's traffic would refill an attacker's budget.

Redis down or slow: the limiter steps aside (degrades open, with a warning at most every
30 s) and authentication proceeds as usual; it never turns a request into a 500. Requests
racing each other may each pass the check before their failures are recorded, so a burst can
exceed the limit by the number of requests in flight.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Counter
from starlette.requests import Request

from broker.config import RateLimitSettings
from broker.errors import DependencyUnavailable, InvalidClient, OAuthError
from broker.http.client_auth import JWT_BEARER, ClientAuthenticator, parse_basic
from broker.jws import TokenRejected, read_unverified
from broker.ports import Clock
from broker.stores.redis import RedisEdge, RedisKeys

log = logging.getLogger(__name__)
RATE_LIMITED = Counter("agent_broker_client_auth_rate_limited_total",
                       "Client authentications refused with 429 (failure budget spent)")

_WARN_EVERY_S = 30.0
CLEAR_MEMO_S = 1.0
"""How long an MGET that found a bucket clear vouches for it, for proven secrets only."""
_MEMO_MAX = 4096
_MAX_ASSERTION = 8 * 1024

# KEYS: the buckets; ARGV: now (ms), then one emission interval (ms) per key.
# Each bucket's arrival time moves one interval past max(itself, now); it expires when drained.
_RECORD_FAILURE = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tat = tat + interval
  redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now))
end
return 1
"""


class TooManyFailedAttempts(OAuthError):
    """429: too many failed client authentications for this client or source address.

    `temporarily_unavailable` because it is accurate (retry later) and registered;
    `invalid_client` would tell a locked-out legitimate client its secret is wrong, and
    `slow_down` (RFC 8628) belongs to device-flow polling.
    """

    error = "temporarily_unavailable"
    status_code = 429
    default_description = "Too many failed client authentications; retry later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed client authentications; retry in {retry_after} s.")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Bucket:
    key: str
    interval_ms: float
    """window / limit: how long one failure takes to drain."""
    burst_ms: float
    """window - interval: how far ahead of now the arrival time may run before blocking."""


@functools.lru_cache(maxsize=4096)  # ipaddress parses in Python: ~10 µs a request, uncached
def source_key(host: str | None) -> str:
    """The address a failure is charged to: IPv6 by its /64, anything unparsable as is."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address)
    return str(address)


def presented_client_id(headers: Mapping[str, str], form: Mapping[str, str]) -> str:
    """Which client an attempt claims to be, read cheaply and without trusting it.

    Never raises: a malformed attempt is charged to the id it seems to name, or to "".
    """
    if form.get("client_id"):
        return form["client_id"]
    header = headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            return parse_basic(header[6:].strip()).client_id
        except InvalidClient:
            return ""
    assertion = form.get("client_assertion")
    if assertion and form.get("client_assertion_type") == JWT_BEARER:
        try:
            _, claims = read_unverified(assertion, max_length=_MAX_ASSERTION)
        except TokenRejected:
            return ""
        sub = claims.get("sub")
        return sub if isinstance(sub, str) else ""
    return ""


class FailedAuthLimiter(RedisEdge):
    """Wraps a `ClientAuthenticator`: refuse early while over budget, count failures."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, timeout_ms: int, clock: Clock,
                 settings: RateLimitSettings) -> None:
        super().__init__(client, keys, timeout_ms, clock)
        self._settings = settings
        self._prefix = f"{keys.prefix}ratelimit:auth:"
        self._record = client.register_script(_RECORD_FAILURE)
        self._warned_at = -math.inf
        self._clear_until: dict[str, float] = {}
        """Bucket key -> until when (clock seconds) an MGET's "clear" vouches for it."""

    def _buckets(self, client_id: str, source: str) -> list[_Bucket]:
        window_ms = self._settings.window_seconds * 1000
        buckets = []
        # hashed: a client id is attacker-chosen text of any length
        digest = hashlib.sha256(client_id.encode()).hexdigest()[:32]
        for kind, name, limit in (
            ("client", digest, self._settings.failed_auth_per_client),
            ("ip", source, self._settings.failed_auth_per_ip),
        ):
            if limit > 0:
                interval = window_ms / limit
                buckets.append(_Bucket(f"{self._prefix}{kind}:{name}", interval,
                                       window_ms - interval))
        return buckets

    async def authenticate(self, authenticator: ClientAuthenticator, request: Request,
                           form: Mapping[str, str]) -> str:
        """The authenticated client id; 429 while over budget; failures are counted."""
        buckets = self._buckets(presented_client_id(request.headers, form),
                                source_key(request.client.host if request.client else None))
        if buckets and self._known_clear(buckets):
            proven = authenticator.authenticate_proven(request.headers, form)
            if proven is not None:
                return proven
        if buckets:
            retry_after = await self._retry_after(buckets)
            if retry_after is not None:
                RATE_LIMITED.inc()
                log.debug("client authentication refused: over the failure budget")
                raise TooManyFailedAttempts(retry_after)
        try:
            return await authenticator.authenticate(request.headers, form)
        except InvalidClient:
            if buckets:
                self._forget(buckets)
                await self._record_failure(buckets)
            raise

    def _known_clear(self, buckets: list[_Bucket]) -> bool:
        now = self._clock()
        return all(self._clear_until.get(b.key, -math.inf) > now for b in buckets)

    def _forget(self, buckets: list[_Bucket]) -> None:
        for bucket in buckets:
            self._clear_until.pop(bucket.key, None)

    async def _retry_after(self, buckets: list[_Bucket]) -> int | None:
        """Seconds until every bucket allows an attempt again, or None if they all do now."""
        try:
            values = await self._call(self._redis.mget([b.key for b in buckets]))
        except DependencyUnavailable as exc:
            self._degraded(exc)
            return None
        now = self._clock()
        now_ms = now * 1000
        wait_ms = 0.0
        for bucket, value in zip(buckets, values, strict=True):
            if value is None:
                continue
            try:
                tat = float(value)
            except ValueError:
                continue  # not ours to interpret: never let a stray value block a client
            wait_ms = max(wait_ms, tat - bucket.burst_ms - now_ms)
        if wait_ms > 0:
            self._forget(buckets)
            return max(1, math.ceil(wait_ms / 1000))
        if len(self._clear_until) >= _MEMO_MAX:
            self._clear_until.clear()  # bounded: worst case, a few more MGETs
        for bucket in buckets:
            self._clear_until[bucket.key] = now + CLEAR_MEMO_S
        return None

    async def _record_failure(self, buckets: list[_Bucket]) -> None:
        now_ms = self._clock() * 1000
        # milliseconds with decimals: at the highest limits one failure is 0.01 ms
        args = [f"{now_ms:.3f}", *(f"{b.interval_ms:.3f}" for b in buckets)]
        try:
            await self._call(self._record(keys=[b.key for b in buckets], args=args))
        except DependencyUnavailable as exc:
            self._degraded(exc)

    def _degraded(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("failed-authentication rate limit not applied: %s", exc)
