"""What the DPoP security tests share: the agents (deep-agent `dpop_bound`), and a token
exchange at a broker with or without a proof."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import Broker, basic, exchange_form
from tests.security.conftest import SECRETS, post_form, security_agents


def dpop_agents() -> list[dict[str, Any]]:
    return [{**a, "dpop_bound": a["client_id"] == "deep-agent"} for a in security_agents()]


def token_endpoint(broker: Broker) -> str:
    return f"{broker.url}/oauth2/token"


def exchange(broker: Broker, id_token: str, *, proof: str | None = None,
             agent: str = "research-agent", **form: str) -> httpx.Response:
    headers = basic(agent) if agent == "research-agent" else {}
    fields = exchange_form(id_token, scope="crm:read", **form)
    if agent != "research-agent":
        fields |= {"client_id": agent, "client_secret": SECRETS[agent]}
    if proof is not None:
        headers["DPoP"] = proof
    return post_form(broker, "/oauth2/token", fields, headers)


def is_invalid_dpop_proof(response: httpx.Response) -> bool:
    return response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"
