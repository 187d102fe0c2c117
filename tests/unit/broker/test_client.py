"""The pure parts of the agent-side helper: refresh timing, WWW-Authenticate parsing, metadata
checks, request building, response reading; and that it imports no server code."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from broker.client import (
    ClientCredentials,
    DiscoveryError,
    TokenExchangeAuth,
    TokenExchangeError,
    decode_unverified,
    parse_www_authenticate,
    refresh_at,
    resource_metadata_from,
    token_type_urn,
    well_known_url,
)
from broker.client.cache import CachedToken
from broker.client.discovery import broker_from, token_endpoint_from
from broker.client.exchange import build_request, parse_response

RESOURCE = "https://crm.example.com/mcp"


@pytest.mark.parametrize(("expires_in", "due"), [
    (300, 1270.0),   # 10% = 30 s
    (60, 1054.0),    # 10% = 6 s: a short token is not renewed at once
    (3600, 4570.0),  # capped at 30 s
    (None, None),    # no expires_in: renewed on a 401 only
])
def test_refresh_at(expires_in: int | None, due: float | None) -> None:
    assert refresh_at(1000.0, expires_in) == due


def test_refresh_skew_is_configurable_and_cached_token_knows_when_due() -> None:
    assert refresh_at(0.0, 300, skew=5, fraction=0.5) == 295
    result = parse_response(200, json.dumps({"access_token": "t", "expires_in": 100}).encode())
    cached = CachedToken(result, refresh_at(0.0, 100))
    assert not cached.is_due(89.9) and cached.is_due(90.0)


@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer resource_metadata="https://crm.example.com/.well-known/oauth-protected-resource/mcp"',
     {"bearer": {"resource_metadata":
                 "https://crm.example.com/.well-known/oauth-protected-resource/mcp"}}),
    ('Bearer realm="crm", error="invalid_token", error_description="a, b \\"c\\""',
     {"bearer": {"realm": "crm", "error": "invalid_token", "error_description": 'a, b "c"'}}),
    ('Basic realm="x", DPoP algs="ES256 EdDSA", bearer Resource_Metadata=https://m',
     {"basic": {"realm": "x"}, "dpop": {"algs": "ES256 EdDSA"},
      "bearer": {"resource_metadata": "https://m"}}),
    ("Negotiate abc==, Bearer", {"negotiate": {}, "bearer": {}}),
    ("", {}),
    ('=junk, "quoted", Bearer error=x', {"bearer": {"error": "x"}}),
])
def test_parse_www_authenticate(header: str, expected: dict) -> None:
    assert parse_www_authenticate(header) == expected


def test_resource_metadata_only_from_a_bearer_challenge() -> None:
    assert resource_metadata_from('DPoP resource_metadata="https://x"') is None
    assert resource_metadata_from(None) is None
    assert resource_metadata_from('Bearer resource_metadata="https://x/m"') == "https://x/m"


@pytest.mark.parametrize(("identifier", "suffix", "url"), [
    ("http://127.0.0.1:8400", "oauth-authorization-server",
     "http://127.0.0.1:8400/.well-known/oauth-authorization-server"),
    ("https://id.example.com/tenant/", "oauth-authorization-server",
     "https://id.example.com/.well-known/oauth-authorization-server/tenant"),
    (RESOURCE, "oauth-protected-resource",
     "https://crm.example.com/.well-known/oauth-protected-resource/mcp"),
])
def test_well_known_url(identifier: str, suffix: str, url: str) -> None:
    assert well_known_url(identifier, suffix) == url


def prm(*servers: str, resource: str = RESOURCE) -> dict:
    return {"resource": resource, "authorization_servers": list(servers)}


def test_broker_from_protected_resource_metadata() -> None:
    assert broker_from(prm("https://b.example.com"), RESOURCE, None) == "https://b.example.com"
    allowed = ["https://good.example.com/"]
    chosen = broker_from(prm("https://evil.example.com", "https://good.example.com"),
                         RESOURCE, allowed)
    assert chosen == "https://good.example.com"
    assert broker_from(prm("http://127.0.0.1:8400"), RESOURCE, None) == "http://127.0.0.1:8400"


@pytest.mark.parametrize(("document", "allowed", "error"), [
    (prm("https://evil.example.com"), ["https://good.example.com"], "broker_not_allowed"),
    (prm("http://b.example.com"), None, "broker_not_allowed"),  # no TLS off loopback
    (prm("https://b.example.com", resource="https://other.example.com/mcp"), None,
     "invalid_metadata"),
    (prm(), None, "invalid_metadata"),
    (["not", "an", "object"], None, "invalid_metadata"),
])
def test_broker_from_refuses(document: object, allowed: list[str] | None, error: str) -> None:
    with pytest.raises(DiscoveryError) as refused:
        broker_from(document, RESOURCE, allowed)
    assert refused.value.error == error


def test_token_endpoint_needs_the_same_issuer() -> None:
    doc = {"issuer": "https://b.example.com", "token_endpoint": "https://b.example.com/t"}
    assert token_endpoint_from(doc, "https://b.example.com") == "https://b.example.com/t"
    with pytest.raises(DiscoveryError, match="does not name that issuer"):
        token_endpoint_from(doc, "https://mixup.example.com")
    with pytest.raises(DiscoveryError, match="no token_endpoint"):
        token_endpoint_from({"issuer": "https://b.example.com"}, "https://b.example.com")


def test_build_request_basic_post_and_assertion() -> None:
    form, headers = build_request(
        ClientCredentials("agent:1", "p@ss word"), subject_token="st",
        subject_token_type="access_token", resource=RESOURCE, scope=["a", "b"], assertion=None)
    assert form == {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": "st", "resource": RESOURCE, "scope": "a b",
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}
    encoded = headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded).decode() == "agent%3A1:p%40ss+word"  # RFC 6749 §2.3.1
    form, headers = build_request(ClientCredentials("a", "s", "client_secret_post"),
                                  subject_token="st", subject_token_type="id_token",
                                  resource=RESOURCE, scope=None, assertion=None)
    assert form["client_secret"] == "s" and "Authorization" not in headers
    assert "scope" not in form
    form, _ = build_request(ClientCredentials("a", client_assertion=lambda aud: "jwt"),
                            subject_token="st", subject_token_type="jwt", resource=RESOURCE,
                            scope="x", assertion="signed")
    assert form["client_assertion"] == "signed" and "client_secret" not in form


def test_credentials_check_and_hide_secrets() -> None:
    with pytest.raises(ValueError, match="needs a client_secret"):
        ClientCredentials("a")
    with pytest.raises(ValueError, match="client_assertion"):
        ClientCredentials("a", "s", "private_key_jwt")
    assert "hunter2" not in repr(ClientCredentials("a", "hunter2"))


def test_parse_response() -> None:
    body = {"access_token": "secret-token", "issued_token_type":
            "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
            "expires_in": 300, "scope": "crm:read crm:write"}
    result = parse_response(200, json.dumps(body).encode())
    assert result.scopes == ("crm:read", "crm:write") and result.to_dict() == body
    assert "secret-token" not in repr(result)


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"error": "invalid_grant", "error_description": "revoked"}, "invalid_grant"),
    (401, {"error": "invalid_client"}, "invalid_client"),
    (502, "<html>bad gateway</html>", "invalid_response"),
    (200, {"token_type": "Bearer"}, "invalid_response"),
    (200, {"access_token": "tok-SECRET", "token_type": "DPoP"}, "invalid_response"),
    (200, {"access_token": "tok-SECRET", "expires_in": "300"}, "invalid_response"),
])
def test_parse_response_errors(status: int, body: object, error: str) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(TokenExchangeError) as failed:
        parse_response(status, raw)
    assert failed.value.error == error and failed.value.status_code == status
    assert "tok-SECRET" not in str(failed.value)


def test_auth_needs_an_explicit_broker_or_discovery() -> None:
    common = {"subject_token": "t", "resource": RESOURCE, "client_id": "a",
              "client_secret": "s"}
    with pytest.raises(ValueError, match="exactly one"):
        TokenExchangeAuth(**common)
    with pytest.raises(ValueError, match="exactly one"):
        TokenExchangeAuth(**common, broker="https://b", discover=True)
    with pytest.raises(ValueError, match="discover=True only"):
        TokenExchangeAuth(**common, broker="https://b", allowed_brokers=["https://b"])


def test_token_type_urn_and_decode_unverified() -> None:
    assert token_type_urn("jwt") == "urn:ietf:params:oauth:token-type:jwt"
    assert token_type_urn("urn:x") == "urn:x"

    def seg(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    header, claims = decode_unverified(f"{seg({'alg': 'none'})}.{seg({'sub': 'u'})}.")
    assert header == {"alg": "none"} and claims == {"sub": "u"}
    with pytest.raises(ValueError, match="not a JWT"):
        decode_unverified("a.b")
    with pytest.raises(ValueError, match="not a JWT"):
        decode_unverified(f"{seg({'a': 1})}.!!!.sig")


def test_the_client_package_imports_no_server_code() -> None:
    """Agents install and import this without FastAPI, Redis, Cerbos or the broker itself."""
    probe = ("import sys, broker.client; print('\\n'.join(sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    forbidden = ("fastapi", "starlette", "redis", "cerbos", "grpc", "uvicorn", "jwt",
                 "authlib", "fastmcp", "mcp", "mcp_plugin")
    assert [m for m in loaded if m.split(".")[0] in forbidden] == []
    assert [m for m in loaded if m.startswith("broker.") and
            not m.startswith("broker.client")] == []
