"""What the dev stack prints once it is up: one table of URLs and a copy-paste "try it" block."""

from __future__ import annotations

import shlex

from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.dev.config import RESEARCH_AGENT, DevConfig
from broker.dev.layout import DevLayout
from broker.dev.services import DEMO_USERS

# The authorization-code flow stops at the 302 to this never-served URI; we read the code there.
REDIRECT_URI = "http://127.0.0.1:9/callback"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
TRY_SCOPE = "crm:read crm:write"
CONSOLE_ADMIN = "erin"


def url_table(layout: DevLayout, config: DevConfig, *, mcp_running: bool) -> Table:
    table = Table(title="agent-broker dev stack", title_justify="left", expand=False)
    table.add_column("service", style="bold", no_wrap=True)
    table.add_column("URL", no_wrap=True)
    table.add_column("what it is", overflow="fold")
    table.add_row("broker", layout.broker_url, "token exchange: POST /oauth2/token")
    if config.settings.admin.console is not None:
        table.add_row("admin console", f"{layout.broker_url}/admin/",
                      f"sign in as {CONSOLE_ADMIN} (admin), or as any user for their own sessions")
    table.add_row("demo MCP server", layout.mcp_url if mcp_running else "-",
                  "CRM tools behind mcp_plugin" if mcp_running else "not available yet")
    table.add_row("dev IdP", layout.idp_url, "OIDC logins: " + ", ".join(DEMO_USERS))
    table.add_row("cerbos", layout.cerbos_http_url,
                  f"PDP, gRPC :{layout.ports.cerbos_grpc}; edits to "
                  f"{layout.shown(layout.policies_dir)}/ reload")
    table.add_row("redis", layout.redis_url,
                  f"sessions, revocations; AOF in {layout.shown(layout.redis_dir)}/")
    table.add_row("config", layout.shown(config.path),
                  f"{'generated now' if config.generated else 'kept'}; secrets in "
                  f"{layout.shown(layout.secrets_file)}")
    return table


def try_it_script(layout: DevLayout, config: DevConfig) -> str:
    """Shell commands (curl + our python) that get alice an agent token; run from repo root."""
    python = shlex.quote(layout.python())
    secret = config.secrets.get(RESEARCH_AGENT, "<research-agent secret>")
    authorize = (f"{layout.idp_url}/oauth2/authorize?client_id=agent-host&response_type=code"
                 f"&scope=openid+email&redirect_uri={REDIRECT_URI}&state=dev&nonce=dev")
    field = "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])"
    return "\n".join([
        "# 1. alice logs in at the dev IdP (authorization code flow; the code is in the redirect)",
        "CODE=$(curl -s -o /dev/null -w '%{redirect_url}' -X POST -d sub=alice \\",
        f"  '{authorize}' \\",
        "  | sed -E 's/.*[?&]code=([^&]+).*/\\1/')",
        "",
        "# 2. the agent host swaps the code for alice's ID token",
        f"ID_TOKEN=$(curl -s -u agent-host:any-secret {layout.idp_url}/oauth2/token \\",
        "  -d grant_type=authorization_code -d \"code=$CODE\" \\",
        f"  -d redirect_uri={REDIRECT_URI} | {python} -c '{field}' id_token)",
        "",
        "# 3. research-agent exchanges it for an agent token for the CRM MCP server",
        f"curl -s -u {shlex.quote(RESEARCH_AGENT + ':' + secret)} "
        f"{layout.broker_url}/oauth2/token \\",
        f"  -d grant_type={TOKEN_EXCHANGE} \\",
        f"  -d subject_token_type={ID_TOKEN_TYPE} \\",
        "  -d \"subject_token=$ID_TOKEN\" \\",
        f"  -d resource={layout.mcp_url} \\",
        f"  --data-urlencode 'scope={TRY_SCOPE}' | {python} -m json.tool",
    ])


def print_ready(console: Console, layout: DevLayout, config: DevConfig, *,
                mcp_running: bool) -> None:
    """The table, then the script as plain lines: no box or cropping to spoil a copy-paste."""
    console.print()
    console.print(url_table(layout, config, mcp_running=mcp_running))
    console.print()
    console.print(Text.assemble(
        ("Try it", "bold"), f" from {layout.repo_root} (the answer's scope is \"{TRY_SCOPE}\"; "
        "log in as bob or carol instead of alice and it changes):"), soft_wrap=True)
    if RESEARCH_AGENT not in config.secrets:
        console.print(f"(the research-agent secret is unknown: delete "
                      f"{layout.shown(config.path)} to generate new dev secrets)",
                      style="yellow", soft_wrap=True)
    console.print()
    for line in try_it_script(layout, config).splitlines():
        console.print(Text(line, style="dim" if line.startswith("#") else ""), soft_wrap=True)
    console.print()
    console.print("Ctrl-C stops every service.", style="bold")
    console.print()
