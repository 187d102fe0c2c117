"""The agent side of DPoP: TokenExchangeAuth over httpx.MockTransport servers that check every
proof with the broker's own checker (`broker.dpop`), so what agents send is what servers take."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from broker.client import DPoPKey, TokenExchangeAuth, TokenExchangeError, exchange_token_sync
from broker.client.exchange import ClientCredentials
from broker.dpop import validate_proof

BROKER = "https://broker.test"
TOKEN_ENDPOINT = f"{BROKER}/oauth2/token"
RESOURCE = "https://crm.test/mcp"
METADATA = {"issuer": BROKER, "token_endpoint": TOKEN_ENDPOINT}


class Servers:
    """A broker minting DPoP tokens and a resource demanding them, each checking proofs; each
    can ask for a nonce once (RFC 9449 §8, §9)."""

    def __init__(self, *, broker_nonce: bool = False, resource_nonce: bool = False,
                 token_type: str = "DPoP") -> None:
        self.broker_nonce, self.resource_nonce = broker_nonce, resource_nonce
        self.token_type = token_type
        self.bound_to: str | None = None
        self.log: list[str] = []

    def check(self, request: httpx.Request, uri: str, token: str | None = None) -> dict:
        proof = request.headers.get("dpop")
        assert proof is not None, "no DPoP proof"
        checked = validate_proof(proof, method=request.method, uri=uri, now=time.time(),
                                 window=60, access_token=token)
        return {"jkt": checked.jkt, **_claims(proof)}

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.log.append(f"{request.method} {request.url.path}")
        if url.endswith("/.well-known/oauth-authorization-server"):
            return httpx.Response(200, json=METADATA)
        if url == TOKEN_ENDPOINT:
            proof = self.check(request, TOKEN_ENDPOINT)
            if self.broker_nonce and proof.get("nonce") != "n-1":
                return httpx.Response(400, json={"error": "use_dpop_nonce"},
                                      headers={"DPoP-Nonce": "n-1"})
            self.bound_to = proof["jkt"]
            return httpx.Response(200, json={"access_token": "tok-1", "token_type":
                                             self.token_type, "expires_in": 300})
        if self.token_type == "Bearer":
            assert request.headers["authorization"] == "Bearer tok-1"
            return httpx.Response(200, json={"ok": True})
        assert request.headers["authorization"] == "DPoP tok-1"
        proof = self.check(request, RESOURCE, token="tok-1")
        assert proof["jkt"] == self.bound_to
        if self.resource_nonce and proof.get("nonce") != "r-1":
            return httpx.Response(401, headers={
                "DPoP-Nonce": "r-1",
                "WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="EdDSA ES256"'})
        return httpx.Response(200, json={"ok": True})


def _claims(proof: str) -> dict:
    part = proof.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def auth_for(servers: Servers, **over: object) -> tuple[TokenExchangeAuth, httpx.Client]:
    transport = httpx.MockTransport(servers.handle)
    options: dict = {"subject_token": "id-token", "client_id": "agent", "client_secret": "s",
                     "resource": RESOURCE, "broker": BROKER, "dpop": True,
                     "http_client": httpx.Client(transport=transport)}
    auth = TokenExchangeAuth(**(options | over))
    return auth, httpx.Client(transport=transport, auth=auth)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_token_and_resource_requests_carry_proofs_by_one_key(alg: str) -> None:
    servers = Servers()
    key = DPoPKey.generate(alg)  # type: ignore[arg-type]
    auth, http = auth_for(servers, dpop=key)
    assert http.post(RESOURCE, json={}).status_code == 200
    assert http.get(RESOURCE).status_code == 200  # a fresh proof, htm GET, same token
    assert servers.bound_to == key.thumbprint == auth.dpop_key.thumbprint  # type: ignore[union-attr]
    assert servers.log.count("POST /oauth2/token") == 1


def test_each_instance_has_its_own_key_by_default() -> None:
    one, _ = auth_for(Servers())
    two, _ = auth_for(Servers())
    assert one.dpop_key is not None and two.dpop_key is not None
    assert one.dpop_key.thumbprint != two.dpop_key.thumbprint


def test_nonces_asked_by_the_broker_and_the_resource_get_one_retry_each() -> None:
    servers = Servers(broker_nonce=True, resource_nonce=True)
    _, http = auth_for(servers)
    assert http.post(RESOURCE, json={}).status_code == 200
    assert servers.log.count("POST /oauth2/token") == 2
    assert servers.log.count("POST /mcp") == 2
    assert http.post(RESOURCE, json={}).status_code == 200  # the nonce is remembered
    assert servers.log.count("POST /mcp") == 3


def test_a_broker_that_ignores_the_proof_gives_a_bearer_token_used_as_such() -> None:
    servers = Servers(token_type="Bearer")
    _, http = auth_for(servers)
    assert http.post(RESOURCE, json={}).status_code == 200


def test_a_dpop_token_without_a_key_is_refused() -> None:
    """A bound token is useless without its key: better an error now than 401s later."""

    def no_proof_needed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "tok-1", "token_type": "DPoP"})

    with pytest.raises(TokenExchangeError) as refused:
        exchange_token_sync(TOKEN_ENDPOINT, subject_token="id", resource=RESOURCE,
                            client=ClientCredentials("agent", "s"),
                            http=httpx.Client(transport=httpx.MockTransport(no_proof_needed)))
    assert refused.value.error == "invalid_response"


def test_a_proofs_htu_leaves_out_query_and_fragment() -> None:
    """RFC 9449 §4.2: servers compare `htu` without them, and a query can hold secrets."""
    proof = DPoPKey.generate().proof("post", RESOURCE + "?q=1#x", access_token="tok")
    claims = _claims(proof)
    assert (claims["htm"], claims["htu"]) == ("POST", RESOURCE)
    validate_proof(proof, method="POST", uri=RESOURCE, now=time.time(), window=60,
                   access_token="tok")


def _claims(proof: str) -> dict[str, object]:
    payload = proof.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


def test_a_remembered_nonce_goes_into_the_next_proofs_for_that_server_only() -> None:
    key = DPoPKey.generate()
    key.remember_nonce(TOKEN_ENDPOINT + "?q=1", "n1")  # htu: no query
    assert _claims(key.proof("POST", TOKEN_ENDPOINT))["nonce"] == "n1"
    assert _claims(key.proof("POST", TOKEN_ENDPOINT, nonce="n2"))["nonce"] == "n2"
    assert "nonce" not in _claims(key.proof("POST", RESOURCE))
    key.remember_nonce(TOKEN_ENDPOINT, "n3")
    assert _claims(key.proof("POST", TOKEN_ENDPOINT))["nonce"] == "n3"


def test_nonces_are_remembered_for_64_servers_at_most() -> None:
    key = DPoPKey.generate()
    for n in range(65):
        key.remember_nonce(f"https://s{n}.test/mcp", f"n{n}")
    assert "nonce" not in _claims(key.proof("POST", "https://s0.test/mcp"))
    assert _claims(key.proof("POST", "https://s64.test/mcp"))["nonce"] == "n64"
