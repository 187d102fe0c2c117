"""The demo's story, one method per step, against the running dev stack.

What each step expects follows from the dev stack as shipped: the users' roles
(broker/dev/services.py), the agents (deploy/dev/broker.yaml) and the policies
(policies/delegated_scope.yaml, policies/mcp_server.yaml). A step that sees something else
says so with ✗ and the story carries on where it can; the exit status is then 1.
"""

from __future__ import annotations

from typing import Any

import httpx

from broker.client import (
    ACCESS_TOKEN_TYPE,
    ClientCredentials,
    ExchangedToken,
    decode_unverified,
    exchange_token,
)
from broker.demo.agent import Outcome, connect
from broker.demo.render import Narrator, claims_panel, scope_table, tools_table
from broker.demo.target import DemoTarget
from broker.dev.config import RESEARCH_AGENT, SUMMARIZER_AGENT
from broker.dev.idp_login import oidc_login_async

USER, OTHER_USER, ADMIN = "alice", "bob", "erin"
REQUESTED = ["crm:read", "crm:write", "crm:delete", "crm:export", "email:send"]
ALICE_GRANTED = ["crm:read", "crm:write", "email:send"]  # a sales_rep's rights
READ_TOOLS = ["search_contacts", "get_contact", "list_deals"]
ALICE_TOOLS = [*READ_TOOLS, "update_contact", "add_note", "send_email"]
SUB_AGENT_REQUESTED = ["crm:read", "crm:write"]
INTERNAL, EXTERNAL = "bob@example.com", "eve@evil.test"
TOKEN_CLAIMS = ("iss", "sub", "aud", "client_id", "act", "scope", "roles", "sid", "exp")


class Story:
    def __init__(self, target: DemoTarget, narrator: Narrator, http: httpx.AsyncClient) -> None:
        self.t, self.n, self.http = target, narrator, http
        self.alice_id_token = ""
        self.research: ExchangedToken | None = None
        self.summarizer: ExchangedToken | None = None
        self._admin_token: str | None = None

    # --- helpers ----------------------------------------------------------------------------
    def credentials(self, client_id: str) -> ClientCredentials:
        return ClientCredentials(client_id, self.t.secret(client_id),
                                 self.t.auth_methods.get(client_id))

    async def exchange(self, subject_token: str, client_id: str, scope: list[str], *,
                       subject_token_type: str | None = None) -> ExchangedToken:
        kind: dict[str, Any] = (
            {"subject_token_type": subject_token_type} if subject_token_type else {})
        return await exchange_token(f"{self.t.broker}/oauth2/token", http=self.http,
                                    subject_token=subject_token, resource=self.t.mcp,
                                    client=self.credentials(client_id), scope=scope, **kind)

    async def login(self, sub: str, client_id: str | None = None) -> str:
        tokens = await oidc_login_async(self.t.idp, sub, client_id=client_id or self.t.host_client,
                                        http=self.http)
        return tokens.id_token

    async def admin_token(self) -> str:
        """erin's ID token for the admin API's audience (signed in once, on first use)."""
        if self._admin_token is None:
            if self.t.admin_audience is None:
                raise RuntimeError("the broker config has no admin.audiences: no admin API")
            self._admin_token = await self.login(ADMIN, self.t.admin_audience)
            self.n.note(f"({ADMIN}, the broker's admin, signed in at the dev IdP for audience "
                        f"{self.t.admin_audience!r}, which the broker's admin.audiences accepts)")
        return self._admin_token

    async def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.admin_token()}"}
        response = await self.http.request(method, f"{self.t.broker}/admin{path}",
                                           headers=headers, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"admin API {method} {path}: {response.status_code} "
                               f"{response.text[:300]}")
        return response

    async def dropped_reasons(self, sid: str) -> dict[str, str]:
        """Why each scope was dropped, from the session record the broker wrote."""
        record = (await self.admin("GET", f"/sessions/{sid}")).json()
        self.n.note(f"why: from the session record, GET /admin/sessions/{sid}")
        return {d["scope"]: d["reason"] for d in record.get("dropped", [])}

    # --- the steps --------------------------------------------------------------------------
    async def sign_in(self) -> None:
        self.n.step(f"{USER} signs in at the dev IdP",
                    f"The agent host logs {USER} in (OIDC authorization-code flow, over HTTP). "
                    f"Her ID token, audience {self.t.host_client!r}, is what it hands its agent.")
        self.alice_id_token = await self.login(USER)
        _, claims = decode_unverified(self.alice_id_token)
        self.n.print(claims_panel(f"{USER}'s ID token", claims,
                                  ("iss", "sub", "aud", "roles", "email_verified", "exp")))
        self.n.check(claims.get("sub") == USER, f"{USER} is signed in",
                     f"roles {claims.get('roles')}")

    async def exchange_for_agent(self) -> None:
        self.n.step(f"{RESEARCH_AGENT} exchanges {USER}'s ID token (RFC 8693)",
                    "It asks for every scope the CRM offers. The broker grants requested ∩ "
                    "what the agent declared ∩ what the user may delegate (Cerbos: "
                    "policies/delegated_scope.yaml) ∩ the server's catalog.")
        token = self.research = await self.exchange(self.alice_id_token, RESEARCH_AGENT,
                                                    REQUESTED)
        _, claims = decode_unverified(token.access_token)
        reasons = await self.dropped_reasons(claims["sid"])
        self.n.print(scope_table(REQUESTED, list(token.scopes), reasons,
                                 title="requested → granted"))
        self.n.print(claims_panel("the agent token", claims, TOKEN_CLAIMS))
        self.n.check(sorted(token.scopes) == sorted(ALICE_GRANTED),
                     f"granted {token.scope!r}",
                     f"{USER} is a sales_rep: crm:delete and crm:export are not hers to give")
        self.n.check(claims.get("act") == {"sub": RESEARCH_AGENT},
                     f"act says {RESEARCH_AGENT} acts for {claims.get('sub')}",
                     f"expires in {token.expires_in} s")

    async def list_tools(self) -> None:
        self.n.step("The agent lists the MCP tools: it sees only its own",
                    "mcp_plugin verifies the token, then asks Cerbos about every tool in one "
                    "batched request (tools/list::<name>, policies/mcp_server.yaml).")
        assert self.research is not None
        async with connect(self.t.mcp, self.research.access_token) as mcp:
            alice_tools = await mcp.tool_names()
        bob = await self.exchange(await self.login(OTHER_USER), RESEARCH_AGENT, REQUESTED)
        async with connect(self.t.mcp, bob.access_token) as mcp:
            bob_tools = await mcp.tool_names()
        self.n.print(tools_table({f"{USER}'s agent\n{self.research.scope}": alice_tools,
                                  f"{OTHER_USER}'s agent\n{bob.scope}": bob_tools},
                                 title="what tools/list returns, same agent, same request"))
        self.n.check(sorted(alice_tools) == sorted(ALICE_TOOLS),
                     f"{USER}'s agent lists {len(alice_tools)} tools")
        self.n.check(sorted(bob_tools) == sorted(READ_TOOLS),
                     f"{OTHER_USER} (support) gets crm:read only: {len(bob_tools)} read tools")
        self.n.note("delete_contact and export_contacts exist too: neither token lists them.")

    async def call_tools(self) -> None:
        self.n.step("Allowed, denied and argument-conditioned calls",
                    "Every call is decided again, with its arguments: a sales_rep's agent may "
                    "send_email only to one @example.com address (rule email_send_internal).")
        assert self.research is not None
        async with connect(self.t.mcp, self.research.access_token) as mcp:
            found = await mcp.call("search_contacts", {"query": "ada"})
            deleted = await mcp.call("delete_contact", {"contact_id": "1"})
            inside = await mcp.call("send_email", {"to": INTERNAL, "subject": "Q3",
                                                   "body": "Numbers attached."})
            outside = await mcp.call("send_email", {"to": EXTERNAL, "subject": "Q3",
                                                    "body": "Numbers attached."})
        self.n.check(found.ok, "search_contacts(query='ada') is allowed", _short(found))
        self.n.check(not deleted.ok, "delete_contact(contact_id='1') is refused",
                     f"{_short(deleted)}: a refused tool looks like a missing one")
        self.n.check(inside.ok, f"send_email(to='{INTERNAL}') is allowed", _short(inside))
        self.n.check(not outside.ok, f"send_email(to='{EXTERNAL}') is refused",
                     f"{_short(outside)}: same tool, same token, another recipient")

    async def delegate(self) -> None:
        self.n.step(f"A sub-agent, {SUMMARIZER_AGENT}, gets a narrower token",
                    f"{RESEARCH_AGENT} may delegate to {SUMMARIZER_AGENT}, which exchanges the "
                    "agent token itself: never wider, never longer-lived, and act nests.")
        assert self.research is not None
        token = self.summarizer = await self.exchange(
            self.research.access_token, SUMMARIZER_AGENT, SUB_AGENT_REQUESTED,
            subject_token_type=ACCESS_TOKEN_TYPE)
        _, claims = decode_unverified(token.access_token)
        _, parent = decode_unverified(self.research.access_token)
        reasons = await self.dropped_reasons(claims["sid"])
        self.n.print(scope_table(SUB_AGENT_REQUESTED, list(token.scopes), reasons,
                                 title="requested → granted (re-delegation)"))
        self.n.print(claims_panel("the sub-agent's token", claims, TOKEN_CLAIMS))
        async with connect(self.t.mcp, token.access_token) as mcp:
            tools = await mcp.tool_names()
            read = await mcp.call("get_contact", {"contact_id": "2"})
            write = await mcp.call("add_note", {"contact_id": "2", "text": "call back"})
        self.n.check(list(token.scopes) == ["crm:read"], f"granted {token.scope!r}")
        self.n.check(claims.get("act") == {"sub": SUMMARIZER_AGENT,
                                           "act": {"sub": RESEARCH_AGENT}},
                     f"act nests the chain: {SUMMARIZER_AGENT} ← {RESEARCH_AGENT} ← {USER}")
        self.n.check(claims.get("exp", 0) <= parent.get("exp", 0),
                     "it expires no later than its parent")
        self.n.check(sorted(tools) == sorted(READ_TOOLS), f"it lists {len(tools)} read tools")
        self.n.check(read.ok, "get_contact(contact_id='2') is allowed", _short(read))
        scope = write.challenge_param("scope")
        self.n.check(write.status == 403 and write.challenge_param("error")
                     == "insufficient_scope", "add_note is answered 403 insufficient_scope",
                     f"step-up challenge names scope={scope!r}; this agent cannot get it")


def _short(outcome: Outcome, limit: int = 70) -> str:
    text = " ".join(outcome.text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
