"""Secret guessing: failed client authentication is rate limited per client id and per source
address (broker/http/rate_limit.py), answered 429 with Retry-After, never a 500.

Each test starts its own broker (own Redis prefix) with tight limits. Source addresses other
than 127.0.0.1 are real: the whole 127/8 is loopback on Linux, and the client binds to one.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from broker.client_assertion import ClientAssertionVerifier
from broker.config import ClientSecretAuth, RateLimitSettings
from broker.errors import InvalidClient
from broker.http.client_auth import ClientAuthenticator, Registration
from broker.http.rate_limit import (
    CLEAR_MEMO_S,
    FailedAuthLimiter,
    TooManyFailedAttempts,
    presented_client_id,
    source_key,
)
from broker.secrets import SecretVerifier, hash_secret
from broker.stores.redis import RedisKeys, RedisReplayCache, connect
from tests.integration.conftest import Broker, BrokerFactory, basic, exchange_form
from tests.security.conftest import SECRETS, security_overrides
from tests.security.exchanges import JWT_BEARER, assertion
from tests.support.services import free_port

LimitedBroker = Callable[..., Broker]


@pytest.fixture
def limited_broker(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
                   oidc_issuer: str) -> LimitedBroker:
    def start(redis: str = redis_url, **rate_limits: Any) -> Broker:
        over = security_overrides(oidc_issuer, "http://127.0.0.1:9", rate_limits=rate_limits)
        over["upstream_issuers"] = over["upstream_issuers"][:1]  # the dev IdP is enough here
        return start_broker(redis_url=redis, cerbos_address=cerbos_address, **over)

    return start


def _wrong(client_id: str) -> dict[str, str]:
    raw = f"{client_id}:not-the-secret".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _token(broker: Broker, headers: dict[str, str], source: str = "127.0.0.1",
           form: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=broker.url, transport=transport, trust_env=False,
                      timeout=10) as http:
        return http.post("/oauth2/token", data=form or exchange_form("x.y.z"),
                         headers=headers)


def _assert_limited(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    # at most one emission interval (window / limit); less by however long the failures took
    # to send on a busy machine, never 0 (a client told to retry at once would spin)
    assert 1 <= int(response.headers["retry-after"]) <= retry_after, response.headers
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert set(body) == {"error", "error_description"}


def test_secret_guessing_is_limited_per_client(limited_broker: LimitedBroker,
                                               id_tokens: dict[str, str]) -> None:
    broker = limited_broker(failed_auth_per_client=3, failed_auth_per_ip=0,
                            window_seconds=60)
    for _ in range(3):
        assert _token(broker, _wrong("research-agent")).status_code == 401
    _assert_limited(_token(broker, _wrong("research-agent")), retry_after=20)
    # while blocked not even the right secret is checked: a guesser learns nothing
    good = exchange_form(id_tokens["alice"], scope="crm:read")
    _assert_limited(_token(broker, basic("research-agent"), form=good), retry_after=20)
    # the limit follows the client id, whatever address the guesses come from
    _assert_limited(_token(broker, _wrong("research-agent"), "127.0.0.2"), retry_after=20)
    # other clients, known or not, have budgets of their own (a shared budget for unknown
    # ids would tell a guesser which ids exist)
    assert _token(broker, _wrong(f"nobody-{uuid.uuid4().hex}")).status_code == 401
    other = {**good, "client_id": "summarizer-agent",
             "client_secret": SECRETS["summarizer-agent"]}
    assert _token(broker, {}, form=other).status_code == 200


def test_spraying_client_ids_is_limited_per_source_address(
        limited_broker: LimitedBroker) -> None:
    broker = limited_broker(failed_auth_per_client=0, failed_auth_per_ip=3, window_seconds=30)
    for _ in range(3):
        assert _token(broker, _wrong(f"guess-{uuid.uuid4().hex}"), "127.0.0.3").status_code == 401
    _assert_limited(_token(broker, _wrong(f"guess-{uuid.uuid4().hex}"), "127.0.0.3"), 10)
    assert _token(broker, _wrong("research-agent"), "127.0.0.4").status_code == 401


def test_introspection_and_revocation_are_protected_too(limited_broker: LimitedBroker) -> None:
    broker = limited_broker(failed_auth_per_client=2, failed_auth_per_ip=0, window_seconds=60)
    with broker.client() as http:
        for path, client in (("/oauth2/introspect", "crm-server"),
                             ("/oauth2/revoke", "research-agent")):
            for _ in range(2):
                assert http.post(path, data={"token": "x"},
                                 headers=_wrong(client)).status_code == 401
            _assert_limited(http.post(path, data={"token": "x"}, headers=basic(client)), 30)


def test_failed_client_assertions_count_too(limited_broker: LimitedBroker) -> None:
    broker = limited_broker(failed_auth_per_client=2, failed_auth_per_ip=0, window_seconds=60)
    form = exchange_form("x.y.z")
    spent = assertion(broker)
    for _ in range(3):  # the first use is authenticated (then invalid_grant), replays fail
        _token(broker, {}, form={**form, **spent})
    fresh = {**form, **assertion(broker)}
    _assert_limited(_token(broker, {}, form=fresh), retry_after=30)


def test_the_budget_refills_over_the_window(limited_broker: LimitedBroker,
                                            id_tokens: dict[str, str]) -> None:
    broker = limited_broker(failed_auth_per_client=2, failed_auth_per_ip=0, window_seconds=2)
    for _ in range(2):
        assert _token(broker, _wrong("research-agent")).status_code == 401
    _assert_limited(_token(broker, _wrong("research-agent")), retry_after=1)
    time.sleep(1.1)  # one failure's worth drains every window / limit = 1 s
    good = exchange_form(id_tokens["alice"], scope="crm:read")
    assert _token(broker, basic("research-agent"), form=good).status_code == 200


def test_without_redis_the_limit_steps_aside_and_nothing_is_a_500(
        limited_broker: LimitedBroker, id_tokens: dict[str, str]) -> None:
    """Degrade open: authentication works as without a limiter (401 for a wrong secret); the
    exchange itself still fails closed (503) because sessions need Redis."""
    broker = limited_broker(redis=f"redis://127.0.0.1:{free_port()}/0",
                            failed_auth_per_client=1, failed_auth_per_ip=1)
    for _ in range(3):
        assert _token(broker, _wrong("research-agent")).status_code == 401
    good = exchange_form(id_tokens["alice"], scope="crm:read")
    response = _token(broker, basic("research-agent"), form=good)
    assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")


@pytest.mark.parametrize(("host", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),  # one /64, what one host usually holds
    ("::ffff:203.0.113.7", "203.0.113.7"),
    (None, "unknown"),
    ("testclient", "testclient"),
])
def test_failures_are_charged_to_the_source_address(host: str | None, key: str) -> None:
    assert source_key(host) == key


@pytest.mark.parametrize(("headers", "form", "client_id"), [
    pytest.param(basic("research-agent"), {}, "research-agent", id="basic"),
    pytest.param({}, {"client_id": "summarizer-agent", "client_secret": "x"},
                 "summarizer-agent", id="post"),
    pytest.param({"authorization": "Basic !!!"}, {}, "", id="malformed-basic"),
    pytest.param({}, {"client_assertion_type": JWT_BEARER, "client_assertion": "not-a-jwt"}, "",
                 id="malformed-assertion"),
])
def test_the_presented_client_id_is_read_without_raising(
        headers: dict[str, str], form: dict[str, str], client_id: str) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert presented_client_id(lowered, form) == client_id


# --- the limiter in one process and another broker process sharing its Redis -----------------
# In process, with a clock of our own: a replica's failures are the same limiter class writing
# the same Redis keys, which is all another broker process would do.

Replica = tuple[FailedAuthLimiter, ClientAuthenticator]


class _Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds: the buckets store ms to 3 places

    def __call__(self) -> float:
        return self.now


def _request(headers: dict[str, str], host: str = "127.0.0.1") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/oauth2/token", "headers": raw,
                    "client": (host, 40000)})


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[_Clock, Callable[[], Replica]]]:
    """(clock, make): `make()` is one broker process's limiter and authenticator; all of
    them share one Redis key prefix and the clock, like replicas of one deployment."""
    clock, clients = _Clock(), []
    prefix = f"rl-{uuid.uuid4().hex[:12]}:"
    secret_hash = hash_secret(SECRETS["research-agent"], ln=10)  # cheap scrypt for a test
    registration = Registration("research-agent", ClientSecretAuth(
        method="client_secret_basic", secret_hash=secret_hash))

    def make() -> Replica:
        client = connect(redis_url, 2000)
        clients.append(client)
        keys = RedisKeys(prefix)
        limiter = FailedAuthLimiter(client, keys, 2000, clock, RateLimitSettings(
            failed_auth_per_client=2, failed_auth_per_ip=0, window_seconds=60))
        authenticator = ClientAuthenticator(
            {"research-agent": registration}, secrets=SecretVerifier(),
            assertions=ClientAssertionVerifier(audiences=["x"], clock=clock),
            replay=RedisReplayCache(client, keys, 2000, clock), key_sets={})
        return limiter, authenticator

    yield clock, make
    for client in clients:
        await client.aclose()


async def _attempt(replica: Replica, headers: dict[str, str]) -> int:
    limiter, authenticator = replica
    try:
        await limiter.authenticate(authenticator, _request(headers), {})
    except TooManyFailedAttempts:
        return 429
    except InvalidClient:
        return 401
    return 200


async def test_every_guess_is_checked_against_a_block_from_another_process(
        replicas: tuple[_Clock, Callable[[], Replica]]) -> None:
    """A proven secret skips the Redis look-up for a moment (CLEAR_MEMO_S); a guess never
    does: once another process has blocked the client, the next guess here is a 429, and
    from then on the right secret is refused here too."""
    _, make = replicas
    here, elsewhere = make(), make()
    assert await _attempt(here, basic("research-agent")) == 200  # proven, found clear
    for _ in range(2):
        assert await _attempt(elsewhere, _wrong("research-agent")) == 401
    assert await _attempt(here, _wrong("research-agent")) == 429
    assert await _attempt(here, basic("research-agent")) == 429


async def test_a_proven_secret_meets_a_block_from_elsewhere_within_the_memo(
        replicas: tuple[_Clock, Callable[[], Replica]]) -> None:
    """What the memo gives up, bounded: a block recorded by another process reaches a proven
    secret here once the memo has expired, even if no guess came here."""
    clock, make = replicas
    here, elsewhere = make(), make()
    assert await _attempt(here, basic("research-agent")) == 200
    for _ in range(2):
        assert await _attempt(elsewhere, _wrong("research-agent")) == 401
    clock.now += CLEAR_MEMO_S
    assert await _attempt(here, basic("research-agent")) == 429


async def test_a_failure_here_drops_the_memo_at_once(
        replicas: tuple[_Clock, Callable[[], Replica]]) -> None:
    _, make = replicas
    here = make()
    assert await _attempt(here, basic("research-agent")) == 200
    for _ in range(2):
        assert await _attempt(here, _wrong("research-agent")) == 401
    assert await _attempt(here, basic("research-agent")) == 429
