"""Genuine tokens in the wrong place: no passthrough of other issuers' tokens, no rogue
issuers, and an agent token opens only the MCP server (resource) it was issued for."""

from __future__ import annotations

import time

from tests.integration.conftest import CRM, DOCS, Broker, basic, exchange_form
from tests.security.conftest import (
    IDP_AUDIENCE,
    IDP_KEY,
    SECRETS,
    Server,
    mcp_status,
    post_form,
)
from tests.security.exchanges import assertion, token_for
from tests.security.forge import attacker_key_like

ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def test_plugin_refuses_a_dev_idp_id_token_no_passthrough(crm_url: str,
                                                          id_tokens: dict[str, str]) -> None:
    assert mcp_status(crm_url, id_tokens["alice"]) == 401


def test_plugin_refuses_an_agent_shaped_token_of_a_trusted_upstream_idp(
        crm_url: str, trusted_idp: Server) -> None:
    """Signed by an IdP the broker trusts, shaped like an agent token for this very server:
    still not the broker's, so not accepted (the plugin trusts one issuer, the broker)."""
    now = int(time.time())
    forged = IDP_KEY.sign({
        "iss": trusted_idp.url, "sub": "alice", "aud": CRM, "client_id": "research-agent",
        "scope": "crm:read", "act": {"sub": "research-agent"}, "sid": "s", "jti": "j",
        "iat": now, "exp": now + 300}, headers={"typ": "at+jwt"})
    assert mcp_status(crm_url, forged) == 401


def test_broker_refuses_a_rogue_issuer_and_never_contacts_it(sec_broker: Broker,
                                                             attacker: Server) -> None:
    """The attacker runs a complete IdP (discovery, JWKS with its key): the broker trusts only
    configured issuers and never fetches metadata for the `iss` a token names."""
    rogue = attacker_key_like(IDP_KEY)
    attacker.documents["/jwks"]["keys"].append(rogue.jwk())
    now = int(time.time())
    token = rogue.sign({"iss": attacker.url, "sub": "alice", "aud": IDP_AUDIENCE,
                        "iat": now, "exp": now + 300, "roles": ["crm_admin"]})
    before = len(attacker.hits)
    response = post_form(sec_broker, "/oauth2/token", exchange_form(token),
                         basic("research-agent"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert attacker.hits[before:] == []


def test_plugin_refuses_an_agent_token_issued_for_another_resource(
        sec_broker: Broker, crm_url: str, id_tokens: dict[str, str]) -> None:
    docs_token = token_for(sec_broker, exchange_form(
        id_tokens["alice"], resource=DOCS, scope="docs:read", **assertion(sec_broker)))
    crm_token = token_for(sec_broker, exchange_form(
        id_tokens["alice"], resource=CRM, scope="crm:read", **assertion(sec_broker)))
    assert mcp_status(crm_url, crm_token) == 200  # control: same agent, same user, right server
    assert mcp_status(crm_url, docs_token) == 401


def test_introspection_of_a_token_for_another_resource_is_inactive(
        sec_broker: Broker, id_tokens: dict[str, str]) -> None:
    """crm-server may introspect tokens for CRM only: a DOCS token is `active: false` to it."""
    docs_token = token_for(sec_broker, exchange_form(
        id_tokens["alice"], resource=DOCS, scope="docs:read", **assertion(sec_broker)))
    crm_token = token_for(sec_broker, exchange_form(id_tokens["alice"], scope="crm:read"),
                          basic("research-agent"))

    def active(token: str) -> bool:
        response = post_form(sec_broker, "/oauth2/introspect", {"token": token},
                             basic("crm-server"))
        assert response.status_code == 200
        return bool(response.json()["active"])

    assert active(crm_token)
    assert not active(docs_token)


def test_redelegation_cannot_move_a_token_to_another_resource(
        sec_broker: Broker, id_tokens: dict[str, str]) -> None:
    """research (CRM) -> summarizer (CRM) -> signer-agent asking for DOCS, which signer-agent
    may use: refused because a re-delegated token keeps its parent's resource."""
    parent = token_for(sec_broker, exchange_form(id_tokens["alice"], scope="crm:read"),
                       basic("research-agent"))
    child = token_for(sec_broker, exchange_form(
        parent, subject_token_type=ACCESS_TOKEN, client_id="summarizer-agent",
        client_secret=SECRETS["summarizer-agent"]))
    moved = post_form(sec_broker, "/oauth2/token", exchange_form(
        child, resource=DOCS, subject_token_type=ACCESS_TOKEN, **assertion(sec_broker)))
    assert (moved.status_code, moved.json()["error"]) == (400, "invalid_target")
    stays = post_form(sec_broker, "/oauth2/token", exchange_form(
        child, resource=CRM, subject_token_type=ACCESS_TOKEN, **assertion(sec_broker)))
    assert stays.status_code == 200, stays.text


def test_an_agent_token_cannot_pose_as_an_id_token(sec_broker: Broker,
                                                   id_tokens: dict[str, str]) -> None:
    parent = token_for(sec_broker, exchange_form(id_tokens["alice"], scope="crm:read"),
                       basic("research-agent"))
    response = post_form(sec_broker, "/oauth2/token", exchange_form(
        parent, client_id="summarizer-agent", client_secret=SECRETS["summarizer-agent"],
        subject_token_type="urn:ietf:params:oauth:token-type:id_token"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
