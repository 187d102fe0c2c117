"""A demo CRM as an MCP server: eight tools of rising sensitivity, protected with mcp_plugin.

Tools carry a tag naming the scope that unlocks them (`scope:crm:read`...), which Cerbos
policy `policies/mcp_server.yaml` enforces and mcp_plugin names in step-up challenges:

    read        search_contacts, get_contact, list_deals       scope:crm:read
    write       update_contact, add_note                       scope:crm:write
    destructive delete_contact                                 scope:crm:delete
    bulk        export_contacts                                scope:crm:export
    outbound    send_email(to, subject, body)                  scope:email:send

plus resource `crm://contacts`, template `crm://contacts/{id}` and prompt `summarize_account`.
Data lives in memory, fresh for every `build_server()`. Run it with `python -m
agent_broker_demo.crm_server` (127.0.0.1:8401/mcp, broker :8400, Cerbos :3593).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp_types import ToolAnnotations

from mcp_plugin import protect

BROKER = "http://127.0.0.1:8400"
RESOURCE = "http://127.0.0.1:8401/mcp"
CERBOS = "127.0.0.1:3593"
REDIS_URL = "redis://127.0.0.1:6380/0"
SCOPES = ["crm:read", "crm:write", "crm:delete", "crm:export", "email:send"]

READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)
OUTBOUND = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True)

SAMPLE_CONTACTS: dict[str, dict[str, Any]] = {
    "1": {"id": "1", "name": "Ada Lovelace", "email": "ada@analytical.example",
          "company": "Analytical Engines", "phone": "+44 20 7946 0001", "notes": []},
    "2": {"id": "2", "name": "Grace Hopper", "email": "grace@cobol.example",
          "company": "Compilers Inc", "phone": "+1 202 555 0102", "notes": []},
    "3": {"id": "3", "name": "Alan Turing", "email": "alan@bletchley.example",
          "company": "Bletchley Park", "phone": "+44 1908 640404", "notes": []},
    "4": {"id": "4", "name": "Katherine Johnson", "email": "katherine@orbit.example",
          "company": "Orbital Mechanics", "phone": "+1 757 555 0104", "notes": []},
}
SAMPLE_DEALS: list[dict[str, Any]] = [
    {"id": "d1", "contact_id": "1", "title": "Difference engine upgrade", "amount": 120000,
     "stage": "negotiation"},
    {"id": "d2", "contact_id": "2", "title": "Compiler support plan", "amount": 45000,
     "stage": "won"},
    {"id": "d3", "contact_id": "3", "title": "Codebreaking cluster", "amount": 300000,
     "stage": "proposal"},
    {"id": "d4", "contact_id": "1", "title": "Punch card supplies", "amount": 8000,
     "stage": "won"},
]


@dataclass
class CrmStore:
    """The CRM's data, in memory; `outbox` records what send_email would have sent."""

    contacts: dict[str, dict[str, Any]] = field(
        default_factory=lambda: copy.deepcopy(SAMPLE_CONTACTS)
    )
    deals: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(SAMPLE_DEALS))
    outbox: list[dict[str, str]] = field(default_factory=list)

    def contact(self, contact_id: str) -> dict[str, Any]:
        try:
            return self.contacts[contact_id]
        except KeyError:
            raise ToolError(f"no contact with id {contact_id!r}") from None


def _tags(scope: str, *kinds: str) -> set[str]:
    return {"crm", f"scope:{scope}", *kinds}


def build_server(store: CrmStore | None = None) -> FastMCP[Any]:
    """The CRM server, unprotected (protect it with `build_protected_server` or `protect`)."""
    crm = store or CrmStore()
    mcp: FastMCP[Any] = FastMCP("crm", instructions="A small CRM: contacts, deals, notes.")

    @mcp.tool(tags=_tags("crm:read", "read"), annotations=READ)
    def search_contacts(query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Find contacts whose name, company or email contains `query` (case-insensitive)."""
        needle = query.lower()
        found = [
            c for c in crm.contacts.values()
            if needle in f"{c['name']} {c['company']} {c['email']}".lower()
        ]
        return found[: max(0, limit)]

    @mcp.tool(tags=_tags("crm:read", "read"), annotations=READ)
    def get_contact(contact_id: str) -> dict[str, Any]:
        """One contact with its notes."""
        return crm.contact(contact_id)

    @mcp.tool(tags=_tags("crm:read", "read"), annotations=READ)
    def list_deals(contact_id: str | None = None) -> list[dict[str, Any]]:
        """All deals, or those of one contact."""
        return [d for d in crm.deals if contact_id is None or d["contact_id"] == contact_id]

    @mcp.tool(tags=_tags("crm:write", "write"), annotations=WRITE)
    def update_contact(
        contact_id: str, email: str | None = None, phone: str | None = None,
        company: str | None = None,
    ) -> dict[str, Any]:
        """Change a contact's email, phone or company."""
        contact = crm.contact(contact_id)
        changes = {"email": email, "phone": phone, "company": company}
        contact.update({k: v for k, v in changes.items() if v is not None})
        return contact

    @mcp.tool(tags=_tags("crm:write", "write"), annotations=WRITE)
    def add_note(contact_id: str, text: str) -> dict[str, Any]:
        """Append a note to a contact."""
        contact = crm.contact(contact_id)
        contact["notes"].append(text)
        return {"contact_id": contact_id, "notes": len(contact["notes"])}

    @mcp.tool(tags=_tags("crm:delete", "destructive"), annotations=DESTRUCTIVE)
    def delete_contact(contact_id: str) -> dict[str, Any]:
        """Delete a contact and its deals. Irreversible."""
        crm.contact(contact_id)
        del crm.contacts[contact_id]
        crm.deals = [d for d in crm.deals if d["contact_id"] != contact_id]
        return {"deleted": contact_id}

    @mcp.tool(tags=_tags("crm:export", "bulk"), annotations=READ)
    def export_contacts(format: Literal["csv", "json"] = "csv") -> str:
        """Every contact at once, as CSV or JSON."""
        rows = [{k: v for k, v in c.items() if k != "notes"} for c in crm.contacts.values()]
        if format == "json":
            return json.dumps(rows)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["id", "name", "email", "company", "phone"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    @mcp.tool(tags=_tags("email:send", "outbound"), annotations=OUTBOUND)
    def send_email(to: str, subject: str, body: str) -> dict[str, Any]:
        """Send an email (the demo queues it in an outbox instead)."""
        crm.outbox.append({"to": to, "subject": subject, "body": body})
        return {"status": "queued", "id": len(crm.outbox)}

    @mcp.resource("crm://contacts", tags=_tags("crm:read", "read"), mime_type="application/json")
    def contacts() -> str:
        """Every contact (id, name, company)."""
        return json.dumps([
            {"id": c["id"], "name": c["name"], "company": c["company"]}
            for c in crm.contacts.values()
        ])

    @mcp.resource("crm://contacts/{id}", tags=_tags("crm:read", "read"),
                  mime_type="application/json")
    def contact(id: str) -> str:
        """One contact."""
        return json.dumps(crm.contacts[id])

    @mcp.prompt(tags=_tags("crm:read", "read"))
    def summarize_account(contact_id: str) -> str:
        """Ask for a short account summary of a contact and their deals."""
        return (
            f"Summarize the account of contact {contact_id}: who they are, their open deals "
            "and the next step. Use get_contact and list_deals."
        )

    return mcp


def build_protected_server(
    *,
    broker: str = BROKER,
    resource: str = RESOURCE,
    cerbos: str = CERBOS,
    redis_url: str | None = REDIS_URL,
    store: CrmStore | None = None,
    **options: Any,
) -> FastMCP[Any]:
    """The CRM server behind mcp_plugin; `options` go to `protect` (e.g. cerbos_timeout)."""
    mcp = build_server(store)
    protect(mcp, broker=broker, resource=resource, cerbos=cerbos, redis_url=redis_url,
            scopes_supported=SCOPES, resource_name="Demo CRM", **options)
    return mcp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the demo CRM MCP server, protected.")
    parser.add_argument("--broker", default=BROKER, help="the broker's issuer URL")
    parser.add_argument("--resource", default=RESOURCE, help="this server's MCP URI")
    parser.add_argument("--cerbos", default=CERBOS, help="Cerbos gRPC host:port")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--redis-key-prefix", default="ab:",
                        help="the broker's redis_key_prefix (where revocations are)")
    parser.add_argument("--revocation-staleness-seconds", type=float, default=5.0,
                        help="refuse every token once Redis was silent this long")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8401)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    mcp = build_protected_server(
        broker=args.broker, resource=args.resource, cerbos=args.cerbos, redis_url=args.redis_url,
        revocation_key_prefix=args.redis_key_prefix,
        revocation_staleness_seconds=args.revocation_staleness_seconds,
    )
    path = urlsplit(args.resource).path or "/mcp"
    mcp.run(transport="http", host=args.host, port=args.port, path=path, show_banner=False)


if __name__ == "__main__":
    main()
