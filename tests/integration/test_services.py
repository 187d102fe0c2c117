"""The test services are real and behave as the rest of the suite relies on."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import jwt
import pytest
import redis
from cerbos.effect.v1 import effect_pb2
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from cerbos.sdk.grpc.client import CerbosClient
from google.protobuf import struct_pb2

from tests.support.oidc import oidc_login
from tests.support.services import ManagedProcess, ServiceError, start_cerbos, start_redis

pytestmark = pytest.mark.integration

PROBE_POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: probe
  rules:
    - actions: ["read"]
      effect: EFFECT_ALLOW
      roles: ["reader"]
    - actions: ["write"]
      effect: EFFECT_ALLOW
      roles: ["reader"]
      condition:
        match:
          expr: request.resource.attr.owner == request.principal.id
"""


def test_redis_answers_ping(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
    finally:
        client.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_redis_with_appendonly_keeps_keys_across_restart(tmp_path: Path, how: str) -> None:
    service = start_redis(tmp_path, appendonly=True)
    try:
        port, pid = service.port, service.pid
        with redis.Redis.from_url(service.url) as client:
            client.set("revoked:jti-1", "1")
        getattr(service, how)()
        assert not service.is_running
        service.restart()
        assert service.port == port
        assert service.pid != pid
        with redis.Redis.from_url(service.url) as client:
            assert client.get("revoked:jti-1") == b"1"
    finally:
        service.stop()


def test_cerbos_answers_check_resources(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "probe.yaml").write_text(PROBE_POLICY)
    service = start_cerbos(policies, tmp_path)
    try:
        principal = engine_pb2.Principal(id="alice", roles=["reader"])
        entries = [
            request_pb2.CheckResourcesRequest.ResourceEntry(
                actions=["read", "write", "delete"],
                resource=engine_pb2.Resource(
                    kind="probe", id=rid, attr={"owner": struct_pb2.Value(string_value=owner)}
                ),
            )
            for rid, owner in [("mine", "alice"), ("theirs", "bob")]
        ]
        with CerbosClient(service.grpc_address, timeout_secs=5) as client:
            response = client.check_resources(principal=principal, resources=entries)
        effects = {
            result.resource.id: {
                action: effect == effect_pb2.EFFECT_ALLOW
                for action, effect in result.actions.items()
            }
            for result in response.results
        }
        assert effects == {
            "mine": {"read": True, "write": True, "delete": False},
            "theirs": {"read": True, "write": False, "delete": False},
        }
    finally:
        service.stop()


def test_oidc_login_returns_a_verifiable_rs256_id_token(oidc_issuer: str) -> None:
    claims = {"roles": ["analyst", "crm-admin"], "realm_access": {"roles": ["analyst"]}}
    tokens = oidc_login(oidc_issuer, "alice", claims={**claims, "email": "alice@example.com"})

    header = jwt.get_unverified_header(tokens.id_token)
    assert header["alg"] == "RS256"
    discovery = httpx.get(f"{oidc_issuer}/.well-known/openid-configuration", trust_env=False)
    jwks = jwt.PyJWKSet.from_dict(httpx.get(discovery.json()["jwks_uri"], trust_env=False).json())
    # The provider signs without a `kid` header while its JWKS key has one: pick the only key.
    kid = header.get("kid")
    keys = [k for k in jwks.keys if kid is None or k.key_id == kid]
    assert len(keys) == 1

    payload = jwt.decode(
        tokens.id_token,
        keys[0],
        algorithms=["RS256"],
        audience="agent-host",
        issuer=oidc_issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    assert payload["sub"] == "alice"
    assert payload["roles"] == claims["roles"]
    assert payload["realm_access"] == claims["realm_access"]
    assert payload["email"] == "alice@example.com"
    assert tokens.expires_in > 0
    assert tokens.access_token.count(".") != 2, "the provider's access token is opaque"


def test_oidc_login_uses_the_requested_client_id_as_audience(oidc_issuer: str) -> None:
    tokens = oidc_login(oidc_issuer, "bob", client_id="other-host")
    payload = jwt.decode(tokens.id_token, options={"verify_signature": False})
    assert payload["aud"] == ["other-host"]
    assert payload["iss"] == oidc_issuer


class _NeverReady(ManagedProcess):
    def is_ready(self) -> bool:
        return False


def test_a_service_that_dies_early_reports_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('boom: no config'); raise SystemExit(3)"]
    process = _NeverReady("doomed", argv, tmp_path, ready_timeout=10)
    with pytest.raises(ServiceError, match=r"(?s)exited with code 3.*boom: no config"):
        process.start()
    assert not process.is_running
