"""Abuse of the token exchange itself, on the real broker (max_delegation_depth 3).

Agents (tests/security/conftest.py): research -> {summarizer, helper}; helper -> {research,
deep}; deep -> {summarizer}; summarizer -> {signer}. Each refusal has a control beside it
that differs only in the thing the defence checks, so the refusal cannot come from elsewhere.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from tests.integration.conftest import CRM, Broker, basic, exchange_form
from tests.security.conftest import SECRETS, SIGNER_TWO, post_form
from tests.security.exchanges import ACCESS_TOKEN, assertion, signed_assertion, token_for


def _as(agent: str) -> dict[str, str]:
    return {"client_id": agent, "client_secret": SECRETS[agent]}


def _redelegate(broker: Broker, token: str, agent: str, **form: str) -> str:
    return token_for(broker, exchange_form(token, subject_token_type=ACCESS_TOKEN,
                                           **_as(agent), **form))


def _refusal(broker: Broker, form: dict[str, str], headers: dict[str, str] | None = None
             ) -> tuple[int, str]:
    response = post_form(broker, "/oauth2/token", form, headers)
    return response.status_code, response.json().get("error", "")


@pytest.fixture
def research(sec_broker: Broker, id_tokens: dict[str, str]) -> str:
    """alice's token for research-agent, scope crm:read only."""
    return token_for(sec_broker, exchange_form(id_tokens["alice"], scope="crm:read"),
                     basic("research-agent"))


def test_scope_widening_on_redelegation_is_impossible(sec_broker: Broker, research: str,
                                                      id_tokens: dict[str, str]) -> None:
    # control: alice may delegate crm:write, and helper-agent declares crm:*
    direct = post_form(sec_broker, "/oauth2/token", exchange_form(
        id_tokens["alice"], scope="crm:read crm:write"), basic("research-agent"))
    assert direct.json()["scope"] == "crm:read crm:write"
    wider = post_form(sec_broker, "/oauth2/token", exchange_form(
        research, subject_token_type=ACCESS_TOKEN, scope="crm:read crm:write",
        **_as("helper-agent")))
    assert wider.status_code == 200
    assert wider.json()["scope"] == "crm:read"
    only_new = exchange_form(research, subject_token_type=ACCESS_TOKEN, scope="crm:write",
                             **_as("helper-agent"))
    assert _refusal(sec_broker, only_new) == (400, "invalid_scope")


def test_delegation_to_an_agent_not_in_may_delegate_to(sec_broker: Broker,
                                                       research: str) -> None:
    _redelegate(sec_broker, research, "helper-agent")  # control: helper is in research's list
    form = exchange_form(research, subject_token_type=ACCESS_TOKEN, **_as("deep-agent"))
    assert _refusal(sec_broker, form) == (400, "invalid_grant")


def test_delegation_depth_beyond_the_cap(sec_broker: Broker, research: str) -> None:
    helper = _redelegate(sec_broker, research, "helper-agent")
    deep = _redelegate(sec_broker, helper, "deep-agent")  # depth 3: the cap, allowed
    form = exchange_form(deep, subject_token_type=ACCESS_TOKEN, **_as("summarizer-agent"))
    assert _refusal(sec_broker, form) == (400, "invalid_grant")  # depth 4


def test_an_agent_repeated_in_its_own_chain(sec_broker: Broker, research: str) -> None:
    """research -> helper -> research would be depth 3 (allowed) but names research twice."""
    helper = _redelegate(sec_broker, research, "helper-agent")
    form = exchange_form(helper, subject_token_type=ACCESS_TOKEN)
    assert _refusal(sec_broker, form, basic("research-agent")) == (400, "invalid_grant")


def test_actor_token_of_another_agent(sec_broker: Broker, id_tokens: dict[str, str]) -> None:
    """signer-agent authenticates itself but presents signer-two's (valid) assertion, or an
    agent token of research-agent, as actor_token: the act claim would lie, so refused."""
    actor_fields = {"actor_token_type": "urn:ietf:params:oauth:token-type:jwt"}
    base = exchange_form(id_tokens["alice"], scope="crm:read")
    own = {**base, **assertion(sec_broker), **actor_fields,
           "actor_token": signed_assertion(sec_broker)}
    assert post_form(sec_broker, "/oauth2/token", own).status_code == 200  # control
    other = {**base, **assertion(sec_broker), **actor_fields, "actor_token": signed_assertion(
        sec_broker, key=SIGNER_TWO, client_id="signer-two")}
    assert _refusal(sec_broker, other) == (400, "invalid_grant")
    research_token = token_for(sec_broker, base, basic("research-agent"))
    agent_token = {**base, **assertion(sec_broker), **actor_fields,
                   "actor_token": research_token}
    assert _refusal(sec_broker, agent_token) == (400, "invalid_grant")
    by_secret_client = {**base, **actor_fields, "actor_token": signed_assertion(sec_broker)}
    assert _refusal(sec_broker, by_secret_client,
                    basic("research-agent")) == (400, "invalid_request")


def test_replayed_private_key_jwt_assertion(sec_broker: Broker,
                                            id_tokens: dict[str, str]) -> None:
    auth = assertion(sec_broker)
    form = {**exchange_form(id_tokens["alice"], scope="crm:read"), **auth}
    assert post_form(sec_broker, "/oauth2/token", form).status_code == 200
    assert _refusal(sec_broker, form) == (401, "invalid_client")
    # the same jti is spent for every endpoint, not just the one it was first used at
    revoke = post_form(sec_broker, "/oauth2/revoke", {"token": "x.y.z", **auth})
    assert (revoke.status_code, revoke.json()["error"]) == (401, "invalid_client")


def test_replayed_actor_token(sec_broker: Broker, id_tokens: dict[str, str]) -> None:
    actor = signed_assertion(sec_broker)
    form = {**exchange_form(id_tokens["alice"], scope="crm:read"), "actor_token": actor,
            "actor_token_type": "urn:ietf:params:oauth:token-type:jwt"}
    assert post_form(sec_broker, "/oauth2/token", {**form, **assertion(sec_broker)}
                     ).status_code == 200
    assert _refusal(sec_broker, {**form, **assertion(sec_broker)}) == (400, "invalid_grant")


REPEATABLE = ["grant_type", "subject_token", "subject_token_type", "resource", "audience",
              "scope", "requested_token_type", "client_id", "client_secret"]


def _full_form(parent: str) -> dict[str, str]:
    return {**exchange_form(parent, subject_token_type=ACCESS_TOKEN, audience=CRM,
                            requested_token_type=ACCESS_TOKEN, scope="crm:read"),
            **_as("summarizer-agent")}


@pytest.mark.parametrize("name", REPEATABLE)
def test_repeated_parameter_at_the_token_endpoint(sec_broker: Broker, research: str,
                                                  name: str) -> None:
    """RFC 6749 §3.1: a parameter sent twice is invalid_request, even with equal values."""
    form = _full_form(research)
    assert post_form_raw(sec_broker, "/oauth2/token", urlencode(form)).status_code == 200
    response = post_form_raw(sec_broker, "/oauth2/token",
                             urlencode([*form.items(), (name, form[name])]))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
def test_repeated_token_parameter_at_introspect_and_revoke(sec_broker: Broker, research: str,
                                                           path: str) -> None:
    who = "crm-server" if path.endswith("introspect") else "research-agent"
    body = urlencode([("token", research), ("token", "x.y.z")])
    response = post_form_raw(sec_broker, path, body, basic(who))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("field", ["resource", "audience"])
@pytest.mark.parametrize("suffix", ["#fragment", "#"])
def test_fragment_in_resource(sec_broker: Broker, id_tokens: dict[str, str], field: str,
                              suffix: str) -> None:
    """RFC 8707 §2: a resource indicator must not include a fragment."""
    form = exchange_form(id_tokens["alice"], scope="crm:read")
    form.pop("resource")
    form[field] = CRM + suffix
    assert _refusal(sec_broker, form, basic("research-agent")) == (400, "invalid_target")


def post_form_raw(broker: Broker, path: str, body: str,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    with broker.client() as http:
        return http.post(path, content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
