"""schemathesis against the broker's own OpenAPI document, on a real served broker with real
Redis, Cerbos and the dev IdP: token, introspect, revoke and every admin endpoint.

Checks: no 5xx, every status documented, content type, headers and body as documented. Cases
are sent authenticated (an agent or resource client for the OAuth endpoints, an admin bearer
token for /admin), so most of them reach past client authentication, and some token requests
carry a real ID token and the CRM resource, so the 200 path is validated too. Examples are
bounded and derandomized, to keep the run short and repeatable.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from broker.config import BrokerSettings
from broker.http.app import create_app
from tests.integration.conftest import CRM, Broker, BrokerFactory, basic
from tests.security.conftest import security_overrides
from tests.support.oidc import oidc_login

ADMIN_AUDIENCE = "broker-admin"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
MAX_EXAMPLES = 50
CLIENT_AUTH_FIELDS = ("client_id", "client_secret", "client_assertion", "client_assertion_type")
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


@pytest.fixture(scope="module")
def fuzz_broker(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
                oidc_issuer: str) -> Broker:
    over = security_overrides(oidc_issuer, "http://127.0.0.1:9",
                              admin={"audiences": [ADMIN_AUDIENCE]})
    over["upstream_issuers"] = over["upstream_issuers"][:1]
    return start_broker(redis_url=redis_url, cerbos_address=cerbos_address, **over)


@pytest.fixture(scope="module")
def authenticate(oidc_issuer: str, id_tokens: dict[str, str]) -> Callable[[Any], dict[str, str]]:
    admin = oidc_login(oidc_issuer, "fuzz-admin", client_id=ADMIN_AUDIENCE,
                       claims={"roles": ["admin"]}).id_token

    def headers_for(case: Any) -> dict[str, str]:
        path = case.operation.path
        if path.startswith("/admin"):
            return {"Authorization": f"Bearer {admin}"}
        body = case.body
        if isinstance(body, dict):
            # deterministic per generated case: three in four requests get past client
            # authentication (the Basic header below is then their only method), and half of
            # the token requests among those carry a real subject token, reaching the 200 path
            roll = zlib.crc32(repr(sorted(body.items(), key=str)).encode()) % 8
            if roll < 6:
                for name in CLIENT_AUTH_FIELDS:
                    body.pop(name, None)
            if path == "/oauth2/token" and roll < 3:
                body.update(subject_token=id_tokens["alice"], subject_token_type=ID_TOKEN,
                            resource=CRM)
                body.pop("audience", None)
        return basic("crm-server" if path == "/oauth2/introspect" else "research-agent")

    return headers_for


def _cases() -> list[Any]:
    """Each documented operation with valid and with invalid input, a test of its own.

    The document comes from the same app factory the served broker uses (it does not depend
    on settings). Operations with no body or query have no invalid input to generate.
    """
    schema = schemathesis.openapi.from_dict(create_app(BrokerSettings()).openapi())
    cases = []
    for result in schema.include(path_regex="^/(oauth2|admin)/").get_all_operations():
        operation = result.ok()
        cases.append(pytest.param(operation, GenerationMode.POSITIVE,
                                  id=f"{operation.label}-valid-input"))
        if operation.body or len(operation.query):
            cases.append(pytest.param(operation, GenerationMode.NEGATIVE,
                                      id=f"{operation.label}-invalid-input"))
    return cases


@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_broker_api_never_fails_and_matches_its_schema(
        operation: Any, mode: GenerationMode, fuzz_broker: Broker,
        authenticate: Callable[[Any], dict[str, str]]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        case.call_and_validate(base_url=fuzz_broker.url, headers=authenticate(case),
                               checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("query", ["cursor=1180591620717411303424", "since=1180591620717411303424",
                                   "until=1180591620717411303424", "cursor=-1"])
def test_admin_numbers_beyond_what_redis_takes_are_a_client_error(
        fuzz_broker: Broker, oidc_issuer: str, query: str) -> None:
    """Found by the fuzz above: a huge cursor or time reached Redis and came back as 503."""
    admin = oidc_login(oidc_issuer, "fuzz-admin", client_id=ADMIN_AUDIENCE,
                       claims={"roles": ["admin"]}).id_token
    path = "/admin/sessions" if query.startswith("cursor") else "/admin/audit"
    with fuzz_broker.client() as http:
        response = http.get(f"{path}?{query}", headers={"Authorization": f"Bearer {admin}"})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
