"""`agent-broker sessions ...`, `revoke ...` and `audit`: admin work from a shell (contract §9).

These talk to the broker's Redis directly with the broker's config, as an operator who holds
that config may; revocations record `cli:<login name>` as who revoked. The HTTP admin API is
the way for everyone else (it asks Cerbos).
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from broker.admin.service import AdminService, SessionStatus, connect_admin_service
from broker.audit import AuditQuery
from broker.config import BrokerSettings
from broker.errors import DependencyUnavailable
from broker.revocation import RevocationTarget

T = TypeVar("T")
sessions_app = typer.Typer(help="Agent sessions: list and revoke.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit trail.")]


def _run(settings: BrokerSettings, work: Callable[[AdminService], Awaitable[T]]) -> T:
    async def main() -> T:
        service = connect_admin_service(settings, time.time)
        try:
            return await work(service)
        finally:
            await service.aclose()

    try:
        return asyncio.run(main())
    except DependencyUnavailable:
        err.print(f"[red]Redis at {settings.redis_url} did not answer[/red]; nothing was done.")
        raise typer.Exit(1) from None


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def sessions_table(statuses: list[SessionStatus]) -> Table:
    table = Table("sid", "user", "agent chain", "resource", "scopes", "expires", "status")
    for status in statuses:
        r = status.record
        state = f"[red]revoked[/red] ({status.revoked_by})" if status.revoked_by else "active"
        table.add_row(r.sid, r.subject, " > ".join(r.actors), r.resource,
                      " ".join(r.scopes_granted), _ts(r.expires_at), state)
    return table


def list_sessions(settings: BrokerSettings, user: str | None, agent: str | None,
                  limit: int) -> None:
    page, more = _run(settings, lambda s: s.list_sessions(user=user, agent=agent, limit=limit))
    if not page:
        out.print("no live sessions" + (" matching the filter" if user or agent else ""))
        return
    out.print(sessions_table(page))
    if more is not None:
        out.print(f"(first {limit}; use --limit for more)")


def revoke_session(settings: BrokerSettings, sid: str, reason: str) -> None:
    outcome = _run(settings, lambda s: s.revoke_session(sid, revoked_by=_who(), reason=reason))
    if outcome is None:
        err.print(f"[red]no live session {sid}[/red]")
        raise typer.Exit(1)
    out.print(f"revoked session {sid} and its descendants: {outcome.entries} entr"
              f"{'y' if outcome.entries == 1 else 'ies'} ({outcome.revocation.id})")


def revoke(settings: BrokerSettings, *, user: str | None, agent: str | None,
           session: str | None, token: str | None, reason: str) -> None:
    try:
        target = RevocationTarget.build(user=user, agent=agent, session=session, token=token)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red] (e.g. --user alice, --agent research-agent, both, "
                  "--session SID or --token JTI)")
        raise typer.Exit(2) from None
    if session is not None:
        revoke_session(settings, session, reason)
        return

    async def work(service: AdminService) -> int:
        outcome = await service.revoke(target, revoked_by=_who(), reason=reason)
        return outcome.entries

    entries = _run(settings, work)
    described = ", ".join(f"{k}={v}" for k, v in target.describe().items() if k != "kind")
    out.print(f"revoked {target.kind.value} ({described}); {entries} entr"
              f"{'y' if entries == 1 else 'ies'} written. Tokens issued until now are refused.")


def show_audit(settings: BrokerSettings, query: AuditQuery) -> None:
    records = _run(settings, lambda s: s.audit(query))
    table = Table("time", "type", "user", "agent", "what")
    for r in records:
        if r["type"] == "exchange":
            dropped = ", ".join(f"{d['scope']} ({d['reason']})" for d in r["dropped"])
            what = f"{r['sid']}: granted {' '.join(r['granted'])}" + (
                f"; dropped {dropped}" if dropped else "")
            agent = " > ".join(r["actors"])
        else:
            target = ", ".join(f"{k}={v}" for k, v in r["target"].items() if k != "kind")
            what = (f"{r['target']['kind']} {target} by {r['revoked_by']}"
                    + (f": {r['reason']}" if r["reason"] else ""))
            agent = r.get("agent") or ""
        table.add_row(_ts(r["at"]), r["type"], r.get("user") or "", agent, what)
    out.print(table)
