"""The web console in a real headless Chromium: sign in through the real IdP's login form,
read sessions and the audit trail, revoke with one click, and watch a running agent's next
MCP tool call fail."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastmcp import Client
from playwright.async_api import Page, expect

from tests.browser.conftest import NewPage
from tests.integration.revocation_support import Minted, RevocationStack
from tests.support.oidc import set_user_claims

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SESSION_ROWS = '[data-testid="session-row"]'
AGENT_CHAIN = "research-agent → summarizer-agent"


def row(page: Page, sid: str) -> Any:
    return page.locator(f'{SESSION_ROWS}[data-sid="{sid}"]')


async def sign_in_as(page: Page, stack: RevocationStack, sub: str) -> None:
    """`sub` signs in to the console through the IdP's login form."""
    await page.goto(f"{stack.broker.url}/admin/")
    assert page.url.startswith(stack.oidc_issuer)  # sent to the IdP to sign in
    await page.locator('input[name="sub"]').fill(sub)
    await page.get_by_role("button", name="Authorize").click()
    await page.wait_for_url(f"{stack.broker.url}/admin/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.get_by_test_id("whoami-subject")).to_have_text(sub)


async def sign_in(page: Page, stack: RevocationStack, roles: list[str]) -> str:
    """A fresh user with `roles` signs in."""
    sub = f"{roles[0]}-{uuid.uuid4().hex[:8]}"
    set_user_claims(stack.oidc_issuer, sub, {"roles": roles, "email": f"{sub}@example.com"})
    await sign_in_as(page, stack, sub)
    return sub


async def call_works(client: Client[Any]) -> bool:
    try:
        result = await client.call_tool("search_contacts", {"query": "Ada"},
                                        raise_on_error=False)
    except Exception:  # noqa: BLE001 - a refused token surfaces as a transport error
        return False
    return not result.is_error


async def poll(client: Client[Any], want: bool, within: float) -> float:
    """Seconds until a tool call's outcome is `want` (fails after `within` seconds)."""
    start = time.monotonic()
    while (await call_works(client)) is not want:
        assert time.monotonic() - start < within, f"no tool call {want=} within {within} s"
    return time.monotonic() - start


async def test_admin_sees_everyone_filters_reads_audit_and_revokes_a_running_agent(
        new_page: NewPage, console_stack: RevocationStack, crm_url: str) -> None:
    stack = console_stack
    alice, alice_token = stack.login(roles=["sales_rep"])
    bob, bob_token = stack.login(roles=["support"])
    parent = stack.mint(alice_token, scope="crm:read crm:write")
    child = stack.delegate(parent)
    bob_session = stack.mint(bob_token)

    async with Client(crm_url, auth=parent.token) as agent:
        await poll(agent, True, within=10)  # the agent works (once the CRM's feed is in sync)

        page = await new_page()
        await sign_in(page, stack, ["admin"])
        await expect(page.get_by_test_id("revoke-panel")).to_be_visible()
        for sid, user in ((parent.sid, alice), (child.sid, alice), (bob_session.sid, bob)):
            await expect(row(page, sid).get_by_test_id("session-user")).to_have_text(user)
            await expect(row(page, sid)).to_have_attribute("data-status", "active")
        await expect(row(page, child.sid).get_by_test_id("session-chain")).to_have_text(
            AGENT_CHAIN)
        await expect(row(page, parent.sid).get_by_test_id("session-scopes")).to_have_text(
            "crm:read crm:write")

        await page.get_by_test_id("filter-user").fill(alice)
        await page.get_by_test_id("filter-apply").click()
        await expect(page.locator(SESSION_ROWS)).to_have_count(2)
        await expect(page.locator(f'{SESSION_ROWS}[data-user="{bob}"]')).to_have_count(0)

        await page.get_by_test_id("audit-filter-user").fill(alice)
        await page.get_by_test_id("audit-filter-type").select_option("exchange")
        await page.get_by_test_id("audit-apply").click()
        audit = page.get_by_test_id("audit-row")
        await expect(audit).to_have_count(2)
        await expect(audit.get_by_test_id("audit-agent")).to_contain_text([AGENT_CHAIN,
                                                                           "research-agent"])
        await expect(audit.get_by_test_id("audit-detail").last).to_contain_text(
            "granted crm:read crm:write")

        await row(page, parent.sid).get_by_test_id("session-revoke").click()
        await expect(row(page, parent.sid)).to_have_attribute("data-status", "revoked")
        await expect(row(page, child.sid)).to_have_attribute("data-status", "revoked")
        assert not stack.is_active(parent.token)
        assert not stack.is_active(child.token)
        took = await poll(agent, False, within=2)
    assert took < 1.0, f"the agent's next call still worked {took:.3f} s after the revoke"
    await assert_refused(crm_url, parent)

    # Admins also cut a user off from one agent, from the panel.
    await page.get_by_test_id("filter-user").fill("")
    await page.get_by_test_id("revoke-user").fill(bob)
    await page.get_by_test_id("revoke-agent").fill("research-agent")
    await page.get_by_test_id("revoke-reason").fill("browser test")
    await page.get_by_test_id("revoke-submit").click()
    await expect(page.get_by_test_id("message")).to_contain_text("user_agent")
    await expect(row(page, bob_session.sid)).to_have_attribute("data-status", "revoked")
    assert not stack.is_active(bob_session.token)
    await page.get_by_test_id("audit-filter-user").fill("")
    await page.get_by_test_id("audit-filter-type").select_option("revocation")
    await page.get_by_test_id("audit-apply").click()
    await expect(page.get_by_test_id("audit-detail").first).to_contain_text("browser test")


async def assert_refused(crm_url: str, token: Minted) -> None:
    """The CRM itself answers 401 to the revoked token, not just a tool error."""
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(crm_url, json={"jsonrpc": "2.0", "id": 1,
                                                  "method": "tools/list"}, headers={
            "Authorization": f"Bearer {token.token}",
            "Accept": "application/json, text/event-stream"})
    assert response.status_code == 401, response.text


async def test_a_user_sees_and_revokes_only_their_own_sessions(
        new_page: NewPage, console_stack: RevocationStack) -> None:
    stack = console_stack
    page = await new_page()
    _, other_token = stack.login(roles=["sales_rep"])
    other_session = stack.mint(other_token)
    sub = f"rep-{uuid.uuid4().hex[:8]}"
    _, token = stack.login(sub, roles=["sales_rep"])
    mine = [stack.mint(token), stack.mint(token, scope="crm:read crm:write")]

    await sign_in_as(page, stack, sub)
    await expect(page.get_by_test_id("revoke-panel")).to_be_hidden()
    await expect(page.get_by_test_id("filter-user")).to_be_disabled()
    await expect(page.locator(SESSION_ROWS)).to_have_count(2)
    await expect(row(page, other_session.sid)).to_have_count(0)
    await expect(page.get_by_test_id("audit-user")).to_have_text([sub, sub])  # own trail only

    await row(page, mine[0].sid).get_by_test_id("session-revoke").click()
    await expect(row(page, mine[0].sid)).to_have_attribute("data-status", "revoked")
    await expect(row(page, mine[1].sid)).to_have_attribute("data-status", "active")
    assert not stack.is_active(mine[0].token)
    assert stack.is_active(mine[1].token)
    assert stack.is_active(other_session.token)


async def test_csrf_security_headers_logout_and_the_redirect_to_sign_in(
        new_page: NewPage, console_stack: RevocationStack) -> None:
    stack = console_stack
    url = stack.broker.url
    async with httpx.AsyncClient(trust_env=False) as anonymous:
        response = await anonymous.get(f"{url}/admin/")
        login = await anonymous.get(f"{url}/admin/login")
        forged = await anonymous.get(f"{url}/admin/callback?code=stolen&state=forged")
    assert (response.status_code, response.headers["location"]) == (302, "/admin/login")
    query = parse_qs(urlsplit(login.headers["location"]).query)
    assert query["redirect_uri"] == [f"{url}/admin/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert {"state", "nonce", "code_challenge"} <= query.keys()
    # A callback with a state this browser's sign-in did not start (login CSRF) is refused.
    assert (forged.status_code, "Sign-in failed" in forged.text) == (400, True)
    cookie = login.headers["set-cookie"].lower()
    assert all(part in cookie for part in ("path=/admin", "httponly", "samesite=lax"))

    _, user_token = stack.login(roles=["sales_rep"])
    target = stack.mint(user_token)
    page = await new_page()
    await sign_in(page, stack, ["admin"])
    shown = await page.request.get(f"{url}/admin/", max_redirects=0)
    headers = shown.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert (headers["x-frame-options"], headers["referrer-policy"],
            headers["cache-control"]) == ("DENY", "no-referrer", "no-store")
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf

    # The session cookie alone is not enough for a state-changing request.
    revoke = f"{url}/admin/sessions/{target.sid}/revoke"
    for extra in ({}, {"X-CSRF-Token": "not-the-token"}):
        refused = await page.request.post(revoke, data="{}", headers={
            "Content-Type": "application/json", **extra})
        assert refused.status == 401, await refused.text()
    assert stack.is_active(target.token)
    accepted = await page.request.post(revoke, data="{}", headers={
        "Content-Type": "application/json", "X-CSRF-Token": csrf})
    assert accepted.status == 200, await accepted.text()

    await page.get_by_test_id("logout").click()
    await page.wait_for_url(f"{url}/admin/signed-out")
    await expect(page.get_by_test_id("message-title")).to_have_text("Signed out")
    after = await page.request.get(f"{url}/admin/", max_redirects=0)
    assert (after.status, after.headers["location"]) == (302, "/admin/login")
    assert (await page.request.get(f"{url}/admin/me")).status == 401
