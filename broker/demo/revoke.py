"""The demo's revocation step: erin revokes the session, and the next call is refused.

The delay is measured from the moment the admin API's revoke call RETURNED (what the contract
promises about, §7) to the moment an MCP call came back refused. The agent keeps calling in a
tight loop on a session opened before the revocation, so the figure includes one round trip
of that call, nothing of the MCP handshake.
"""

from __future__ import annotations

import time

from rich.panel import Panel
from rich.text import Text

from broker.client import ACCESS_TOKEN_TYPE, TokenExchangeError, decode_unverified
from broker.demo.agent import AgentSession, Outcome, connect, try_connect
from broker.demo.story import ADMIN, USER, Story
from broker.dev.config import RESEARCH_AGENT, SUMMARIZER_AGENT

POLL_FOR_S = 5.0
TARGET_MS = 50  # contract §7: p99 on one host
PROBE = ("search_contacts", {"query": "ada"})


async def _poll_until_refused(mcp: AgentSession, returned: float) -> tuple[Outcome, float, int]:
    """(the refusal, seconds after `returned`, calls that still got through)."""
    through = 0
    while True:
        outcome = await mcp.call(*PROBE)
        now = time.perf_counter()
        if not outcome.ok or now - returned > POLL_FOR_S:
            return outcome, now - returned, through
        through += 1


async def revoke_session(story: Story) -> float | None:
    """Step 6; returns the measured delay in ms (None when no refusal was seen)."""
    n = story.n
    n.step(f"{ADMIN}, the admin, revokes the session; the next call fails",
           f"Through the admin API: POST /admin/sessions/<sid>/revoke revokes {USER}'s session "
           f"with {RESEARCH_AGENT} and every session delegated from it. MCP servers mirror "
           "revocations from Redis pub/sub (docs/revocation-protocol.md).")
    assert story.research is not None
    assert story.summarizer is not None
    sid = decode_unverified(story.research.access_token)[1]["sid"]
    await story.admin_token()  # signed in before the clock starts
    async with connect(story.t.mcp, story.research.access_token) as mcp:
        before = await mcp.call(*PROBE)
        n.check(before.ok, "before: the agent's call works", "search_contacts(query='ada')")
        started = time.perf_counter()
        response = await story.admin("POST", f"/sessions/{sid}/revoke",
                                     json={"reason": "agent-broker demo"})
        returned = time.perf_counter()
        refusal, delay, through = await _poll_until_refused(mcp, returned)
    body = response.json()
    n.check(response.status_code == 200, f"POST /admin/sessions/{sid}/revoke → 200",
            f"{body.get('entries')} session(s) revoked by {body.get('revoked_by')}, "
            f"the call took {(returned - started) * 1000:.1f} ms")
    refused = refusal.status == 401 and refusal.challenge_param("error") == "invalid_token"
    n.check(refused, "the agent's next call is refused: HTTP 401 invalid_token",
            f"{through} call(s) got through after the revoke returned")
    delay_ms = delay * 1000
    if refused:
        style = "bold green" if delay_ms <= TARGET_MS else "bold yellow"
        n.print(Panel(Text.assemble(("refused ", "bold"), (f"{delay_ms:.1f} ms", style),
                                    " after the revoke call returned (target: within "
                                    f"{TARGET_MS} ms)"), expand=False))
    child = await try_connect(story.t.mcp, story.summarizer.access_token)
    n.check(child.status == 401, f"{SUMMARIZER_AGENT}'s token is refused too",
            "it was delegated from the revoked session")
    try:
        await story.exchange(story.research.access_token, SUMMARIZER_AGENT, ["crm:read"],
                             subject_token_type=ACCESS_TOKEN_TYPE)
        n.check(False, "the broker refuses to exchange the revoked token", "it minted one")
    except TokenExchangeError as exc:
        n.check(exc.error == "invalid_grant",
                "the broker refuses to exchange the revoked token", exc.error)
    return delay_ms if refused else None
