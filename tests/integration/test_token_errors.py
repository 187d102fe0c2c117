"""Every malformed or hostile token request gets its RFC 6749 error, no-store, never a 500,
and never echoes a token or secret."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.conftest import CRM, SECRETS, Broker, basic, exchange_form

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def alg_none(token: str) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{token.split('.')[1]}."


def tampered(token: str) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{b64({**claims_of(token), 'roles': ['crm_admin']})}.{sig}"


def foreign(token: str) -> str:
    return jwt.encode({**claims_of(token)}, RSA_KEY, algorithm="RS256")


def expired(token: str) -> str:
    return jwt.encode({**claims_of(token), "exp": 1_000_000_000}, RSA_KEY, algorithm="RS256")


Case = tuple[Callable[[str], dict[str, str]], dict[str, str], int, str]

CASES: dict[str, Case] = {
    "unknown-grant-type": (lambda t: {**exchange_form(t), "grant_type": "password"},
                           basic("research-agent"), 400, "unsupported_grant_type"),
    "missing-grant-type": (lambda t: {k: v for k, v in exchange_form(t).items()
                                      if k != "grant_type"},
                           basic("research-agent"), 400, "invalid_request"),
    "missing-subject-token": (lambda t: {k: v for k, v in exchange_form(t).items()
                                         if k != "subject_token"},
                              basic("research-agent"), 400, "invalid_request"),
    "garbage-subject-token": (lambda t: exchange_form("not-a-token"), basic("research-agent"),
                              400, "invalid_grant"),
    "alg-none-subject-token": (lambda t: exchange_form(alg_none(t)), basic("research-agent"),
                               400, "invalid_grant"),
    "tampered-subject-token": (lambda t: exchange_form(tampered(t)), basic("research-agent"),
                               400, "invalid_grant"),
    "foreign-key-subject-token": (lambda t: exchange_form(foreign(t)), basic("research-agent"),
                                  400, "invalid_grant"),
    "expired-subject-token": (lambda t: exchange_form(expired(t)), basic("research-agent"),
                              400, "invalid_grant"),
    "unknown-resource": (lambda t: exchange_form(t, resource="http://127.0.0.1:1/unknown"),
                         basic("research-agent"), 400, "invalid_target"),
    "resource-with-fragment": (lambda t: exchange_form(t, resource=CRM + "#x"),
                               basic("research-agent"), 400, "invalid_target"),
    "resource-not-allowed-for-agent": (lambda t: exchange_form(
        t, resource="http://127.0.0.1:8409/mcp"), basic("research-agent"), 400, "invalid_target"),
    "no-grantable-scope": (lambda t: exchange_form(t, scope="crm:delete"),
                           basic("research-agent"), 400, "invalid_scope"),
    "malformed-scope": (lambda t: exchange_form(t, scope='crm:"read'), basic("research-agent"),
                        400, "invalid_scope"),
    "no-client-auth": (lambda t: exchange_form(t), {}, 401, "invalid_client"),
    "wrong-secret": (lambda t: exchange_form(t), {"Authorization": "Basic " + base64.b64encode(
        b"research-agent:wrong-secret").decode()}, 401, "invalid_client"),
    "unknown-client": (lambda t: exchange_form(t), {"Authorization": "Basic " + base64.b64encode(
        b"nobody:whatever").decode()}, 401, "invalid_client"),
    "malformed-basic": (lambda t: exchange_form(t), {"Authorization": "Basic !!!"}, 401,
                        "invalid_client"),
    "wrong-auth-method": (lambda t: {**exchange_form(t), "client_id": "research-agent",
                                     "client_secret": SECRETS["research-agent"]}, {},
                          401, "invalid_client"),
    "two-auth-methods": (lambda t: {**exchange_form(t), "client_id": "summarizer-agent",
                                    "client_secret": SECRETS["summarizer-agent"]},
                         basic("research-agent"), 400, "invalid_request"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_error_table(broker: Broker, id_tokens: dict, case: Case,
                     caplog: pytest.LogCaptureFixture) -> None:
    make_form, headers, status, error = case
    caplog.set_level(logging.DEBUG)
    form = make_form(id_tokens["alice"])
    with broker.client() as http:
        response = http.post("/oauth2/token", data=form, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert set(response.json()) == {"error", "error_description"}
    assert response.headers["cache-control"] == "no-store"
    if status == 401 and "Authorization" in headers:
        assert response.headers["www-authenticate"].startswith("Basic")
    secrets = [id_tokens["alice"], *SECRETS.values()]
    if "subject_token" in form:
        secrets.append(form["subject_token"])
    logged = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    for secret in secrets:
        assert secret not in response.text
        assert secret not in logged


RAW_CASES = {
    "repeated-parameter": ("grant_type=" + GRANT + "&resource=a&resource=b",
                           "application/x-www-form-urlencoded", 400, "invalid_request"),
    "json-body": ('{"grant_type": "x"}', "application/json", 400, "invalid_request"),
    "not-utf8": (b"grant_type=\xff\xfe", "application/x-www-form-urlencoded", 400,
                 "invalid_request"),
    "oversized": ("a=" + "x" * 20_000, "application/x-www-form-urlencoded", 413,
                  "invalid_request"),
    "too-many-fields": ("&".join(f"f{i}=1" for i in range(100)),
                        "application/x-www-form-urlencoded", 400, "invalid_request"),
}


@pytest.mark.parametrize("case", RAW_CASES.values(), ids=RAW_CASES.keys())
def test_malformed_bodies(broker: Broker, case: tuple) -> None:
    body, content_type, status, error = case
    with broker.client() as http:
        response = http.post("/oauth2/token", content=body,
                             headers={"Content-Type": content_type, **basic("research-agent")})
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_oversized_body_without_content_length_is_refused(broker: Broker) -> None:
    def chunks():
        for _ in range(40):
            yield b"x" * 1024

    with broker.client() as http:
        response = http.post("/oauth2/token", content=chunks(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


def test_introspection_requires_a_registered_resource(broker: Broker) -> None:
    with broker.client() as http:
        anonymous = http.post("/oauth2/introspect", data={"token": "x"})
        as_agent = http.post("/oauth2/introspect", data={"token": "x"},
                             headers=basic("research-agent"))
    assert anonymous.status_code == 401
    assert as_agent.status_code == 401


def test_unknown_path_and_method_are_json_errors(broker: Broker) -> None:
    with broker.client() as http:
        missing = http.get("/nope")
        wrong_method = http.get("/oauth2/token")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert wrong_method.status_code == 405


